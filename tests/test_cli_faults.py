"""Bad input and faults end to end through the CLI: each gives one line `error: ...` naming the file,
field or path, exit code 1, no traceback, and leaves nothing half-written (issue 13, item 9).
Folder safety, locks and stale indexes are in test_outputs.py."""

import errno
import json
import shutil

import pytest
from conftest import SMALL_SETS
from typer.testing import CliRunner

from mmv_tf.cli.main import app

runner = CliRunner()


def fails_cleanly(args: list[str], *phrases: str):
    """Run the CLI; check exit code 1 and one `error:` line holding every phrase."""
    result = runner.invoke(app, [str(a) for a in args])
    lines = [line for line in result.output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), result.exception  # not an escaped traceback
    assert len(errors) == 1 and "Traceback" not in result.output, result.output
    for phrase in phrases:
        assert phrase in errors[0], errors[0]
    return errors[0]


def leftovers(folder) -> list[str]:
    """Hidden partial or lock files mmv-tf could leave beside its outputs."""
    return sorted(p.name for p in folder.iterdir() if p.name.endswith((".partial", ".lock", ".old")))


@pytest.fixture(scope="module")
def index(small_savedmodel, demo_shards, tmp_path_factory):
    """The small model's index over the demo shards."""
    work = tmp_path_factory.mktemp("cli")
    model = str(small_savedmodel[1])
    assert runner.invoke(app, ["embed", str(demo_shards), "--model", model, "--out",
                               str(work / "emb")]).exit_code == 0
    assert runner.invoke(app, ["index", str(work / "emb"), "--out", str(work / "index")]).exit_code == 0
    return work


@pytest.mark.parametrize("override,field", [
    ("train.batch_size=0", "train.batch_size"), ("train.validate_every=0", "train.validate_every"),
    ("train.checkpoint_every=0", "train.checkpoint_every"), ("train.steps=-5", "train.steps"),
    ("data.sources=[]", "data.sources"), ("train.steps=[1", "train.steps=[1"),
])
def test_bad_config_values_are_refused_before_a_run_folder_exists(override, field, demo_shards, tmp_path):
    run = tmp_path / "run"
    fails_cleanly(["train", "--data", demo_shards, "--out", run, *sum((["--set", s] for s in SMALL_SETS), []),
                   "--set", override], field)
    assert not run.exists()


def test_a_config_that_is_not_utf8_names_the_file(demo_shards, tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_bytes(b"train:\n  steps: 5 # \xff\xfe\n")
    fails_cleanly(["train", "--config", config, "--data", demo_shards, "--out", tmp_path / "run"],
                  str(config), "not UTF-8")
    assert not (tmp_path / "run").exists()


def test_search_refuses_an_unknown_target(index, small_savedmodel):
    fails_cleanly(["search", "--index", index / "index", "--model", small_savedmodel[1], "--text", "three",
                   "--target", "banana"], "--target", "banana")


def test_a_damaged_model_names_its_folder(index, small_savedmodel, tmp_path):
    damaged = tmp_path / "damaged"
    shutil.copytree(small_savedmodel[1], damaged)
    (damaged / "saved_model.pb").write_bytes((damaged / "saved_model.pb").read_bytes()[:1000])
    fails_cleanly(["search", "--index", index / "index", "--model", damaged, "--text", "three"],
                  f"cannot load the model in {damaged}")


def test_a_truncated_parquet_file_names_the_file(index, tmp_path):
    emb = tmp_path / "emb"
    shutil.copytree(index / "emb", emb)
    (emb / "windows.parquet").write_bytes((emb / "windows.parquet").read_bytes()[:500])
    fails_cleanly(["index", emb, "--out", tmp_path / "index"], "windows.parquet")
    assert not (tmp_path / "index").exists() and not leftovers(tmp_path)


def test_a_malformed_manifest_names_its_line(demo, small_savedmodel, tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    lines = (demo / "manifest.jsonl").read_text().splitlines()[:2]
    records = [json.loads(line) for line in lines]
    for record in records:
        shutil.copy(demo / record["video"], corpus)
        record["video"] = record["video"].split("/")[-1]
    (corpus / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records) + '{"video": \n')
    fails_cleanly(["embed", corpus, "--model", small_savedmodel[1], "--out", tmp_path / "emb"],
                  "manifest.jsonl:3")
    assert not (tmp_path / "emb").exists()


def test_a_typo_in_the_embed_source_leaves_the_output_usable(demo, small_savedmodel, tmp_path):
    out = tmp_path / "emb"
    fails_cleanly(["embed", tmp_path / "demoo", "--model", small_savedmodel[1], "--out", out], "demoo")
    assert not out.exists()


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS])
def test_a_full_or_read_only_disk_during_index_leaves_nothing(index, tmp_path, monkeypatch, code):
    import pyarrow.parquet as pq

    def no_room(*args, **kwargs):
        raise OSError(code, "cannot write", str(args[1]))

    monkeypatch.setattr(pq, "write_table", no_room)
    fails_cleanly(["index", index / "emb", "--out", tmp_path / "index"], "cannot write")
    assert not (tmp_path / "index").exists() and not leftovers(tmp_path)


def test_a_full_disk_during_digits_leaves_nothing(tmp_path, monkeypatch):
    from PIL import Image

    def no_room(self, path, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(Image.Image, "save", no_room)
    fails_cleanly(["data", "digits", "--out", tmp_path / "digits", "--per-class", "2"],
                  "No space left on device", ".digits.partial")
    assert not (tmp_path / "digits").exists() and not leftovers(tmp_path)


def test_a_full_disk_during_export_leaves_nothing(small_run, tmp_path, monkeypatch):
    """The disk fills once the SavedModel is written, at the metadata file."""
    from pathlib import Path

    write_text = Path.write_text

    def no_room(path, *args, **kwargs):
        if path.name == "mmv_tf.json":
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return write_text(path, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", no_room)
    fails_cleanly(["export", small_run[1], "--out", tmp_path / "model"], "No space left on device")
    assert not (tmp_path / "model").exists() and not leftovers(tmp_path)


def test_classify_refuses_a_bad_template_and_a_users_folder(small_savedmodel, tmp_path):
    digits = tmp_path / "digits"
    assert runner.invoke(app, ["data", "digits", "--out", str(digits), "--per-class", "2"]).exit_code == 0
    model = small_savedmodel[1]
    for template in ("{", "a {} {}", "no name"):
        fails_cleanly(["classify", "fit", digits, "--model", model, "--template", template],
                      f"--template {template!r}")
    keep = tmp_path / "keep"
    keep.mkdir()
    (keep / "notes.txt").write_text("x")
    fails_cleanly(["classify", "fit", digits, "--model", model, "--out", keep], "did not write it as probe")
    fails_cleanly(["classify", "fit", digits, "--model", model, "--out", digits / "probe"],
                  "overlaps the input")
    assert (keep / "notes.txt").read_text() == "x" and not (digits / "probe").exists()


def test_a_checkpoint_that_cannot_be_written_leaves_no_temporary_folder(tmp_path):
    from mmv_tf.training.callbacks import StepCheckpoint

    class FullDisk:  # writes part of a checkpoint the way tf.train.Checkpoint does, then fails
        directory, latest_checkpoint = str(tmp_path), None

        def save(self, checkpoint_number):
            temporary = tmp_path / f"ckpt-{checkpoint_number}_temp"
            temporary.mkdir()
            (temporary / "part-00000-of-00001.data-00000-of-00001").write_bytes(b"half")
            raise OSError(errno.ENOSPC, "No space left on device", str(temporary))

    with pytest.raises(OSError, match="No space left"):
        StepCheckpoint(FullDisk(), every=1)._save(3)
    assert not list(tmp_path.iterdir())


def test_a_full_disk_during_embed_keeps_only_finished_parts(small_savedmodel, demo_shards, tmp_path,
                                                            monkeypatch):
    import pyarrow.parquet as pq

    write_table = pq.write_table
    written = []

    def fills_up(table, where, *args, **kwargs):  # the second part finds the disk full
        if written:
            raise OSError(errno.ENOSPC, "No space left on device", str(where))
        written.append(where)
        return write_table(table, where, *args, **kwargs)

    monkeypatch.setattr(pq, "write_table", fills_up)
    out = tmp_path / "emb"
    fails_cleanly(["embed", demo_shards, "--model", small_savedmodel[1], "--out", out],
                  "No space left on device")
    parts = out / ".parts"
    assert not (out / "embeddings.json").exists() and not leftovers(out) and not leftovers(parts)
    assert sorted(p.name for p in parts.iterdir()) == ["plan.json"]  # no half-written part
