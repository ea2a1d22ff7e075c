#!/usr/bin/env python3
"""Cross-check of our parquet reader: writes varied files with pyarrow (codecs, dictionary on/off, data page
v1/v2, nested lists/structs/maps, nulls, every scalar type) and compares `nanochat dataset inspect` with
pyarrow's own reading. Test tooling only.

usage: parquet_check.py NANOCHAT_BINARY WORKDIR
"""
import json, math, os, random, subprocess, sys

import pyarrow as pa
import pyarrow.parquet as pq


def rand_text(rng):
    pieces = ["hello", " world", "é", "中文", "🙂", "\n", "\t", "\"quoted\"", "\\", "a" * rng.randint(0, 50), "", "ß"]
    return "".join(rng.choice(pieces) for _ in range(rng.randint(0, 12)))


def make_table(rng, n):
    def maybe(v):
        return None if rng.random() < 0.15 else v
    messages = []
    for _ in range(n):
        if rng.random() < 0.1:
            messages.append(None)
        else:
            messages.append([None if rng.random() < 0.05 else {"role": rng.choice(["user", "assistant", None]), "content": maybe(rand_text(rng))}
                             for _ in range(rng.randint(0, 4))])
    return pa.table({
        "text": pa.array([maybe(rand_text(rng)) for _ in range(n)], pa.string()),
        "id": pa.array([rng.randint(-2**40, 2**40) for _ in range(n)], pa.int64()),
        "small": pa.array([maybe(rng.randint(-1000, 1000)) for _ in range(n)], pa.int32()),
        "score": pa.array([maybe(rng.random() * 100) for _ in range(n)], pa.float64()),
        "f32": pa.array([rng.choice([0.5, -1.25, 3.0, 1e-3]) for _ in range(n)], pa.float32()),
        "flag": pa.array([maybe(rng.random() < 0.5) for _ in range(n)], pa.bool_()),
        "choices": pa.array([maybe([rand_text(rng) for _ in range(rng.randint(0, 3))]) for _ in range(n)], pa.list_(pa.string())),
        "nums": pa.array([[rng.randint(0, 9) for _ in range(rng.randint(0, 5))] for _ in range(n)], pa.list_(pa.int64())),
        "messages": pa.array(messages, pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))),
        "meta": pa.array([maybe({"source": rand_text(rng), "year": rng.randint(1900, 2025)}) for _ in range(n)],
                         pa.struct([("source", pa.string()), ("year", pa.int32())])),
        "tags": pa.array([maybe([(rand_text(rng) + str(i), i) for i in range(rng.randint(0, 3))]) for _ in range(n)],
                         pa.map_(pa.string(), pa.int32())),
        "nested": pa.array([maybe([maybe([rng.randint(0, 3) for _ in range(rng.randint(0, 3))]) for _ in range(rng.randint(0, 3))]) for _ in range(n)],
                           pa.list_(pa.list_(pa.int32()))),
    })


def normalize(v):
    if isinstance(v, float):
        return None if math.isnan(v) else round(v, 9)
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, dict):
        return {k: normalize(x) for k, x in v.items()}
    if isinstance(v, list):
        if v and all(isinstance(x, tuple) and len(x) == 2 for x in v):
            if all(isinstance(k, str) for k, _ in v):
                return {k: normalize(x) for k, x in v}
            return [[normalize(k), normalize(x)] for k, x in v]
        return [normalize(x) for x in v]
    if isinstance(v, tuple):
        return [normalize(x) for x in v]
    return v


def main():
    binary, work = sys.argv[1], sys.argv[2]
    os.makedirs(work, exist_ok=True)
    rng = random.Random(7)
    configs = []
    for codec in ["NONE", "SNAPPY", "GZIP", "ZSTD"]:
        for dictionary in [True, False]:
            for page in ["1.0", "2.0"]:
                configs.append((codec, dictionary, page))
    passed = failed = 0
    for i, (codec, dictionary, page) in enumerate(configs):
        table = make_table(rng, rng.randint(1, 300))
        path = os.path.join(work, f"t{i}_{codec}_{int(dictionary)}_{page}.parquet")
        pq.write_table(table, path, compression=codec, use_dictionary=dictionary, data_page_version=page,
                       row_group_size=rng.choice([7, 50, 1000]), data_page_size=rng.choice([64, 1024, 1 << 20]))
        read = pq.read_table(path)
        maps = {f.name for f in read.schema if pa.types.is_map(f.type)}
        rows = read.to_pylist()
        for r in rows:  # a map is a JSON object in our output, empty or not
            for m in maps:
                if r[m] is not None:
                    r[m] = {k: v for k, v in r[m]}
        expected = [normalize(r) for r in rows]
        res = subprocess.run([binary, "dataset", "inspect", "--values-only", path], capture_output=True)
        if res.returncode != 0:
            failed += 1
            print(f"FAIL {path}: {res.stderr.decode()[:300]}")
            continue
        got = [normalize(json.loads(l)) for l in res.stdout.decode().splitlines()]
        if got == expected:
            passed += 1
        else:
            failed += 1
            for k, (a, b) in enumerate(zip(got, expected)):
                if a != b:
                    for key in b:
                        if a.get(key) != b.get(key):
                            print(f"FAIL {path} row {k} column {key}:\n  ours    {a.get(key)}\n  pyarrow {b.get(key)}")
                            break
                    break
            if len(got) != len(expected):
                print(f"FAIL {path}: {len(got)} rows vs {len(expected)}")
    # Arrow IPC streams (HuggingFace datasets' format), for the task data: the same tables, minus maps
    for k in range(3):
        table = make_table(rng, rng.randint(1, 200)).drop_columns(["tags"])
        path = os.path.join(work, f"a{k}.arrow")
        with pa.ipc.new_stream(path, table.schema) as w:
            for batch in table.to_batches(max_chunksize=rng.choice([13, 64, 1000])):
                w.write_batch(batch)
        expected = [normalize(r) for r in table.to_pylist()]
        res = subprocess.run([binary, "dataset", "inspect", "--values-only", path], capture_output=True)
        got = [normalize(json.loads(l)) for l in res.stdout.decode().splitlines()] if res.returncode == 0 else None
        if got == expected:
            passed += 1
        else:
            failed += 1
            print(f"FAIL {path}: {res.stderr.decode()[:300]}")
    # the other direction: a shard we write reads back in pyarrow, row groups of 1024, zstd
    src = os.path.join(work, "docs.jsonl")
    docs = [rand_text(rng) + str(i) for i in range(3000)]
    with open(src, "w") as f:
        for d in docs:
            f.write(json.dumps(d) + "\n")
    out = os.path.join(work, "shards")
    res = subprocess.run([binary, "dataset", "shard", "--input", src, "--output", out, "--docs-per-shard", "2500",
                          "--val-docs", "100"], capture_output=True)
    try:
        assert res.returncode == 0, res.stderr.decode()
        f0 = pq.ParquetFile(os.path.join(out, "shard_00000.parquet"))
        assert f0.schema_arrow.names == ["text"], f0.schema_arrow
        assert [f0.metadata.row_group(i).num_rows for i in range(f0.num_row_groups)] == [1024, 1024, 452]
        assert f0.metadata.row_group(0).column(0).compression == "ZSTD"
        back = []
        for name in sorted(os.listdir(out)):  # 2 train shards (2500 + 400) and the validation shard (100)
            back += pq.read_table(os.path.join(out, name)).column("text").to_pylist()
        assert sorted(back) == sorted(docs), "documents differ"
        passed += 1
    except AssertionError as e:
        failed += 1
        print(f"FAIL our shard in pyarrow: {e}")
    print(f"parquet cross-check: {passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
