"""The video towers in the form of DeepMind's released MMV checkpoints, checked against DeepMind's own
per-layer outputs: the S3D-G space-to-depth stem and the TSM channel layout.

`fixtures/deepmind/released_video_ref.npz` holds small crops of the reference fixtures
`mmv_s3d_ref.npz` and `mmv_tsm_resnet_x1_ref.npz` (shared/reference/deepmind, README there: DeepMind's
model run in inference mode on seeded weights):
- `s3d/video`: `in/video[:, :, :16, :16]` (RGB in [0, 1]); `s3d/video_model`: `in/video_model[:, :, :8, :8]`
  (the same pixels after DeepMind's space-to-depth); `s3d/Conv2d_1a_7x7`:
  `endpoint/.../S3D/Conv2d_1a_7x7[:, :, :6, :6]` (conv, BN, ReLU; the positions the crop determines);
- `tsm/max_pool`: `endpoint/.../TSMResNetV2/max_pool[:, :6, :6]` (8 frames), `tsm/tsm_resnet_unit_0`:
  `endpoint/.../tsm_resnet_unit_0[:, :3, :3]` (3 blocks of 3x3 convs: the positions the crop determines);
- `<tower>/state/<module>/~/{mean,var}_ema/average`: the BN statistics of those layers, copied;
- `meta` (json): the seed, the rule that redraws every parameter, the parameter shapes of those layers,
  and DeepMind's video backbone parameter counts (`meta.param_counts.video_backbone` of the three files).
"""

import json
from pathlib import Path

import keras
import numpy as np
import pytest
import spec_counts
from test_deepmind_import import draw_leaf
from test_deflation import layer_output, randomise_batch_norm

from mmv_tf.deflation import carry_weights, static_videos
from mmv_tf.models.presets import PRESETS, build_video_encoder, preset_config
from mmv_tf.models.resnet_v2 import _bottleneck
from mmv_tf.models.s3dg import S3DG, S3DGImage, SpaceToDepth
from mmv_tf.models.tsm import DeflatedShift, FramesToBatch, TemporalShift, TSMResNet, TSMResNetImage

FIXTURE = Path(__file__).parent / "fixtures" / "deepmind" / "released_video_ref.npz"
S3D = "text_audio_video/visual_module/~/S3D"
TSM = "text_audio_video/visual_module/~/TSMResNetV2"


@pytest.fixture(scope="module")
def reference():
    with np.load(FIXTURE) as npz:
        arrays = {key: npz[key] for key in npz.files}
    return arrays, json.loads(str(arrays.pop("meta")))


pytestmark = pytest.mark.usefixtures("no_tf32")


def numpy(x):
    return keras.ops.convert_to_numpy(x)


def draw(meta, name):
    """Parameter `name` (module/leaf) as the reference run drew it (`meta["param_rule"]`)."""
    tower = "s3d" if name.startswith(S3D) else "tsm"
    return draw_leaf(meta["seed"], name, tuple(meta["param_shapes"][tower][name]))


def batch_norm_weights(arrays, meta, module):
    """Keras BN weights [gamma, beta, moving mean, moving variance] of DeepMind BN `module`."""
    tower = "s3d" if module.startswith(S3D) else "tsm"
    stat = [arrays[f"{tower}/state/{module}/~/{s}_ema/average"].reshape(-1) for s in ("mean", "var")]
    return [draw(meta, f"{module}/scale").reshape(-1), draw(meta, f"{module}/offset").reshape(-1), *stat]


def test_space_to_depth_rearranges_the_clip_as_deepmind_did(reference):
    arrays, _ = reference
    layer = SpaceToDepth()
    got = numpy(layer(arrays["s3d/video"]))
    np.testing.assert_array_equal(got, arrays["s3d/video_model"])
    assert layer.compute_output_shape((None, 8, None, 16, 3)) == (None, 4, None, 8, 24)
    assert SpaceToDepth.from_config(layer.get_config()).video
    # Channel ((t*2 + h)*2 + w)*3 + c holds pixel (2i+t, 2j+h, 2k+w), colour c.
    video = arrays["s3d/video"]
    for t, h, w, c in [(0, 0, 0, 0), (1, 0, 0, 2), (0, 1, 1, 1), (1, 1, 0, 0), (1, 1, 1, 2)]:
        np.testing.assert_array_equal(got[0, 2, 3, 1, ((t * 2 + h) * 2 + w) * 3 + c],
                                      video[0, 4 + t, 6 + h, 2 + w, c])
    for shape in [(1, 7, 16, 16, 3), (1, 8, 15, 16, 3), (1, 8, 16, 9, 3)]:
        with pytest.raises(ValueError, match="space_to_depth stem needs even T, H and W"):
            layer(np.zeros(shape, "float32"))
    with pytest.raises(ValueError, match="even num_frames"):
        S3DG(num_frames=7, width=0.125, stem="space_to_depth")
    with pytest.raises(ValueError, match="stem must be one of"):
        S3DG(num_frames=8, width=0.125, stem="s2d")


def test_space_to_depth_stem_reproduces_deepmind_conv2d_1a(reference):
    """RGB frames in, DeepMind's Conv2d_1a_7x7 (space-to-depth, (2,4,4) conv, BN, ReLU) out."""
    arrays, meta = reference
    tower = S3DG(num_frames=8, width=1.0, stem="space_to_depth")
    conv = tower.get_layer("Conv2d_1a_conv")
    assert tuple(conv.kernel.shape) == (2, 4, 4, 24, 64) and conv.strides == (1, 1, 1)
    conv.set_weights([draw(meta, f"{S3D}/Conv2d_1a_7x7/~/conv3_d/w")])
    tower.get_layer("Conv2d_1a_conv_bn").set_weights(
        batch_norm_weights(arrays, meta, f"{S3D}/Conv2d_1a_7x7/__cross_replica_batch_norm"))
    stem = keras.Model(tower.input, tower.get_layer("Conv2d_1a_conv_relu").output)
    got = numpy(stem(arrays["s3d/video"], training=False))
    want = arrays["s3d/Conv2d_1a_7x7"]
    assert got.shape == (1, 4, 8, 8, 64)
    np.testing.assert_allclose(got[:, :, :6, :6], want, atol=1e-4 * np.abs(want).max())


def test_released_shift_follows_the_readme_rule_literally():
    """Of C channels and n = C/8: output [0,n) = input [C-n,C) from frame t+1; [n,C-n) unshifted;
    [C-n,C) = input [0,n) from frame t-1; zeros at the clip ends."""
    clips, frames, channels = 2, 5, 16
    n = channels // 8
    x = np.array([[[[[1000 * b + 100 * (t + 1) + c + 1 for c in range(channels)]]]
                   for t in range(frames)] for b in range(clips)], "float32")  # [B, T, 1, 1, C]
    want = np.zeros_like(x)
    for b in range(clips):
        for t in range(frames):
            for c in range(channels):
                if c < n:
                    want[b, t, 0, 0, c] = x[b, t + 1, 0, 0, channels - n + c] if t + 1 < frames else 0
                elif c >= channels - n:
                    want[b, t, 0, 0, c] = x[b, t - 1, 0, 0, c - (channels - n)] if t >= 1 else 0
                else:
                    want[b, t, 0, 0, c] = x[b, t, 0, 0, c]
    layer = TemporalShift(0.125, "released")
    got = numpy(layer(x.reshape(clips * frames, 1, 1, channels), x)).reshape(x.shape)
    np.testing.assert_array_equal(got, want)
    assert TemporalShift.from_config(layer.get_config()).layout == "released"
    # The mmv-tf layout moves other channels: [0,n) from t-1, [n,2n) from t+1.
    other = numpy(TemporalShift()(x.reshape(clips * frames, 1, 1, channels), x)).reshape(x.shape)
    assert not np.array_equal(other, want)
    np.testing.assert_array_equal(other[:, 1:, ..., :n], x[:, :-1, ..., :n])
    with pytest.raises(ValueError, match="shift layout must be one of"):
        TemporalShift(layout="deepmind")


@pytest.mark.parametrize("layout", ["released", "mmv_tf"])
def test_tsm_unit_0_with_the_released_shift_reproduces_deepmind(reference, layout):
    """DeepMind's tsm_resnet_unit_0 (3 pre-activation blocks, each shifting before conv_0) on its own
    max_pool output, rebuilt from mmv-tf blocks: only the released layout matches."""
    arrays, meta = reference
    clip = keras.Input((None, None, None, 64))  # [B, T, H, W, C]: the shifts read T from it
    x = FramesToBatch()(clip)
    for block in range(3):
        x = _bottleneck(x, 256, 1, sync_bn=False, name=f"stage1_block{block + 1}",
                        shift=lambda name: lambda h: TemporalShift(0.125, layout, name=name)(h, clip))
    unit = keras.Model(clip, x)
    for block in range(3):
        source = f"{TSM}/tsm_resnet_unit_0/block_{block}"
        target = f"stage1_block{block + 1}"
        for keras_bn, suffix in (("preact_bn", ""), ("bn1", "_1"), ("bn2", "_2")):
            unit.get_layer(f"{target}_{keras_bn}").set_weights(
                batch_norm_weights(arrays, meta, f"{source}/__cross_replica_batch_norm{suffix}"))
        convs = {"conv1": "conv_0", "conv2": "conv_1", "conv3": "conv_2"}
        if block == 0:
            convs["shortcut"] = "shortcut_conv"
        for keras_conv, conv in convs.items():
            unit.get_layer(f"{target}_{keras_conv}").set_weights([draw(meta, f"{source}/{conv}/w")])
    got = numpy(unit(arrays["tsm/max_pool"][None], training=False))[:, :3, :3]  # one clip of 8 frames
    want = arrays["tsm/tsm_resnet_unit_0"]
    error = np.abs(got - want).max() / np.abs(want).max()
    if layout == "released":
        assert error < 1e-4
    else:
        assert error > 0.1


def test_spec_counts_equal_deepmind_video_backbone_parameter_counts(reference):
    _, meta = reference
    counts = meta["video_backbone_params"]
    assert spec_counts.s3dg("space_to_depth") == counts["mmv_s3d_ref.npz"]
    stem_kernels = {"conv": 7 * 7 * 7 * 3 * 64, "space_to_depth": 2 * 4 * 4 * 24 * 64}
    assert (spec_counts.s3dg("conv") - spec_counts.s3dg("space_to_depth")
            == stem_kernels["conv"] - stem_kernels["space_to_depth"])
    assert spec_counts.resnet50_v2(3) == counts["mmv_tsm_resnet_x1_ref.npz"]
    assert spec_counts.resnet50_v2(3, width=2) == counts["mmv_tsm_resnet_x2_ref.npz"]


def test_paper_presets_are_in_the_released_form_and_tiny_presets_keep_theirs():
    for name in ("s3dg", "tsm_resnet50", "tsm_resnet50x2"):
        video = preset_config(name).video
        assert (video.stem, video.shift_layout) == ("space_to_depth", "released")
    for name in (name for name in PRESETS if name.endswith("_tiny")):
        video = preset_config(name).video
        assert (video.stem, video.shift_layout) == ("conv", "mmv_tf")
    small = {"video": {"width": 0.125, "num_frames": 4}}
    s3dg = build_video_encoder(preset_config("s3dg", small).video)
    assert s3dg.get_config()["stem"] == "space_to_depth"
    assert tuple(s3dg.get_layer("Conv2d_1a_conv").kernel.shape) == (2, 4, 4, 24, 8)
    clip = np.random.default_rng(0).uniform(size=(2, 4, 32, 32, 3)).astype("float32")
    assert s3dg(clip).shape == (2, 128)
    again = S3DG.from_config(s3dg.get_config())
    again.set_weights(s3dg.get_weights())
    np.testing.assert_allclose(numpy(again(clip)), numpy(s3dg(clip)), rtol=1e-5, atol=1e-6)
    tsm = build_video_encoder(preset_config("tsm_resnet50", small).video)
    shifts = [layer for layer in tsm.layers if isinstance(layer, TemporalShift)]
    assert len(shifts) == 16 and {layer.layout for layer in shifts} == {"released"}
    assert TSMResNet.from_config(tsm.get_config()).get_config()["shift_layout"] == "released"
    tiny = build_video_encoder(preset_config("s3dg_tiny", small).video)
    assert tuple(tiny.get_layer("Conv2d_1a_conv").kernel.shape) == (7, 7, 7, 3, 8)


def test_deflated_space_to_depth_s3dg_equals_the_video_tower_on_a_static_video():
    """The image is rearranged as its static two-frame clip would be, and Conv2d_1a's (2,4,4)
    kernel summed over time (carry_weights) gives what the video tower computes away from the ends."""
    video_tower = S3DG(num_frames=12, width=0.125, stem="space_to_depth")
    randomise_batch_norm(video_tower)
    image_tower = S3DGImage(width=0.125, stem="space_to_depth")
    carry_weights(video_tower, image_tower)
    assert tuple(image_tower.get_layer("Conv2d_1a_conv").kernel.shape) == (4, 4, 24, 8)
    images = np.random.default_rng(1).uniform(size=(2, 32, 32, 3)).astype("float32")
    videos = static_videos(images, 12)
    for name in ["Conv2d_1a_space_to_depth", "Conv2d_1a_conv_relu", "MaxPool_2a",
                 "Conv2d_2b_conv_relu", "Conv2d_2c_spatial_relu", "Conv2d_2c_temporal_relu"]:
        from_video = layer_output(video_tower, name, videos)  # 6 steps after space-to-depth
        np.testing.assert_allclose(layer_output(image_tower, name, images), from_video[:, 3],
                                   atol=2e-5, err_msg=name)
    with pytest.raises(ValueError, match="space_to_depth stem needs even H and W"):
        image_tower(np.zeros((1, 31, 32, 3), "float32"))


def test_deflated_released_tsm_swaps_the_shifted_groups():
    """With the released layout a static clip's shift swaps channels [0,n) and [C-n,C): the "alpha"
    deflation at alpha 1 is exact away from the clip ends, and dropping the shift is not."""
    video_tower = TSMResNet(num_frames=40, width=0.125, shift_layout="released")
    randomise_batch_norm(video_tower)
    images = np.random.default_rng(3).uniform(size=(1, 32, 32, 3)).astype("float32")
    per_frame = layer_output(video_tower, "mean_hw", static_videos(images, 40))[20:21]
    swapped = TSMResNetImage(width=0.125, shift="alpha", alpha=1.0, shift_layout="released")
    removed = TSMResNetImage(width=0.125, shift="remove", shift_layout="released")
    for image_tower in (swapped, removed):
        carry_weights(video_tower, image_tower)
    np.testing.assert_allclose(numpy(swapped(images)), per_frame, rtol=1e-4, atol=1e-5)
    assert np.abs(numpy(removed(images)) - per_frame).max() > 1e-3
    x = np.arange(16, dtype="float32").reshape(1, 1, 1, 16)
    np.testing.assert_allclose(numpy(DeflatedShift(0.125, 0.5, "released")(x))[0, 0, 0],
                               [7.0, 7.5, *range(2, 14), 0.0, 0.5], atol=1e-6)
