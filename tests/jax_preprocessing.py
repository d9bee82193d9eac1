"""Run under KERAS_BACKEND=jax by test_preprocessing.py: a training clip's sampling, jitted and vmapped
over seeds as a device trainer runs it.

Usage: python jax_preprocessing.py WORK_DIR   (reads inputs.npz, writes outputs.npz)
"""

import sys
from pathlib import Path

import jax
import keras
import numpy as np

from mmv_tf.data.preprocessing import (
    augment_frames,
    caption_candidates,
    frames_to_float,
    last_window_start,
    random_uniforms,
    random_window_start,
    window_audio,
    window_frames,
)

assert keras.backend.backend() == "jax", keras.backend.backend()
work = Path(sys.argv[1])
data = dict(np.load(work / "inputs.npz"))
settings = {name: data.pop(name).item() for name in ("num_frames", "stride", "fps", "num_samples",
                                                      "sample_rate", "size", "candidates")}


def clip(seed, frames, frame_count, waveform, caption_times, caption_count):
    """One training clip of a padded video, as the tf.data reader's `training_clip` samples it."""
    start = random_window_start(seed, last_window_start(frame_count, settings["num_frames"],
                                                        settings["stride"]))
    video = frames_to_float(window_frames(frames, start, settings["num_frames"], settings["stride"],
                                          frame_count))
    window_start = start / settings["fps"]
    slots, valid = caption_candidates(
        caption_times[:, 0], caption_times[:, 1], window_start,
        window_start + settings["num_frames"] * settings["stride"] / settings["fps"],
        settings["candidates"], num_captions=caption_count)
    return {"start": start, "uniforms": random_uniforms(seed, 7, stream=1),
            "video": augment_frames(video, seed, settings["size"]),
            "audio": window_audio(waveform, window_start, settings["num_samples"], settings["sample_rate"]),
            "slots": slots, "valid": valid}


batched = jax.jit(jax.vmap(clip, in_axes=(0, None, None, None, None, None)))
outputs = batched(data["seeds"], data["frames"], data["frame_count"], data["waveform"],
                  data["caption_times"], data["caption_count"])
np.savez(work / "outputs.npz", **{name: np.asarray(value) for name, value in outputs.items()})
