#!/usr/bin/env python3
"""PyTorch reference of upstream's GPT, written independently from upstream's code, to check that a checkpoint we write loads into
upstream's model layout (safetensors + load_state_dict(strict=True)) and gives our logits and gradients.

It loads <checkpoint_dir>/model_<step>.safetensors with meta_<step>.json, runs a forward and backward pass on
random tokens, and writes a fixture in Tests/Fixtures' format; `nanochat verify FIXTURE` then compares our
Swift implementation against it. Needs torch, numpy, safetensors (pip); never needed by users.

usage: torch_reference.py CHECKPOINT_DIR STEP OUT.safetensors [--batch 2] [--time 64] [--seed 0]
"""
import argparse, json, math, os

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

EPS = torch.finfo(torch.float32).eps


def norm(x):
    return F.rms_norm(x, (x.size(-1),), eps=EPS)


def window_sizes(cfg):
    seq, L = cfg["sequence_len"], cfg["n_layer"]
    pattern = cfg["window_pattern"].upper()
    short = -((-seq // 4) // 128) * 128
    return [seq if (i == L - 1 or pattern[i % len(pattern)] == "L") else short for i in range(L)]


class Attention(nn.Module):
    def __init__(self, C, H, Hkv, has_ve):
        super().__init__()
        D = C // H
        self.H, self.Hkv, self.D = H, Hkv, D
        self.c_q = nn.Linear(C, H * D, bias=False)
        self.c_k = nn.Linear(C, Hkv * D, bias=False)
        self.c_v = nn.Linear(C, Hkv * D, bias=False)
        self.c_proj = nn.Linear(C, C, bias=False)
        self.ve_gate = nn.Linear(12, Hkv, bias=False) if has_ve else None

    def forward(self, u, ve, cos, sin, window):
        B, T, _ = u.shape
        q = self.c_q(u).view(B, T, self.H, self.D)
        k = self.c_k(u).view(B, T, self.Hkv, self.D)
        v = self.c_v(u).view(B, T, self.Hkv, self.D)
        if ve is not None:
            g = 3 * torch.sigmoid(self.ve_gate(u[..., :12]))
            v = v + g.unsqueeze(-1) * ve.view(B, T, self.Hkv, self.D)

        def rope(x):
            h = self.D // 2
            x1, x2 = x[..., :h], x[..., h:]
            return torch.cat([x1 * cos + x2 * sin, -x1 * sin + x2 * cos], dim=-1)

        q, k = norm(rope(q)) * 1.2, norm(rope(k)) * 1.2
        rep = self.H // self.Hkv
        k = k.repeat_interleave(rep, dim=2)
        v = v.repeat_interleave(rep, dim=2)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # [B, H, T, D]
        i = torch.arange(T).view(T, 1)
        j = torch.arange(T).view(1, T)
        allowed = (j <= i) & (i - j <= window)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
        return self.c_proj(y.transpose(1, 2).reshape(B, T, -1))


class MLP(nn.Module):
    def __init__(self, C):
        super().__init__()
        self.c_fc = nn.Linear(C, 4 * C, bias=False)
        self.c_proj = nn.Linear(4 * C, C, bias=False)

    def forward(self, u):
        return self.c_proj(F.relu(self.c_fc(u)).square())


class Block(nn.Module):
    def __init__(self, C, H, Hkv, has_ve):
        super().__init__()
        self.attn = Attention(C, H, Hkv, has_ve)
        self.mlp = MLP(C)


class GPT(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        C, H, Hkv, L, V = cfg["n_embd"], cfg["n_head"], cfg["n_kv_head"], cfg["n_layer"], cfg["vocab_size"]
        Vp = (V + 63) // 64 * 64
        self.cfg, self.V = cfg, V
        ve_layers = [i for i in range(L) if i % 2 == (L - 1) % 2]
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(Vp, C),
            h=nn.ModuleList([Block(C, H, Hkv, i in ve_layers) for i in range(L)])))
        self.lm_head = nn.Linear(C, Vp, bias=False)
        self.value_embeds = nn.ModuleDict({str(i): nn.Embedding(Vp, Hkv * (C // H)) for i in ve_layers})
        self.resid_lambdas = nn.Parameter(torch.ones(L))
        self.x0_lambdas = nn.Parameter(torch.zeros(L))
        self.smear_gate = nn.Linear(24, 1, bias=False)
        self.smear_lambda = nn.Parameter(torch.zeros(1))
        self.backout_lambda = nn.Parameter(torch.zeros(1))
        D = C // H
        inv = 1.0 / (100000 ** (torch.arange(0, D, 2, dtype=torch.float32) / D))
        ang = torch.outer(torch.arange(cfg["sequence_len"] * 10, dtype=torch.float32), inv)
        self.register_buffer("cos", ang.cos()[None, :, None, :], persistent=False)
        self.register_buffer("sin", ang.sin()[None, :, None, :], persistent=False)
        self.windows = window_sizes(cfg)

    def forward(self, idx, targets):
        B, T = idx.shape
        L = self.cfg["n_layer"]
        cos, sin = self.cos[:, :T], self.sin[:, :T]
        x = norm(self.transformer.wte(idx))
        gate = torch.sigmoid(self.smear_gate(x[:, 1:, :24]))
        x = torch.cat([x[:, :1], x[:, 1:] + self.smear_lambda * gate * x[:, :-1]], dim=1)
        x0, saved = x, None
        for i, block in enumerate(self.transformer.h):
            x = self.resid_lambdas[i] * x + self.x0_lambdas[i] * x0
            ve = self.value_embeds[str(i)](idx) if str(i) in self.value_embeds else None
            x = x + block.attn(norm(x), ve, cos, sin, self.windows[i])
            x = x + block.mlp(norm(x))
            if i == L // 2:
                saved = x
        x = norm(x - self.backout_lambda * saved)
        logits = self.lm_head(x)[..., :self.V].float()
        logits = 15 * torch.tanh(logits / 15)
        loss = F.cross_entropy(logits.view(-1, self.V), targets.view(-1), ignore_index=-1)
        return logits, loss


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("checkpoint_dir"); ap.add_argument("step", type=int); ap.add_argument("out")
    ap.add_argument("--batch", type=int, default=2); ap.add_argument("--time", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    meta = json.load(open(os.path.join(a.checkpoint_dir, f"meta_{a.step:06d}.json")))
    cfg = meta["model_config"]
    model = GPT(cfg)
    state = load_file(os.path.join(a.checkpoint_dir, f"model_{a.step:06d}.safetensors"))
    model.load_state_dict(state, strict=True)  # same names, shapes and layout as upstream, or this raises
    print(f"loaded {len(state)} tensors strictly into the PyTorch reference: {cfg}")
    g = torch.Generator().manual_seed(a.seed)
    T = min(a.time, cfg["sequence_len"])
    idx = torch.randint(0, cfg["vocab_size"], (a.batch, T), generator=g)
    targets = torch.randint(0, cfg["vocab_size"], (a.batch, T), generator=g)
    targets[0, :3] = -1
    logits, loss = model(idx, targets)
    loss.backward()
    out = {f"param.{k}": v.detach().contiguous() for k, v in model.state_dict().items()}
    out.update({f"grad.{n}": p.grad.detach().contiguous() for n, p in model.named_parameters()})
    out["input.idx"], out["input.targets"] = idx, targets
    out["output.logits"], out["output.loss"] = logits.detach().contiguous(), loss.detach().view(1)
    meta_out = {"config": cfg, "window_sizes": [[w, 0] for w in model.windows], "B": a.batch, "T": T}
    save_file(out, a.out, metadata={"meta": json.dumps(meta_out)})
    print(f"wrote {a.out}: loss {loss.item():.6f}")


if __name__ == "__main__":
    main()
