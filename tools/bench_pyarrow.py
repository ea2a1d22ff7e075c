#!/usr/bin/env python3
"""Reference for `nanochat bench data`: pyarrow reading a parquet file's text column single-threaded, row group
by row group; prints {"mb_per_s": text bytes out per second} as JSON. Benchmark tooling only.

usage: bench_pyarrow.py FILE.parquet [COLUMN] [MIN_SECONDS]
"""
import json, sys, time

import pyarrow as pa
import pyarrow.parquet as pq


def main():
    path = sys.argv[1]
    column = sys.argv[2] if len(sys.argv) > 2 else "text"
    min_s = float(sys.argv[3]) if len(sys.argv) > 3 else 2.0
    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)
    best, total, runs, nbytes = float("inf"), 0.0, 0, 0
    while total < min_s or runs < 2:
        t0 = time.perf_counter()
        f = pq.ParquetFile(path)
        nbytes = 0
        for rg in range(f.num_row_groups):
            col = f.read_row_group(rg, columns=[column], use_threads=False).column(0)
            texts = col.to_pylist()  # Python strings out, as a training loop would consume them
            nbytes += sum(len(t.encode()) for t in texts if t is not None)
        dt = time.perf_counter() - t0
        best, total, runs = min(best, dt), total + dt, runs + 1
    print(json.dumps({"mb_per_s": nbytes / best / 1e6, "bytes": nbytes}))


if __name__ == "__main__":
    main()
