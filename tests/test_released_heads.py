"""The text pooling and FAC head options for DeepMind's released form (issue 14, item 1: text and
head): defaults of the paper presets, today's form in the tiny presets, and the numbers each gives."""

import copy

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import SMALL_MODEL

from mmv_tf.export import describe_network
from mmv_tf.models.heads import FACHead, make_head
from mmv_tf.models.presets import PRESETS, describe_model, from_preset, preset_config
from mmv_tf.models.text import TextEncoder

PAPER = ("s3dg", "tsm_resnet50", "tsm_resnet50x2")
TINY = [name for name in PRESETS if name.endswith("_tiny")]
RELEASED = {"text": {"pooling": "all"},
            "head": {"va_to_vat_bias": True, "text_to_va": True, "audio_vat_in_training": "own_head"}}


def small_released_overrides() -> dict:
    overrides = copy.deepcopy(SMALL_MODEL)
    for section, fields in RELEASED.items():
        overrides[section].update(fields)
    return overrides


def fac_head(**options) -> FACHead:
    head = make_head("fac", va_dim=6, vat_dim=4, **options)
    head.build({"video": (None, 5), "audio": (None, 7), "text": (None, 3)})
    return head


def bn_statistics(head: FACHead) -> list[np.ndarray]:
    bn = head.va_to_vat.get_layer("va_to_vat_bn")
    return [np.array(bn.moving_mean), np.array(bn.moving_variance)]


def test_paper_presets_default_to_the_released_form_and_tiny_presets_keep_todays():
    for name in PAPER:
        config = PRESETS[name].config
        assert config.text.pooling == "all"
        assert (config.head.va_to_vat_bias, config.head.text_to_va,
                config.head.audio_vat_in_training) == (True, True, "own_head")
    for name in TINY:
        config = PRESETS[name].config
        assert config.text.pooling == "masked"
        assert (config.head.va_to_vat_bias, config.head.text_to_va,
                config.head.audio_vat_in_training) == (False, False, "shared")
    # The options are ordinary config fields: overrides reach them, bad values are refused.
    assert preset_config("s3dg_tiny", {"text": {"pooling": "all"}}).text.pooling == "all"
    with pytest.raises(ValueError):
        preset_config("s3dg", {"head": {"audio_vat_in_training": "mine"}})


def test_layer_defaults_are_todays_form_so_saved_configs_rebuild_unchanged():
    """A config saved before the options existed (no such keys) must rebuild today's layers."""
    head = fac_head()
    assert not head.va_to_vat.get_layer("va_to_vat_dense").use_bias
    assert head.text_to_va is None and head.audio_to_vat_training is None
    config = head.get_config()
    for key in ("va_to_vat_bias", "text_to_va", "audio_vat_in_training"):
        config.pop(key)
    rebuilt = FACHead.from_config(config)
    assert rebuilt.get_config() == head.get_config()
    encoder = TextEncoder(["a", "b"], 3, 4, 5)
    assert encoder.get_config()["pooling"] == "masked"


def text_encoder(pooling: str) -> TextEncoder:
    """5 words of 3-d vectors -> Dense(4), with a bias that makes the zero padding row win channel 0."""
    encoder = TextEncoder([f"w{i}" for i in range(5)], embedding_dim=3, output_dim=4, max_words=4,
                          pooling=pooling)
    rng = np.random.default_rng(1)
    encoder.set_word_vectors(rng.uniform(0.1, 1.0, size=(5, 3)).astype("float32"))
    kernel = rng.normal(size=(3, 4)).astype("float32")
    kernel[:, 0] = -np.abs(kernel[:, 0]) - 0.1  # every real word scores below the bias in channel 0
    bias = np.array([2.0, -0.5, 0.1, 0.0], "float32")
    encoder.get_layer("projection").set_weights([kernel, bias])
    return encoder


def test_pooling_all_is_the_max_over_every_position_padding_rows_included():
    ids = np.array([[2, 3, 0, 0], [4, 5, 6, 2], [0, 0, 0, 0]], "int32")
    mask = ids != 0
    all_positions = text_encoder("all")
    table = all_positions.get_layer("word_vectors").get_weights()[0]
    kernel, bias = all_positions.get_layer("projection").get_weights()
    np.testing.assert_array_equal(table[0], 0)  # padding: an ordinary (here zero) table row
    per_word = np.maximum(table[ids] @ kernel + bias, 0)  # [3, 4 words, 4]
    expected = per_word.max(axis=1)
    got = np.array(all_positions({"token_ids": ids, "padding_mask": mask}))
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)
    # The padding row's ReLU(bias) = 2 wins channel 0 of the padded rows, even with no word at all.
    np.testing.assert_allclose(got[[0, 2], 0], 2.0, rtol=1e-6)
    np.testing.assert_allclose(got[2], np.maximum(bias, 0), rtol=1e-6)
    # The mask does not matter to "all"; it does to "masked", which reads only the real words.
    np.testing.assert_array_equal(
        got, all_positions({"token_ids": ids, "padding_mask": np.ones_like(mask)}))
    masked = text_encoder("masked")
    got_masked = np.array(masked({"token_ids": ids, "padding_mask": mask}))
    expected_masked = np.where(mask[..., None], per_word, -np.inf).max(axis=1)
    np.testing.assert_allclose(got_masked[:2], expected_masked[:2], rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(got_masked[2], 0)
    assert got_masked[0, 0] < 2.0  # the padding row does not take part
    # The option survives a config round trip.
    rebuilt = TextEncoder.from_config(all_positions.get_config())
    assert rebuilt.pooling == "all"
    assert type(rebuilt.get_layer("max_over_words")).__name__ == "MaxOverPositions"


def test_va_to_vat_bias_adds_exactly_the_bias():
    with_bias, without = fac_head(va_to_vat_bias=True), fac_head()
    dense, plain = (h.va_to_vat.get_layer("va_to_vat_dense") for h in (with_bias, without))
    assert dense.use_bias and not plain.use_bias
    rng = np.random.default_rng(2)
    kernel, bias = rng.normal(size=(6, 4)).astype("float32"), rng.normal(size=4).astype("float32")
    dense.set_weights([kernel, bias])
    plain.set_weights([kernel])
    stats = [rng.uniform(0.5, 2, size=4).astype("float32"), rng.normal(size=4).astype("float32"),
             rng.normal(size=4).astype("float32"), rng.uniform(0.5, 2, size=4).astype("float32")]
    for head in (with_bias, without):  # gamma, beta, moving mean, moving variance
        head.va_to_vat.get_layer("va_to_vat_bn").set_weights(stats)
    va = rng.normal(size=(3, 6)).astype("float32")
    relu_va = np.maximum(va, 0)
    np.testing.assert_allclose(dense(relu_va) - plain(relu_va), np.broadcast_to(bias, (3, 4)),
                               rtol=1e-5, atol=1e-5)
    gamma, beta, mean, variance = stats
    scale = gamma / np.sqrt(variance + 1e-5)
    expected = (relu_va @ kernel + bias - mean) * scale + beta
    got = with_bias.va_to_vat(va, training=False)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got - without.va_to_vat(va, training=False),
                               np.broadcast_to(bias * scale, (3, 4)), rtol=1e-5, atol=1e-5)


def test_text_to_va_is_a_linear_layer_with_bias_into_va():
    head = fac_head(text_to_va=True)
    layer = head.text_to_va
    rng = np.random.default_rng(3)
    kernel, bias = rng.normal(size=(3, 6)).astype("float32"), rng.normal(size=6).astype("float32")
    layer.set_weights([kernel, bias])
    text = rng.normal(size=(2, 3)).astype("float32")
    out = head({"text": text}, training=False)["text"]
    assert set(out) == {"va", "vat"}
    np.testing.assert_allclose(out["va"], text @ kernel + bias, rtol=1e-5, atol=1e-5)
    # The instance reports text in va; the design's pair spaces stay (video-text is trained in vat).
    assert head.spaces_of("text") == ("va", "vat")
    assert fac_head().spaces_of("text") == ("vat",)
    assert head.space_for("video", "text") == head.space_for("audio", "text") == "vat"
    assert head.space_for("video", "audio") == "va"
    assert type(head).space_for("video", "text") == "vat"


def test_paper_preset_gives_text_a_512_d_va():
    config = preset_config("s3dg")
    head = make_head("fac", va_dim=config.head.va_dim, vat_dim=config.head.vat_dim,
                     text_to_va=config.head.text_to_va, va_to_vat_bias=config.head.va_to_vat_bias,
                     audio_vat_in_training=config.head.audio_vat_in_training)
    head.build({"video": (None, 1024), "audio": (None, 2048), "text": (None, config.text.output_dim)})
    out = head({"text": np.ones((2, config.text.output_dim), "float32")}, training=False)["text"]
    assert out["va"].shape == (2, 512) and out["vat"].shape == (2, 256)
    assert head.spaces_of("text") == ("va", "vat")


def test_mmv_outputs_text_va_and_its_metadata_says_so(small_word_vectors, tmp_path):
    model = from_preset("s3dg_tiny", small_released_overrides(), small_word_vectors)
    assert model.text_encoder.pooling == "all"
    tokenizer = model.make_tokenizer()
    text = tokenizer(tf.constant([["three moves up", "seven"], ["digit zero", "left"]]))
    out = model({"text": text}, training=False)["text"]
    assert out["va"].shape == (2, 2, 32) and out["vat"].shape == (2, 2, 16)
    flat = np.reshape(out["before_head"], (4, -1))
    layer = model.head.text_to_va
    np.testing.assert_allclose(np.reshape(out["va"], (4, -1)),
                               flat @ np.array(layer.kernel) + np.array(layer.bias),
                               rtol=1e-5, atol=1e-5)
    assert describe_model(model)["output_dims"]["text"] == {"before_head": 64, "va": 32, "vat": 16}
    assert describe_network(model)["spaces"]["text"] == {"va": 32, "vat": 16}
    # The options and their weights survive a Keras save and load.
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    assert loaded.head.get_config() == model.head.get_config()
    assert loaded.text_encoder.pooling == "all"
    for name in ("text_to_va", "audio_to_vat_training"):
        for got, expected in zip(getattr(loaded.head, name).weights, getattr(model.head, name).weights):
            np.testing.assert_array_equal(got, expected)
    again = loaded({"text": text}, training=False)["text"]
    for space in ("va", "vat"):
        np.testing.assert_allclose(again[space], out[space], rtol=1e-6, atol=1e-6)


def test_audio_trains_its_own_vat_head_and_leaves_the_shared_bn_statistics_alone():
    head = fac_head(audio_vat_in_training="own_head")
    rng = np.random.default_rng(4)
    audio = rng.normal(3.0, 2.0, size=(8, 7)).astype("float32")
    video = rng.normal(-1.0, 3.0, size=(8, 5)).astype("float32")
    before = bn_statistics(head)
    out = head({"audio": audio}, training=True)["audio"]
    for old, new in zip(before, bn_statistics(head)):
        np.testing.assert_array_equal(old, new)
    own = head.audio_to_vat_training
    np.testing.assert_allclose(out["vat"], audio @ np.array(own.kernel) + np.array(own.bias),
                               rtol=1e-5, atol=1e-5)
    assert out["vat"].shape == (8, 4) and out["va"].shape == (8, 6)
    # In inference audio reaches vat through the shared layer, as before.
    inference = head({"audio": audio}, training=False)["audio"]
    np.testing.assert_allclose(inference["vat"], head.va_to_vat(inference["va"], training=False),
                               rtol=1e-6, atol=1e-6)
    # A video training call does update them.
    head({"video": video}, training=True)
    after_video = bn_statistics(head)
    assert not np.allclose(before[0], after_video[0]) and not np.allclose(before[1], after_video[1])
    # With "shared" (today's form) audio updates them too.
    shared = fac_head()
    shared_before = bn_statistics(shared)
    shared({"audio": audio}, training=True)
    assert not np.allclose(shared_before[0], bn_statistics(shared)[0])


def test_audio_only_training_call_of_the_model_keeps_the_shared_bn_statistics(small_word_vectors):
    model = from_preset("s3dg_tiny", small_released_overrides(), small_word_vectors)
    rng = np.random.default_rng(5)
    audio = rng.uniform(-1, 1, size=(4, model.sample_rate // 2)).astype("float32")
    video = rng.uniform(size=(4, model.num_frames, 32, 32, 3)).astype("float32")
    before = bn_statistics(model.head)
    audio_bn_before = [np.array(w) for w in model.audio_encoder.non_trainable_weights]
    out = model({"audio": audio}, training=True)
    assert out["audio"]["vat"].shape == (4, 16)
    for old, new in zip(before, bn_statistics(model.head)):
        np.testing.assert_array_equal(old, new)
    # ... while the audio tower's own BN statistics did move (it was a real training call).
    assert any(not np.array_equal(old, np.array(new)) for old, new in
               zip(audio_bn_before, model.audio_encoder.non_trainable_weights))
    model({"video": video}, training=True)
    after = bn_statistics(model.head)
    assert not np.allclose(before[0], after[0]) and not np.allclose(before[1], after[1])


def test_trainer_steps_run_with_the_released_options(small_word_vectors):
    """The MMV losses compare video-audio in va and video-text in vat: text's va and audio's training
    vat (unused by the losses, as in DeepMind's training) get no gradient and stay as they were."""
    from mmv_tf.training.trainer import MMVTrainer

    network = from_preset("s3dg_tiny", small_released_overrides(), small_word_vectors)
    trainer = MMVTrainer(network)
    assert (trainer.video_audio_space, trainer.video_text_space) == ("va", "vat")
    trainer.compile(optimizer=keras.optimizers.Adam(1e-3))
    unused = [np.array(w) for name in ("text_to_va", "audio_to_vat_training")
              for w in getattr(network.head, name).weights]
    trained = np.array(network.head.text_to_vat.weights[0])
    bn_before = bn_statistics(network.head)
    rng = np.random.default_rng(0)
    ids = rng.integers(2, 200, size=(4, 2, 16)).astype("int32")
    ids[:, :, 6:] = 0
    batch = {"video": rng.uniform(size=(4, 8, 32, 32, 3)).astype("float32"),
             "audio": rng.uniform(-1, 1, size=(4, 12800)).astype("float32"),
             "text": {"token_ids": ids, "padding_mask": ids != 0},
             "audio_mask": np.ones(4, bool), "text_mask": np.ones((4, 2), bool)}
    history = trainer.fit(tf.data.Dataset.from_tensors(batch).repeat(), steps_per_epoch=2, epochs=1,
                          verbose=0, shuffle=False)
    assert np.all(np.isfinite(history.history["loss"]))
    after = [np.array(w) for name in ("text_to_va", "audio_to_vat_training")
             for w in getattr(network.head, name).weights]
    for old, new in zip(unused, after):
        np.testing.assert_array_equal(old, new)
    assert not np.array_equal(trained, np.array(network.head.text_to_vat.weights[0]))
    assert not np.allclose(bn_before[0], bn_statistics(network.head)[0])  # video's statistics
