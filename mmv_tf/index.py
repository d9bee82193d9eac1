"""Search indexes over embedded windows and captions, one gallery per (space, modality).

Index folder (written whole or not at all):
  index.json          the model's spaces and dims, the galleries, the kind of each search structure
  items.parquet       the windows (video_id, window, start, end, caption, source) row by row
  captions.parquet    the captions (video_id, start, end, text)
  <space>.<modality>.npy    exact galleries: L2-normalised float32 `[N, D]` vectors (zero where missing)
  <space>.<modality>.present.npy  bool `[N]`, where some rows have no vector (audio of silent videos)
  <space>.<modality>.faiss  approximate and on-disk galleries: a faiss IVF-Flat index of the rows
                            present, ids = row numbers (an HNSW graph in indexes before format 2)
  <space>.<modality>.ivfdata  on-disk galleries: its inverted lists, read through mmap, never loaded
Galleries: `va.video`, `vat.video`, `va.audio`, `vat.audio` over windows, `vat.text` over captions.
Vectors are read, normalised and added `BATCH_ROWS` at a time, so an on-disk gallery's vectors are
indexed and searched in bounded memory whatever their number (the items tables are read whole).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sys
from pathlib import Path

import numpy as np

from mmv_tf.embed import INFO_FILE
from mmv_tf.errors import InputError
from mmv_tf.files import written_folder

INDEX_FILE = "index.json"
INDEX_FORMAT = 2
KINDS = ("auto", "exact", "approximate", "on-disk")
# benchmarks/index_choice.py (results/index_choice.md; 2 cores, one query per call on one thread):
# at 1M x 256 (clustered) IVF-Flat of 4 sqrt(N) lists, 8 of them searched as calibrated, finds 0.987
# of the exact top 10 at 5,400 q/s; ScaNN 0.968 at 5,100 (not importable beside TF 2.21 without a
# stub), IVF-PQ re-ranked 0.951 at 4,400, HNSW 0.962 at 2,000, exact search 9. On GloVe (400k x 50)
# the calibration searches 128 lists: 0.975 at 2,700 q/s (ScaNN 0.965 at 8,500). Exact search
# answers 7,900 q/s at 3k x 256, 1,900 at 10k and 280 at 30k: below the 2,000 q/s target from 10k.
APPROXIMATE_FROM_ROWS = 10_000
LISTS_PER_SQRT_ROW = 4
MIN_ROWS_PER_LIST = 39  # faiss k-means wants 39 training rows per centroid
TRAIN_ROWS_PER_LIST = 64
TARGET_RECALL = 0.95  # recall@10 the lists searched are chosen for (`calibrated_probes`)
CALIBRATION_QUERIES = 200
BATCH_ROWS = 65_536
LEGACY_SEARCH = {"efSearch": 128}  # format 1's approximate galleries: HNSW graphs


class SearchIndexError(InputError):
    """A missing, unfinished or mismatched index, or a search it cannot answer."""


def l2_normalized(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, np.float32)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-12)


def inverted_lists(rows: int) -> int:
    """IVF lists for `rows` vectors: the power of two nearest 4 sqrt(rows), halved until each list
    has `MIN_ROWS_PER_LIST` rows to train on."""
    lists = 2 ** max(0, round(np.log2(max(1.0, LISTS_PER_SQRT_ROW * rows**0.5))))
    while lists > 1 and lists * MIN_ROWS_PER_LIST > rows:
        lists //= 2
    return lists


def chosen_kind(kind: str, rows: int, approximate_from_rows: int = APPROXIMATE_FROM_ROWS) -> str:
    """The kind of structure `kind` (`KINDS`) builds over `rows` vectors: `auto` is exact below
    `approximate_from_rows`; an empty gallery needs no structure."""
    if kind == "auto":
        kind = "approximate" if rows >= approximate_from_rows else "exact"
    return kind if rows else "exact"


@contextlib.contextmanager
def _faiss_stdout_silenced():
    """Drop what faiss's on-disk lists print on stdout (file names, sizes), which would corrupt
    `--json` output."""
    sys.stdout.flush()
    saved = os.dup(1)
    with open(os.devnull, "wb") as null:
        os.dup2(null.fileno(), 1)
    try:
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def trained_ivf(vectors: np.ndarray, rows: np.ndarray, lists: int):
    """An empty faiss IVF-Flat index (inner product, `lists` lists) trained on a sample of
    `TRAIN_ROWS_PER_LIST` x `lists` of the unit vectors `vectors[rows]` (`vectors` `[N, D]`, a
    memmap will do)."""
    import faiss

    index = faiss.index_factory(vectors.shape[1], f"IVF{lists},Flat", faiss.METRIC_INNER_PRODUCT)
    sample = np.random.default_rng(0).choice(rows, min(len(rows), TRAIN_ROWS_PER_LIST * lists),
                                             replace=False)
    index.train(np.asarray(vectors[np.sort(sample)]))
    return index


def fill_ivf(index, vectors: np.ndarray, rows: np.ndarray, path: str | Path, on_disk: bool = False,
             batch_rows: int = BATCH_ROWS) -> None:
    """Add `vectors[rows]` to the trained empty IVF `index` with ids `rows`, `batch_rows` at a time,
    and write it to `path`. `on_disk`: its lists go to `path` with suffix .ivfdata, filled from
    in-memory shards of `batch_rows` vectors merged on disk, so memory holds one batch."""
    import faiss
    from faiss.contrib.ondisk import merge_ondisk

    path = Path(path)
    batches = [rows[start:start + batch_rows] for start in range(0, len(rows), batch_rows)]
    if not on_disk:
        for batch in batches:
            index.add_with_ids(np.asarray(vectors[batch]), batch)
        faiss.write_index(index, str(path))
        return
    shards = [path.with_name(f"{path.stem}.shard{number}.faiss") for number in range(len(batches))]
    for batch, shard_path in zip(batches, shards):
        shard = faiss.clone_index(index)
        shard.add_with_ids(np.asarray(vectors[batch]), batch)
        faiss.write_index(shard, str(shard_path))
        del shard
    with _faiss_stdout_silenced():
        merge_ondisk(index, [str(shard) for shard in shards], str(path.with_suffix(".ivfdata")))
    faiss.write_index(index, str(path))
    for shard_path in shards:
        shard_path.unlink()


def calibration_queries(vectors: np.ndarray, present: np.ndarray,
                        own: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """A query set for `calibrated_probes`: up to `CALIBRATION_QUERIES` of the `present` `[N]` rows
    of `vectors` `[N, D]` (queries `[Q, D]`) and, when `own` (they are the gallery calibrated), their
    rows `[Q]`."""
    held = np.flatnonzero(present)
    rows = np.sort(np.random.default_rng(1).choice(held, min(len(held), CALIBRATION_QUERIES), replace=False))
    return np.asarray(vectors[rows]), rows if own else None


def calibrated_probes(index, vectors: np.ndarray, rows: np.ndarray,
                      query_sets: list[tuple[np.ndarray, np.ndarray | None]],
                      target: float = TARGET_RECALL, batch_rows: int = BATCH_ROWS) -> int:
    """The fewest lists (a power of two) the filled IVF `index` of `vectors[rows]` (ids `rows`) must
    search for recall@10 >= `target` on each of `query_sets` (`calibration_queries`: the gallery's
    own rows and the other modalities that query it), against exact search `batch_rows` rows at a
    time. A query's own row counts neither as found nor as missed."""
    import faiss

    ivf = faiss.extract_index_ivf(index)
    if ivf.nlist == 1:
        return 1
    queries = np.concatenate([q for q, _ in query_sets])
    own = np.concatenate([np.full(len(q), -1) if r is None else r for q, r in query_sets])
    which = np.repeat(np.arange(len(query_sets)), [len(q) for q, _ in query_sets])
    k = min(10, len(rows) - 1)
    nearest = faiss.ResultHeap(len(queries), k + 1, keep_max=True)
    for start in range(0, len(rows), batch_rows):
        batch = rows[start:start + batch_rows]
        scores, found = faiss.knn(queries, np.asarray(vectors[batch]), min(k + 1, len(batch)),
                                  faiss.METRIC_INNER_PRODUCT)
        nearest.add_result(scores, batch[found])
    nearest.finalize()

    def others(found: np.ndarray) -> list[set]:
        """Each query's first k rows of `found` `[Q, k + 1]` other than its own."""
        return [set([r for r in ranked if r != row][:k]) for ranked, row in zip(found, own)]

    truth = others(nearest.I)
    probes = 1
    while probes < ivf.nlist:
        ivf.nprobe = probes
        recall = np.array([len(t & f) / k for t, f in zip(truth, others(index.search(queries, k + 1)[1]))])
        if all(recall[which == s].mean() >= target for s in range(len(query_sets))):
            break
        probes *= 2
    return min(probes, ivf.nlist)


def read_faiss(path: str | Path, search: dict[str, int], on_disk: bool = False):
    """The faiss index at `path` with search parameters `search` (faiss names: nprobe, efSearch);
    `on_disk` lists are mapped from the .ivfdata file beside it, read by the searching thread (the
    default prefetch threads cost 0.3 ms a query)."""
    import faiss

    with _faiss_stdout_silenced():
        index = faiss.read_index(str(path), faiss.IO_FLAG_ONDISK_SAME_DIR if on_disk else 0)
    if on_disk:
        faiss.downcast_InvertedLists(faiss.extract_index_ivf(index).invlists).prefetch_nthread = 0
    for name, value in search.items():
        faiss.ParameterSpace().set_index_parameter(index, name, value)
    return index


def exact_top(vectors: np.ndarray, query: np.ndarray, k: int,
              present: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(rows `[<=k]`, scores) of the `k` rows of `vectors` `[N, D]` with the highest inner product
    with `query` `[D]`, best first; rows not `present` `[N]` never."""
    similarity = vectors @ query
    if present is not None:
        similarity[~present] = -np.inf
    top = np.argpartition(-similarity, k - 1)[:k] if k < len(similarity) else np.arange(len(similarity))
    top = top[np.lexsort((top, -similarity[top]))]
    top = top[np.isfinite(similarity[top])]
    return top, similarity[top]


def _write_vectors(table_file: Path, column: str, dim: int, path: Path) -> np.ndarray:
    """Write the L2-normalised vectors of `column` of Parquet file `table_file` to `path` (.npy
    `[N, D]`, zero rows where missing), `BATCH_ROWS` at a time; returns which are present `[N]`."""
    import pyarrow.parquet as pq

    table = pq.ParquetFile(table_file)
    vectors = np.lib.format.open_memmap(path, "w+", np.float32, (table.metadata.num_rows, dim))
    present = np.zeros(table.metadata.num_rows, bool)
    start = 0
    for batch in table.iter_batches(BATCH_ROWS, columns=[column]):
        values = batch.column(0)
        rows = slice(start, start + len(values))
        present[rows] = values.is_valid().to_numpy(zero_copy_only=False)
        if present[rows].any():
            vectors[rows][present[rows]] = l2_normalized(
                np.asarray(values.drop_null().flatten()).reshape(-1, dim))
        start += len(values)
    vectors.flush()
    return present


def _ivf_gallery(folder: Path, name: str, written: dict, on_disk: bool) -> dict:
    """Build gallery `name`'s IVF from its vectors in `folder` (`_write_vectors`), calibrated on
    the galleries of its space in `written` ({name: (items, dim, present)}); its index.json fields."""
    vectors, rows = np.load(folder / f"{name}.npy", mmap_mode="r"), np.flatnonzero(written[name][2])
    lists = inverted_lists(len(rows))
    index = trained_ivf(vectors, rows, lists)
    fill_ivf(index, vectors, rows, folder / f"{name}.faiss", on_disk, batch_rows=BATCH_ROWS)
    query_sets = [calibration_queries(np.load(folder / f"{other}.npy", mmap_mode="r"), present,
                                      own=other == name)
                  for other, (_, _, present) in written.items()
                  if other.split(".")[0] == name.split(".")[0] and present.any()]
    return {"lists": lists, "search": {"nprobe": calibrated_probes(index, vectors, rows, query_sets)}}


def _table_schema(table_file: Path):
    """The Arrow schema of Parquet file `table_file`; a damaged or missing one is refused by name."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.read_schema(table_file)
    except (pa.ArrowInvalid, OSError) as error:
        raise SearchIndexError(f"{table_file}: {error}") from None


def build_index(embeddings: str | Path, out: str | Path, kind: str = "auto", overwrite: bool = False,
                approximate_from_rows: int = APPROXIMATE_FROM_ROWS) -> dict:
    """Index the embeddings folder `embeddings` (from `mmv-tf embed`) into `out`; returns index.json.
    `kind` (`KINDS`): `auto` builds `exact` galleries below `approximate_from_rows` vectors and
    `approximate` ones (IVF-Flat of `inverted_lists`, searching `calibrated_probes` of them) from
    there; `on-disk` keeps the IVF lists on disk. `out` may replace an earlier index, or any folder
    if `overwrite`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if kind not in KINDS:
        raise SearchIndexError(f"kind must be {', '.join(KINDS[:-1])} or {KINDS[-1]}; got {kind!r}")
    embeddings, out = Path(embeddings), Path(out)
    if not (embeddings / INFO_FILE).is_file():
        raise SearchIndexError(f"{embeddings} holds no finished embeddings "
                               f"(no {INFO_FILE}; run mmv-tf embed)")
    info = json.loads((embeddings / INFO_FILE).read_text(encoding="utf-8"))
    videos = pq.read_table(embeddings / "videos.parquet", columns=["video_id", "source"]).to_pylist()
    sources = {v["video_id"]: v["source"] for v in videos}
    columns = {items_name: _table_schema(embeddings / f"{items_name}.parquet").names
               for items_name in ("windows", "captions")}
    galleries = {}
    with written_folder(out, "index", inputs=[embeddings], overwrite=overwrite) as partial:
        partial.mkdir(parents=True)
        written = {}  # gallery name -> (items, dim, present)
        for items_name in ("windows", "captions"):
            for column in columns[items_name]:
                if column in info["dims"]:
                    modality, space = column.split("_", 1)
                    name, dim = f"{space}.{modality}", info["dims"][column]
                    present = _write_vectors(embeddings / f"{items_name}.parquet", column, dim,
                                             partial / f"{name}.npy")
                    written[name] = (items_name, dim, present)
        for name, (items_name, dim, present) in written.items():
            held = int(present.sum())
            gallery = {"items": items_name, "rows": len(present), "dim": dim,
                       "kind": chosen_kind(kind, held, approximate_from_rows), "missing": len(present) - held}
            if gallery["kind"] == "exact":
                if held < len(present):
                    np.save(partial / f"{name}.present.npy", present)
            else:
                gallery |= _ivf_gallery(partial, name, written, on_disk=gallery["kind"] == "on-disk")
            galleries[name] = gallery
        for name, gallery in galleries.items():
            if gallery["kind"] != "exact":
                (partial / f"{name}.npy").unlink()
        for items_name, items_file in (("windows", "items"), ("captions", "captions")):
            table = pq.read_table(embeddings / f"{items_name}.parquet",
                                  columns=[c for c in columns[items_name] if c not in info["dims"]])
            if items_name == "windows":
                table = table.append_column("source", pa.array(
                    [sources.get(v) for v in table.column("video_id").to_pylist()], pa.string()))
            pq.write_table(table, partial / f"{items_file}.parquet")
        index_info = {"format": INDEX_FORMAT, "model": info["model_identity"],
                      "embeddings": str(embeddings.resolve()),
                      "embedding_settings": {k: info[k] for k in ("source", "settings")},
                      "galleries": galleries,
                      "window_seconds": info["window_seconds"]}
        (partial / INDEX_FILE).write_text(json.dumps(index_info) + "\n", encoding="utf-8")
    return index_info


@dataclasses.dataclass
class Hit:
    rank: int
    score: float
    item: dict


class SearchIndex:
    """A loaded index: `search(space, modality, query, k)` ranks one gallery by cosine similarity."""

    def __init__(self, path: str | Path):
        import pyarrow.parquet as pq

        self.path = Path(path)
        if not (self.path / INDEX_FILE).is_file():
            raise SearchIndexError(f"{self.path} is not a finished index (no {INDEX_FILE}; run mmv-tf index)")
        self.info = json.loads((self.path / INDEX_FILE).read_text(encoding="utf-8"))
        if self.info.get("format", 1) > INDEX_FORMAT:
            raise SearchIndexError(f"index {self.path} has format {self.info['format']}, newer than this "
                                   f"mmv-tf reads ({INDEX_FORMAT}); upgrade mmv-tf or index again")
        self.items = {"windows": pq.read_table(self.path / "items.parquet").to_pylist(),
                      "captions": pq.read_table(self.path / "captions.parquet").to_pylist()}
        self._loaded: dict[str, object] = {}

    def check_model(self, model) -> None:
        """Refuse a model (an `ExportedModel`) other than the one whose embeddings the index holds."""
        made, given = self.info["model"], model.identity
        if given["spaces"] != made["spaces"]:
            raise SearchIndexError(f"model {given['name']!r} embeds into {given['spaces']}, but index "
                                   f"{self.path} holds {made['spaces']} (from model {made['name']!r}); "
                                   "index again with this model")
        if given["weights_sha256"] != made.get("weights_sha256"):
            raise SearchIndexError(
                f"index {self.path} was made with model {made['name']!r} (weights sha256 "
                f"{str(made.get('weights_sha256'))[:12]}), not with {model.path} ({given['name']!r}, "
                f"{given['weights_sha256'][:12]}): its scores would be meaningless; pass that model as "
                "--model, or embed and index again with this one")

    def _gallery(self, name: str):
        """Exact: (vectors `[N, D]`, present `[N]` or None); otherwise the faiss index."""
        if name not in self._loaded:
            gallery = self.info["galleries"][name]
            if gallery["kind"] == "exact":
                self._loaded[name] = (np.load(self.path / f"{name}.npy"), np.load(
                    self.path / f"{name}.present.npy") if gallery["missing"] else None)
            else:
                self._loaded[name] = read_faiss(self.path / f"{name}.faiss",
                                                gallery.get("search", LEGACY_SEARCH),
                                                on_disk=gallery["kind"] == "on-disk")
        return self._loaded[name]

    def search(self, space: str, modality: str, query: np.ndarray, k: int = 10) -> list[Hit]:
        """The `k` items of gallery `<space>.<modality>` most similar to `query` `[D]`; refused where
        `k` is below 1 or above the vectors the gallery holds."""
        name = f"{space}.{modality}"
        if name not in self.info["galleries"]:
            raise SearchIndexError(f"index {self.path} has no {modality} gallery in space {space} "
                                   f"(it has {', '.join(sorted(self.info['galleries']))})")
        gallery = self.info["galleries"][name]
        held = gallery["rows"] - gallery["missing"]
        if k < 1:
            raise SearchIndexError(f"k must be at least 1; got {k}")
        if k > held:
            raise SearchIndexError(f"k={k} asks for more than the {held} vectors gallery {name} of "
                                   f"{self.path} holds; ask for at most {held}")
        query = l2_normalized(np.asarray(query, np.float32).reshape(1, -1))
        if query.shape[1] != gallery["dim"]:
            raise SearchIndexError(f"query has {query.shape[1]} dimensions; "
                                   f"gallery {name} has {gallery['dim']}")
        loaded = self._gallery(name)
        if gallery["kind"] == "exact":
            vectors, present = loaded
            rows, scores = exact_top(vectors, query[0], k, present)
        else:
            scores, rows = loaded.search(query, k)
            rows, scores = rows[0][rows[0] >= 0], scores[0][rows[0] >= 0]
        items = self.items[gallery["items"]]
        return [Hit(rank + 1, float(score), items[row])
                for rank, (row, score) in enumerate(zip(rows, scores))]
