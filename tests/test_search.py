"""Embedding a corpus, indexing it and searching it across modalities."""

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

import mmv_tf.embed as embed_lib
import mmv_tf.index as index_lib
from mmv_tf.cli.main import app
from mmv_tf.data.preprocessing import sliding_window_starts
from mmv_tf.embed import EmbedError, EmbedSettings, embed_corpus
from mmv_tf.index import SearchIndex, SearchIndexError, build_index
from mmv_tf.saved_model import ExportedModel
from mmv_tf.search import embed_query, search, space_between

runner = CliRunner()


@pytest.fixture(scope="module")
def model(small_savedmodel):
    return ExportedModel(small_savedmodel[1])


@pytest.fixture(scope="module")
def embedded(model, demo_shards, tmp_path_factory):
    out = tmp_path_factory.mktemp("emb") / "demo"
    info = embed_corpus(demo_shards, model, out, EmbedSettings(videos_per_part=4), progress=False)
    return out, info


def test_embed_writes_windows_videos_and_captions(embedded, model, demo, demo_shards):
    out, info = embedded
    videos = pq.read_table(out / "videos.parquet").to_pylist()
    windows = pq.read_table(out / "windows.parquet").to_pylist()
    captions = pq.read_table(out / "captions.parquet").to_pylist()
    manifest = [json.loads(line) for line in (demo / "manifest.jsonl").read_text().splitlines()]
    assert len(videos) == len(manifest) == info["counts"]["videos"]
    assert len(captions) == sum(e["narration"] is not None for r in manifest for e in r["events"])
    # Windows of 0.8 s (8 frames at 10 fps) every 0.4 s, covering each video.
    first = videos[0]
    own = [w for w in windows if w["video_id"] == first["video_id"]]
    assert len(own) == first["windows"] == len(sliding_window_starts(round(first["duration"] * 10), 8, 4))
    assert [w["start"] for w in own[:3]] == [0.0, 0.4, 0.8] and own[0]["end"] == 0.8
    assert info["dims"] == {"video_va": 32, "video_vat": 16, "audio_va": 32, "audio_vat": 16, "text_vat": 16}
    # A video's vector is the mean of its windows'; a window's is the model's on that clip.
    np.testing.assert_allclose(first["video_vat"], np.mean([w["video_vat"] for w in own], axis=0), rtol=1e-5)
    with_caption = next(w for w in windows if w["caption"])
    assert any(c["text"] == with_caption["caption"] and c["video_id"] == with_caption["video_id"]
               for c in captions)
    assert not (out / ".parts").exists()


def test_embed_resumes_after_an_interruption(model, demo_shards, embedded, tmp_path, monkeypatch):
    calls = []
    real = embed_lib.embed_media

    def failing_after_six(model_, media, stride):
        calls.append(media.video_id)
        if len(calls) > 6:
            raise KeyboardInterrupt
        return real(model_, media, stride)

    monkeypatch.setattr(embed_lib, "embed_media", failing_after_six)
    out = tmp_path / "emb"
    with pytest.raises(KeyboardInterrupt):
        embed_corpus(demo_shards, model, out, EmbedSettings(videos_per_part=4), progress=False)
    assert sorted(p.name for p in (out / ".parts").iterdir()) == ["00000", "plan.json"]
    assert not (out / "embeddings.json").exists()
    calls.clear()
    monkeypatch.setattr(embed_lib, "embed_media", lambda *a: (calls.append(a[1].video_id), real(*a))[1])
    embed_corpus(demo_shards, model, out, EmbedSettings(videos_per_part=4), progress=False)
    assert len(calls) == 20 - 4  # the first part was kept
    got, want = (pq.read_table(folder / "windows.parquet").column("video_vat").to_pylist()
                 for folder in (out, embedded[0]))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    with pytest.raises(EmbedError, match="already holds finished embeddings"):
        embed_corpus(demo_shards, model, out, progress=False)


def test_media_folder_and_bad_files(model, demo, tmp_path):
    """A media folder decodes with PyAV; an unreadable file is skipped with its name."""
    folder = tmp_path / "media"
    folder.mkdir()
    (folder / "good.mp4").write_bytes((demo / "videos" / "demo_00000.mp4").read_bytes())
    (folder / "broken.mp4").write_bytes(b"not a video")
    info = embed_corpus(folder, model, tmp_path / "emb", progress=False)
    assert info["counts"]["videos"] == 1 and len(info["skipped"]) == 1 and "broken.mp4" in info["skipped"][0]
    # A manifest's split is a filter: only its test videos.
    test_ids = [json.loads(line)["id"] for line in (demo / "manifest.jsonl").read_text().splitlines()
                if json.loads(line)["split"] == "test"]
    embed_corpus(demo, model, tmp_path / "test", EmbedSettings(split="test"), progress=False)
    assert pq.read_table(tmp_path / "test" / "videos.parquet").column("video_id").to_pylist() == test_ids


def test_a_resumed_run_does_not_decode_the_videos_of_finished_parts(model, demo, tmp_path, monkeypatch):
    import mmv_tf.data.sources as sources_lib

    folder = tmp_path / "media"
    folder.mkdir()
    for number in range(3):
        (folder / f"clip{number}.mp4").write_bytes((demo / "videos" / f"demo_0000{number}.mp4").read_bytes())
    (folder / "clip1b.mp4").write_bytes(b"not a video")  # parts of two: clip0 clip1 | clip1b clip2
    real_embed, real_decode = embed_lib.embed_media, sources_lib.decode_source

    def interrupted_at_clip2(model_, media, stride):
        if media.video_id == "clip2":
            raise KeyboardInterrupt
        return real_embed(model_, media, stride)

    monkeypatch.setattr(embed_lib, "embed_media", interrupted_at_clip2)
    with pytest.raises(KeyboardInterrupt):
        embed_corpus(folder, model, tmp_path / "emb", EmbedSettings(videos_per_part=2), progress=False)
    decoded = []
    monkeypatch.setattr(embed_lib, "embed_media", real_embed)
    monkeypatch.setattr(sources_lib, "decode_source",
                        lambda source, settings: (decoded.append(source.path.name),
                                                  real_decode(source, settings))[1])
    info = embed_corpus(folder, model, tmp_path / "emb", EmbedSettings(videos_per_part=2), progress=False)
    assert decoded == ["clip1b.mp4", "clip2.mp4"]
    assert info["counts"]["videos"] == 3 and len(info["skipped"]) == 1 and "clip1b" in info["skipped"][0]


def test_exact_search_ranks_by_cosine_and_ivf_agrees(embedded, model, tmp_path):
    emb, _ = embedded
    build_index(emb, tmp_path / "exact", "exact")
    build_index(emb, tmp_path / "ivf", "approximate")
    exact, approximate = SearchIndex(tmp_path / "exact"), SearchIndex(tmp_path / "ivf")
    assert (tmp_path / "ivf" / "vat.video.faiss").is_file()
    modality, query = embed_query(model, text="a three moves up")
    space, hits = search(model, exact, modality, query, "video", k=5)
    assert space == "vat" and [h.rank for h in hits] == [1, 2, 3, 4, 5]
    windows = pq.read_table(emb / "windows.parquet").column("video_vat").to_numpy(zero_copy_only=False)
    vectors = np.stack(windows)
    cosine = vectors @ query["vat"] / np.linalg.norm(vectors, axis=1) / np.linalg.norm(query["vat"])
    np.testing.assert_allclose([h.score for h in hits], np.sort(cosine)[::-1][:5], rtol=1e-4)
    _, approx_hits = search(model, approximate, modality, query, "video", k=5)
    # IVF-Flat scores by exact cosines but may miss one of the true top 5 (recall@10 >= ~0.95).
    def windows_of(found):
        return {(h.item["video_id"], h.item["window"]) for h in found}

    assert len(windows_of(approx_hits) & windows_of(hits)) >= 4
    assert all(a.score <= e.score + 1e-5 for a, e in zip(approx_hits, hits))
    assert space_between(model.metadata, "audio", "video") == "va"
    assert space_between(model.metadata, "text", "audio") == "vat"


def test_search_cli_and_bad_input(embedded, small_savedmodel, demo, tmp_path, monkeypatch):
    emb, _ = embedded
    index = tmp_path / "index"
    assert runner.invoke(app, ["index", str(emb), "--out", str(index)]).exit_code == 0
    model_dir = str(small_savedmodel[1])
    result = runner.invoke(app, ["search", "--model", model_dir, "--index", str(index),
                                 "--text", "digit seven slides left", "--k", "3", "--json"])
    assert result.exit_code == 0, result.output
    answer = json.loads(result.output)
    assert answer["query"] == {"modality": "text", "target": "video", "space": "vat"}
    assert len(answer["results"]) == 3 and answer["results"][0]["video_id"].startswith("demo_")
    scores = [r["score"] for r in answer["results"]]
    assert scores == sorted(scores, reverse=True)
    video = str(demo / "videos" / "demo_00001.mp4")
    result = runner.invoke(app, ["search", "--model", model_dir, "--index", str(index), "--audio", video,
                                 "--json"])
    assert result.exit_code == 0 and json.loads(result.output)["query"]["space"] == "va"
    for args, message in [
        (["--text", "three", "--k", "100000"], "asks for more than the"),
        (["--text", " "], "empty"),
        (["--text", "x", "--audio", video], "exactly one query"),
        (["--video", str(tmp_path / "none.mp4")], "missing or empty file"),
    ]:
        result = runner.invoke(app, ["search", "--model", model_dir, "--index", str(index), *args])
        assert result.exit_code == 1 and message in result.output, result.output
    result = runner.invoke(app, ["search", "--model", model_dir, "--index", str(index), "--text", "three",
                                 "--k", "0"])
    assert result.exit_code == 2 and "Invalid value for '--k'" in result.output
    result = runner.invoke(app, ["search", "--model", str(tmp_path / "nomodel"), "--index", str(index),
                                 "--text", "three"])
    assert result.exit_code == 1 and "does not exist" in result.output
    # An index of another model's spaces is refused.
    other = tmp_path / "other"
    other.mkdir()
    info = json.loads((index / "index.json").read_text())
    info["model"]["spaces"]["text"] = {"vat": 64}
    for item in index.iterdir():
        (other / item.name).write_bytes(item.read_bytes())
    (other / "index.json").write_text(json.dumps(info))
    result = runner.invoke(app, ["search", "--model", model_dir, "--index", str(other), "--text", "three"])
    assert result.exit_code == 1 and "index again with this model" in result.output
    # An interrupted index leaves nothing that search would load.
    monkeypatch.setattr(index_lib, "l2_normalized", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        build_index(emb, tmp_path / "interrupted")
    assert not (tmp_path / "interrupted").exists()
    with pytest.raises(SearchIndexError, match="not a finished index"):
        SearchIndex(tmp_path / "interrupted")


def test_windows_without_audio_are_never_audio_hits(embedded, tmp_path):
    import shutil

    import pyarrow as pa

    emb = tmp_path / "emb"
    shutil.copytree(embedded[0], emb)
    windows = pq.read_table(emb / "windows.parquet")
    silent = windows.column("video_id")[0].as_py()
    for column in ("audio_va", "audio_vat"):
        values = [None if vid == silent else v for vid, v in
                  zip(windows.column("video_id").to_pylist(), windows.column(column).to_pylist())]
        index = windows.column_names.index(column)
        windows = windows.set_column(index, column, pa.array(values, type=windows.schema.field(column).type))
    pq.write_table(windows, emb / "windows.parquet")
    for kind in ("exact", "approximate"):
        info = build_index(emb, tmp_path / kind, kind)
        assert info["galleries"]["va.audio"]["missing"] == sum(v == silent for v in
                                                               windows.column("video_id").to_pylist())
        query = np.asarray(windows.column("video_va")[0].as_py())  # the silent video's own window
        held = len(windows) - info["galleries"]["va.audio"]["missing"]
        hits = SearchIndex(tmp_path / kind).search("va", "audio", query, k=held)
        assert hits and all(h.item["video_id"] != silent for h in hits)


def test_text_pairs_are_compared_in_the_space_the_design_names():
    """FAC's released text -> va head puts text in `va` too; text pairs still meet in `vat`."""
    spaces = {"video": {"va": 512, "vat": 256}, "audio": {"va": 512, "vat": 256},
              "text": {"va": 512, "vat": 256}}
    metadata = {"spaces": spaces, "head_design": "fac",
                "pair_spaces": {"text-video": "vat", "video-text": "vat", "audio-video": "va"}}
    assert space_between(metadata, "text", "video") == "vat"
    assert space_between(metadata, "video", "text") == "vat"
    assert space_between(metadata, "audio", "video") == "va"
    del metadata["pair_spaces"]  # a model exported before pair_spaces: the finest shared space
    assert space_between(metadata, "text", "video") == "va"
