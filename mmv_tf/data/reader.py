"""The tf.data reader: clips of synchronised frames, audio and candidate narrations from shards.

Training mode samples one random window of `num_frames` frames (every
`frame_stride`-th) per video, crops it with scale jitter, flips and colour
jitters it, takes the audio under the same window, and picks as text the
caption that overlaps the window most (or is nearest) plus its neighbours, K
candidates with a mask. Evaluation mode takes `eval_windows` linearly spaced
windows per video with a centre crop, deterministically.

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
        return int(round(self.window_seconds * self.sample_rate))


def _neighbour_offsets(count: int) -> tf.Tensor:
    """0, -1, 1, -2, 2, ... (`count` of them)."""
    steps = tf.range(count)
    return tf.where(steps % 2 == 1, -(steps + 1) // 2, steps // 2)


def caption_candidates(starts, ends, window_start, window_end, count: int):
    """Indices `[count]` of the caption overlapping [window_start, window_end] most (else the nearest)
    and its neighbours in time order, and which of them exist."""
    # A sentinel entry keeps argmax / argmin defined for videos without captions.
    overlap = tf.concat([tf.maximum(0.0, tf.minimum(ends, window_end) - tf.maximum(starts, window_start)),
                         [0.0]], axis=0)
    distance = tf.concat([tf.abs((starts + ends) / 2 - (window_start + window_end) / 2), [float("inf")]],
                         axis=0)
    centre = tf.cast(tf.where(tf.reduce_max(overlap) > 0, tf.argmax(overlap), tf.argmin(distance)),
                     tf.int32)
    indices = centre + _neighbour_offsets(count)
    valid = (indices >= 0) & (indices < tf.size(starts))
    return tf.clip_by_value(indices, 0, tf.maximum(tf.size(starts) - 1, 0)), valid


class ClipReader:
    """Turns parsed videos into model-ready clips; `tokenizer` maps strings to word ids."""

    def __init__(self, config: ReaderConfig, tokenizer):
        self.config = config
        self.tokenizer = tokenizer

    def _frames(self, video, start_frame):
        config = self.config
        count = tf.shape(video["frames"])[0]
        indices = tf.minimum(start_frame + tf.range(config.num_frames) * config.frame_stride, count - 1)
        jpegs = tf.gather(video["frames"], indices)
        return tf.map_fn(lambda jpeg: tf.io.decode_jpeg(jpeg, channels=3), jpegs,
                         fn_output_signature=tf.uint8)

    def _audio(self, video, window_start):
        config = self.config
        first = tf.cast(tf.round(window_start * config.sample_rate), tf.int32)
        audio = video["waveform"][first:first + config.audio_samples]
        audio = tf.pad(audio, [[0, config.audio_samples - tf.shape(audio)[0]]])
        return tf.ensure_shape(audio, [config.audio_samples])

    def _text(self, video, window_start):
        config = self.config
        strings = video["caption/string"]
        indices, valid = caption_candidates(video["caption/start"], video["caption/end"], window_start,
                                            window_start + config.window_seconds, config.num_candidates)
        texts = tf.where(valid, tf.gather(tf.concat([strings, [""]], 0), indices), "")
        return self.tokenizer(texts), valid

    def _clip(self, video, start_frame, frames):
        window_start = tf.cast(start_frame, tf.float32) / self.config.fps
        text, text_mask = self._text(video, window_start)
        return {
            "video": frames,
            "audio": self._audio(video, window_start),
            "audio_mask": tf.equal(video["WAVEFORM/present"], 1),
            "text": text,
            "text_mask": text_mask,
            "video_id": video["video/id"],
            "window_start": window_start,
            "labels_json": video["labels/json"],
        }

    def _last_start(self, video):
        span = (self.config.num_frames - 1) * self.config.frame_stride + 1
        return tf.maximum(tf.shape(video["frames"])[0] - span, 0)

    def training_clip(self, video, seed):
        """One random, augmented window; `seed` is a `[2]` int tensor (stateless randomness)."""
        config = self.config
        seeds = tf.random.experimental.stateless_split(seed, 8)
        start = tf.random.stateless_uniform([], seeds[0], 0, self._last_start(video) + 1, tf.int32)
        frames = tf.image.convert_image_dtype(self._frames(video, start), tf.float32)
        height, width = tf.shape(frames)[1], tf.shape(frames)[2]
        short = tf.cast(tf.minimum(height, width), tf.float32)
        side = short * tf.random.stateless_uniform([], seeds[1], config.min_crop_scale, 1.0)
        top = tf.random.stateless_uniform([], seeds[2]) * (tf.cast(height, tf.float32) - side)
        left = tf.random.stateless_uniform([], seeds[3]) * (tf.cast(width, tf.float32) - side)
        h, w = tf.cast(height - 1, tf.float32), tf.cast(width - 1, tf.float32)
        box = tf.stack([top / h, left / w, (top + side - 1) / h, (left + side - 1) / w])
        frames = tf.image.crop_and_resize(frames, tf.tile(box[None], [config.num_frames, 1]),
                                          tf.range(config.num_frames), [config.crop_size] * 2)
        if config.flip:
            flip = tf.random.stateless_uniform([], seeds[4]) < 0.5
            frames = tf.cond(flip, lambda: tf.reverse(frames, axis=[2]), lambda: frames)
        if config.color_jitter > 0:
            j = config.color_jitter
            frames = tf.image.adjust_brightness(
                frames, tf.random.stateless_uniform([], seeds[5], -j, j) / 2)
            frames = tf.image.adjust_contrast(frames, tf.random.stateless_uniform([], seeds[6], 1 - j, 1 + j))
            frames = tf.image.adjust_saturation(
                frames, tf.random.stateless_uniform([], seeds[7], 1 - j, 1 + j))
        frames = tf.clip_by_value(frames, 0.0, 1.0)
        return self._clip(video, start, frames)

    def eval_clips(self, video):
        """`eval_windows` linearly spaced windows with a centre crop, as a dataset of clips."""
        config = self.config
        starts = tf.cast(tf.round(tf.linspace(0.0, tf.cast(self._last_start(video), tf.float32),
                                              config.eval_windows)), tf.int32)

        def window(start):
            frames = tf.image.convert_image_dtype(self._frames(video, start), tf.float32)
            height, width = tf.shape(frames)[1], tf.shape(frames)[2]
            scale = config.crop_size / tf.cast(tf.minimum(height, width), tf.float32)
            size = tf.cast(tf.math.ceil(tf.cast(tf.stack([height, width]), tf.float32) * scale), tf.int32)
            frames = tf.image.resize(frames, size, antialias=True)
            frames = tf.image.resize_with_crop_or_pad(frames, config.crop_size, config.crop_size)
            return self._clip(video, start, tf.clip_by_value(frames, 0.0, 1.0))

        return tf.data.Dataset.from_tensor_slices(starts).map(window)


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
