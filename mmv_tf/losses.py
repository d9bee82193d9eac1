"""Contrastive losses of MMV: NCE for video-audio, MIL-NCE for video-text, and their weighted sum.

All inputs are raw embeddings; they are L2-normalised here and compared by dot
products over a temperature. Both directions count (a -> b and b -> a, averaged).
Masks remove clips that lack a modality: such a clip is neither a query nor a
candidate, so the loss equals the loss of the batch without it.

Negatives from other replicas: pass `gather`, an all-gather `[b, ...] -> [R*b, ...]`
that concatenates the replicas' tensors and passes gradients back to the replica
owning each row (e.g. `tf.distribute` `ReplicaContext.all_gather(x, axis=0)`).
Each replica then scores its local clips against the global batch and returns
its share of the global loss: summed over replicas, the shares are the loss of
the global batch on one device.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from keras import ops

from mmv_tf import spaces

_MASKED = -1e9  # finite, so masked entries give no NaN gradients


Gather = Callable[[Any], Any]


def l2_normalize(x, axis=-1, epsilon=1e-12):
    """x / max(||x||, sqrt(epsilon)) along `axis`."""
    return x * ops.rsqrt(ops.maximum(ops.sum(ops.square(x), axis=axis, keepdims=True), epsilon))


def _masked_logsumexp(logits, mask, axis):
    return ops.logsumexp(ops.where(mask, logits, _MASKED), axis=axis)


def mil_nce(z_video, z_text, text_mask=None, temperature: float = 0.07, video_mask=None,
            gather: Gather | None = None):
    """Multiple-instance NCE between clips and their K candidate narrations.

    Args:
        z_video: `[B, D]` clip embeddings.
        z_text: `[B, K, D]` narration embeddings, K candidates per clip.
        text_mask: `[B, K]`, true for real narrations (default: all real). A clip
            with none adds nothing to the loss.
        temperature: softmax temperature tau.
        video_mask: `[B]`, false for clips to leave out (default: none left out).
        gather: all-gather across replicas, for negatives from the global batch.

    Returns:
        Scalar: mean over valid clips of
        0.5 * (-log sum_k e^{v_i t_ik / tau} / sum_{j,k} e^{v_i t_jk / tau}
               -log sum_k e^{v_i t_ik / tau} / sum_{j,k} e^{v_j t_ik / tau}).
    """
    z_video = l2_normalize(ops.cast(z_video, "float32"))
    z_text = l2_normalize(ops.cast(z_text, "float32"))
    batch, candidates = ops.shape(z_text)[0], ops.shape(z_text)[1]
    text_mask = (ops.ones((batch, candidates), "bool") if text_mask is None
                 else ops.cast(text_mask, "bool"))
    valid = ops.any(text_mask, axis=1)
    if video_mask is not None:
        valid = ops.logical_and(valid, ops.cast(video_mask, "bool"))

    if gather is None:
        all_video, all_text, all_text_mask, all_valid = z_video, z_text, text_mask, valid
    else:
        all_video, all_text = gather(z_video), gather(z_text)
        all_text_mask = ops.cast(gather(ops.cast(text_mask, "int32")), "bool")
        all_valid = ops.cast(gather(ops.cast(valid, "int32")), "bool")
    candidate_text = ops.logical_and(all_text_mask, all_valid[:, None])  # [B_all, K]

    # Positives: each local clip with its own narrations, [b, K] -> [b].
    positive_logits = ops.einsum("bd,bkd->bk", z_video, z_text) / temperature
    numerator = _masked_logsumexp(positive_logits, text_mask, axis=1)
    # Clip -> narrations of every valid clip, [b, B_all, K] -> [b].
    video_to_text = ops.einsum("bd,nkd->bnk", z_video, all_text) / temperature
    video_to_text_den = _masked_logsumexp(
        ops.reshape(video_to_text, (batch, -1)),
        ops.reshape(ops.broadcast_to(candidate_text[None], ops.shape(video_to_text)), (batch, -1)),
        axis=1,
    )
    # Narrations of the clip -> every valid clip, [b, K, B_all] -> [b].
    text_to_video = ops.einsum("bkd,nd->bkn", z_text, all_video) / temperature
    pair_mask = ops.logical_and(text_mask[:, :, None], all_valid[None, None, :])
    text_to_video_den = _masked_logsumexp(ops.reshape(text_to_video, (batch, -1)),
                                          ops.reshape(pair_mask, (batch, -1)), axis=1)
    per_clip = video_to_text_den + text_to_video_den - 2.0 * numerator
    valid_f = ops.cast(valid, "float32")
    count = ops.maximum(ops.sum(ops.cast(all_valid, "float32")), 1.0)
    return 0.5 * ops.sum(per_clip * valid_f) / count


def nce(z_a, z_b, temperature: float = 0.07, mask=None, gather: Gather | None = None):
    """Symmetric InfoNCE between paired embeddings `[B, D]` and `[B, D]`.

    `mask` `[B]` is false for clips that lack either modality. Equals `mil_nce`
    with one candidate per clip.
    """
    return mil_nce(z_a, ops.expand_dims(z_b, 1), temperature=temperature, video_mask=mask,
                   gather=gather)


def mmv_loss(outputs: dict, *, design: str, weight_va: float = 1.0, weight_vt: float = 1.0,
             audio_mask=None, text_mask=None, temperature: float = 0.07,
             gather: Gather | None = None) -> dict:
    """Weighted MMV loss: weight_va * NCE(video, audio) + weight_vt * MIL-NCE(video, text).

    Args:
        outputs: the MMV model's outputs (`outputs[modality][space]`: video `[B, D]`, audio
            `[B, D]`, text `[B, K, D]` or `[B, D]`).
        design: the head design; each pair is compared in the space it names
            (`spaces.pair_space`), and a pair it does not compare adds no term.
        audio_mask: `[B]`, false for clips without audio.
        text_mask: `[B, K]`, false for missing narrations (all false: a clip without text).

    Returns:
        {"loss": total, "nce_va": ..., "mil_nce_vt": ...} for the terms that apply.
    """
    video_audio_space = spaces.pair_space(design, "video", "audio")
    video_text_space = spaces.pair_space(design, "video", "text")
    terms = {}
    if weight_va and "audio" in outputs and video_audio_space:
        terms["nce_va"] = (weight_va, nce(outputs["video"][video_audio_space],
                                          outputs["audio"][video_audio_space],
                                          temperature, audio_mask, gather))
    if weight_vt and "text" in outputs and video_text_space:
        z_text = outputs["text"][video_text_space]
        if len(z_text.shape) == 2:
            z_text = ops.expand_dims(z_text, 1)
        terms["mil_nce_vt"] = (weight_vt, mil_nce(outputs["video"][video_text_space], z_text,
                                                  text_mask, temperature,
                                                  gather=gather))
    if not terms:
        raise ValueError("no loss term applies: outputs need video with audio and/or text "
                         "and a positive weight")
    total = sum(weight * value for weight, value in terms.values())
    return {"loss": total, **{name: value for name, (_, value) in terms.items()}}
