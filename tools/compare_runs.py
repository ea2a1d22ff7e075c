"""Compares two training runs step by step: the losses (RL: the rewards) in their metrics.jsonl and the parameters of their final
model_<step>.safetensors, each within a relative tolerance. Used by scripts/test to check that N MPI ranks train
exactly like one process with N times the accumulation steps. Standard library only.

usage: compare_runs.py RUN_A RUN_B [--tol 1e-5] [--param-tol T] [--min-steps 10] [--loose NAME --loose-tol 0.5]
--param-tol: the final parameters' tolerance when it is not --tol (sums of 3+ ranks' gradients are grouped in MPI's
order, not the accumulation's: Muon's orthogonalisation and Adam's normalisation magnify that rounding in the weights
while the losses stay within --tol).
--loose: a parameter held to --loose-tol instead (backout_lambda: its gradient nearly cancels, so its float32 value
is rounding noise that Adam magnifies; upstream's own float32 gradient of it is off by orders of magnitude from the
float64 one, which is why the fixtures check it against float64).
"""
import argparse, array, json, os, re, struct, sys


def losses(run):
    out = {}
    with open(os.path.join(run, "metrics.jsonl")) as f:
        for line in f:
            obj = json.loads(line)
            # training steps: the loss (base-train, SFT) or the mean reward (RL)
            for key in ("loss", "reward"):
                if key in obj:
                    out[obj["step"]] = obj[key]
                    break
    return out


def tensors(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        body = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        assert info["dtype"] == "F32", f"{path}: {name} is {info['dtype']}"
        a, b = info["data_offsets"]
        out[name] = array.array("f", body[a:b])
    return out


def final_model(run):
    steps = [int(m.group(1)) for m in (re.match(r"model_(\d+)\.safetensors$", f) for f in os.listdir(run)) if m]
    if not steps:
        sys.exit(f"compare_runs: no model_<step>.safetensors in {run}")
    return max(steps), os.path.join(run, f"model_{max(steps):06d}.safetensors")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--tol", type=float, default=1e-5)
    ap.add_argument("--min-steps", type=int, default=10)
    ap.add_argument("--loose", action="append", default=[])
    ap.add_argument("--loose-tol", type=float, default=0.5)
    ap.add_argument("--param-tol", type=float, default=None, help="the parameters' tolerance, when not --tol")
    args = ap.parse_args()
    param_tol = args.tol if args.param_tol is None else args.param_tol
    la, lb = losses(args.a), losses(args.b)
    if sorted(la) != sorted(lb) or len(la) < args.min_steps:
        sys.exit(f"compare_runs: steps differ or too few: {sorted(la)} vs {sorted(lb)} (need {args.min_steps})")
    worst_loss = 0.0
    for s in sorted(la):
        rel = abs(la[s] - lb[s]) / max(abs(la[s]), 1e-12)
        worst_loss = max(worst_loss, rel)
        print(f"step {s:3d}  loss {la[s]:.7f}  {lb[s]:.7f}  rel diff {rel:.1e}")
    sa, pa = final_model(args.a)
    sb, pb = final_model(args.b)
    if sa != sb:
        sys.exit(f"compare_runs: final steps differ: {sa} vs {sb}")
    ta, tb = tensors(pa), tensors(pb)
    if sorted(ta) != sorted(tb):
        sys.exit("compare_runs: the models have different parameters")
    worst_param, worst_name, loose_ok, loose_text = 0.0, "", True, ""
    for name in sorted(ta):
        x, y = ta[name], tb[name]
        scale = max(max(abs(v) for v in x), 1e-12)
        diff = max(abs(u - v) for u, v in zip(x, y))
        if name in args.loose:
            loose_ok = loose_ok and diff / scale <= args.loose_tol
            loose_text += f"; {name} {diff / scale:.1e} (tolerance {args.loose_tol:g})"
        elif diff / scale > worst_param:
            worst_param, worst_name = diff / scale, name
    ok = worst_loss <= args.tol and worst_param <= param_tol and loose_ok
    print(f"compare_runs: {len(la)} steps, largest loss difference {worst_loss:.1e} relative; parameters after step {sa}: "
          f"largest difference {worst_param:.1e} of the tensor's largest value ({worst_name or '-'}); tolerance {args.tol:g}"
          f"{f' (parameters {param_tol:g})' if param_tol != args.tol else ''}"
          f"{loose_text}: {'OK' if ok else 'FAILED'}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
