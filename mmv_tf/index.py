"""Search indexes over embedded windows and captions, one gallery per (space, modality).

Index folder (written whole or not at all):
  index.json          the model's spaces and dims, the galleries, the kind of each search structure
  items.parquet       the windows (video_id, window, start, end, caption, source) row by row
  captions.parquet    the captions (video_id, start, end, text)
  <space>.<modality>.npy    L2-normalised float32 `[N, D]` gallery vectors (exact search)
  <space>.<modality>.present.npy  bool `[N]`, where some rows have no vector (audio of silent videos)
  <space>.<modality>.faiss  an HNSW graph over the rows present (approximate search), when chosen
Galleries: `va.video`, `vat.video`, `va.audio`, `vat.audio` over windows, `vat.text` over captions.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from mmv_tf.embed import INFO_FILE
from mmv_tf.errors import InputError
from mmv_tf.files import written_folder

INDEX_FILE = "index.json"
# benchmarks/search.py (2 cores, 256-d): exact search takes 0.26 / 7.5 / 86 ms per query at 10k / 100k /
# 1M rows; HNSW is faster from 100k (1.5 / 2.5 ms) but on random vectors finds only 36% / 6% of the
# true top 10 there. So `auto` stays exact up to 2M rows; HNSW is for larger galleries or on request.
APPROXIMATE_FROM_ROWS = 2_000_000
HNSW_NEIGHBOURS = 32
HNSW_SEARCH_DEPTH = 128


class SearchIndexError(InputError):
    """A missing, unfinished or mismatched index."""


def l2_normalized(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, np.float32)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-12)


def build_hnsw(vectors: np.ndarray, rows: np.ndarray | None = None):
    """A faiss HNSW graph for inner-product search over unit `vectors` `[N, D]`, which answers with
    `rows` (default 0..N-1) as ids."""
    import faiss

    graph = faiss.IndexHNSWFlat(vectors.shape[1], HNSW_NEIGHBOURS, faiss.METRIC_INNER_PRODUCT)
    graph.hnsw.efConstruction = 80
    graph.hnsw.efSearch = HNSW_SEARCH_DEPTH
    index = faiss.IndexIDMap(graph)
    index.add_with_ids(vectors, np.arange(len(vectors)) if rows is None else rows)
    return index


def build_index(embeddings: str | Path, out: str | Path, kind: str = "auto", overwrite: bool = False) -> dict:
    """Index the embeddings folder `embeddings` (from `mmv-tf embed`) into `out`; returns index.json.
    `out` may replace an earlier index, or any folder if `overwrite`."""
    import faiss
    import pyarrow as pa
    import pyarrow.parquet as pq

    if kind not in ("auto", "exact", "approximate"):
        raise SearchIndexError(f"kind must be auto, exact or approximate; got {kind!r}")
    embeddings, out = Path(embeddings), Path(out)
    if not (embeddings / INFO_FILE).is_file():
        raise SearchIndexError(f"{embeddings} holds no finished embeddings "
                               f"(no {INFO_FILE}; run mmv-tf embed)")
    info = json.loads((embeddings / INFO_FILE).read_text(encoding="utf-8"))
    windows = pq.read_table(embeddings / "windows.parquet")
    captions = pq.read_table(embeddings / "captions.parquet")
    videos = pq.read_table(embeddings / "videos.parquet", columns=["video_id", "source"]).to_pylist()
    sources = {v["video_id"]: v["source"] for v in videos}
    galleries = {}
    with written_folder(out, "index", inputs=[embeddings], overwrite=overwrite) as partial:
        partial.mkdir(parents=True)
        for table, items_name in ((windows, "windows"), (captions, "captions")):
            for column in table.column_names:
                if column not in info["dims"]:
                    continue
                modality, space = column.split("_", 1)
                values = table.column(column).to_pylist()
                present = np.asarray([v is not None for v in values], bool)
                vectors = np.zeros((len(values), info["dims"][column]), np.float32)
                if present.any():
                    vectors[present] = l2_normalized(np.asarray([v for v in values if v is not None]))
                name = f"{space}.{modality}"
                chosen = kind if kind != "auto" else (
                    "approximate" if len(values) >= APPROXIMATE_FROM_ROWS else "exact")
                np.save(partial / f"{name}.npy", vectors)
                if not present.all():
                    np.save(partial / f"{name}.present.npy", present)
                if chosen == "approximate":
                    graph = build_hnsw(vectors[present], np.flatnonzero(present))
                    faiss.write_index(graph, str(partial / f"{name}.faiss"))
                galleries[name] = {"items": items_name, "rows": len(values), "dim": vectors.shape[1],
                                   "kind": chosen, "missing": int((~present).sum())}
        def without_embeddings(table):
            return table.select([c for c in table.column_names if c not in info["dims"]])

        items = without_embeddings(windows).to_pylist()
        for item in items:
            item["source"] = sources.get(item["video_id"])
        pq.write_table(pa.Table.from_pylist(items), partial / "items.parquet")
        pq.write_table(without_embeddings(captions), partial / "captions.parquet")
        index_info = {"model": info["model_identity"], "embeddings": str(embeddings.resolve()),
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
        self.items = {"windows": pq.read_table(self.path / "items.parquet").to_pylist(),
                      "captions": pq.read_table(self.path / "captions.parquet").to_pylist()}
        self._loaded: dict[str, tuple] = {}

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
        if name not in self._loaded:
            import faiss

            gallery = self.info["galleries"][name]
            vectors = np.load(self.path / f"{name}.npy")
            present = np.load(self.path / f"{name}.present.npy") if gallery["missing"] else None
            graph = None
            if gallery["kind"] == "approximate":
                graph = faiss.read_index(str(self.path / f"{name}.faiss"))
                faiss.downcast_index(graph.index).hnsw.efSearch = HNSW_SEARCH_DEPTH
            self._loaded[name] = (vectors, present, graph)
        return self._loaded[name]

    def search(self, space: str, modality: str, query: np.ndarray, k: int = 10) -> list[Hit]:
        """The `k` items of gallery `<space>.<modality>` most similar to `query` `[D]`."""
        name = f"{space}.{modality}"
        if name not in self.info["galleries"]:
            raise SearchIndexError(f"index {self.path} has no {modality} gallery in space {space} "
                              f"(it has {', '.join(sorted(self.info['galleries']))})")
        gallery = self.info["galleries"][name]
        query = l2_normalized(np.asarray(query, np.float32).reshape(1, -1))
        if query.shape[1] != gallery["dim"]:
            raise SearchIndexError(f"query has {query.shape[1]} dimensions; "
                                   f"gallery {name} has {gallery['dim']}")
        vectors, present, graph = self._gallery(name)
        if graph is not None:
            scores, rows = graph.search(query, k)
            ranked = [(int(r), float(s)) for r, s in zip(rows[0], scores[0]) if r >= 0]
        else:
            similarity = vectors @ query[0]
            if present is not None:
                similarity[~present] = -np.inf
            top = np.argsort(-similarity, kind="stable")[:k]
            ranked = [(int(r), float(similarity[r])) for r in top if np.isfinite(similarity[r])]
        items = self.items[gallery["items"]]
        return [Hit(rank + 1, score, items[row]) for rank, (row, score) in enumerate(ranked)]
