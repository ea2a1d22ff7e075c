#!/usr/bin/env python3
"""Writes a model fixture (Tests/Fixtures format) with upstream nanochat's own GPT (nanochat/gpt.py of an
upstream checkout, float32 on CPU): the parameters after upstream's init_weights plus N(0, 0.02) noise (so no
gradient is trivially zero), random inputs and targets (some -1), the softcapped logits, the mean loss and
every parameter's gradient. `nanochat verify FILE` and the XCTest suite compare ours against it.

With --float64 the same model also runs in float64 and the fixture gains `ref64.grad.*`: the gradients in
double precision, which say how much of a float32 disagreement is rounding (see Tests/Fixtures/README.md).
Test tooling only (needs torch and safetensors).

usage: make_gpt_fixture.py UPSTREAM_CHECKOUT OUT.safetensors --n-layer 2 [--n-embd 64 --n-head 2 --n-kv-head 1
       --vocab 300 --seq 64 --pattern SL --windows 8,64 --batch 2 --time 24 --seed 0 --float64]
"""
import argparse, json, os, subprocess, sys


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("checkout")
    ap.add_argument("out")
    ap.add_argument("--n-layer", type=int, default=2)
    ap.add_argument("--n-embd", type=int, default=64)
    ap.add_argument("--n-head", type=int, default=2)
    ap.add_argument("--n-kv-head", type=int, default=1)
    ap.add_argument("--vocab", type=int, default=300)
    ap.add_argument("--seq", type=int, default=64)
    ap.add_argument("--pattern", default="SL")
    ap.add_argument("--windows", default=None, help="left window per layer, comma-separated (default: the pattern's)")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--time", type=int, default=24)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--float64", action="store_true")
    ap.add_argument("--checkpoint", nargs=2, metavar=("DIR", "STEP"),
                    help="take the config and parameters from our model_<step>.safetensors (no noise added)")
    a = ap.parse_args()
    if a.checkpoint:
        with open(os.path.join(a.checkpoint[0], "meta_%06d.json" % int(a.checkpoint[1]))) as f:
            c = json.load(f)["model_config"]
        a.n_layer, a.n_embd, a.n_head, a.n_kv_head = c["n_layer"], c["n_embd"], c["n_head"], c["n_kv_head"]
        a.vocab, a.seq, a.pattern = c["vocab_size"], c["sequence_len"], c["window_pattern"]

    os.environ["NANOCHAT_DTYPE"] = "float32"
    sys.path.insert(0, a.checkout)
    import torch
    from safetensors.torch import save_file
    from nanochat.gpt import GPT, GPTConfig

    torch.manual_seed(a.seed)
    cfg = GPTConfig(sequence_len=a.seq, vocab_size=a.vocab, n_layer=a.n_layer, n_head=a.n_head,
                    n_kv_head=a.n_kv_head, n_embd=a.n_embd, window_pattern=a.pattern)
    with torch.device("meta"):
        model = GPT(cfg)
    model.to_empty(device="cpu")
    model.init_weights()
    if a.windows:
        model.window_sizes = [(int(w), 0) for w in a.windows.split(",")]
    with torch.no_grad():
        if a.checkpoint:
            from safetensors.torch import load_file
            state = load_file(os.path.join(a.checkpoint[0], "model_%06d.safetensors" % int(a.checkpoint[1])))
            model.load_state_dict(state, strict=True)
        else:
            for p in model.parameters():
                p.add_(0.02 * torch.randn_like(p))
    g = torch.Generator().manual_seed(a.seed + 1)
    idx = torch.randint(0, a.vocab, (a.batch, a.time), generator=g)
    targets = torch.randint(0, a.vocab, (a.batch, a.time), generator=g)
    targets[torch.rand(a.batch, a.time, generator=g) < 0.15] = -1

    with torch.no_grad():
        logits = model(idx)
    loss = model(idx, targets)
    loss.backward()
    tensors = {"input.idx": idx.contiguous(), "input.targets": targets.contiguous(),
               "output.logits": logits.float().contiguous(), "output.loss": loss.detach().reshape(1).float()}
    for name, p in model.named_parameters():
        tensors["param." + name] = p.detach().float().contiguous()
        tensors["grad." + name] = p.grad.detach().float().contiguous()

    if a.float64:
        # the same function in double precision: parameters, rotary tables and every activation in float64
        model64 = model.double()
        model64.cos, model64.sin = model.cos.double(), model.sin.double()
        model64.zero_grad(set_to_none=True)
        import nanochat.gpt as upstream_gpt
        upstream_gpt.COMPUTE_DTYPE = torch.float64
        loss64 = model64(idx, targets)
        loss64.backward()
        for name, p in model64.named_parameters():
            tensors["ref64.grad." + name] = p.grad.detach().float().contiguous()
        tensors["ref64.loss"] = loss64.detach().reshape(1).float()

    try:
        commit = subprocess.run(["git", "-C", a.checkout, "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True).stdout.strip() or "unknown"
    except OSError:
        commit = "unknown"
    meta = {"config": {"sequence_len": a.seq, "vocab_size": a.vocab, "n_layer": a.n_layer, "n_head": a.n_head,
                       "n_kv_head": a.n_kv_head, "n_embd": a.n_embd, "window_pattern": a.pattern},
            "window_sizes": [list(w) for w in model.window_sizes], "B": a.batch, "T": a.time,
            "upstream_commit": commit, "torch": torch.__version__, "seed": a.seed}
    save_file(tensors, a.out, metadata={"meta": json.dumps(meta)})
    print(f"wrote {a.out}: n_layer {a.n_layer}, loss {loss.item():.6f}, upstream {commit}")


if __name__ == "__main__":
    main()
