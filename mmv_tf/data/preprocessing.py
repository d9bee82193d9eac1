"""What turns a decoded video into model inputs, for every path: the tf.data reader (training and
evaluation), `embed`, `search`, `evaluate`, the app, and a trainer under Keras's JAX backend.

A window is `num_frames` frames, every `stride`-th, from a first frame ("start"); past the end of
the video its last frame repeats. Its audio is the waveform under the same span (zeros past the
end); its caption is the one that overlaps it most. The model computes log-mel spectrograms
in-graph (`mmv_tf.models.audio`), so the audio window is the raw waveform.

Array functions use `keras.ops`: the same code runs in a tf.data map and jitted on a device under
JAX (a tf.data map needs Keras's TensorFlow backend: under JAX, sample on the device instead).
Host-side arithmetic on Python numbers stays plain Python / numpy.
Keras is imported inside the functions that use it, so that decoding workers can import this
module (for `DecodedClip`) without TensorFlow.

Training randomness comes from an explicit seed, `[2]` integers: `random_window_start` and
`augment_frames` draw from it with `random_uniforms`, which gives the same numbers under every
backend. A JAX trainer samples a clip of a padded device array `frames` `[V, F, H, W, 3]` uint8 as:

    seed = jax.random.bits(key, (2,), "uint32")
    start = random_window_start(seed, last_window_start(frame_counts[v], num_frames, stride))
    clip = frames_to_float(window_frames(frames[v], start, num_frames, stride, frame_counts[v]))
    clip = augment_frames(clip, seed, crop_size, min_crop_scale, flip, color_jitter)
    audio = window_audio(waveforms[v], start / fps, num_samples, sample_rate)
    slots, valid = caption_candidates(starts[v], ends[v], start / fps, start / fps + seconds, k,
                                      num_captions=caption_counts[v])

(all of it under `jax.jit` and `jax.vmap` over the batch's seeds and videos).
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from mmv_tf.data.subtitles import Caption


@dataclasses.dataclass
class DecodedClip:
    """One decoded video: JPEG frames at `fps`, the mono waveform at `sample_rate`, its captions
    and where it came from. What decoding gives, ingest writes to a shard and embed reads."""

    jpeg_frames: list[bytes]
    waveform: np.ndarray  # float32 [N], zeros if the file has no audio
    has_audio: bool
    fps: float
    sample_rate: int
    width: int
    height: int
    video_id: str
    source: str  # the file it was decoded from
    split: str = "train"
    captions: list[Caption] = dataclasses.field(default_factory=list)
    labels_json: str = "null"
    notes: list[str] = dataclasses.field(default_factory=list)  # what decoding repaired

    @property
    def duration(self) -> float:
        return len(self.jpeg_frames) / self.fps


def at_rates(clip: DecodedClip, fps: float, sample_rate: int) -> DecodedClip:
    """`clip` at frame rate `fps` (nearest frames) and `sample_rate` (polyphase filter)."""
    if abs(clip.fps - fps) > 1e-6:
        count = max(1, int(round(clip.duration * fps)))
        picks = np.minimum((np.arange(count) / fps * clip.fps).round().astype(int), len(clip.jpeg_frames) - 1)
        clip = dataclasses.replace(clip, jpeg_frames=[clip.jpeg_frames[i] for i in picks], fps=fps)
    if clip.sample_rate != sample_rate:
        from scipy.signal import resample_poly

        waveform = resample_poly(clip.waveform, sample_rate, clip.sample_rate).astype(np.float32)
        clip = dataclasses.replace(clip, waveform=waveform, sample_rate=sample_rate)
    return clip


# ---------------------------------------------------------------- randomness

def _mix(x):
    """A 32-bit integer hash (Wellons' lowbias32) of uint32 `x`, elementwise."""
    from keras import ops

    x = ops.bitwise_xor(x, ops.right_shift(x, np.uint32(16)))
    x = ops.multiply(x, np.uint32(0x7FEB352D))
    x = ops.bitwise_xor(x, ops.right_shift(x, np.uint32(15)))
    x = ops.multiply(x, np.uint32(0x846CA68B))
    return ops.bitwise_xor(x, ops.right_shift(x, np.uint32(16)))


def random_uniforms(seed, count: int, stream: int = 0):
    """`count` float32 numbers uniform in [0, 1) `[count]`, a function of `seed` (`[2]` integers)
    and `stream` only.

    A counter-based hash in keras.ops rather than `keras.random`: keras.random draws different
    numbers for the same seed under TensorFlow (Philox) and JAX (threefry), and a seed must give the
    same clip in tf.data and on a JAX device (tests/test_preprocessing.py checks both).
    """
    from keras import ops

    seed = ops.cast(seed, "uint32")
    key = _mix(ops.bitwise_xor(_mix(ops.bitwise_xor(seed[0], np.uint32(stream))), seed[1]))
    bits = _mix(key + ops.cast(ops.arange(count), "uint32") * np.uint32(0x9E3779B9))
    return ops.cast(ops.right_shift(bits, np.uint32(8)), "float32") / float(2**24)


# ---------------------------------------------------------------- windows

def last_window_start(total_frames, num_frames: int, stride: int = 1):
    """First frame of the last window that fits in `total_frames`; 0 when none fits (an int tensor)."""
    from keras import ops

    return ops.maximum(total_frames - ((num_frames - 1) * stride + 1), 0)


def random_window_start(seed, last_start):
    """A first frame uniform in [0, last_start] (int32 `[]`), drawn from `seed` `[2]`."""
    from keras import ops

    last_start = ops.cast(last_start, "int32")
    drawn = ops.floor(random_uniforms(seed, 1)[0] * ops.cast(last_start + 1, "float32"))
    return ops.minimum(ops.cast(drawn, "int32"), last_start)


def spaced_window_starts(last_start, count: int):
    """`count` first frames linearly spaced from 0 to `last_start` (int32 `[count]`; 0 alone for 1)."""
    from keras import ops

    return ops.cast(ops.round(ops.linspace(0.0, ops.cast(last_start, "float32"), count)), "int32")


def evaluation_window_starts(last_start: int, count: int) -> np.ndarray:
    """First entries (frames or samples) of `count` evaluation windows over [0, last_start]: linearly
    spaced from the first window to the last, or the centred window alone for one (int `[count]`)."""
    if count == 1:
        return np.array([int(last_start) // 2])
    return np.round(np.linspace(0, int(last_start), count)).astype(int)


def centred_window_start(centre: float, window_seconds: float, fps: float, last_start: int) -> int:
    """First frame of the window of `window_seconds` centred on `centre` seconds, in [0, last_start]."""
    return min(max(int(round((centre - window_seconds / 2) * fps)), 0), int(last_start))


def sliding_window_starts(total: int, length: int, stride: int) -> list[int]:
    """First entries of windows of `length` entries every `stride`, over `total` entries (frames or
    samples): as many as fit, and one for a shorter video."""
    return list(range(0, int(last_window_start(total, length)) + 1, max(stride, 1)))


def window_samples(seconds: float, sample_rate: int) -> int:
    """The number of audio samples of a window of `seconds`."""
    return int(round(seconds * sample_rate))


def window_frames(frames, start, num_frames: int, stride: int = 1, total_frames=None):
    """Frames `[F, ...]` (images or JPEG strings) -> the window from `start`: `[num_frames, ...]`,
    or `[W, num_frames, ...]` for starts `[W]`. Entries from `total_frames` on (default F) are
    padding: the last real frame repeats instead."""
    from keras import ops

    total = ops.shape(frames)[0] if total_frames is None else total_frames
    indices = ops.add(ops.expand_dims(start, -1), ops.arange(num_frames) * stride)
    return ops.take(frames, ops.minimum(indices, total - 1), axis=0)


def window_audio(waveform, start_seconds, num_samples: int, sample_rate: int):
    """Mono waveform `[N]` -> its `num_samples` from `start_seconds` on: `[num_samples]`, or
    `[W, num_samples]` for starts `[W]`; zeros past the end."""
    from keras import ops

    first = ops.cast(ops.round(ops.convert_to_tensor(start_seconds) * sample_rate), "int32")
    indices = ops.expand_dims(first, -1) + ops.arange(num_samples)
    total = ops.shape(waveform)[0]
    return ops.where(indices < total, ops.take(waveform, ops.minimum(indices, total - 1), axis=0), 0.0)


# ---------------------------------------------------------------- frames

def decode_jpeg(jpeg):
    """A JPEG string -> uint8 `[H, W, 3]` (TensorFlow: eagerly or in a tf.data graph).
    INTEGER_ACCURATE decodes bit for bit as Pillow does; TensorFlow's default does not."""
    import tensorflow as tf

    return tf.io.decode_jpeg(jpeg, channels=3, dct_method="INTEGER_ACCURATE")


def frames_to_float(frames):
    """uint8 `[..., 3]` -> float32 in [0, 1] (level / 255).

    Looked up in a table, not divided: a division in a TensorFlow graph is 1 ulp off numpy's and
    eager TensorFlow's for some levels, and the committed model's embeddings were made with numpy's."""
    from keras import ops

    return ops.take(_UNIT_LEVELS, ops.cast(frames, "int32"), axis=0)


_UNIT_LEVELS = np.arange(256, dtype=np.float32) / np.float32(255)


def resize_and_centre_crop(frames, size: int):
    """Evaluation frames: float `[..., H, W, 3]` in [0, 1] -> `[..., size, size, 3]`: the centre
    square, resized to `size` (bilinear, antialiased). Exact when the shorter side is `size`."""
    from keras import ops

    frames = ops.image.resize(frames, (size, size), interpolation="bilinear", antialias=True,
                              crop_to_aspect_ratio=True)
    return ops.clip(frames, 0.0, 1.0)


def eval_frames(jpegs, size: int):
    """JPEG strings `[F]` -> float32 `[F, size, size, 3]` in [0, 1], as every evaluation path sees
    them. Frame by frame, so that a long video never needs [F, H, W, 3] floats at once."""
    return _eval_frames_graph(size)(jpegs)


@functools.cache
def _eval_frames_graph(size: int):
    """`eval_frames` as a graph: a frame-by-frame map run eagerly took 15 times as long."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def convert(jpegs):
        return tf.map_fn(lambda jpeg: resize_and_centre_crop(frames_to_float(decode_jpeg(jpeg)), size), jpegs,
                         fn_output_signature=tf.TensorSpec([size, size, 3], tf.float32))

    return convert


def model_frames(model, path) -> np.ndarray:
    """A video file's frames as `model` (an `ExportedModel`) sees them: decoded at its frame rate,
    float32 `[F, S, S, 3]` in [0, 1] at its image size."""
    from mmv_tf.data.media import decode_video

    clip = decode_video(path, model.fps, model.image_size, model.sample_rate)
    return np.asarray(eval_frames(clip.jpeg_frames, model.image_size))


def _resample(frames, first, side, size: int, axis: int, reverse=False):
    """Bilinear samples of `frames` `[T, H, W, 3]` along `axis` at first + o * (side - 1) / (size - 1)
    for o < size, as tf.image.crop_and_resize places them; in reverse order where `reverse`.

    Two gathers rather than keras.ops.image.scale_and_translate or affine_transform, which weigh or
    transform whole frames: on a 2-core CPU, 16x72x96 -> 64 px took 2.1 / 4.8 ms with those and
    1.9 ms with this, 32x256x341 -> 200 px 117 / 119 ms against 51 ms."""
    from keras import ops

    at = first + ops.cast(ops.arange(size), "float32") * ((side - 1) / max(size - 1, 1))
    at = ops.where(reverse, ops.flip(at, axis=0), at)
    low = ops.floor(at)
    weight = ops.reshape(at - low, [size if dim == axis else 1 for dim in range(4)])
    low = ops.cast(low, "int32")
    high = ops.minimum(low + 1, ops.shape(frames)[axis] - 1)
    return ops.take(frames, low, axis=axis) * (1 - weight) + ops.take(frames, high, axis=axis) * weight


def augment_frames(frames, seed, size: int, min_crop_scale: float = 0.7, flip: bool = True,
                   color_jitter: float = 0.2):
    """Training frames: float `[T, H, W, 3]` in [0, 1] -> `[T, size, size, 3]` in [0, 1], all
    frames alike: a square crop whose side is uniform in [min_crop_scale, 1] x the shorter side, at
    a uniform place, resized (bilinear); flipped left-right with probability 1/2; brightness
    shifted by up to `color_jitter` / 2, then contrast and saturation scaled by 1 +- up to
    `color_jitter`, as tf.image.adjust_brightness / _contrast / _saturation do. Drawn from `seed` `[2]`."""
    from keras import ops

    drawn = random_uniforms(seed, 7, stream=1)
    frames = ops.convert_to_tensor(frames, "float32")
    height, width = (ops.cast(ops.shape(frames)[axis], "float32") for axis in (1, 2))
    side = ops.minimum(height, width) * (min_crop_scale + (1.0 - min_crop_scale) * drawn[0])
    frames = _resample(frames, drawn[1] * (height - side), side, size, axis=1)
    frames = _resample(frames, drawn[2] * (width - side), side, size, axis=2,
                       reverse=flip and drawn[3] < 0.5)
    if color_jitter > 0:
        low, span = 1.0 - color_jitter, 2.0 * color_jitter
        brightness, contrast = (drawn[4] * span - color_jitter) / 2, low + span * drawn[5]
        mean = ops.mean(frames, axis=(1, 2), keepdims=True)  # per frame and channel
        frames = frames * contrast + (mean * (1 - contrast) + brightness)
        # Saturation scaled in HSV, in closed form: hue and value stay, so each channel moves
        # towards the value (the largest) by the ratio of new to old saturation. Half the time of
        # keras.ops.image.rgb_to_hsv + hsv_to_rgb (1.8 against 3.6 ms for 16x64x64 on 2 CPU cores).
        value, least = ops.max(frames, axis=-1, keepdims=True), ops.min(frames, axis=-1, keepdims=True)
        ratio = ops.minimum(low + span * drawn[6], value / ops.maximum(value - least, 1e-12))
        ratio = ops.where(value > 0, ratio, 0.0)
        frames = frames * ratio + value * (1 - ratio)
    return ops.clip(frames, 0.0, 1.0)


# ---------------------------------------------------------------- captions

def caption_overlaps(starts, ends, window_start, window_end):
    """Seconds of each caption inside the window, >= 0; broadcasts (`[C]` or `[W, C]`)."""
    from keras import ops

    return ops.maximum(ops.minimum(ends, window_end) - ops.maximum(starts, window_start), 0.0)


def caption_candidates(starts, ends, window_start, window_end, count: int, num_captions=None):
    """The K candidates of MIL-NCE: indices `[count]` of the caption that overlaps the window most
    (else the nearest) and of its neighbours in time (0, -1, +1, -2, ... from it), and which of them
    exist (`[count]` bool). `starts`, `ends` `[C]` seconds in time order; of padded arrays only the
    first `num_captions` are real."""
    from keras import ops

    total = ops.shape(starts)[0] if num_captions is None else num_captions
    real = ops.arange(ops.shape(starts)[0]) < total
    overlap = ops.where(real, caption_overlaps(starts, ends, window_start, window_end), 0.0)
    distance = ops.where(real, ops.abs((starts + ends) / 2 - (window_start + window_end) / 2), np.inf)
    # A sentinel entry keeps argmax / argmin defined for videos without captions.
    overlap, distance = ops.pad(overlap, [[0, 1]]), ops.pad(distance, [[0, 1]], constant_values=np.inf)
    centre = ops.where(ops.max(overlap) > 0, ops.argmax(overlap), ops.argmin(distance))
    steps = ops.arange(count)
    indices = ops.cast(centre, "int32") + ops.where(steps % 2 == 1, -(steps + 1) // 2, steps // 2)
    valid = (indices >= 0) & (indices < total)
    return ops.clip(indices, 0, ops.maximum(total - 1, 0)), valid


def window_captions(captions: list[Caption], starts, ends) -> list[str | None]:
    """The text of the caption that overlaps each window [starts[i], ends[i]] seconds most (the
    first of equals), None where none does."""
    if not captions:
        return [None] * len(starts)
    overlap = np.asarray(caption_overlaps(
        np.array([[c.start for c in captions]]), np.array([[c.end for c in captions]]),
        np.asarray(starts, np.float64)[:, None], np.asarray(ends, np.float64)[:, None]))
    best = overlap.argmax(axis=1)
    return [captions[b].text if overlap[i, b] > 0 else None for i, b in enumerate(best)]
