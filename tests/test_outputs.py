"""Output folders: never a user's folder or an input, whole or not at all, one writer at a time;
indexes answer only for the model that made them (issue 13, items 1, 3 and 5)."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
import threading

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

import mmv_tf.files as files
from mmv_tf.cli.main import app
from mmv_tf.embed import EmbedSettings, embed_corpus
from mmv_tf.export import export_network
from mmv_tf.files import OutputError, atomic_path, check_output, output_lock, written_folder
from mmv_tf.saved_model import ExportedModel

runner = CliRunner()


@pytest.fixture(scope="module")
def embedded(small_savedmodel, demo, tmp_path_factory):
    """Three videos of the demo corpus embedded with the small model, from a relative source path."""
    model = ExportedModel(small_savedmodel[1])
    folder = tmp_path_factory.mktemp("media")
    for record in [json.loads(line) for line in (demo / "manifest.jsonl").read_text().splitlines()][:3]:
        shutil.copy(demo / record["video"], folder)
    out = tmp_path_factory.mktemp("emb") / "emb"
    cwd = os.getcwd()
    os.chdir(folder.parent)
    try:
        embed_corpus(folder.name, model, out, EmbedSettings(), progress=False)
    finally:
        os.chdir(cwd)
    return out, folder


def test_embed_stores_absolute_sources(embedded):
    out, folder = embedded
    sources = pq.read_table(out / "videos.parquet").column("source").to_pylist()
    assert sources and all(os.path.isabs(s) and os.path.isfile(s) for s in sources)
    assert {os.path.dirname(s) for s in sources} == {str(folder.resolve())}


def test_index_refuses_a_users_folder_and_its_own_input(embedded, tmp_path):
    emb, _ = embedded
    keep = tmp_path / "keep"
    keep.mkdir()
    (keep / "thesis.tex").write_text("x")
    result = runner.invoke(app, ["index", str(emb), "--out", str(keep)])
    assert result.exit_code == 1 and "mmv-tf did not write it" in result.output
    assert (keep / "thesis.tex").read_text() == "x"
    for out in (emb, emb / "index", emb.parent):  # the input, inside it, around it
        result = runner.invoke(app, ["index", str(emb), "--out", str(out)])
        assert result.exit_code == 1 and "overlaps the input" in result.output
    assert (emb / "embeddings.json").is_file() and not (emb / "index").exists()
    # An index mmv-tf wrote is replaced; --overwrite replaces the user's folder on request.
    index = tmp_path / "index"
    for _ in range(2):
        assert runner.invoke(app, ["index", str(emb), "--out", str(index)]).exit_code == 0
    assert runner.invoke(app, ["index", str(emb), "--out", str(keep), "--overwrite"]).exit_code == 0
    assert not (keep / "thesis.tex").exists() and (keep / "index.json").is_file()


def test_digits_and_probe_outputs_refuse_a_users_folder(tmp_path):
    keep = tmp_path / "keep"
    keep.mkdir()
    (keep / "notes.txt").write_text("x")
    result = runner.invoke(app, ["data", "digits", "--out", str(keep), "--per-class", "2"])
    assert result.exit_code == 1 and "--overwrite" in result.output
    assert (keep / "notes.txt").read_text() == "x"
    with pytest.raises(OutputError, match="did not write it as probe"):
        check_output(keep, "probe")


def test_a_replaced_folder_never_leaves_the_path_empty(tmp_path):
    out = tmp_path / "out"
    with written_folder(out, "test") as partial:
        partial.mkdir()
        (partial / "n").write_text("0")
    seen_missing = []
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            if not (out / "n").exists():
                seen_missing.append(True)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        for number in range(1, 200):
            with atomic_path(out) as partial:
                partial.mkdir()
                (partial / "n").write_text(str(number))
    finally:
        stop.set()
        watcher.join()
    assert (out / "n").read_text() == "199" and not seen_missing
    other = tmp_path / "other"  # the one-step swap is what ran
    other.mkdir()
    assert files._exchange(other, out) and (other / "n").read_text() == "199"


def test_a_second_writer_is_refused_naming_the_first(embedded, tmp_path):
    emb, _ = embedded
    out = tmp_path / "index"
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            from mmv_tf.files import output_lock
            with output_lock({str(out)!r}):
                print("locked", flush=True)
                time.sleep(60)
        """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        cli = os.path.join(os.path.dirname(sys.executable), "mmv-tf")
        result = subprocess.run([cli, "index", str(emb), "--out", str(out)], capture_output=True, text=True,
                                timeout=300)
        assert result.returncode == 1, result.stderr
        assert f"being written by another mmv-tf run (pid {holder.pid}" in result.stderr
        assert "Traceback" not in result.stderr and not out.exists()
    finally:
        holder.kill()
        holder.wait()
    # Its lock dies with it: the next run goes ahead, and leaves no lock file behind.
    with output_lock(out), pytest.raises(OutputError, match=f"pid {os.getpid()}"), output_lock(out):
        pass
    assert not (tmp_path / ".index.lock").exists()


def test_search_refuses_an_index_of_another_model_with_the_same_spaces(embedded, small_savedmodel, tmp_path):
    emb, _ = embedded
    index = tmp_path / "index"
    assert runner.invoke(app, ["index", str(emb), "--out", str(index)]).exit_code == 0
    model = small_savedmodel[1]
    args = ["search", "--index", str(index), "--text", "a three moving up", "--json"]
    result = runner.invoke(app, [*args, "--model", str(model)])
    assert result.exit_code == 0 and json.loads(result.output)["results"]
    network, weight = small_savedmodel[0], small_savedmodel[0].trainable_variables[-1]
    original = weight.numpy()
    try:  # the same network, spaces and name with one weight changed
        weight.assign(original + 0.5)
        other = export_network(network, tmp_path / "small", training={"steps": 7, "preset": "s3dg_tiny"})
    finally:
        weight.assign(original)
    result = runner.invoke(app, [*args, "--model", str(other)])
    assert result.exit_code == 1 and "was made with model" in result.output
    assert str(other) in result.output and "embed and index again" in result.output


@pytest.mark.parametrize("query", ["😀😀", "中文查询", "the of and"])
def test_a_query_without_a_known_word_is_refused(embedded, small_savedmodel, tmp_path, query):
    emb, _ = embedded
    index = tmp_path / "index"
    assert runner.invoke(app, ["index", str(emb), "--out", str(index)]).exit_code == 0
    result = runner.invoke(app, ["search", "--model", str(small_savedmodel[1]), "--index", str(index),
                                 "--text", query, "--json"])
    assert result.exit_code == 1 and "no word of the text query" in result.output


def test_demo_workspace_reuse_checks_split_and_model(tmp_path, monkeypatch, small_savedmodel):
    from mmv_tf.app import workspace

    calls = []

    def fake_embed(src, model, out, settings):
        calls.append(("embed", settings.split))
        out.mkdir(parents=True, exist_ok=True)
        (out / "embeddings.json").write_text(json.dumps({
            "model_identity": model.identity, "source": str(src.resolve()),
            "settings": {"window_stride": None, "split": settings.split, "videos_per_part": 16}}))

    def fake_index(embeddings, out, overwrite):
        info = json.loads((embeddings / "embeddings.json").read_text())
        calls.append(("index",))
        out.mkdir(parents=True, exist_ok=True)
        (out / "index.json").write_text(json.dumps({
            "model": info["model_identity"],
            "embedding_settings": {k: info[k] for k in ("source", "settings")}}))

    monkeypatch.setattr("mmv_tf.embed.embed_corpus", fake_embed)
    monkeypatch.setattr("mmv_tf.index.build_index", fake_index)
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "manifest.jsonl").write_text("")
    model = small_savedmodel[1]
    for split in ("test", "test", None, None, "test"):
        workspace.prepare_demo(tmp_path, model, split=split, deflation=None, say=lambda _: None)
    assert calls == [("embed", "test"), ("index",), ("embed", None), ("index",), ("embed", "test"),
                     ("index",)]
