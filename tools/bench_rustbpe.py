#!/usr/bin/env python3
"""Reference for `nanochat bench tokenizer`: trains upstream's tokenizer trainer (the rustbpe PyPI package) on
the same documents and prints {"seconds": ..., "ranks_file": ...} as JSON. Test/benchmark tooling only.

usage: bench_rustbpe.py DOCS.jsonl VOCAB_SIZE OUT.tiktoken
"""
import base64, json, sys, time

import rustbpe

SPLIT_PATTERN = r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,2}| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+"""


def main():
    path, vocab, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    docs = [json.loads(line) for line in open(path, encoding="utf-8") if line.strip()]
    t0 = time.perf_counter()
    tok = rustbpe.Tokenizer()
    tok.train_from_iterator(iter(docs), vocab - 9, pattern=SPLIT_PATTERN)  # 9 special tokens, as upstream
    dt = time.perf_counter() - t0
    ranks = sorted(tok.get_mergeable_ranks(), key=lambda kv: kv[1])
    with open(out, "w") as f:
        for b, r in ranks:
            f.write(f"{base64.b64encode(bytes(b)).decode()} {r}\n")
    print(json.dumps({"seconds": dt, "ranks_file": out}))


if __name__ == "__main__":
    main()
