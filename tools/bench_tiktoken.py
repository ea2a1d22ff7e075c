#!/usr/bin/env python3
"""Reference for `nanochat bench tokenizer`: single-thread tiktoken encode_ordinary throughput with our ranks
on a text file. Prints {"mb_per_s": ..., "tokens": ...} as JSON. Benchmark tooling only.

usage: bench_tiktoken.py TOKENIZER_DIR TEXT_FILE [MIN_SECONDS]
"""
import json, os, sys, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tiktoken_check import load  # noqa: E402  (our tokenizer files -> tiktoken.Encoding)


def main():
    tokdir, textfile = sys.argv[1], sys.argv[2]
    min_s = float(sys.argv[3]) if len(sys.argv) > 3 else 2.0
    enc = load(tokdir)
    text = open(textfile, encoding="utf-8").read()
    nbytes = len(text.encode("utf-8"))
    enc.encode_ordinary(text[:100000])  # warm up
    best, total, runs, tokens = float("inf"), 0.0, 0, 0
    while total < min_s or runs < 2:
        t0 = time.perf_counter()
        tokens = len(enc.encode_ordinary(text))
        dt = time.perf_counter() - t0
        best, total, runs = min(best, dt), total + dt, runs + 1
    print(json.dumps({"mb_per_s": nbytes / best / 1e6, "tokens": tokens, "runs": runs}))


if __name__ == "__main__":
    main()
