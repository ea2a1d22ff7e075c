#!/usr/bin/env python3
"""Makes upstream nanochat's tokenizer files from ours, so that upstream's base_train reads the same tokens from the
same shards as `nanochat base-train` in a side-by-side run (scripts/gpu-check). Benchmark tooling only.

usage: upstream_base_dir.py OUR_TOKENIZER_DIR UPSTREAM_TOKENIZER_DIR
Writes tokenizer.pkl (a pickled tiktoken.Encoding, as upstream's tok_train saves it) and token_bytes.pt (each token's
byte length, 0 for the special tokens). Needs tiktoken and torch.
"""
import base64, json, os, pickle, sys

import tiktoken
import torch


def main():
    src, dst = sys.argv[1], sys.argv[2]
    with open(os.path.join(src, "tokenizer.json")) as f:
        meta = json.load(f)
    ranks = {}
    with open(os.path.join(src, "tokenizer.tiktoken")) as f:
        for line in f:
            if line.strip():
                token, rank = line.split()
                ranks[base64.b64decode(token)] = int(rank)
    enc = tiktoken.Encoding(name="rustbpe", pat_str=meta["pattern"], mergeable_ranks=ranks,
                            special_tokens=meta["special_tokens"])
    os.makedirs(dst, exist_ok=True)
    with open(os.path.join(dst, "tokenizer.pkl"), "wb") as f:
        pickle.dump(enc, f)
    special = set(meta["special_tokens"].values())
    sizes = [0 if i in special else len(enc.decode_single_token_bytes(i)) for i in range(enc.n_vocab)]
    torch.save(torch.tensor(sizes, dtype=torch.int32), os.path.join(dst, "token_bytes.pt"))
    print(f"upstream tokenizer: {enc.n_vocab} tokens -> {dst}")


if __name__ == "__main__":
    main()
