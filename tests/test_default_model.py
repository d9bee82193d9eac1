"""The committed default model (mmv_tf/savedmodels/mmv_s3dg_tiny_demo): what README's search example
loads. Its outputs on fixed inputs are pinned to committed numbers (`python
tests/test_default_model.py` rewrites them, after a deliberate change of the model only)."""

import json
import sys
from pathlib import Path

import numpy as np

from mmv_tf.saved_model import DEFAULT_MODEL as DEFAULT
from mmv_tf.saved_model import ExportedModel

ROOT = Path(__file__).resolve().parents[1]
EXPECTED = Path(__file__).parent / "fixtures" / "default_model_outputs.npz"
TEXTS = ["a three moving up", "the numeral seven glides toward the left side", "now the zero slides down"]


def fixed_inputs() -> dict:
    """Inputs made from formulas alone (no generator whose code may change): two 16-frame 64 px clips
    of a bright bar moving up (then right) over a gradient, two 1.6 s sounds (a tone, a chirp)."""
    t, y, x = np.meshgrid(np.arange(16), np.arange(64), np.arange(64), indexing="ij")
    background = np.stack([x / 63, y / 63, 0.5 + 0 * x], axis=-1) * 0.6
    up = (np.abs(y - (56 - 3 * t)) < 4) & (np.abs(x - 32) < 10)
    right = (np.abs(x - (8 + 3 * t)) < 4) & (np.abs(y - 32) < 10)
    video = np.stack([np.where(mask[..., None], 1.0, background) for mask in (up, right)])
    seconds = np.arange(25600) / 16000
    audio = np.stack([0.5 * np.sin(2 * np.pi * 440 * seconds),
                      0.5 * np.sin(2 * np.pi * (200 + 400 * seconds) * seconds)])
    return {"video": video.astype("float32"), "audio": audio.astype("float32"), "text": TEXTS}


def default_outputs(model: ExportedModel) -> dict[str, np.ndarray]:
    inputs = fixed_inputs()
    outputs = {"video": model.embed_video(inputs["video"]), "audio": model.embed_audio(inputs["audio"]),
               "text": model.embed_text(inputs["text"])}
    return {f"{m}_{space}": np.asarray(v) for m, out in outputs.items() for space, v in out.items()}


def test_default_model_embeds_fixed_inputs_as_committed():
    model = ExportedModel(DEFAULT)
    meta = model.metadata
    assert meta["preset"] == "s3dg_tiny" and meta["head_design"] == "fac"
    assert (model.num_frames, model.image_size, model.fps, model.sample_rate) == (16, 64, 10.0, 16000)
    got, want = default_outputs(model), dict(np.load(EXPECTED))
    assert sorted(got) == sorted(want) == ["audio_before_head", "audio_va", "audio_vat",
                                           "text_before_head", "text_vat", "video_before_head",
                                           "video_va", "video_vat"]
    for name, value in want.items():
        np.testing.assert_allclose(got[name], value, rtol=1e-3, atol=1e-3 * np.abs(value).max(),
                                   err_msg=name)
    # What the pinned numbers say: texts of vertical motion (up, down) are nearer the bar moving up,
    # the text of motion to the left nearer the bar moving sideways.
    unit = {k: v / np.linalg.norm(v, axis=-1, keepdims=True) for k, v in got.items()}
    similarity = unit["text_vat"] @ unit["video_vat"].T
    assert similarity[0, 0] > similarity[0, 1] and similarity[2, 0] > similarity[2, 1]
    assert similarity[1, 1] > similarity[1, 0]


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


def test_readme_quotes_the_measured_retrieval_figures():
    """README's zero-shot table and search figures are those of benchmarks/results/demo_pipeline.json."""
    result = json.loads((ROOT / "benchmarks" / "results" / "demo_pipeline.json").read_text())
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    columns = ("R@1", "R@5", "R@10", "median_rank", "label_precision@10")
    rows = {"default model": result["evaluate_test"], "chance": result["evaluate_test"]["chance"]}
    if "earlier_model" in result:
        rows["earlier default"] = result["earlier_model"]["evaluate_test"]
    for name, scores in rows.items():
        cells = [f"{scores[c]:.1f}" if c == "median_rank" else f"{scores[c]:.3f}" for c in columns]
        row = next((line for line in readme.splitlines() if line.startswith(f"| {name}")), None)
        assert row is not None, f"README has no '{name}' row"
        assert [cell.strip() for cell in row.strip().strip("|").split("|")][1:] == cells, row
    assert f"each of the {result['evaluate_test']['queries']} test narrations" in readme
    precision = result["query_precision"]
    assert f"{round(100 * precision['label_precision@10'])}% of the top" in readme


if __name__ == "__main__":
    np.savez(EXPECTED, **default_outputs(ExportedModel(DEFAULT)))
    print(f"wrote {EXPECTED}", file=sys.stderr)
