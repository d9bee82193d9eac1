"""Towers, heads and the MMV model: shapes, sizes, structure and parameter counts."""

import keras
import numpy as np
import pytest
import spec_counts
import tensorflow as tf

from mmv_tf.models.audio import AudioResNet, LogMelSpectrogram, mel_filterbank
from mmv_tf.models.mmv import MMV
from mmv_tf.models.presets import PRESETS, describe_model, from_preset, trainable_parameters
from mmv_tf.models.s3dg import S3DG, MaxPool3D, SelfGating
from mmv_tf.models.tsm import TemporalShift, TSMResNet

PAPER = {"s3dg": 1024, "tsm_resnet50": 2048, "tsm_resnet50x2": 4096}
TINY = [name for name in PRESETS if name.endswith("_tiny")]


def clip_inputs(model: MMV, batch=2, size=32, candidates=None, rng=None):
    rng = rng or np.random.default_rng(0)
    words = ["seven slides left", "three moves up", "", "a digit zero"]
    texts = [words[i % len(words)] for i in range(batch * (candidates or 1))]
    text = tf.constant(np.array(texts).reshape((batch, candidates) if candidates else (batch,)))
    return {
        "video": rng.uniform(size=(batch, model.num_frames, size, size, 3)).astype("float32"),
        "audio": rng.uniform(-1, 1, size=(batch, model.sample_rate // 2)).astype("float32"),
        "text": model.make_tokenizer()(text),
    }


@pytest.mark.parametrize("name", list(PAPER))
def test_paper_presets_sizes_and_parameter_counts_match_spec(name):
    model = from_preset(name)
    summary = describe_model(model)
    video_dim = PAPER[name]
    assert summary["output_dims"] == {
        "video": {"before_head": video_dim, "va": 512, "vat": 256},
        "audio": {"before_head": 2048, "va": 512, "vat": 256},
        "text": {"before_head": 2048, "va": 512, "vat": 256},
    }
    # The paper presets' video towers are in the released form: S3D-G with the space-to-depth
    # stem (Conv2d_1a kernel 2*4*4*24*64), TSM-ResNet with the released shift (no weights).
    expected_video = (spec_counts.s3dg("space_to_depth") if name == "s3dg"
                      else spec_counts.resnet50_v2(3, width=video_dim // 2048))
    assert summary["trainable_parameters"] == {
        "video": expected_video,
        "audio": spec_counts.resnet50_v2(1),
        "text": spec_counts.text(50),
        "head": spec_counts.fac_head(video_dim),
    }
    # The frozen word table is not trained: 2^16 GloVe words plus padding and OOV rows.
    table = model.text_encoder.get_layer("word_vectors")
    assert not table.trainable and table.input_dim == 65536 + 2
    outputs = model(clip_inputs(model, batch=1), training=False)
    assert outputs["video"]["before_head"].shape == (1, video_dim)
    assert outputs["audio"]["vat"].shape == (1, 256)
    assert outputs["text"]["vat"].shape == (1, 256)


@pytest.mark.parametrize("name", TINY)
def test_tiny_presets_forward_shapes_with_candidate_narrations(name, small_word_vectors):
    model = from_preset(name, word_vectors=small_word_vectors)
    config = PRESETS[name].config
    outputs = model(clip_inputs(model, batch=2, size=config.video.image_size, candidates=3),
                    training=True)
    video_dim = model.video_encoder.output_dim
    assert outputs["video"]["before_head"].shape == (2, video_dim)
    assert outputs["video"]["va"].shape == (2, config.head.va_dim)
    assert outputs["audio"]["vat"].shape == (2, config.head.vat_dim)
    assert outputs["text"]["before_head"].shape == (2, 3, config.text.output_dim)
    assert outputs["text"]["vat"].shape == (2, 3, config.head.vat_dim)
    for modality in outputs.values():
        for value in modality.values():
            assert np.all(np.isfinite(value))


@pytest.mark.parametrize("design,spaces", [
    ("shared", {"video": {"vat"}, "audio": {"vat"}, "text": {"vat"}}),
    ("disjoint", {"video": {"va", "vt"}, "audio": {"va"}, "text": {"vt"}}),
    ("fac", {"video": {"va", "vat"}, "audio": {"va", "vat"}, "text": {"vat"}}),
])
def test_head_designs_define_their_spaces(design, spaces, small_word_vectors):
    model = from_preset("s3dg_tiny", {"head": {"design": design}}, small_word_vectors)
    outputs = model(clip_inputs(model, size=32))
    assert {m: set(o) - {"before_head"} for m, o in outputs.items()} == spaces
    head = type(model.head)
    assert head.space_for("video", "audio") == ("vat" if design == "shared" else "va")
    assert head.space_for("video", "text") == ("vt" if design == "disjoint" else "vat")
    assert head.space_for("audio", "text") == (None if design == "disjoint" else "vat")


def test_fac_reaches_vat_from_relu_of_va_through_one_shared_layer(small_word_vectors):
    """vat = BN(ReLU(va) @ W) with one W and one BN for video and audio, computed here in numpy from
    the head's weights: moving statistics at inference, the batch's statistics in training."""
    model = from_preset("s3dg_tiny", word_vectors=small_word_vectors)
    inputs = clip_inputs(model, size=32)
    model(inputs, training=False)  # builds the head
    dense = model.head.va_to_vat.get_layer("va_to_vat_dense")
    bn = model.head.va_to_vat.get_layer("va_to_vat_bn")
    va_dim, vat_dim = PRESETS["s3dg_tiny"].config.head.va_dim, PRESETS["s3dg_tiny"].config.head.vat_dim
    kernels = [w for w in model.head.weights if tuple(w.shape) == (va_dim, vat_dim)]
    assert len(kernels) == 1 and not dense.use_bias  # one va -> vat layer, shared
    rng = np.random.default_rng(6)  # BN away from identity, so its four vectors are checked too
    gamma, beta = rng.uniform(0.5, 2.0, vat_dim), rng.normal(0, 0.3, vat_dim)
    mean, variance = rng.normal(0, 0.3, vat_dim), rng.uniform(0.5, 2.0, vat_dim)
    for weight, value in ((bn.gamma, gamma), (bn.beta, beta), (bn.moving_mean, mean),
                          (bn.moving_variance, variance)):
        weight.assign(value.astype("float32"))
    kernel = keras.ops.convert_to_numpy(dense.kernel).astype("float64")
    outputs = model(inputs, training=False)
    for modality in ("video", "audio"):
        va = np.asarray(outputs[modality]["va"], "float64")
        assert (va < 0).any() and (va > 0).any()  # so the ReLU matters
        hidden = np.maximum(va, 0) @ kernel
        want = (hidden - mean) / np.sqrt(variance + 1e-5) * gamma + beta
        np.testing.assert_allclose(outputs[modality]["vat"], want, rtol=1e-4, atol=1e-5, err_msg=modality)
    outputs = model(inputs, training=True)
    for modality in ("video", "audio"):  # each modality's batch normalised by its own statistics
        hidden = np.maximum(np.asarray(outputs[modality]["va"], "float64"), 0) @ kernel
        want = (hidden - hidden.mean(0)) / np.sqrt(hidden.var(0) + 1e-5) * gamma + beta
        np.testing.assert_allclose(outputs[modality]["vat"], want, rtol=1e-3, atol=1e-4, err_msg=modality)


def test_s3dg_gating_and_separable_convs_follow_the_spec():
    model = S3DG(num_frames=8, width=0.25, first_temporal_kernel=3)
    gated = sorted(layer.name for layer in model.layers if isinstance(layer, SelfGating))
    blocks = ["Mixed_3b", "Mixed_3c", "Mixed_4b", "Mixed_4c", "Mixed_4d", "Mixed_4e",
              "Mixed_4f", "Mixed_5b", "Mixed_5c"]
    expected = ["Conv2d_2c_gating"] + [f"{b}_{branch}_gating" for b in blocks
                                        for branch in ("b0_1x1", "b1_3x3", "b2_3x3", "b3_1x1")]
    assert gated == sorted(expected)
    assert tuple(model.get_layer("Conv2d_1a_conv").kernel.shape[:3]) == (3, 7, 7)
    assert tuple(model.get_layer("Conv2d_2b_conv").kernel.shape[:3]) == (1, 1, 1)
    assert tuple(model.get_layer("Conv2d_2c_spatial").kernel.shape[:3]) == (1, 3, 3)
    assert tuple(model.get_layer("Conv2d_2c_temporal").kernel.shape[:3]) == (3, 1, 1)
    assert tuple(model.get_layer("Mixed_4d_b1_3x3_temporal").kernel.shape[:3]) == (3, 1, 1)
    assert all(not layer.use_bias for layer in model.layers if hasattr(layer, "kernel_size"))
    with pytest.raises(ValueError, match="first_temporal_kernel"):
        S3DG(first_temporal_kernel=4)


def test_self_gating_scales_each_channel_by_a_sigmoid_of_its_mean():
    layer = SelfGating()
    x = np.random.default_rng(1).normal(size=(2, 3, 4, 4, 5)).astype("float32")
    y = layer(x)
    kernel, bias = (w.numpy() for w in layer.dense.weights)
    gate = 1 / (1 + np.exp(-(x.mean(axis=(1, 2, 3)) @ kernel + bias)))
    np.testing.assert_allclose(y, x * gate[:, None, None, None, :], rtol=1e-5, atol=1e-6)


def test_temporal_shift_moves_one_eighth_each_way_with_zero_ends():
    frames, channels = 4, 16
    x = np.random.default_rng(2).normal(size=(2 * frames, 3, 3, channels)).astype("float32")
    clip = np.zeros((2, frames, 1), "float32")  # the tower's input: T from its shape
    y = np.asarray(TemporalShift()(x, clip)).reshape(2, frames, 3, 3, channels)
    clips = x.reshape(2, frames, 3, 3, channels)
    n = channels // 8
    np.testing.assert_array_equal(y[:, 1:, ..., :n], clips[:, :-1, ..., :n])
    np.testing.assert_array_equal(y[:, 0, ..., :n], 0)
    np.testing.assert_array_equal(y[:, :-1, ..., n:2 * n], clips[:, 1:, ..., n:2 * n])
    np.testing.assert_array_equal(y[:, -1, ..., n:2 * n], 0)
    np.testing.assert_array_equal(y[..., 2 * n:], clips[..., 2 * n:])


def test_tsm_shortcut_is_taken_from_the_preactivation_before_the_shift():
    model = TSMResNet(num_frames=4, width=0.125)
    preact = model.get_layer("stage2_block1_preact_relu").output
    assert model.get_layer("stage2_block1_shortcut").input is preact
    assert model.get_layer("stage2_block1_shift").input[0] is preact  # [1]: the clip, for its T
    assert model.get_layer("stage2_block1_conv1").input is model.get_layer(
        "stage2_block1_shift").output
    assert model.get_layer("stage2_block1_conv2").strides == (2, 2)


@pytest.mark.parametrize("tower", [lambda t: TSMResNet(num_frames=t, width=0.125),
                                   lambda t: S3DG(num_frames=t, width=0.125)])
def test_video_towers_take_clips_of_any_length(tower):
    """A tower trained on 4 frames embeds a 6-frame clip as the same tower built for 6 frames."""
    four, six = tower(4), tower(6)
    six.set_weights(four.get_weights())
    clip = np.random.default_rng(4).uniform(size=(2, 6, 32, 32, 3)).astype("float32")
    whole, first_four = np.asarray(four(clip)), np.asarray(four(clip[:, :4]))
    np.testing.assert_allclose(whole, np.asarray(six(clip)), rtol=1e-5, atol=1e-6 * np.abs(whole).max())
    assert np.abs(whole - first_four).max() > 1e-2 * np.abs(whole).max()  # the extra frames count


def test_tsm_without_shift_treats_frames_independently():
    model = TSMResNet(num_frames=4, width=0.125, shift_fraction=0.0)
    clip = np.random.default_rng(3).uniform(size=(1, 4, 32, 32, 3)).astype("float32")
    reversed_clip = clip[:, ::-1]
    np.testing.assert_allclose(model(clip), model(reversed_clip), rtol=1e-4, atol=1e-5)
    shifted = TSMResNet(num_frames=4, width=0.125)
    shifted.set_weights(model.get_weights())
    assert not np.allclose(shifted(clip), shifted(reversed_clip), atol=1e-5)


def test_log_mel_front_end_matches_tf_signal():
    np.testing.assert_allclose(
        mel_filterbank(80, 1025, 48000, 80, 7600),
        tf.signal.linear_to_mel_weight_matrix(80, 1025, 48000, 80.0, 7600.0), atol=1e-4)
    waveform = np.random.default_rng(4).uniform(-1, 1, size=(2, 8000)).astype("float32")
    layer = LogMelSpectrogram(16000, 400, 160, num_mel_bins=40)
    stft = tf.abs(tf.signal.stft(waveform, 400, 160, 400))
    mel = tf.matmul(stft, tf.signal.linear_to_mel_weight_matrix(40, 201, 16000, 80.0, 7600.0))
    out = layer(waveform)
    assert out.shape == (2, (8000 - 400) // 160 + 1, 40, 1)
    np.testing.assert_allclose(out[..., 0], tf.math.log(1 + 1e4 * mel), rtol=1e-3, atol=1e-3)


def test_audio_tower_takes_raw_waveforms_of_any_length():
    model = AudioResNet(width=0.125, sample_rate=16000, frame_length=512, frame_step=256)
    for samples in (512, 16000, 48000):
        assert model(np.zeros((1, samples), "float32")).shape == (1, 256)


def test_text_tower_ignores_padding_and_keeps_word_vectors_frozen(small_word_vectors):
    model = from_preset("s3dg_tiny", word_vectors=small_word_vectors)
    encoder = model.text_encoder
    assert "word_vectors" not in {w.path.split("/")[-2] for w in encoder.trainable_weights}
    ids = np.array([[5, 9, 0, 0], [5, 9, 77, 3]], "int32")
    ids = np.pad(ids, [[0, 0], [0, model.max_words - 4]])
    mask = ids != 0
    padded_garbage = ids.copy()
    padded_garbage[0, 2:] = 123  # ids hidden by the mask must not matter
    out = encoder({"token_ids": ids, "padding_mask": mask})
    out_garbage = encoder({"token_ids": padded_garbage, "padding_mask": mask})
    np.testing.assert_allclose(out[0], out_garbage[0])
    empty = encoder({"token_ids": np.zeros_like(ids), "padding_mask": np.zeros_like(mask)})
    np.testing.assert_array_equal(empty, 0)
    table = encoder.get_layer("word_vectors").embeddings.numpy()
    np.testing.assert_array_equal(table[2:], small_word_vectors.vectors)
    np.testing.assert_array_equal(table[:2], 0)


def test_model_round_trips_through_a_keras_file(tmp_path, small_word_vectors):
    model = from_preset("tsm_resnet50_tiny", {"head": {"design": "disjoint"}}, small_word_vectors)
    inputs = clip_inputs(model, size=32)
    expected = model(inputs, training=False)
    model.save(tmp_path / "model.keras")
    import keras

    loaded = keras.saving.load_model(tmp_path / "model.keras")
    assert isinstance(loaded, MMV)
    assert loaded.text_encoder.vocabulary == list(small_word_vectors.words)
    assert loaded.model_config["head"]["design"] == "disjoint"
    got = loaded(inputs, training=False)
    for modality, values in expected.items():
        for space, value in values.items():
            np.testing.assert_allclose(got[modality][space], value, rtol=1e-5, atol=1e-5)
    assert trainable_parameters(loaded) == trainable_parameters(model)


@pytest.mark.parametrize("inputs,message", [
    ({"video": np.zeros((2, 16, 32, 32), "float32")}, r"video must have shape \[\?, \?, \?, \?, 3\]"),
    ({"video": np.zeros((2, 16, 32, 32, 1), "float32")}, r"\[\?, \?, \?, \?, 3\].*got \[2, 16, 32, 32, 1\]"),
    ({"audio": np.zeros((2, 100), "float32")}, r"audio needs at least 512 samples"),
    ({"audio": np.zeros((2, 100, 1), "float32")}, r"audio must have shape \[\?, \?\]"),
    ({"text": {"token_ids": np.zeros((2, 5), "int32"), "padding_mask": np.zeros((2, 5), bool)}},
     r"text token_ids must have shape \[\?, 16\]"),
    ({"image": np.zeros((2, 32, 32, 3), "float32")}, r"unknown input 'image'"),
])
def test_bad_inputs_raise_errors_naming_the_expected_shape(inputs, message, small_word_vectors):
    model = from_preset("s3dg_tiny", word_vectors=small_word_vectors)
    with pytest.raises(ValueError, match=message):
        model(inputs)


@pytest.mark.parametrize(("size", "strides"), [((1, 3, 3), (1, 2, 2)), ((3, 3, 3), (1, 1, 1)),
                                               ((3, 3, 3), (2, 2, 2)), ((2, 2, 2), (2, 2, 2))])
def test_separable_max_pool_equals_3d_max_pool_and_its_gradient(size, strides):
    """S3D-G's pools (T, H, W) on an odd-sized clip; reference values and gradients in eager mode."""
    clip = tf.constant(np.random.default_rng(2).normal(size=(2, 5, 9, 7, 4)).astype("float32"))
    ours, reference = MaxPool3D(size, strides), keras.layers.MaxPooling3D(size, strides, padding="same")

    def value_and_gradient(layer):
        with tf.GradientTape() as tape:
            tape.watch(clip)
            out = layer(clip)
            energy = tf.reduce_sum(out ** 2)
        return out, tape.gradient(energy, clip)

    (got, got_grad), (want, want_grad) = tf.function(value_and_gradient)(ours), value_and_gradient(reference)
    assert tuple(got.shape) == tuple(want.shape) == ours.compute_output_shape(clip.shape)
    np.testing.assert_allclose(got, want)
    np.testing.assert_allclose(got_grad, want_grad, rtol=1e-6)


def test_s3dg_gradients_agree_in_graph_and_eager_mode():
    """With TF 2.21's oneDNN kernels on (the default), graph-mode MaxPool3D gradients were wrong
    where windows overlap; S3D-G's separable MaxPool3D avoids that op."""
    model = S3DG(num_frames=8, width=0.125)
    clip = tf.constant(np.random.default_rng(5).uniform(size=(2, 8, 32, 32, 3)).astype("float32"))

    def gradients():
        with tf.GradientTape() as tape:
            energy = tf.reduce_sum(model(clip, training=False) ** 2)
        return tape.gradient(energy, model.trainable_variables)

    for eager, graph in zip(gradients(), tf.function(gradients)()):
        np.testing.assert_allclose(graph, eager, rtol=1e-3, atol=1e-4 * float(tf.reduce_max(tf.abs(eager))))
