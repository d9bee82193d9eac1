"""`mmv-tf embed --runner beam` (issue 16, item 2): the Beam pipeline, on the DirectRunner, writes the
local embed's tables, counts and names the files it cannot decode, and refuses an unknown runner or
option before anything is written. With the default model, on three demo videos."""

import json
import shutil
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

pytest.importorskip("apache_beam")

from mmv_tf.cli.main import app  # noqa: E402
from mmv_tf.embed import TABLES, EmbedSettings, embed_corpus  # noqa: E402
from mmv_tf.saved_model import DEFAULT_MODEL, ExportedModel  # noqa: E402

runner = CliRunner()


@pytest.fixture(scope="module")
def model():
    return ExportedModel(DEFAULT_MODEL)


@pytest.fixture(scope="module")
def corpus(demo, tmp_path_factory):
    """A manifest of three demo videos with captions and, second, a file that is not a video."""
    folder = tmp_path_factory.mktemp("beam") / "corpus"
    (folder / "videos").mkdir(parents=True)
    records = [json.loads(line) for line in (demo / "manifest.jsonl").read_text().splitlines()[:3]]
    for record in records:
        for name in ("video", "captions"):
            if record[name]:
                shutil.copy(demo / record[name], folder / record[name])
    (folder / "videos" / "broken.mp4").write_bytes(b"not a video")
    records.insert(1, {"id": "broken", "split": records[0]["split"], "video": "videos/broken.mp4"})
    (folder / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return folder


@pytest.fixture(scope="module")
def local(corpus, model, tmp_path_factory):
    """(folder, summary) of the local embed of `corpus`."""
    out = tmp_path_factory.mktemp("local") / "emb"
    return out, embed_corpus(corpus, model, out, progress=False)


def assert_same_tables(got, want):
    """Embeddings folders `got` and `want` hold the same rows, their embeddings within float tolerance."""
    dims = json.loads((want / "embeddings.json").read_text())["dims"]
    for name in TABLES:
        got_table, want_table = (pq.read_table(folder / f"{name}.parquet") for folder in (got, want))
        assert got_table.schema == want_table.schema and got_table.num_rows == want_table.num_rows, name
        for column in want_table.column_names:
            got_values, want_values = got_table[column].to_pylist(), want_table[column].to_pylist()
            if column in dims:
                assert [v is None for v in got_values] == [v is None for v in want_values], column
                np.testing.assert_allclose([v for v in got_values if v is not None],
                                           [v for v in want_values if v is not None], rtol=1e-5, atol=1e-6)
            else:
                assert got_values == want_values, (name, column)


def test_beam_embed_equals_the_local_embed_and_names_the_file_it_cannot_decode(corpus, local, tmp_path):
    """The acceptance, through the CLI with the default model."""
    out = tmp_path / "beam"
    result = runner.invoke(app, ["embed", str(corpus), "--out", str(out), "--runner", "beam"])
    assert result.exit_code == 0, result.output
    assert f"3 videos, {local[1]['counts']['windows']} windows" in result.output
    assert f"1 skipped (named in {out / 'embeddings.json'})" in result.output
    info = json.loads((out / "embeddings.json").read_text())
    assert info["counts"] == local[1]["counts"] and info["counts"]["captions"] > 0
    assert len(info["skipped"]) == 1 and "broken.mp4" in info["skipped"][0]
    assert info["skipped"] == local[1]["skipped"]
    assert_same_tables(out, local[0])
    assert sorted(p.name for p in out.iterdir()) == [".mmv-tf.json", "captions.parquet", "embeddings.json",
                                                     "videos.parquet", "windows.parquet"]


def test_beam_embed_of_shards_in_parts_equals_the_local_embed(corpus, model, tmp_path):
    """Shards (two files) and parts of two videos: Beam's workers write each part whole, in order."""
    from mmv_tf.data.ingest import ingest
    from mmv_tf.data.sources import DecodeSettings

    shards = tmp_path / "shards"
    ingest(corpus, shards, DecodeSettings(short_side=64), videos_per_shard=2, workers=1, progress=False)
    settings = EmbedSettings(videos_per_part=2)
    want = embed_corpus(shards, model, tmp_path / "local", settings, progress=False)
    got = embed_corpus(shards, model, tmp_path / "beam", settings, progress=False,
                       beam_options=["--direct_num_workers=1"])
    assert got["counts"] == want["counts"] and got["counts"]["videos"] == 3
    assert_same_tables(tmp_path / "beam", tmp_path / "local")


@pytest.mark.parametrize("options,phrases", [
    (["--runner", "foo"], ["--runner must be local or beam", "'foo'"]),
    (["--beam-options", "--runner=DirectRunner"], ["--beam-options needs --runner beam"]),
    (["--runner", "beam", "--beam-options", "--runner=NoSuchRunner"],
     ["unknown Beam runner 'NoSuchRunner'", "DirectRunner", "FlinkRunner"]),
    (["--runner", "beam", "--beam-options", "--direct_num_wokers=2"],
     ["'--direct_num_wokers=2' is not a Beam pipeline option", "did you mean --direct_num_workers?"]),
    (["--runner", "beam", "--beam-options", "--direct_num_workers=two"],
     ["--beam-options", "--direct_num_workers", "'two'"]),
    (["--runner", "beam", "--beam-options", "--job_name='unclosed"],
     ["--beam-options", "No closing quotation"]),
])
def test_an_unknown_runner_or_option_is_refused_before_anything_is_written(options, phrases, corpus,
                                                                            tmp_path):
    result = runner.invoke(app, ["embed", str(corpus), "--out", str(tmp_path / "emb"), *options])
    errors = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert result.exit_code == 1 and len(errors) == 1 and "Traceback" not in result.output, result.output
    for phrase in phrases:
        assert phrase in errors[0], errors[0]
    assert list(tmp_path.iterdir()) == []  # no folder, lock or partial file


def test_without_apache_beam_the_beam_runner_says_how_to_install_it(corpus, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "apache_beam", None)  # `import apache_beam` fails
    monkeypatch.delitem(sys.modules, "mmv_tf.embed_beam", raising=False)
    result = runner.invoke(app, ["embed", str(corpus), "--out", str(tmp_path / "emb"), "--runner", "beam"])
    assert result.exit_code == 1 and "pip install 'mmv-tf[beam]'" in result.output, result.output
    assert list(tmp_path.iterdir()) == []
