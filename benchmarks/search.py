"""Search latency and recall@10 over random unit vectors: exact (matrix product) vs faiss HNSW.

Usage: python benchmarks/search.py [--sizes 10000 100000 1000000] [--dim 256] [--queries 200] [--json]

Exact search is a numpy matrix product and top-k; approximate is the faiss HNSW graph `mmv_tf.index`
built before index format 2 (M=32, efConstruction=80, efSearch=128). benchmarks/index_choice.py
compares more structures on real and clustered vectors. Recall@10 is the share
of the exact top 10 found in the approximate top 10. Queries run one at a time, as `mmv-tf search`
sends them. Random vectors are the hard case for graphs: real embeddings cluster.
"""

import argparse
import json
import sys
import time

import numpy as np


def exact_top10(gallery: np.ndarray, query: np.ndarray) -> np.ndarray:
    scores = gallery @ query
    top = np.argpartition(-scores, 10)[:10]
    return top[np.argsort(-scores[top])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    sys.path.insert(0, __file__.rsplit("/", 1)[0])
    import faiss
    from machine import describe_machine

    from mmv_tf.index import l2_normalized

    rng = np.random.default_rng(0)
    rows = []
    for size in args.sizes:
        gallery = l2_normalized(rng.normal(size=(size, args.dim)).astype(np.float32))
        queries = l2_normalized(rng.normal(size=(args.queries, args.dim)).astype(np.float32))
        start = time.perf_counter()
        truth = [exact_top10(gallery, q) for q in queries]
        exact_s = (time.perf_counter() - start) / args.queries
        start = time.perf_counter()
        graph = faiss.IndexHNSWFlat(args.dim, 32, faiss.METRIC_INNER_PRODUCT)
        graph.hnsw.efConstruction, graph.hnsw.efSearch = 80, 128
        graph.add(gallery)
        build_s = time.perf_counter() - start
        start = time.perf_counter()
        found = [graph.search(q[None], 10)[1][0] for q in queries]
        hnsw_s = (time.perf_counter() - start) / args.queries
        recall = np.mean([len(set(t) & set(f)) / 10 for t, f in zip(truth, found)])
        row = {"rows": size, "dim": args.dim, "exact_ms": round(exact_s * 1e3, 3),
               "exact_qps": round(1 / exact_s, 1), "hnsw_ms": round(hnsw_s * 1e3, 3),
               "hnsw_qps": round(1 / hnsw_s, 1), "hnsw_recall@10": round(float(recall), 3),
               "hnsw_build_s": round(build_s, 1)}
        rows.append(row)
        if not args.json:
            print(f"{size:>9,} x {args.dim}: exact {row['exact_ms']:.2f} ms/query "
                  f"({row['exact_qps']:.0f} q/s); "
                  f"HNSW {row['hnsw_ms']:.2f} ms/query ({row['hnsw_qps']:.0f} q/s), recall@10 "
                  f"{row['hnsw_recall@10']:.3f}, built in {row['hnsw_build_s']:.0f} s", flush=True)
    machine = describe_machine()
    if not args.json:
        print(f"machine: {machine['cpu']}, {machine['cores']} cores, {machine['memory_gib']} GiB")
    print(json.dumps({"benchmark": "search", "command": " ".join(["python"] + sys.argv),
                      "results": rows, "machine": machine}))


if __name__ == "__main__":
    main()
