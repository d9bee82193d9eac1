"""SavedModel export: TF-Hub-style signatures that reload in a fresh process and match Keras."""

import json
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from mmv_tf.cli.main import app
from mmv_tf.errors import InputError
from mmv_tf.export import ExportError, export_network
from mmv_tf.saved_model import ExportedModel, load_network, read_metadata

# Loads with TensorFlow and tensorflow_text alone: no mmv_tf, no Keras model code.
FRESH_PROCESS = """
import sys, numpy as np, tensorflow as tf, tensorflow_text
model = tf.saved_model.load(sys.argv[1])
inputs = np.load(sys.argv[2])
out = {}
for name, value in model.video(tf.constant(inputs["video"])).items(): out["video_" + name] = value
for name, value in model.audio(tf.constant(inputs["audio"])).items(): out["audio_" + name] = value
for name, value in model.audio_spectrogram(tf.constant(inputs["spectrogram"])).items():
    out["spectrogram_" + name] = value
for name, value in model.text(tf.constant(["a three moves up", "digit seven slides left"])).items():
    out["text_" + name] = value
np.savez(sys.argv[3], **{k: np.asarray(v) for k, v in out.items()})
"""


def keras_outputs(network, video, audio, texts):
    tokens = network.make_tokenizer()(np.asarray(texts))
    outputs = network({"video": video, "audio": audio, "text": tokens}, training=False)
    return {f"{m}_{name}": np.asarray(v) for m, o in outputs.items() for name, v in o.items()}


def test_savedmodel_reloads_in_a_fresh_process_and_matches_keras(small_savedmodel, tmp_path):
    network, path = small_savedmodel
    rng = np.random.default_rng(0)
    # Batch 3, 10 frames of 40x48 (the model trains on 8 of 32x32): any batch, length and size.
    video = rng.uniform(size=(3, 10, 40, 48, 3)).astype("float32")
    audio = rng.uniform(-1, 1, size=(3, 12800)).astype("float32")
    spectrogram = np.asarray(network.audio_encoder.get_layer("log_mel")(audio))  # [3, frames, bins, 1]
    np.savez(tmp_path / "inputs.npz", video=video, audio=audio, spectrogram=spectrogram)
    subprocess.run([sys.executable, "-c", FRESH_PROCESS, str(path), str(tmp_path / "inputs.npz"),
                    str(tmp_path / "outputs.npz")], check=True, cwd=tmp_path)
    got = dict(np.load(tmp_path / "outputs.npz"))
    want = keras_outputs(network, video, audio, ["a three moves up", "digit seven slides left"])
    want.update({k.replace("audio_", "spectrogram_"): v for k, v in want.items()
                 if k.startswith("audio_")})  # the audio signature's outputs, from the spectrogram
    assert sorted(got) == sorted(want) == sorted(
        ["video_before_head", "video_va", "video_vat", "audio_before_head", "audio_va", "audio_vat",
         "spectrogram_before_head", "spectrogram_va", "spectrogram_vat", "text_before_head", "text_vat"])
    for name, value in want.items():
        np.testing.assert_allclose(got[name], value, rtol=1e-4, atol=1e-5, err_msg=name)


def test_metadata_describes_inputs_spaces_and_training(small_savedmodel):
    _, path = small_savedmodel
    meta = read_metadata(path)
    assert meta["video"] == {"num_frames": 8, "fps": 10.0, "image_size": 32, "backbone": "s3dg"}
    assert meta["audio"] == {"sample_rate": 16000}
    assert meta["spaces"] == {"video": {"va": 32, "vat": 16}, "audio": {"va": 32, "vat": 16},
                              "text": {"vat": 16}}
    assert meta["pair_spaces"] == {"video-video": "va", "video-audio": "va", "video-text": "vat",
                                   "audio-video": "va", "audio-audio": "va", "audio-text": "vat",
                                   "text-video": "vat", "text-audio": "vat", "text-text": "vat"}
    assert meta["head_design"] == "fac" and meta["text"]["word_vectors"] == "test"
    assert meta["training"] == {"steps": 7, "preset": "s3dg_tiny"} and meta["preset"] == "s3dg_tiny"


def test_loaded_keras_network_equals_the_exported_one(small_savedmodel):
    network, path = small_savedmodel
    loaded = load_network(path)
    rng = np.random.default_rng(1)
    video = rng.uniform(size=(2, 8, 32, 32, 3)).astype("float32")
    audio = rng.uniform(-1, 1, size=(2, 12800)).astype("float32")
    want = keras_outputs(network, video, audio, ["three up"])
    got = keras_outputs(loaded, video, audio, ["three up"])
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-6, err_msg=name)


def test_exported_model_checks_its_inputs(small_savedmodel, tmp_path):
    _, path = small_savedmodel
    model = ExportedModel(path)
    with pytest.raises(InputError, match=r"with B, T >= 1 \(the model was trained on T = 8"):
        model.embed_video(np.zeros((1, 16, 32, 32)))
    assert model.embed_video(np.zeros((1, 16, 32, 32, 3)))["vat"].shape == (1, 16)  # any T
    with pytest.raises(InputError, match="non-empty"):
        model.embed_text(["  "])
    with pytest.raises(InputError, match="audio must have shape"):
        model.embed_audio(np.zeros(1000))
    assert model.embed_text(["three", "seven left"])["vat"].shape == (2, 16)
    with pytest.raises(ExportError, match="does not exist"):
        ExportedModel(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ExportError, match="not an mmv-tf SavedModel"):
        ExportedModel(tmp_path / "empty")
    with pytest.raises(ExportError, match="already exists"):
        export_network(load_network(path), path)
    assert json.loads((path / "mmv_tf.json").read_text())["name"] == "small"


def test_export_cli_writes_a_run_with_its_step_and_refuses_bad_runs(small_run, tmp_path):
    run = small_run[1]
    runner = CliRunner()
    result = runner.invoke(app, ["export", str(run), "--out", str(tmp_path / "model")])
    assert result.exit_code == 0, result.output
    meta = read_metadata(tmp_path / "model")
    assert meta["training"]["steps"] == 6 and meta["training"]["checkpoint"] == "ckpt-6"
    assert meta["preset"] == "s3dg_tiny" and meta["training"]["config"]["train"]["steps"] == 6
    model = ExportedModel(tmp_path / "model")
    assert model.embed_video(np.zeros((1, 8, 32, 32, 3)))["vat"].shape == (1, 16)
    for not_a_run in (tmp_path, tmp_path / "missing"):
        result = runner.invoke(app, ["export", str(not_a_run), "--out", str(tmp_path / "other")])
        assert result.exit_code == 1 and "is not a training run" in result.output
    result = runner.invoke(app, ["export", str(run), "--out", str(tmp_path / "model")])
    assert result.exit_code == 1 and "already exists" in result.output
