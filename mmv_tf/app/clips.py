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
    from mmv_tf.data.preprocessing import centred_window_start, last_window_start

    key = hashlib.sha1(f"{Path(source).resolve()}|{start:.3f}|{end:.3f}".encode()).hexdigest()[:16]
    path = cache / f"{Path(source).stem}_{start:.1f}s_{key}.mp4"
    if path.is_file():
        return path
    seconds = max(end - start, min_seconds)
    count = int(round(seconds * CLIP_FPS))
    first = centred_window_start((start + end) / 2, seconds, CLIP_FPS,
                                 last_window_start(int(round(media_duration(source) * CLIP_FPS)), count))
    frames, waveform = decode_clip(source, first / CLIP_FPS, (first + count) / CLIP_FPS, CLIP_FPS,
                                   CLIP_SHORT_SIDE, CLIP_SAMPLE_RATE)
    cache.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as partial:
        write_mp4(partial, frames, CLIP_FPS, waveform, CLIP_SAMPLE_RATE)
    return path
