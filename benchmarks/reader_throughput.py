"""Reader throughput (clips/s) of the tf.data pipeline, and its scaling with parallelism.

Usage: python benchmarks/reader_throughput.py SHARDS [--batches 20] [--json] [--out FILE]

Measures training-mode clips for the tiny preset's setting (16 frames, 64 px crops)
and for the paper's (32 frames, 200 px crops), each with tf.data's threadpool
limited to 1, 2 and all cores. SHARDS comes from `mmv-tf data ingest`; its dataset.json (ingest
settings and counts) is recorded with the result.
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

SETTINGS = {"tiny (16x64x64)": dict(num_frames=16, crop_size=64),
            "paper (32x200x200)": dict(num_frames=32, crop_size=200)}


def measure(shards, tokenizer, config, threads: int, batches: int, batch_size: int) -> float:
    import tensorflow as tf

    from mmv_tf.data.reader import read_clips

    dataset = read_clips(shards, tokenizer, config, training=True, batch_size=batch_size)
    options = tf.data.Options()
    options.threading.private_threadpool_size = threads
    iterator = iter(dataset.with_options(options))
    next(iterator)  # warm-up: graph tracing, first files
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches * batch_size / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("shards")
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--out", help="also write the result, as JSON, to this file")
    args = parser.parse_args()

    from machine import describe_machine, report

    from mmv_tf.data.reader import ReaderConfig
    from mmv_tf.text.tokenizer import TextTokenizer
    from mmv_tf.text.word_vectors import load_word_vectors

    tokenizer = TextTokenizer(load_word_vectors("glove-6b-50d", 32768).words)
    cores = len(os.sched_getaffinity(0))
    rows = []
    for name, setting in SETTINGS.items():
        for threads in sorted({1, 2, cores}):
            rate = measure(args.shards, tokenizer, ReaderConfig(**setting), threads, args.batches,
                           args.batch_size)
            rows.append({"setting": name, "threads": threads, "clips_per_s": round(rate, 1)})
            if not args.json:
                print(f"{name:20s} threads={threads:<3d} {rate:8.1f} clips/s")
    summary = Path(args.shards) / "dataset.json"
    shards = json.loads(summary.read_text(encoding="utf-8")) if summary.is_file() else None
    result = {"benchmark": "reader_throughput", "command": " ".join(["python"] + sys.argv),
              "shards": shards, "batch_size": args.batch_size, "batches": args.batches, "results": rows,
              "machine": describe_machine()}
    if not args.json:
        m = result["machine"]
        print(f"machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, {m['platform']}")
    report(result, args.out)


if __name__ == "__main__":
    main()
