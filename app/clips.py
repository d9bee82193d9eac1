"""Playable clips of search hits: a few seconds around a hit, cut from its corpus video and cached."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np

from mmv_tf.files import atomic_path

CLIP_FPS = 10.0
CLIP_SHORT_SIDE = 128


def rgb_frames(jpeg_frames: list[bytes]) -> np.ndarray:
    """JPEG frames -> uint8 `[T, H, W, 3]`."""
    from PIL import Image

    return np.stack([np.asarray(Image.open(io.BytesIO(j)).convert("RGB")) for j in jpeg_frames])


def cut_clip(source: str | Path, start: float, end: float, cache: Path,
             min_seconds: float = 3.0) -> Path:
    """An H.264/AAC mp4 of `source` from `start` to `end` seconds, widened to `min_seconds` around its
    centre so that short windows stay watchable; cut once into `cache`, then reused."""
    from mmv_tf.data.media import decode_video, write_mp4

    key = hashlib.sha1(f"{Path(source).resolve()}|{start:.3f}|{end:.3f}".encode()).hexdigest()[:16]
    path = cache / f"{Path(source).stem}_{start:.1f}s_{key}.mp4"
    if path.is_file():
        return path
    decoded = decode_video(source, CLIP_FPS, CLIP_SHORT_SIDE)
    half = max(end - start, min_seconds) / 2
    centre = min(max((start + end) / 2, half), max(decoded.duration - half, half))
    first, last = int(round((centre - half) * CLIP_FPS)), int(round((centre + half) * CLIP_FPS))
    frames = rgb_frames(decoded.jpeg_frames[first:last])
    rate = decoded.sample_rate
    waveform = decoded.waveform[int(first / CLIP_FPS * rate):int(last / CLIP_FPS * rate)]
    cache.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as partial:
        write_mp4(partial, frames, CLIP_FPS, waveform if decoded.has_audio else None, rate)
    return path
