"""`mmv-tf import deepmind` on a checkpoint written in the released format (from the S3D fixture):
the SavedModel, loaded in a fresh process with TensorFlow alone, gives DeepMind's outputs; bad
checkpoints and vocabularies are refused, each with one line and no model folder."""

import json
import subprocess
import sys

import numpy as np
import PIL.Image
import pyarrow.parquet as pq
import pytest
from deepmind_pickles import write_malicious_pickle, write_released_pickle
from test_deepmind_import import reference_checkpoint
from typer.testing import CliRunner

from mmv_tf.cli.main import app
from mmv_tf.deepmind.mapping import TABLE_ROWS

runner = CliRunner()

# TensorFlow alone (tensorflow_text for the tokeniser's ops); TF32 off, as the fixture's README asks.
FRESH_PROCESS = """
import sys, numpy as np, tensorflow as tf, tensorflow_text
tf.config.experimental.enable_tensor_float_32_execution(False)
model = tf.saved_model.load(sys.argv[1])
inputs = np.load(sys.argv[2])
out = {}
for name, value in model.video(tf.constant(inputs["video"])).items(): out["video/" + name] = value
for name, value in model.audio_spectrogram(tf.constant(inputs["spectrogram"])).items():
    out["audio/" + name] = value
for name, value in model.text(tf.constant(list(inputs["texts"]))).items(): out["text/" + name] = value
np.savez(sys.argv[3], **{k: np.asarray(v) for k, v in out.items()})
"""


def write_released(fixture: str, folder):
    """(checkpoint of `fixture` written in the released format, the fixture's inputs and outputs)."""
    checkpoint, arrays = reference_checkpoint(fixture)
    path = folder / f"mmv_{fixture}.pkl"
    write_released_pickle(path, checkpoint.params, checkpoint.state)
    return path, arrays


@pytest.fixture(scope="module")
def vocabulary(tmp_path_factory):
    """Word w<row> for each row of the released table."""
    path = tmp_path_factory.mktemp("words") / "words.txt"
    path.write_text("".join(f"w{row}\n" for row in range(TABLE_ROWS)))
    return path


@pytest.fixture(scope="module")
def released(tmp_path_factory, vocabulary):
    """(S3D checkpoint in the released format, the fixture's inputs and outputs, vocabulary file)."""
    return *write_released("s3d", tmp_path_factory.mktemp("released")), vocabulary


def one_line_error(result) -> str:
    errors = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert result.exit_code == 1 and len(errors) == 1 and "Traceback" not in result.output, result.output
    return errors[0]


@pytest.mark.parametrize("fixture,backbone", [("s3d", "s3dg"), ("tsm_resnet_x1", "tsm_resnet50"),
                                              ("tsm_resnet_x2", "tsm_resnet50x2")])
def test_imported_model_gives_deepminds_outputs_in_a_fresh_process(fixture, backbone, vocabulary, tmp_path):
    path, arrays = write_released(fixture, tmp_path)
    out = tmp_path / "model"
    result = runner.invoke(app, ["import", "deepmind", str(path), "--out", str(out), "--vocabulary",
                                 str(vocabulary), "--frames", "8", "--mel-bins", "40"])
    assert result.exit_code == 0, result.output
    assert f"imported {backbone}" in result.output and "dropped" in result.output
    meta = json.loads((out / "mmv_tf.json").read_text())
    source = meta["source"]
    assert source["licence"] == "CC BY-NC 4.0" and source["backbone"] == backbone
    assert len(source["sha256"]) == 64 and source["checkpoint"] == str(path.resolve())
    assert sorted(meta["signatures"]) == ["audio", "audio_spectrogram", "text", "video"]
    assert meta["pair_spaces"]["text-video"] == "vat" and meta["spaces"]["text"] == {"va": 512, "vat": 256}
    # Words w<id> are the table's rows: each fixture row of ids becomes a sentence.
    texts = [" ".join(f"w{i}" for i in row if i != 0) for row in arrays["in/word_ids"]]
    np.savez(tmp_path / "inputs.npz", video=arrays["in/video"], spectrogram=arrays["in/audio_spectrogram"],
             texts=np.array(texts))
    subprocess.run([sys.executable, "-c", FRESH_PROCESS, str(out), str(tmp_path / "inputs.npz"),
                    str(tmp_path / "outputs.npz")], check=True, cwd=tmp_path)
    got = dict(np.load(tmp_path / "outputs.npz"))
    names = [f"{m}/{s}" for m in ("video", "audio", "text") for s in ("before_head", "va", "vat")]
    assert sorted(got) == sorted(names)
    for name in names:
        want = arrays[name]
        np.testing.assert_allclose(got[name], want, rtol=0, atol=2e-3 * np.abs(want).max(), err_msg=name)


def test_without_a_vocabulary_the_text_signature_is_left_out(released, tmp_path):
    path, _, _ = released
    out = tmp_path / "model"
    result = runner.invoke(app, ["import", "deepmind", str(path), "--out", str(out), "--frames", "8"])
    assert result.exit_code == 0, result.output
    assert "no text signature" in result.output and "word list is not public" in result.output
    meta = json.loads((out / "mmv_tf.json").read_text())
    assert "text" not in meta["signatures"] and "text" not in meta["spaces"]
    assert all("text" not in pair for pair in meta["pair_spaces"])


def test_bad_checkpoints_and_vocabularies_are_refused_and_write_nothing(released, tmp_path):
    path, _, vocabulary = released
    out = tmp_path / "model"
    marker = tmp_path / "ran"
    malicious = tmp_path / "evil.pkl"
    write_malicious_pickle(malicious, marker)
    assert "system" in one_line_error(runner.invoke(app, ["import", "deepmind", str(malicious), "--out",
                                                          str(out)]))
    assert not marker.exists()
    truncated = tmp_path / "truncated.pkl"
    truncated.write_bytes(path.read_bytes()[:4096])
    assert str(truncated) in one_line_error(runner.invoke(app, ["import", "deepmind", str(truncated),
                                                                "--out", str(out)]))
    short = tmp_path / "short.txt"
    short.write_text("".join(vocabulary.read_text().splitlines(keepends=True)[:100]))
    assert "has 100 lines" in one_line_error(runner.invoke(
        app, ["import", "deepmind", str(path), "--out", str(out), "--vocabulary", str(short)]))
    assert "holds a s3dg network, not tsm_resnet50" in one_line_error(runner.invoke(
        app, ["import", "deepmind", str(path), "--out", str(out), "--backbone", "tsm_resnet50"]))
    assert not out.exists() and not list(tmp_path.glob(".*"))


@pytest.mark.parametrize("fixture", ["s3d", "tsm_resnet_x1"])
def test_an_imported_network_deflates_into_an_image_model(fixture, tmp_path):
    """Naive deflation of the released S3D-G (space-to-depth stem) and TSM (released shift): on a
    static clip the image tower sees what the video tower sees, so their vat embeddings agree."""
    from mmv_tf.deepmind.mapping import assign_released_weights, build_released_network, detect_backbone
    from mmv_tf.deflation import DeflationSettings, deflate
    from mmv_tf.export import export_image_network
    from mmv_tf.saved_model import ExportedModel

    checkpoint, arrays = reference_checkpoint(fixture)
    network = build_released_network(detect_backbone(checkpoint.params), {"video": {"num_frames": 32}})
    assign_released_weights(checkpoint, network)
    image_network, report = deflate(network, None, DeflationSettings(mode="naive", tsm_shift="alpha",
                                                                     tsm_alpha=1.0))
    metadata = {"name": fixture, "spaces": {}, "video": {"image_size": 64}}
    out = export_image_network(image_network, tmp_path / "image", source_metadata=metadata,
                               deflation=report)
    image = arrays["in/video"][:, 3]
    still = np.repeat(image[:, None], 32, axis=1)  # long enough for its ends to matter little
    video_vat = np.asarray(network({"video": still}, training=False)["video"]["vat"])[0]
    image_vat = ExportedModel(out).embed_images(image)["vat"][0]
    cosine = video_vat @ image_vat / np.linalg.norm(video_vat) / np.linalg.norm(image_vat)
    assert cosine > 0.9, cosine


def test_an_imported_model_serves_every_command(imported_s3d, demo, tmp_path):
    """The imported S3D-G model as `--model` of embed, index, search, the app's search service,
    demo, evaluate retrieval and classify."""
    import shutil
    import socket
    import urllib.request

    from mmv_tf.app import search_app

    model = imported_s3d[0]
    media = tmp_path / "media"
    media.mkdir()
    records = [json.loads(line) for line in (demo / "manifest.jsonl").read_text().splitlines()][:2]
    for record in records:
        shutil.copy(demo / record["video"], media)
    for args in (["embed", media, "--model", model, "--out", tmp_path / "emb"],
                 ["index", tmp_path / "emb", "--out", tmp_path / "index"]):
        result = runner.invoke(app, [str(a) for a in args])
        assert result.exit_code == 0, result.output
    query = media / records[0]["video"].split("/")[-1]
    result = runner.invoke(app, ["search", "--index", str(tmp_path / "index"), "--model", str(model),
                                 "--video", str(query), "--target", "audio", "--k", "3", "--json"])
    assert result.exit_code == 0, result.output
    found = json.loads(result.output)
    assert found["query"]["space"] == "va" and len(found["results"]) == 3
    service = search_app.SearchService(model, tmp_path / "index", tmp_path / "clips")
    space, hits = service.query("text", "w17 w23 w5", "video", k=2)  # words of the table's rows
    assert space == "vat" and len(hits) == 2 and all(hit.clip for hit in hits)

    # demo: a workspace whose corpus exists, embedded (test split) and indexed with the model, served.
    workspace = tmp_path / "workspace"
    shutil.copytree(demo, workspace / "corpus")
    result = runner.invoke(app, ["demo", "--dir", str(workspace), "--model", str(model), "--deflation",
                                 "none", "--prepare-only"])  # deflation: test_an_imported_network_deflates
    assert result.exit_code == 0 and "reusing" in result.output, result.output
    test_videos = sum(json.loads(line)["split"] == "test"
                      for line in (demo / "manifest.jsonl").read_text().splitlines())
    indexed = pq.read_table(workspace / "index" / "items.parquet").column("video_id").to_pylist()
    assert len(set(indexed)) == test_videos
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    page, url = search_app.serve(model, workspace / "index", port=port, block=False)
    try:
        assert urllib.request.urlopen(url, timeout=30).status == 200
    finally:
        page.close()

    for args in (["data", "captions", demo, "--out", tmp_path / "captions"],
                 ["evaluate", "retrieval", tmp_path / "captions", "--model", model, "--out",
                  tmp_path / "retrieval", "--json"]):
        result = runner.invoke(app, [str(a) for a in args])
        assert result.exit_code == 0, result.output
    scores = json.loads(result.output[result.output.index("{\n"):])
    assert scores["captions"] > 0 and scores["space"] == "vat"
    assert scores["text_to_video"]["chance"]["R@10"] == min(10 / scores["clips"], 1)

    images = tmp_path / "images"
    for label, colour in (("red", (1, 0, 0)), ("blue", (0, 0, 1))):
        (images / label).mkdir(parents=True)
        for i in range(4):
            picture = np.clip(np.array(colour) * (0.6 + 0.1 * i) + np.zeros((48, 48, 3)), 0, 1)
            PIL.Image.fromarray((picture * 255).astype(np.uint8)).save(images / label / f"{i}.png")
    result = runner.invoke(app, ["classify", "fit", str(images), "--model", str(model),
                                 "--out", str(tmp_path / "probe"), "--held-out", "0.5", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    # DeepMind's seeded weights are untrained: the figures are chance-level; the run is complete.
    assert summary["classes"] == ["blue", "red"] and summary["images"] == {"fit": 4, "held_out": 4}
    assert summary["chance"] == 0.5 and summary["zero_shot_space"] == "vat"
    assert (tmp_path / "probe" / "probe.npz").is_file()
