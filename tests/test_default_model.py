"""The committed default model (mmv_tf/savedmodels/mmv_s3dg_tiny_demo): what README's search example loads."""


import numpy as np

from mmv_tf.saved_model import DEFAULT_MODEL as DEFAULT
from mmv_tf.saved_model import ExportedModel


def test_default_model_is_small_and_embeds_every_modality():
    size_mib = sum(f.stat().st_size for f in DEFAULT.rglob("*") if f.is_file()) / 2**20
    assert size_mib < 25
    model = ExportedModel(DEFAULT)
    meta = model.metadata
    assert meta["preset"] == "s3dg_tiny" and meta["head_design"] == "fac"
    assert meta["training"]["steps"] == meta["training"]["config"]["train"]["steps"] >= 600
    assert (model.num_frames, model.image_size, model.fps, model.sample_rate) == (16, 64, 10.0, 16000)
    rng = np.random.default_rng(0)
    video = model.embed_video(rng.uniform(size=(2, 16, 64, 64, 3)))
    audio = model.embed_audio(rng.uniform(-1, 1, size=(2, 25600)))
    text = model.embed_text(["a three moving up", "the numeral seven glides toward the left side"])
    assert video["va"].shape == audio["va"].shape == (2, 128)
    assert video["vat"].shape == audio["vat"].shape == text["vat"].shape == (2, 64)
    assert all(np.all(np.isfinite(v)) for out in (video, audio, text) for v in out.values())
    # Different sentences get different embeddings (a collapsed text tower would not).
    unit = text["vat"] / np.linalg.norm(text["vat"], axis=1, keepdims=True)
    assert float(unit[0] @ unit[1]) < 0.999


def test_default_model_finds_the_narrated_digit_and_direction(demo):
    """Each narration of the test corpus's train split (new videos: seed 3, not the model's seed 0)
    ranks the clips centred on all its events: most top hits show the spoken digit moving its way."""
    from mmv_tf.evaluate import event_clips, narrated_events, retrieval_metrics
    from mmv_tf.index import l2_normalized

    model = ExportedModel(DEFAULT)
    events = narrated_events(demo, "train")
    clips = l2_normalized(model.embed_video(event_clips(model, events))["vat"])
    texts = l2_normalized(model.embed_text([e["text"] for e in events])["vat"])
    similarity = texts @ clips.T
    labels = np.array([e["label"].split() for e in events])  # digit, direction
    top = similarity.argmax(axis=1)
    assert len(events) > 25
    assert np.mean(labels[top, 0] == labels[:, 0]) >= 0.7  # the earlier model: 0.15
    assert np.mean(labels[top, 1] == labels[:, 1]) >= 0.9
    assert retrieval_metrics(similarity, [e["label"] for e in events])["R@1"] >= 0.4  # chance 0.03
