"""scripts/train_demo_jax.py (which trained the default model) samples clips as the tf.data reader does.

Its samplers take the array module as an argument, so numpy stands in for jax.numpy here.
"""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from mmv_tf.data import demo as demo_lib
from mmv_tf.data import synth
from mmv_tf.data.reader import caption_candidates

_path = Path(__file__).parents[1] / "scripts" / "train_demo_jax.py"
_spec = importlib.util.spec_from_file_location("train_demo_jax", _path)
script = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(script)


def test_crop_equals_tf_crop_and_resize_for_boxes_inside_the_frame():
    rng = np.random.default_rng(0)
    clip = rng.uniform(size=(3, 96, 80, 3)).astype(np.float32)
    for _ in range(5):
        side = rng.uniform(0.7, 1.0) * 80
        top, left = rng.uniform() * (96 - side), rng.uniform() * (80 - side)
        box = [top / 95, left / 79, (top + side - 1) / 95, (left + side - 1) / 79]
        expected = tf.image.crop_and_resize(clip, [box] * 3, [0, 1, 2], [64, 64]).numpy()
        np.testing.assert_allclose(script._crop(np, clip, top, left, side, 64), expected, atol=1e-4)


@pytest.mark.parametrize("candidates", [1, 2, 4])
def test_caption_choice_equals_the_readers(candidates):
    rng = np.random.default_rng(candidates)
    for count in (0, 1, 3, 4):
        starts = np.sort(rng.uniform(0, 12, size=count)).astype(np.float32)
        times = np.zeros((5, 2), np.float32)  # padded to 5 slots, as the rendered arrays are
        times[:count] = np.stack([starts, starts + rng.uniform(0.5, 2.5, size=count)], axis=1)
        for window_start in rng.uniform(0, 12, size=6).astype(np.float32):
            got = script._caption_choice(np, times, count, window_start, window_start + 1.6, candidates)
            expected = caption_candidates(tf.constant(times[:count, 0]), tf.constant(times[:count, 1]),
                                          window_start, window_start + 1.6, candidates)
            valid = expected[1].numpy()
            np.testing.assert_array_equal(got[1], valid)
            np.testing.assert_array_equal(got[0][valid], expected[0].numpy()[valid])


def test_mu_law_keeps_speech_within_a_few_percent():
    t = np.arange(16000) / 16000
    speech = (0.6 * np.sin(2 * np.pi * 220 * t) * np.sin(2 * np.pi * 3 * t)).astype(np.float32)
    codes = script.mu_law_encode(speech)
    assert codes.dtype == np.int8
    error = script.mu_law_decode(codes) - speech
    assert 10 * np.log10(np.mean(speech**2) / np.mean(error**2)) > 30  # dB


def test_rendering_reproduces_the_written_corpus_and_speech_changes_no_picture(demo):
    records = map(json.loads, (demo / "manifest.jsonl").read_text().splitlines())
    record = next(r for r in records if r["narrated"] and len(r["events"]) > 1)
    index, settings, pools = script.video_index(record), demo_lib.DemoSettings(), synth.split_digit_pools(3)
    spoken = demo_lib.render_video(index, 3, settings, pools)
    silent = demo_lib.render_video(index, 3, settings, pools, lambda *args: np.zeros(8000, np.float32))
    assert spoken.record == record
    assert [c.text for c in spoken.captions] == [e["narration"]["text"] for e in record["events"]
                                                 if e["narration"]]
    np.testing.assert_array_equal(silent.frames, spoken.frames)
    assert [(e["digit"], e["direction"], e["start"]) for e in silent.record["events"]] == \
        [(e["digit"], e["direction"], e["start"]) for e in record["events"]]
    assert spoken.frames.shape == (int(record["duration"] * 10), 96, 96, 3)
