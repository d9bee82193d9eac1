"""Deflation (video towers as image towers), its export, and image classification."""

import json
import subprocess
import sys

import keras
import numpy as np
import pytest
from conftest import SMALL_MODEL
from PIL import Image
from typer.testing import CliRunner

from mmv_tf.cli.main import app
from mmv_tf.data import synth
from mmv_tf.deflation import (
    DeflationError,
    DeflationSettings,
    ImageMMV,
    carry_weights,
    deflate,
    image_backbone_for,
    static_videos,
)
from mmv_tf.export import export_image_network
from mmv_tf.images import ImageFolderError, read_image_folder, read_labelled_folder
from mmv_tf.models.presets import from_preset
from mmv_tf.models.s3dg import S3DG, MaxPool3D, SelfGating
from mmv_tf.models.tsm import DeflatedShift, TSMResNet
from mmv_tf.saved_model import load_network, read_metadata


def deflated_with_random_bn(video_tower):
    """(video tower with BN away from identity, its naive deflation)."""
    randomise_batch_norm(video_tower)
    image_tower = image_backbone_for(video_tower)
    carry_weights(video_tower, image_tower)
    return video_tower, image_tower


def randomise_batch_norm(tower, seed=0):
    """Moving statistics and BN parameters away from identity, so that they are tested too."""
    rng = np.random.default_rng(seed)
    for weight in tower.weights:
        if weight.path.endswith("moving_variance") or weight.path.endswith("gamma"):
            weight.assign(rng.uniform(0.5, 2.0, weight.shape))
        elif weight.path.endswith("moving_mean") or weight.path.endswith("beta"):
            weight.assign(rng.normal(0, 0.3, weight.shape))


def layer_output(tower, name, inputs):
    return keras.ops.convert_to_numpy(keras.Model(tower.input, tower.get_layer(name).output)(inputs))


def textures(count, size, seed=0):
    rng = np.random.default_rng(seed)
    return np.stack([synth.background(rng, size) for _ in range(count)]).astype("float32")


S3DG_UNITS = ["Conv2d_1a_conv_relu", "MaxPool_2a", "Conv2d_2b_conv_relu", "Conv2d_2c_spatial_relu",
              "Conv2d_2c_temporal_relu"]


def test_deflated_s3dg_units_equal_the_3d_units_on_a_static_video():
    video_tower, image_tower = deflated_with_random_bn(S3DG(num_frames=24, width=0.125))
    images = np.random.default_rng(1).uniform(size=(2, 32, 32, 3)).astype("float32")
    videos = static_videos(images, 24)
    for name in S3DG_UNITS:  # up to the first gating, whose mean over time sees the clip ends
        from_video = layer_output(video_tower, name, videos)
        middle = from_video[:, from_video.shape[1] // 2]  # far from the temporal padding
        np.testing.assert_allclose(layer_output(image_tower, name, images), middle, atol=2e-5,
                                   err_msg=name)
    features = np.random.default_rng(2).normal(size=(2, 8, 8, 6)).astype("float32")
    gating = SelfGating()
    gating.build((None, 6, 8, 8, 6))
    repeated = np.repeat(features[:, None], 6, axis=1)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(gating(features)),
                               keras.ops.convert_to_numpy(gating(repeated))[:, 3], atol=1e-6)
    pooled = MaxPool3D((3, 3, 3), (2, 2, 2))(repeated)
    np.testing.assert_allclose(keras.layers.MaxPooling2D(3, 2, padding="same")(features),
                               keras.ops.convert_to_numpy(pooled)[:, 1], atol=1e-6)
    # Over the whole network, the clip ends do matter: that is the gap BN tuning closes.
    gap = np.abs(keras.ops.convert_to_numpy(image_tower(images)) -
                 keras.ops.convert_to_numpy(video_tower(videos))).mean()
    assert gap > 1e-3


def test_deflated_tsm_equals_the_video_tower_per_frame_away_from_the_clip_ends():
    video_tower, image_tower = deflated_with_random_bn(TSMResNet(num_frames=40, width=0.125))
    images = np.random.default_rng(3).uniform(size=(1, 32, 32, 3)).astype("float32")
    per_frame = layer_output(video_tower, "mean_hw", static_videos(images, 40))  # [40, C]
    # 16 blocks each shift by one frame: frame 20 never sees the zero padding of either end.
    np.testing.assert_allclose(keras.ops.convert_to_numpy(image_tower(images)), per_frame[20:21],
                               rtol=1e-4, atol=1e-5)
    alpha_tower = image_backbone_for(video_tower, DeflationSettings(tsm_shift="alpha", tsm_alpha=0.3))
    assert sum(isinstance(layer, DeflatedShift) for layer in alpha_tower.layers) == 16
    x = np.arange(16, dtype="float32").reshape(1, 1, 1, 16)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(DeflatedShift(0.125, 0.3)(x))[0, 0, 0],
                               [0.6, 0.9, 0.0, 0.3, *range(4, 16)], atol=1e-6)


def test_bn_tuning_lowers_the_l1_gap_and_touches_only_bn_parameters(small_word_vectors):
    network = from_preset("s3dg_tiny", SMALL_MODEL, small_word_vectors)
    randomise_batch_norm(network.video_encoder)
    images = textures(60, 32)
    settings = DeflationSettings(mode="bn", epochs=3, batch_size=16, learning_rate=0.01)
    image_network, report = deflate(network, images, settings, verbose=0)
    assert report["images"] == {"tuning": 48, "held_out": 12}
    assert report["l1_tuned"] < 0.8 * report["l1_naive"], report
    naive, _ = deflate(network, None, DeflationSettings(mode="naive"))
    changed = set()
    for layer in image_network.image_encoder.layers:
        for tuned, before in zip(layer.weights, naive.image_encoder.get_layer(layer.name).weights):
            if not np.allclose(keras.ops.convert_to_numpy(tuned), keras.ops.convert_to_numpy(before)):
                changed.add(tuned.path.rsplit("/", 1)[-1])
    assert changed == {"gamma", "beta"}  # not the kernels, not the moving statistics
    outputs = image_network(images[:2])
    assert sorted(outputs) == ["before_head", "va", "vat"] and outputs["vat"].shape == (2, 16)


FRESH_PROCESS = """
import sys
import numpy as np
import tensorflow as tf
import tensorflow_text  # noqa: F401
model = tf.saved_model.load(sys.argv[1])
images = np.load(sys.argv[2])
out = {f"image_{k}": v.numpy() for k, v in model.image(tf.constant(images)).items()}
out.update({f"text_{k}": v.numpy() for k, v in model.text(tf.constant(["three up"])).items()})
np.savez(sys.argv[3], **out)
"""


def test_exported_image_model_reloads_in_a_fresh_process_and_matches_keras(small_savedmodel, tmp_path):
    network, source = small_savedmodel
    image_network, report = deflate(network, None, DeflationSettings(mode="naive"))
    path = export_image_network(image_network, tmp_path / "image", source_metadata=read_metadata(source),
                                deflation=report)
    images = np.random.default_rng(4).uniform(size=(3, 40, 48, 3)).astype("float32")
    np.save(tmp_path / "images.npy", images)
    subprocess.run([sys.executable, "-c", FRESH_PROCESS, str(path), str(tmp_path / "images.npy"),
                    str(tmp_path / "out.npz")], check=True, cwd=tmp_path)
    got = dict(np.load(tmp_path / "out.npz"))
    want = {f"image_{k}": keras.ops.convert_to_numpy(v) for k, v in image_network(images).items()}
    for name, value in want.items():
        np.testing.assert_allclose(got[name], value, rtol=1e-4, atol=1e-5, err_msg=name)
    assert sorted(got) == ["image_before_head", "image_va", "image_vat", "text_before_head", "text_vat"]
    meta = read_metadata(path)
    assert meta["spaces"] == {"image": {"va": 32, "vat": 16}, "text": {"vat": 16}}
    assert meta["deflation"]["mode"] == "naive" and sorted(meta["signatures"]) == ["image", "text"]
    assert isinstance(load_network(path), ImageMMV)


def test_deflation_refuses_unknown_backbones_and_too_few_images(small_savedmodel):
    network, _ = small_savedmodel
    with pytest.raises(DeflationError, match="cannot deflate a AudioResNet video tower"):
        image_backbone_for(network.audio_encoder)
    with pytest.raises(DeflationError, match="needs images"):
        deflate(network, None, DeflationSettings(mode="bn"))
    with pytest.raises(DeflationError, match="at least 10 images"):
        deflate(network, textures(3, 32), DeflationSettings(mode="bn"))
    with pytest.raises(DeflationError, match="mode must be one of"):
        deflate(network, None, DeflationSettings(mode="fancy"))


def test_image_folders_convert_skip_and_refuse_with_messages(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    Image.new("L", (40, 30), 128).save(folder / "grey.png")
    Image.new("RGBA", (30, 40), (255, 0, 0, 100)).save(folder / "alpha.png")
    Image.new("RGB", (50, 50), (0, 255, 0)).save(folder / "green.jpg")
    (folder / "broken.png").write_bytes(b"not a png")
    loaded = read_image_folder(folder, 16)
    assert loaded.images.shape == (3, 16, 16, 3) and loaded.images.dtype == np.float32
    assert [p.name for p in loaded.paths] == ["alpha.png", "green.jpg", "grey.png"]
    np.testing.assert_allclose(loaded.images[2], 128 / 255, atol=1e-6)  # grey replicated to RGB
    assert any("broken.png" in note for note in loaded.notes)
    assert "converted 1 L image(s) to RGB" in loaded.notes
    assert "converted 1 RGBA image(s) to RGB (alpha dropped)" in loaded.notes
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ImageFolderError, match="holds no readable image"):
        read_image_folder(empty, 16)
    labelled = tmp_path / "labelled"
    for name, count in (("cat", 2), ("dog", 1)):
        (labelled / name).mkdir(parents=True)
        for i in range(count):
            Image.new("RGB", (20, 20), (i, 0, 0)).save(labelled / name / f"{i}.png")
    with pytest.raises(ImageFolderError, match="dog has 1 readable image"):
        read_labelled_folder(labelled, 16)


def test_cli_deflate_then_classify_with_probe_and_zero_shot(demo, tmp_path):
    """The default model, naively deflated, classifies still digits it never saw (test-split digit
    images) well above chance, and the saved probe predicts as the fitted one was scored."""
    from mmv_tf.classify import held_out_split

    runner = CliRunner()

    def run(*args):
        result = runner.invoke(app, [str(a) for a in args])
        assert result.exit_code == 0, result.output
        return result.output

    digits, image = tmp_path / "digits", tmp_path / "image"
    run("data", "digits", "--out", digits, "--per-class", 20)
    assert sorted(p.name for p in digits.iterdir() if p.is_dir()) == sorted(synth.DIGIT_WORDS)
    output = run("deflate", "--out", image, "--images", demo, "--frames", 40, "--mode", "naive")
    gap = float(output.split("L1 gap to the video net on 8 held-out images: naive ")[1].split()[0])
    assert 0.01 < gap < 0.3, output  # the clip ends' zero padding, which BN tuning narrows
    deflation = read_metadata(image)["deflation"]
    assert deflation["mode"] == "naive" and deflation["images"] == {"tuning": 32, "held_out": 8}
    output = run("classify", "fit", digits, "--model", image, "--out", tmp_path / "probe", "--json")
    summary = json.loads(output[output.index("{"):])
    assert summary["images"] == {"fit": 150, "held_out": 50} and summary["chance"] == 0.1
    assert summary["zero_shot_space"] == "vat"
    # Measured (seeds 0, 2-core AMD EPYC): probe 0.48, zero-shot 0.24 on the 50 held-out images.
    assert summary["linear_probe_accuracy"] >= 0.4, summary
    assert summary["zero_shot_accuracy"] >= 0.18, summary
    # The saved probe, through `classify predict`, scores the held-out images as `fit` reported.
    loaded, labels, classes = read_labelled_folder(digits, 64)
    _, held_out = held_out_split(labels, 0.25, seed=0)
    output = run("classify", "predict", "--probe", tmp_path / "probe",
                 *[loaded.paths[i] for i in held_out])
    predicted = dict(line.split("\t") for line in output.strip().splitlines() if "\t" in line)
    assert len(predicted) == len(held_out) == 50
    correct = [predicted[str(loaded.paths[i])] == classes[labels[i]] for i in held_out]
    assert np.mean(correct) == pytest.approx(summary["linear_probe_accuracy"])
    refused = runner.invoke(app, ["deflate", "--model", str(image), "--out", str(tmp_path / "again")])
    assert refused.exit_code == 1 and "not a video model" in refused.output
