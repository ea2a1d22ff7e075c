#!/usr/bin/env python3
"""Side-by-side reference for `nanochat bench infer`: upstream nanochat's own GPT and KVCache (PyTorch, float32
on CPU, 2 threads, inference mode, no compile: upstream's Engine does not compile) on the same configuration:
random weights, vocab 32768, head-dim 64, window L, a 128-token prompt, then decoded tokens one step at a
time, as upstream's Engine.generate runs them. Prints one JSON line. Benchmark tooling only.

usage: bench_upstream_infer.py UPSTREAM_CHECKOUT --depth 4 [--tokens 64] [--prompt 128]
"""
import argparse, json, time

from upstream_gpt import upstream_gpt


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("checkout")
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--head-dim", type=int, default=64)
    ap.add_argument("--vocab", type=int, default=32768)
    ap.add_argument("--prompt", type=int, default=128)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch, model, cfg = upstream_gpt(a.checkout, a.depth, a.head_dim, 2048, a.vocab, a.threads, seed=3)
    from nanochat.engine import KVCache
    model.eval()
    ids = torch.randint(0, a.vocab, (1, a.prompt))

    def cache(batch):
        return KVCache(batch_size=batch, num_heads=cfg.n_kv_head, seq_len=a.prompt + a.tokens + 4, head_dim=a.head_dim,
                       num_layers=cfg.n_layer, device="cpu", dtype=torch.float32)

    with torch.inference_mode():
        best = float("inf")
        for _ in range(3):
            c = cache(1)
            t0 = time.perf_counter()
            model.forward(ids, kv_cache=c)
            best = min(best, time.perf_counter() - t0)
        prefill = a.prompt / best

        def decode(batch):
            c = cache(batch)
            model.forward(ids.expand(batch, -1).contiguous(), kv_cache=c)
            col = torch.full((batch, 1), 7, dtype=torch.long)
            model.forward(col, kv_cache=c)  # warm
            best = float("inf")
            for _ in range(3):  # best of three runs, as ours
                c.cache_seqlens.fill_(a.prompt + 1)
                t0 = time.perf_counter()
                for _ in range(a.tokens):
                    model.forward(col, kv_cache=c)
                best = min(best, time.perf_counter() - t0)
            return a.tokens * batch / best

        d1, d8 = decode(1), decode(8)
    print(json.dumps({"depth": a.depth, "decode1": d1, "decode8": d8, "prefill": prefill, "torch": torch.__version__}))


if __name__ == "__main__":
    main()
