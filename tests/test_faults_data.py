"""Faults around shard folders: nothing decodable, an ingest killed mid-run, and the readers' refusal."""

import contextlib
import json
from pathlib import Path

import media_files
import numpy as np
import pytest
from conftest import run_config
from typer.testing import CliRunner

import mmv_tf.data.ingest as ingest_module
from mmv_tf.cli.main import app
from mmv_tf.data.ingest import IngestError, ingest
from mmv_tf.data.reader import read_clips
from mmv_tf.data.shards import DatasetError, shard_files
from mmv_tf.data.sources import DecodeSettings
from mmv_tf.data.stats import shard_stats
from mmv_tf.embed import list_media
from mmv_tf.files import OWNER_FILE
from mmv_tf.text.tokenizer import TextTokenizer
from mmv_tf.training.run import train

SETTINGS = DecodeSettings(short_side=32)


def refusals(folder: Path, tmp_path: Path) -> dict[str, str]:
    """The message each reader of shard folders refuses `folder` with (training, embedding, stats)."""
    messages = {}
    readers = {
        "reader": lambda: read_clips(folder, TextTokenizer(["a"]), training=True, batch_size=2),
        "stats": lambda: shard_stats(folder),
        "embed": lambda: list_media(folder),
        "train": lambda: train(run_config(), folder, tmp_path / "run", verbose=0),
    }
    for name, read in readers.items():
        with pytest.raises(DatasetError) as caught:
            read()
        messages[name] = str(caught.value)
    result = CliRunner().invoke(app, ["data", "stats", str(folder)])
    assert result.exit_code == 1, result.output
    messages["cli"] = result.output
    assert not (tmp_path / "run").exists()  # refused before the run folder was made
    return messages


def test_ingest_of_only_broken_files_fails_and_readers_refuse_the_empty_folder(tmp_path):
    src = tmp_path / "broken"
    src.mkdir()
    (src / "empty.mp4").write_bytes(b"")
    (src / "noise.mov").write_bytes(np.random.default_rng(0).bytes(3000))
    out = tmp_path / "shards"
    result = CliRunner().invoke(app, ["data", "ingest", str(src), "--out", str(out), "--size", "32",
                                      "--workers", "1"])
    assert result.exit_code == 1, result.output
    assert "error: no video of" in result.output and str(src) in result.output
    assert str(out / "report.jsonl") in result.output
    summary = json.loads((out / "dataset.json").read_text())
    assert summary["complete"] and summary["videos"] == 0 and summary["skipped"] == 2
    assert len((out / "report.jsonl").read_text().splitlines()) == 2
    with pytest.raises(IngestError, match="no video of"):  # a rerun says the same, without decoding
        ingest(src, out, SETTINGS, progress=False)
    for reader, message in refusals(out, tmp_path).items():
        assert "holds no videos" in message and str(out) in message, (reader, message)
        assert "report.jsonl" in message, (reader, message)


def corpus(folder: Path) -> Path:
    """Two shards of two (videos_per_shard=2), each with one good and one undecodable file."""
    folder.mkdir()
    for name in ("a_good", "c_good"):
        media_files.silent_clip(folder / f"{name}.mp4", 0.5)
    for name in ("b_bad", "d_bad"):
        (folder / f"{name}.mp4").write_bytes(b"")
    return folder


def test_a_crash_right_after_a_shard_rename_keeps_its_report_and_readers_wait_for_the_rerun(
        tmp_path, monkeypatch):
    src = corpus(tmp_path / "src")
    whole = ingest(src, tmp_path / "whole", SETTINGS, videos_per_shard=2, workers=1, progress=False)
    assert (whole["videos"], whole["skipped"]) == (2, 2)

    out = tmp_path / "shards"
    real_atomic_path = ingest_module.atomic_path

    @contextlib.contextmanager
    def dies_after_the_first_shard(path):
        with real_atomic_path(path) as partial:
            yield partial
        if Path(path).name == "train-00000.tfrecord":  # renamed into place: the process dies here
            raise KeyboardInterrupt

    monkeypatch.setattr(ingest_module, "atomic_path", dies_after_the_first_shard)
    with pytest.raises(KeyboardInterrupt):
        ingest(src, out, SETTINGS, videos_per_shard=2, workers=1, progress=False)
    monkeypatch.undo()
    assert [Path(f).name for f in shard_files(out)] == ["train-00000.tfrecord"]
    assert json.loads((out / "dataset.json").read_text())["complete"] is False
    for reader, message in refusals(out, tmp_path).items():
        assert "unfinished ingest" in message and str(out) in message, (reader, message)
        assert "rerun `mmv-tf data ingest`" in message, (reader, message)

    resumed = ingest(src, out, SETTINGS, videos_per_shard=2, workers=1, progress=False)
    assert resumed == whole  # true counts: the first shard's skip was kept
    assert json.loads((out / "dataset.json").read_text()) == resumed
    assert (out / "report.jsonl").read_text() == (tmp_path / "whole" / "report.jsonl").read_text()
    assert [p.name for p in out.glob(".*")] == [OWNER_FILE]  # no partial files or shard reports left
    assert shard_stats(out)["splits"]["train"]["videos"] == 2
