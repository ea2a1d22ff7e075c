#!/usr/bin/env python3
"""Cross-check: a tokenizer written by `nanochat tok-train` loads in Python's tiktoken and gives the same ids
as `nanochat tok-encode` on random and real text. Test tooling only (users never need Python).

usage: tiktoken_check.py NANOCHAT_BINARY TOKENIZER_DIR [CORPUS_FILE] [--cases N]
"""
import base64, json, random, subprocess, sys

import tiktoken


def load(dir_):
    cfg = json.load(open(f"{dir_}/tokenizer.json"))
    ranks = {}
    for line in open(f"{dir_}/tokenizer.tiktoken", "rb"):
        if line.strip():
            tok, rank = line.split()
            ranks[base64.b64decode(tok)] = int(rank)
    return tiktoken.Encoding(name="nanochat", pat_str=cfg["pattern"], mergeable_ranks=ranks,
                             special_tokens=cfg["special_tokens"])


PIECES = ["👩🏽‍💻", "👍🏿", "🇫🇷", "e\u0301", "a\u0308\u0323", "中文", "日本語", "한국어", "שלום", "مرحبا", "\u200f",
          "\xa0", "\r\n", "\n", "\r", "\t", "    ", "          ", "0123456789", "12", "'s", "'LL", "'ſ", "don't",
          "Hello", " world", "!!!", "...", "$", "£", "∑", "ǅ", "\ufeff", "\u2028", "\x85", "x", "Ⅻ", "½", "\x00",
          "<|bos|>", " ", "  ", "\u3000", "٣٤٥", "Ελληνικά", "ß", "İ", "K"]


def main():
    binary, tokdir = sys.argv[1], sys.argv[2]
    corpus = sys.argv[3] if len(sys.argv) > 3 and not sys.argv[3].startswith("--") else None
    n = int(sys.argv[sys.argv.index("--cases") + 1]) if "--cases" in sys.argv else 3000
    rng = random.Random(1234)
    texts = []
    for _ in range(n):
        texts.append("".join(rng.choice(PIECES) for _ in range(rng.randint(0, 40))))
    for _ in range(n // 3):  # random code points from the whole of Unicode (no surrogates)
        cps = [rng.choice([rng.randint(0x20, 0x7E), rng.randint(0xA0, 0x2FFF), rng.randint(0x3000, 0xD7FF),
                           rng.randint(0xE000, 0x10FFFF)]) for _ in range(rng.randint(1, 30))]
        texts.append("".join(map(chr, cps)))
    if corpus:
        text = open(corpus, encoding="utf-8").read()
        for _ in range(n):
            a = rng.randrange(len(text))
            texts.append(text[a:a + rng.randint(1, 400)])
    enc = load(tokdir)
    data = "".join(json.dumps(t) + "\n" for t in texts)
    out = subprocess.run([binary, "tok-encode", "--tokenizer-dir", tokdir], input=data.encode(),
                         capture_output=True, check=True).stdout.decode().splitlines()
    assert len(out) == len(texts), (len(out), len(texts))
    bad = 0
    for t, line in zip(texts, out):
        ours, ref = json.loads(line), enc.encode_ordinary(t)
        if ours != ref:
            bad += 1
            if bad <= 5:
                print(f"MISMATCH {t!r}\n  ours {ours}\n  tiktoken {ref}")
    print(f"tiktoken cross-check: {len(texts) - bad} passed, {bad} failed")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
