"""Device-resident training data: a pack (`mmv_tf.training.pack`) in accelerator memory, and the
reader's clips sampled from it inside the jitted train step (Keras's JAX backend, no TensorFlow).

With `data.device_resident`, `mmv-tf train` feeds `MMVTrainer` small requests instead of clips:
  training    {"video_index": int32 [B], "seed": uint32 [B, 2]}  step s's drawn from (seed, s) alone
  validation  {"video_index": int32 [B], "present": bool [B]}   the validation videos in order; the
              last batch is filled up with clips that `present` masks out of the loss and accuracies
and the trainer turns each into a reader batch with `DeviceClips.sample`, which calls
`mmv_tf.data.preprocessing` as `mmv_tf.data.reader` does: a video and a seed give the reader's clip.
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

from mmv_tf.data.preprocessing import (
    augment_frames,
    caption_candidates,
    frames_to_float,
    last_window_start,
    random_window_start,
    resize_and_centre_crop,
    spaced_window_starts,
    window_audio,
    window_frames,
    window_samples,
)


class DeviceClips(keras.layers.Layer):
    """A pack's arrays as non-trainable variables (so a jitted step takes them as arguments, not
    as constants baked into it), and the clips of `clip` settings (`run.clip_settings`) from them."""

    def __init__(self, arrays: dict[str, np.ndarray], clip: dict, **kwargs):
        super().__init__(trainable=False, **kwargs)
        self.clip = clip
        self.window_seconds = clip["num_frames"] * clip["frame_stride"] / clip["fps"]
        self.audio_samples = window_samples(self.window_seconds, clip["sample_rate"])
        self.pack = {name: keras.Variable(array, trainable=False, name=name)
                     for name, array in arrays.items() if name != "splits"}
        self.built = True

    def _value(self, name: str, video=None):
        """A pack array (inside the train step: the step's value of it), or its row `video`."""
        value = self.pack[name].value
        return value if video is None else ops.take(value, video, axis=0)

    def _window(self, video, start):
        clip = self.clip
        return frames_to_float(window_frames(self._value("frames", video), start, clip["num_frames"],
                                             clip["frame_stride"], self._value("frame_counts", video)))

    def _last_start(self, video):
        return last_window_start(self._value("frame_counts", video), self.clip["num_frames"],
                                 self.clip["frame_stride"])

    def _clip(self, video, start, frames) -> dict:
        """`mmv_tf.data.reader.ClipReader._clip` on the pack."""
        window_start = ops.cast(start, "float32") / self.clip["fps"]
        indices, valid = caption_candidates(
            self._value("caption_starts", video), self._value("caption_ends", video), window_start,
            window_start + self.window_seconds, self.clip["num_candidates"],
            num_captions=self._value("caption_counts", video))
        text = {key: ops.where(valid[:, None],
                               ops.take(self._value(f"caption_{key}", video), indices, axis=0),
                               self._value(f"empty_{key}"))
                for key in ("token_ids", "padding_mask")}
        return {"video": frames,
                "audio": window_audio(self._value("waveforms", video), window_start, self.audio_samples,
                                      self.clip["sample_rate"]),
                "audio_mask": self._value("audio_present", video), "text": text, "text_mask": valid}

    def training_clip(self, video, seed) -> dict:
        """`ClipReader.training_clip` of pack video `video` (int `[]`) with `seed` (`[2]`)."""
        clip = self.clip
        start = random_window_start(seed, self._last_start(video))
        frames = augment_frames(self._window(video, start), seed, clip["crop_size"], clip["min_crop_scale"],
                                clip["flip"], clip["color_jitter"])
        return self._clip(video, start, frames)

    def validation_clip(self, video) -> dict:
        """`ClipReader.eval_clips` of pack video `video` with one window."""
        start = spaced_window_starts(self._last_start(video), 1)[0]
        return self._clip(video, start, resize_and_centre_crop(self._window(video, start),
                                                               self.clip["crop_size"]))

    def sample(self, request: dict) -> dict:
        """A request (above) -> a reader batch: training clips where it has seeds, else validation
        clips, those not `present` masked as clips without audio or text (they add nothing)."""
        if "seed" in request:
            return ops.vectorized_map(lambda r: self.training_clip(*r),
                                      (request["video_index"], request["seed"]))
        clips = ops.vectorized_map(self.validation_clip, request["video_index"])
        present = request["present"]
        return {**clips, "audio_mask": ops.logical_and(clips["audio_mask"], present),
                "text_mask": ops.logical_and(clips["text_mask"], present[:, None])}


class TrainingRequests(keras.utils.PyDataset):
    """The training requests of steps `first` .. `first + count - 1`: each drawn from (`seed`,
    step) alone, so a resumed run draws what an unbroken one does. `videos`: pack rows to draw from."""

    def __init__(self, videos: np.ndarray, batch_size: int, seed: int, first: int, count: int):
        super().__init__()
        self.videos, self.batch_size, self.seed, self.first, self.count = (
            videos, batch_size, seed, first, count)

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> dict:
        rng = np.random.default_rng([self.seed, self.first + index])
        return {"video_index": rng.choice(self.videos, self.batch_size).astype(np.int32),
                "seed": rng.integers(0, 2**32, (self.batch_size, 2), dtype=np.uint32)}


class ValidationRequests(keras.utils.PyDataset):
    """Pack rows `videos` in batches of `batch_size`, once per round. The last batch is filled up
    with repeats that are not `present`, so every batch has one shape: one compiled step, and
    batches that split evenly over data_parallel's devices."""

    def __init__(self, videos: np.ndarray, batch_size: int):
        super().__init__()
        self.videos, self.batch_size = videos.astype(np.int32), batch_size

    def __len__(self) -> int:
        return math.ceil(len(self.videos) / self.batch_size)

    def __getitem__(self, index: int) -> dict:
        rows = self.videos[index * self.batch_size:(index + 1) * self.batch_size]
        return {"video_index": np.resize(rows, self.batch_size),
                "present": np.arange(self.batch_size) < len(rows)}
