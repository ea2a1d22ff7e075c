#!/usr/bin/env python3
"""What our CUDA attention must beat: PyTorch's scaled_dot_product_attention (upstream's fallback without FA3) in
bf16 at the model's shapes, causal, full context and with the short sliding window as an explicit mask (how
upstream's fallback passes it), forward and forward+backward, median of timed runs. GPU tooling only.

usage: gpu_attention_baseline.py [--batch 32] [--seq 2048] [--heads 6] [--head-dim 128] [--window 768]
"""
import argparse, json

import torch
import torch.nn.functional as F


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq", type=int, default=2048)
    ap.add_argument("--heads", type=int, default=6)
    ap.add_argument("--head-dim", type=int, default=128)
    ap.add_argument("--window", type=int, default=768)
    a = ap.parse_args()
    dev = "cuda"
    B, T, H, D = a.batch, a.seq, a.heads, a.head_dim
    q, k, v = (torch.randn(B, H, T, D, device=dev, dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
    i = torch.arange(T, device=dev)
    window_mask = (i[None, :] <= i[:, None]) & (i[:, None] - i[None, :] <= a.window)
    out = {}

    def timed(fn, reps=10):
        for _ in range(3):
            fn()
        torch.cuda.synchronize()
        times = []
        for _ in range(reps):
            e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            e0.record(); fn(); e1.record(); torch.cuda.synchronize()
            times.append(e0.elapsed_time(e1))
        return sorted(times)[len(times) // 2]

    for name, kw in [("causal", dict(is_causal=True)), (f"window {a.window} mask", dict(attn_mask=window_mask))]:
        fwd = timed(lambda: F.scaled_dot_product_attention(q, k, v, **kw))
        def fb():
            y = F.scaled_dot_product_attention(q, k, v, **kw)
            y.backward(torch.ones_like(y))
        both = timed(fb)
        # causal attention FLOPs: 4*B*H*T*T*D/2 forward (QK^T and PV over the lower triangle), 2.5x that with backward
        keys = T / 2 if "causal" in name else min(a.window, T) - a.window * min(a.window, T) / (2 * T)
        flops = 4 * B * H * T * keys * D
        out[name] = {"forward_ms": fwd, "forward_backward_ms": both,
                     "forward_tflops_useful": flops / fwd / 1e9, "forward_backward_tflops_useful": 3.5 * flops / both / 1e9}
        print(f"SDPA {name:>18}: forward {fwd:7.3f} ms ({flops / fwd / 1e9:6.1f} TFLOP/s useful), "
              f"forward+backward {both:7.3f} ms ({3.5 * flops / both / 1e9:6.1f} TFLOP/s useful)")
    print(json.dumps({"torch": torch.__version__, "device": torch.cuda.get_device_name(), "shape": [B, T, H, D], **out}))


if __name__ == "__main__":
    main()
