"""NCE, MIL-NCE and the combined MMV loss against a plain NumPy reference."""

import numpy as np
import pytest
import tensorflow as tf

from mmv_tf.losses import l2_normalize, mil_nce, mmv_loss, nce


def unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def reference_mil_nce(video, text, text_mask, tau):
    """Loop form: for each clip with text, average of clip->texts and texts->clip terms."""
    video, text = unit(video.astype(np.float64)), unit(text.astype(np.float64))
    valid = [i for i in range(len(video)) if text_mask[i].any()]
    losses = []
    for i in valid:
        positive = sum(np.exp(video[i] @ text[i, k] / tau) for k in range(text.shape[1])
                       if text_mask[i, k])
        to_texts = sum(np.exp(video[i] @ text[j, k] / tau) for j in valid
                       for k in range(text.shape[1]) if text_mask[j, k])
        to_clips = sum(np.exp(video[j] @ text[i, k] / tau) for j in valid
                       for k in range(text.shape[1]) if text_mask[i, k])
        losses.append(0.5 * (-np.log(positive / to_texts) - np.log(positive / to_clips)))
    return float(np.mean(losses)) if losses else 0.0


def reference_nce(a, b, tau):
    """Symmetric cross-entropy over the similarity matrix."""
    logits = unit(a.astype(np.float64)) @ unit(b.astype(np.float64)).T / tau

    def cross_entropy(m):
        m = m - m.max(axis=1, keepdims=True)
        return np.mean(np.log(np.exp(m).sum(axis=1)) - np.diag(m))

    return 0.5 * (cross_entropy(logits) + cross_entropy(logits.T))


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def test_nce_matches_numpy(rng):
    a, b = rng.normal(size=(2, 8, 16)).astype(np.float32)
    assert float(nce(a, b)) == pytest.approx(reference_nce(a, b, 0.07), rel=1e-5)
    assert float(nce(a, b, temperature=0.5)) == pytest.approx(reference_nce(a, b, 0.5), rel=1e-5)


def test_mil_nce_matches_numpy_with_masked_candidates(rng):
    video = rng.normal(size=(6, 16)).astype(np.float32)
    text = rng.normal(size=(6, 4, 16)).astype(np.float32)
    mask = rng.uniform(size=(6, 4)) > 0.3
    mask[2] = False  # a clip without narration
    mask[0, 0] = True
    expected = reference_mil_nce(video, text, mask, 0.07)
    assert float(mil_nce(video, text, mask)) == pytest.approx(expected, rel=1e-5)
    full = np.ones((6, 4), bool)
    assert float(mil_nce(video, text)) == pytest.approx(
        reference_mil_nce(video, text, full, 0.07), rel=1e-5)


def test_nce_is_mil_nce_with_one_candidate(rng):
    a, b = rng.normal(size=(2, 5, 8)).astype(np.float32)
    assert float(nce(a, b)) == pytest.approx(float(mil_nce(a, b[:, None])), rel=1e-6)


def test_clips_without_text_add_nothing_to_the_text_term(rng):
    video = rng.normal(size=(8, 16)).astype(np.float32)
    text = rng.normal(size=(8, 3, 16)).astype(np.float32)
    mask = np.ones((8, 3), bool)
    mask[[1, 4, 5]] = False
    keep = mask.any(axis=1)
    with_textless = float(mil_nce(video, text, mask))
    without = float(mil_nce(video[keep], text[keep], mask[keep]))
    assert with_textless == pytest.approx(without, rel=1e-6)
    # Their (meaningless) text embeddings do not matter either.
    text[~keep] = rng.normal(size=text[~keep].shape) * 100
    assert float(mil_nce(video, text, mask)) == pytest.approx(without, rel=1e-6)


def test_clips_without_audio_add_nothing_to_the_audio_term(rng):
    a, b = rng.normal(size=(2, 6, 8)).astype(np.float32)
    mask = np.array([1, 1, 0, 1, 0, 1], bool)
    assert float(nce(a, b, mask=mask)) == pytest.approx(float(nce(a[mask], b[mask])), rel=1e-6)


def test_scale_invariance(rng):
    a, b = rng.normal(size=(2, 6, 8)).astype(np.float32)
    assert float(nce(a * 7.5, b * 0.01)) == pytest.approx(float(nce(a, b)), rel=1e-5)
    text = rng.normal(size=(6, 2, 8)).astype(np.float32)
    assert float(mil_nce(a * 3, text * 0.2)) == pytest.approx(float(mil_nce(a, text)), rel=1e-5)


def test_loss_is_lowest_when_pairs_align(rng):
    a = rng.normal(size=(16, 32)).astype(np.float32)
    aligned = a + 0.05 * rng.normal(size=a.shape).astype(np.float32)
    shuffled = aligned[rng.permutation(16)]
    unrelated = rng.normal(size=a.shape).astype(np.float32)
    losses = [float(nce(a, b)) for b in (aligned, unrelated, shuffled)]
    assert losses[0] < losses[1] and losses[0] < losses[2]
    assert losses[0] < 0.01  # near log(1) when positives dominate
    text = np.stack([aligned, unrelated], axis=1)  # one true narration among two candidates
    assert float(mil_nce(a, text)) < float(mil_nce(a, text[rng.permutation(16)]))


def test_gradients_are_finite_even_with_empty_rows(rng):
    video = tf.Variable(rng.normal(size=(4, 8)).astype(np.float32))
    text = tf.Variable(rng.normal(size=(4, 3, 8)).astype(np.float32))
    for mask in (np.array([[1, 0, 1], [0, 0, 0], [1, 1, 1], [0, 1, 0]], bool),
                 np.zeros((4, 3), bool)):
        with tf.GradientTape() as tape:
            loss = mil_nce(video, text, mask)
        grads = tape.gradient(loss, [video, text])
        assert np.isfinite(float(loss))
        assert all(np.all(np.isfinite(g)) for g in grads)
    assert float(mil_nce(video, text, np.zeros((4, 3), bool))) == 0.0


def test_global_negatives_on_two_replicas_equal_the_single_device_loss_and_gradients(rng, two_replicas):
    """Two logical CPUs: each replica scores its half against the all-gathered batch."""
    strategy = two_replicas
    video = rng.normal(size=(8, 16)).astype(np.float32)
    text = rng.normal(size=(8, 3, 16)).astype(np.float32)
    mask = rng.uniform(size=(8, 3)) > 0.2
    mask[5] = False

    def loss_and_grads(v, t, m, gather=None):
        with tf.GradientTape() as tape:
            tape.watch([v, t])
            loss = mil_nce(v, t, m, gather=gather)
        return loss, tape.gradient(loss, [v, t])

    single, single_grads = loss_and_grads(tf.constant(video), tf.constant(text), mask)

    def halves(array):
        return strategy.experimental_distribute_values_from_function(
            lambda context: tf.constant(array[4 * context.replica_id_in_sync_group:][:4]))

    def replica_step(v, t, m):
        context = tf.distribute.get_replica_context()
        return loss_and_grads(v, t, m, gather=lambda x: context.all_gather(x, axis=0))

    shares, grads = strategy.run(replica_step, args=(halves(video), halves(text), halves(mask)))
    total = sum(float(x) for x in strategy.experimental_local_results(shares))
    assert total == pytest.approx(float(single), rel=1e-5)
    for got, want in zip(grads, single_grads):
        local = np.concatenate(strategy.experimental_local_results(got))
        np.testing.assert_allclose(local, want, rtol=1e-4, atol=1e-6)


def test_mmv_loss_weights_terms_and_uses_the_head_spaces(rng):
    outputs = {
        "video": {"va": rng.normal(size=(4, 8)), "vat": rng.normal(size=(4, 6))},
        "audio": {"va": rng.normal(size=(4, 8)), "vat": rng.normal(size=(4, 6))},
        "text": {"vat": rng.normal(size=(4, 2, 6))},
    }
    outputs = {m: {s: v.astype(np.float32) for s, v in o.items()} for m, o in outputs.items()}
    audio_mask = np.array([1, 0, 1, 1], bool)
    text_mask = np.array([[1, 1], [1, 0], [0, 0], [1, 0]], bool)
    terms = mmv_loss(outputs, design="fac", weight_va=10.0, weight_vt=1.0, audio_mask=audio_mask,
                     text_mask=text_mask)
    nce_va = float(nce(outputs["video"]["va"], outputs["audio"]["va"], mask=audio_mask))
    mil_vt = float(mil_nce(outputs["video"]["vat"], outputs["text"]["vat"], text_mask))
    assert float(terms["nce_va"]) == pytest.approx(nce_va, rel=1e-6)
    assert float(terms["mil_nce_vt"]) == pytest.approx(mil_vt, rel=1e-6)
    assert float(terms["loss"]) == pytest.approx(10 * nce_va + mil_vt, rel=1e-6)
    video_text_only = mmv_loss({"video": outputs["video"], "text": outputs["text"]}, design="fac")
    assert set(video_text_only) == {"loss", "mil_nce_vt"}
    with pytest.raises(ValueError, match="no loss term"):
        mmv_loss({"video": outputs["video"]}, design="fac")


def test_l2_normalize_gives_unit_rows(rng):
    x = rng.normal(size=(5, 7)).astype(np.float32) * 10
    np.testing.assert_allclose(np.linalg.norm(l2_normalize(x), axis=1), 1.0, rtol=1e-6)
    assert np.all(np.isfinite(l2_normalize(np.zeros((2, 3), np.float32))))
