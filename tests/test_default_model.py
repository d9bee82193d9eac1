"""The committed default model (mmv_tf/savedmodels/mmv_s3dg_tiny_demo): what README's search example
loads. Its outputs on fixed inputs are pinned to committed numbers (`python
tests/test_default_model.py` rewrites them, after a deliberate change of the model only)."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

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


def test_default_model_finds_the_narrated_digit_and_direction(demo, tmp_path):
    """`mmv-tf data captions` + `mmv-tf evaluate retrieval` on the test corpus's train split (new
    videos: seed 3, not the model's seed 0): each narration ranks the clips centred on all the
    split's narrated events, and most top hits show the spoken digit moving its way."""
    from typer.testing import CliRunner

    from mmv_tf.cli.main import app

    runner = CliRunner()
    captions, out = tmp_path / "captions", tmp_path / "retrieval"
    made = runner.invoke(app, ["data", "captions", str(demo), "--split", "train", "--out", str(captions)])
    assert made.exit_code == 0, made.output
    result = runner.invoke(app, ["evaluate", "retrieval", str(captions), "--split", "train",
                                 "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    scores = json.loads(result.output[result.output.index("{\n"):])
    manifest = [json.loads(line) for line in (demo / "manifest.jsonl").read_text().splitlines()]
    narrated = [e for r in manifest if r["split"] == "train" for e in r["events"] if e["narration"]]
    count = len(narrated)  # one query and one clip per narrated event, counted here from the manifest
    text = scores["text_to_video"]
    assert scores["captions"] == scores["clips"] == count > 25 and scores["space"] == "vat"
    assert text["chance"]["R@1"] == pytest.approx(1 / count)
    assert text["chance"]["median_rank"] == pytest.approx((count + 1) / 2)
    labels = [f"{e['digit']} {e['direction']}" for e in narrated]
    same = sum(a == b for a in labels for b in labels) / count**2
    assert text["chance"]["label_precision@10"] == pytest.approx(same)
    # Measured: R@1 0.61, R@5 0.94, median rank 1 on 33 queries (chance 0.03, 0.15, 17).
    assert text["R@1"] <= text["R@5"] <= text["R@10"]
    assert text["R@1"] >= 0.4 and text["R@5"] >= 0.75 and text["median_rank"] <= 3
    assert text["label_R_precision"] >= 3 * same
    assert scores["video_to_text"]["R@5"] >= 0.75
    with np.load(out / "features.npz") as features:
        similarity = features["texts"] @ features["clips"].T
    digit_direction = np.array([label.split() for label in labels])
    top = similarity.argmax(axis=1)
    assert np.mean(digit_direction[top, 0] == digit_direction[:, 0]) >= 0.7  # the earlier model: 0.15
    assert np.mean(digit_direction[top, 1] == digit_direction[:, 1]) >= 0.9
    summary = runner.invoke(app, ["evaluate", "retrieval", str(captions), "--split", "train",
                                  "--out", str(out)])
    assert summary.exit_code == 0 and "reusing the features" in summary.output, summary.output
    shown = " ".join(summary.output.split())
    assert f"R@10 {text['R@10']:.3f} (chance {text['chance']['R@10']:.3f})" in shown


def test_readme_quotes_the_measured_retrieval_figures():
    """README's zero-shot table and search figures are those of benchmarks/results/demo_pipeline.json."""
    result = json.loads((ROOT / "benchmarks" / "results" / "demo_pipeline.json").read_text())
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    columns = ("R@1", "R@5", "R@10", "median_rank", "label_R_precision", "label_precision@10")
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
