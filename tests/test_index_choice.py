"""`--kind auto` picks exact or IVF by size; on-disk IVF; k checked; old index formats still read."""

import json
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

import mmv_tf.index as index_lib
from mmv_tf.cli.main import app
from mmv_tf.index import SearchIndex, SearchIndexError, build_index, exact_top

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from synthetic import clustered_vectors  # noqa: E402

WINDOWS, CAPTIONS, QUERIES, DIM = 4000, 300, 100, 32


def vector_column(vectors: np.ndarray) -> pa.Array:
    return pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel(), pa.float32()), vectors.shape[1])


@pytest.fixture(scope="module")
def clustered(tmp_path_factory):
    """An embeddings folder of 4,000 clustered `vat` window vectors (64 centres) and 300 captions, and
    100 held-out queries `[Q, D]` from the same mixture."""
    vectors = clustered_vectors(WINDOWS + CAPTIONS + QUERIES, DIM, centres=64, topics=8)
    folder = tmp_path_factory.mktemp("clustered") / "emb"
    folder.mkdir()
    ids = pa.array([f"v{row // 10}" for row in range(WINDOWS)])
    starts = np.arange(WINDOWS) * 0.8
    pq.write_table(pa.table({"video_id": ids, "window": pa.array(np.arange(WINDOWS) % 10),
                             "start": pa.array(starts), "end": pa.array(starts + 1.6),
                             "caption": pa.nulls(WINDOWS, pa.string()),
                             "video_vat": vector_column(vectors[:WINDOWS])}), folder / "windows.parquet")
    pq.write_table(pa.table({"video_id": ids[:CAPTIONS], "start": pa.array(np.zeros(CAPTIONS)),
                             "end": pa.array(np.ones(CAPTIONS)), "text": pa.array(["words"] * CAPTIONS),
                             "text_vat": vector_column(vectors[WINDOWS:WINDOWS + CAPTIONS])}),
                   folder / "captions.parquet")
    pq.write_table(pa.table({"video_id": pa.array(sorted(set(ids.to_pylist()))),
                             "source": pa.array(["synthetic"] * (WINDOWS // 10))}), folder / "videos.parquet")
    info = {"model_identity": {"name": "m", "spaces": {"video": {"vat": DIM}, "text": {"vat": DIM}}},
            "source": "synthetic", "settings": {}, "window_seconds": 1.6,
            "dims": {"video_vat": DIM, "text_vat": DIM}}
    (folder / "embeddings.json").write_text(json.dumps(info))
    return folder, vectors[:WINDOWS], vectors[-QUERIES:]


def recall_at_10(index: SearchIndex, gallery: np.ndarray, queries: np.ndarray) -> float:
    found = [{(h.item["video_id"], h.item["window"]) for h in index.search("vat", "video", q, 10)}
             for q in queries]
    truth = [{(f"v{row // 10}", row % 10) for row in exact_top(gallery, q, 10)[0]} for q in queries]
    return float(np.mean([len(f & t) / 10 for f, t in zip(found, truth)]))


def test_auto_is_exact_below_the_threshold_and_ivf_from_it(clustered, tmp_path):
    emb, gallery, queries = clustered
    info = build_index(emb, tmp_path / "small")
    assert {g["kind"] for g in info["galleries"].values()} == {"exact"}  # 4,000 rows < 10,000
    info = build_index(emb, tmp_path / "auto", approximate_from_rows=1000)
    video, text = info["galleries"]["vat.video"], info["galleries"]["vat.text"]
    # 4 sqrt(4000) = 253 lists would hold 16 rows each; halved until each has 39 to train on.
    probes = video.pop("search")["nprobe"]
    assert video == {"items": "windows", "rows": WINDOWS, "dim": DIM, "kind": "approximate", "missing": 0,
                     "lists": 64}
    assert 1 < probes < 64  # calibrated: the fewest lists reaching recall 0.95 on the gallery's own rows
    assert text["kind"] == "exact"  # 300 rows
    assert json.loads((tmp_path / "auto" / "index.json").read_text())["galleries"]["vat.video"] == \
           video | {"search": {"nprobe": probes}}
    assert sorted(p.name for p in (tmp_path / "auto").iterdir() if "vat" in p.name) == [
        "vat.text.npy", "vat.video.faiss"]
    index = SearchIndex(tmp_path / "auto")
    assert index._gallery("vat.video").nprobe == probes
    assert recall_at_10(index, gallery, queries) >= 0.95
    hits = index.search("vat", "video", queries[0], 5)
    assert [h.rank for h in hits] == [1, 2, 3, 4, 5]
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)
    np.testing.assert_allclose(scores[0], (gallery @ queries[0]).max(), rtol=1e-5)


def test_on_disk_ivf_is_built_in_batches_and_searched_from_its_file(clustered, tmp_path, monkeypatch):
    emb, gallery, queries = clustered
    import faiss.contrib.ondisk

    merged, merge = [], faiss.contrib.ondisk.merge_ondisk

    def counted_merge(index, shards, lists_file):
        merged.append(len(shards))
        merge(index, shards, lists_file)

    monkeypatch.setattr(faiss.contrib.ondisk, "merge_ondisk", counted_merge)
    monkeypatch.setattr(index_lib, "BATCH_ROWS", 1000)
    info = build_index(emb, tmp_path / "built", "on-disk")
    assert merged == [4, 1]  # 4,000 windows in shards of 1,000, then 300 captions
    assert info["galleries"]["vat.video"]["kind"] == "on-disk"
    assert sorted(p.name for p in (tmp_path / "built").iterdir() if "vat.video" in p.name) == [
        "vat.video.faiss", "vat.video.ivfdata"]  # no shards left, no copy of the vectors
    (tmp_path / "built").rename(tmp_path / "moved")  # the lists are found beside the index
    on_disk = SearchIndex(tmp_path / "moved")
    assert recall_at_10(on_disk, gallery, queries) >= 0.95
    build_index(emb, tmp_path / "memory", "approximate")
    in_memory = SearchIndex(tmp_path / "memory")
    for query in queries[:10]:
        assert [h.item for h in on_disk.search("vat", "video", query, 10)] == \
               [h.item for h in in_memory.search("vat", "video", query, 10)]


def test_bad_k_and_bad_kind_are_refused(clustered, tmp_path):
    emb, _, queries = clustered
    build_index(emb, tmp_path / "index", approximate_from_rows=1000)
    index = SearchIndex(tmp_path / "index")
    for space, modality, held in (("vat", "video", WINDOWS), ("vat", "text", CAPTIONS)):
        with pytest.raises(SearchIndexError, match="k must be at least 1; got 0"):
            index.search(space, modality, queries[0], 0)
        with pytest.raises(SearchIndexError, match=f"asks for more than the {held} vectors"):
            index.search(space, modality, queries[0], held + 1)
        assert len(index.search(space, modality, queries[0], held)) > 0
    result = CliRunner().invoke(app, ["index", str(emb), "--out", str(tmp_path / "fast"), "--kind", "fast"])
    assert result.exit_code == 1 and "kind must be auto, exact, approximate or on-disk" in result.output
    assert not (tmp_path / "fast").exists()


def test_an_index_of_format_1_is_read_and_a_newer_one_refused(clustered, tmp_path):
    """Format 1 kept every gallery's vectors and, for `approximate`, an HNSW graph searched at
    efSearch 128; a format this mmv-tf does not know is refused by name."""
    import faiss

    emb, gallery, queries = clustered
    old = tmp_path / "old"
    build_index(emb, old)
    info = json.loads((old / "index.json").read_text())
    del info["format"]
    info["galleries"]["vat.video"]["kind"] = "approximate"
    graph = faiss.IndexIDMap(faiss.IndexHNSWFlat(DIM, 32, faiss.METRIC_INNER_PRODUCT))
    graph.add_with_ids(np.load(old / "vat.video.npy"), np.arange(WINDOWS))
    faiss.write_index(graph, str(old / "vat.video.faiss"))
    (old / "index.json").write_text(json.dumps(info))
    index = SearchIndex(old)
    assert faiss.downcast_index(index._gallery("vat.video").index).hnsw.efSearch == 128
    assert recall_at_10(index, gallery, queries) >= 0.95
    info["format"] = index_lib.INDEX_FORMAT + 1
    (old / "index.json").write_text(json.dumps(info))
    with pytest.raises(SearchIndexError, match="newer than this mmv-tf reads"):
        SearchIndex(old)


def test_calibration_meets_the_target_for_every_modality_that_queries(clustered, tmp_path):
    """Text queries of a video gallery sit elsewhere than its windows: the lists searched must reach
    recall 0.95 for them too, not only for the gallery's own rows."""
    import faiss

    _, gallery, _ = clustered
    rows = np.arange(WINDOWS)
    index = index_lib.trained_ivf(gallery, rows, 64)
    index_lib.fill_ivf(index, gallery, rows, tmp_path / "ivf")
    own = index_lib.calibration_queries(gallery, np.ones(WINDOWS, bool), own=True)
    elsewhere = index_lib.l2_normalized(np.random.default_rng(2).normal(size=(200, DIM)))
    alone = index_lib.calibrated_probes(index, gallery, rows, [own])
    both = index_lib.calibrated_probes(index, gallery, rows, [own, (elsewhere, None)])
    assert alone < both <= 64
    index.nprobe = both
    truth = faiss.knn(elsewhere, gallery, 10, faiss.METRIC_INNER_PRODUCT)[1]
    found = index.search(elsewhere, 10)[1]
    assert np.mean([len(set(t) & set(f)) / 10 for t, f in zip(truth, found)]) >= 0.95
