"""Playable clips of search hits: a few seconds around a hit, cut from its corpus video and cached."""

from __future__ import annotations

import hashlib
from pathlib import Path

from mmv_tf.files import atomic_path

CLIP_FPS = 10.0
CLIP_SHORT_SIDE = 128
CLIP_SAMPLE_RATE = 16000


def cut_clip(source: str | Path, start: float, end: float, cache: Path,
             min_seconds: float = 3.0) -> Path:
    """An H.264/AAC mp4 of `source` from `start` to `end` seconds, widened to `min_seconds` around its
    centre so that short windows stay watchable; cut once into `cache`, then reused."""
    from mmv_tf.data.media import decode_clip, media_duration, write_mp4

    key = hashlib.sha1(f"{Path(source).resolve()}|{start:.3f}|{end:.3f}".encode()).hexdigest()[:16]
    path = cache / f"{Path(source).stem}_{start:.1f}s_{key}.mp4"
    if path.is_file():
        return path
    half = max(end - start, min_seconds) / 2
    centre = min(max((start + end) / 2, half), max(media_duration(source) - half, half))
    first, last = int(round((centre - half) * CLIP_FPS)), int(round((centre + half) * CLIP_FPS))
    frames, waveform = decode_clip(source, first / CLIP_FPS, last / CLIP_FPS, CLIP_FPS, CLIP_SHORT_SIDE,
                                   CLIP_SAMPLE_RATE)
    cache.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as partial:
        write_mp4(partial, frames, CLIP_FPS, waveform, CLIP_SAMPLE_RATE)
    return path
