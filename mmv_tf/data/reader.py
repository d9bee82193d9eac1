"""The tf.data reader: clips of synchronised frames, audio and candidate narrations from shards.

Training mode samples one random window of `num_frames` frames (every
`frame_stride`-th) per video, crops it with scale jitter, flips and colour
jitters it, takes the audio under the same window, and picks as text the
caption that overlaps the window most (or is nearest) plus its neighbours, K
candidates with a mask. Evaluation mode takes `eval_windows` linearly spaced
windows per video with a centre crop, deterministically. Each step is
`mmv_tf.data.preprocessing`'s (keras.ops, so Keras's TensorFlow backend here).

Element (batched along a leading axis):
    video [T, S, S, 3] float32 in [0, 1]     audio [N] float32, N = T*stride/fps*sample_rate
    text {token_ids, padding_mask} [K, L]   text_mask [K] bool (real narrations)
    audio_mask [] bool (the video has audio) video_id [] string, window_start [] float32 seconds,
    labels_json [] string
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import tensorflow as tf

from mmv_tf.data.preprocessing import (
    augment_frames,
    caption_candidates,
    decode_jpeg,
    eval_frames,
    frames_to_float,
    last_window_start,
    random_window_start,
    spaced_window_starts,
    window_audio,
    window_frames,
    window_samples,
)
from mmv_tf.data.shards import check_dataset, parse_video


@dataclasses.dataclass(frozen=True)
class ReaderConfig:
    num_frames: int = 16
    frame_stride: int = 1
    fps: float = 10.0  # frame rate of the shards
    sample_rate: int = 16000  # sample rate of the shards
    crop_size: int = 64
    min_crop_scale: float = 0.7  # crop side as a fraction of the frame's shorter side
    flip: bool = True
    color_jitter: float = 0.2
    num_candidates: int = 4
    eval_windows: int = 4
    shuffle_buffer: int = 64

    @property
    def window_seconds(self) -> float:
        return self.num_frames * self.frame_stride / self.fps

    @property
    def audio_samples(self) -> int:
        return window_samples(self.window_seconds, self.sample_rate)


class ClipReader:
    """Turns parsed videos into model-ready clips (`mmv_tf.data.preprocessing` does the work);
    `tokenizer` maps strings to word ids."""

    def __init__(self, config: ReaderConfig, tokenizer):
        self.config = config
        self.tokenizer = tokenizer

    def _jpegs(self, video, start):
        return window_frames(video["frames"], start, self.config.num_frames, self.config.frame_stride)

    def _clip(self, video, start, frames):
        config = self.config
        window_start = tf.cast(start, tf.float32) / config.fps
        indices, valid = caption_candidates(video["caption/start"], video["caption/end"], window_start,
                                            window_start + config.window_seconds, config.num_candidates)
        texts = tf.where(valid, tf.gather(tf.concat([video["caption/string"], [""]], 0), indices), "")
        audio = window_audio(video["waveform"], window_start, config.audio_samples, config.sample_rate)
        return {
            "video": frames,
            "audio": tf.ensure_shape(audio, [config.audio_samples]),
            "audio_mask": tf.equal(video["WAVEFORM/present"], 1),
            "text": self.tokenizer(texts),
            "text_mask": valid,
            "video_id": video["video/id"],
            "window_start": window_start,
            "labels_json": video["labels/json"],
        }

    def _last_start(self, video):
        return last_window_start(tf.shape(video["frames"])[0], self.config.num_frames,
                                 self.config.frame_stride)

    def training_clip(self, video, seed):
        """One random, augmented window; `seed` is a `[2]` int tensor (stateless randomness)."""
        config = self.config
        start = random_window_start(seed, self._last_start(video))
        frames = tf.map_fn(decode_jpeg, self._jpegs(video, start), fn_output_signature=tf.uint8)
        frames = augment_frames(frames_to_float(frames), seed, config.crop_size, config.min_crop_scale,
                                config.flip, config.color_jitter)
        return self._clip(video, start, frames)

    def eval_clips(self, video):
        """`eval_windows` linearly spaced windows with a centre crop, as a dataset of clips."""
        starts = spaced_window_starts(self._last_start(video), self.config.eval_windows)
        return tf.data.Dataset.from_tensor_slices(starts).map(
            lambda start: self._clip(video, start, eval_frames(self._jpegs(video, start),
                                                               self.config.crop_size)))


def read_clips(sources, tokenizer, config: ReaderConfig | None = None, *, training: bool,
               batch_size: int, split: str | None = None, weights=None, seed: int = 0) -> tf.data.Dataset:
    """Batched clips from one shard folder or several (`weights` mixes them in training).

    Training: each source repeats forever, shuffled; sources are mixed with
    `weights`; randomness is seeded. Evaluation: one pass, in file order.
    Raises `DatasetError` for a folder whose ingest is unfinished or that holds no videos (of `split`).
    """
    sources = [sources] if isinstance(sources, (str, Path)) else list(sources)
    config = config or ReaderConfig()
    reader = ClipReader(config, tokenizer)
    streams = []
    for index, source in enumerate(sources):
        files = check_dataset(source, split)  # refuses unfinished or empty folders
        ds = tf.data.Dataset.from_tensor_slices(files)
        if training:
            ds = ds.shuffle(len(files), seed=seed + index, reshuffle_each_iteration=True).repeat()
        ds = ds.interleave(tf.data.TFRecordDataset, cycle_length=min(4, len(files)),
                           num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        ds = ds.map(parse_video, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        if training:
            ds = ds.shuffle(config.shuffle_buffer, seed=seed + index)
            seeds = tf.data.Dataset.random(seed=seed + 1000 + index).batch(2)
            ds = tf.data.Dataset.zip((ds, seeds)).map(
                reader.training_clip, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        else:
            ds = ds.flat_map(reader.eval_clips)
        streams.append(ds)
    if len(streams) == 1:
        ds = streams[0]
    else:
        ds = tf.data.Dataset.sample_from_datasets(streams, weights=weights, seed=seed,
                                                  stop_on_empty_dataset=not training)
    return ds.batch(batch_size, drop_remainder=training).prefetch(tf.data.AUTOTUNE)
