"""Upstream nanochat's own GPT at the configuration our benches use (benchmark tooling only): model_dim =
64 * depth rounded up to a multiple of head_dim, full attention (window L), as many KV heads as query heads,
float32 on CPU, upstream's init_weights."""
import os, sys


def upstream_gpt(checkout, depth, head_dim, seq, vocab, threads, seed):
    """Returns (torch, model, config) with `checkout` importable as `nanochat`."""
    os.environ["NANOCHAT_DTYPE"] = "float32"  # the same precision as ours, whatever the environment says
    sys.path.insert(0, checkout)
    import torch
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    from nanochat.gpt import GPT, GPTConfig

    dim = -(-depth * 64 // head_dim) * head_dim
    cfg = GPTConfig(sequence_len=seq, vocab_size=vocab, n_layer=depth, n_head=dim // head_dim,
                    n_kv_head=dim // head_dim, n_embd=dim, window_pattern="L")
    with torch.device("meta"):
        model = GPT(cfg)
    model.to_empty(device="cpu")
    model.init_weights()
    return torch, model, cfg
