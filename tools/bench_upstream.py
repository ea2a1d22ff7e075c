#!/usr/bin/env python3
"""Side-by-side reference for `nanochat bench train`: upstream nanochat's own GPT and MuonAdamW (PyTorch,
torch.compile, float32 on CPU, 2 threads) on the same configuration and random tokens; prints the median
tokens/s of steady steps and the peak RSS as JSON. Benchmark tooling only.

usage: bench_upstream.py UPSTREAM_CHECKOUT --depth 4 [--steps 6] [--no-compile]
"""
import argparse, json, resource, time

from upstream_gpt import upstream_gpt


def peak_rss_mb():
    """This process's own peak resident set (VmHWM). Not getrusage's ru_maxrss: Linux carries that over from the
    process that spawned us (the Swift bench, gigabytes at d6), so it read as the larger of the two."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("checkout")
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--head-dim", type=int, default=64)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--device-batch", type=int, default=8)
    ap.add_argument("--total-batch", type=int, default=4096)
    ap.add_argument("--vocab", type=int, default=32768)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-compile", action="store_true")
    a = ap.parse_args()
    torch, model, cfg = upstream_gpt(a.checkout, a.depth, a.head_dim, a.seq, a.vocab, a.threads, seed=42)
    lr_scale = (a.total_batch / 2**19) ** 0.5
    opt = model.setup_optimizer(unembedding_lr=0.008 * lr_scale, embedding_lr=0.3 * lr_scale, matrix_lr=0.02 * lr_scale,
                                weight_decay=0.28, scalar_lr=0.5 * lr_scale)
    run = model if a.no_compile else torch.compile(model, dynamic=False)
    accum = a.total_batch // (a.device_batch * a.seq)
    g = torch.Generator().manual_seed(1)
    batches = [torch.randint(0, a.vocab, (a.device_batch, a.seq + 1), generator=g) for _ in range(accum)]
    rates = []
    for step in range(a.warmup + a.steps):
        t0 = time.perf_counter()
        for b in batches:
            loss = run(b[:, :-1].contiguous(), b[:, 1:].contiguous()) / accum
            loss.backward()
        opt.step()
        model.zero_grad(set_to_none=True)
        dt = time.perf_counter() - t0
        if step >= a.warmup:
            rates.append(a.total_batch / dt)
    rates.sort()
    peak_mb = peak_rss_mb()
    print(json.dumps({"depth": a.depth, "tok_per_sec": rates[len(rates) // 2], "all": rates, "peak_rss_mb": peak_mb,
                      "compiled": not a.no_compile, "torch": torch.__version__}))


if __name__ == "__main__":
    main()
