"""Source videos to ingest: a folder of videos with same-name captions, or a JSONL manifest.

A manifest line holds `video` (path relative to the manifest) and optionally
`id`, `split`, `captions` and `labels`. A folder that contains `manifest.jsonl`
is read through it; otherwise videos are found recursively and a first folder
named train, val or test gives the split. `decode_source` runs in worker
processes and does not import TensorFlow.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from mmv_tf.data.media import VIDEO_SUFFIXES, MediaError, decode_video
from mmv_tf.data.preprocessing import DecodedClip
from mmv_tf.data.subtitles import CaptionError, find_captions, read_captions
from mmv_tf.errors import InputError

SPLITS = ("train", "val", "test")
MANIFEST_NAME = "manifest.jsonl"


@dataclasses.dataclass(frozen=True)
class Source:
    video_id: str
    path: Path
    split: str
    captions: Path | None = None
    labels_json: str = "null"


@dataclasses.dataclass(frozen=True)
class DecodeSettings:
    fps: float = 10.0
    short_side: int = 128
    sample_rate: int = 16000
    jpeg_quality: int = 90


class SourceError(InputError):
    """The source folder or manifest cannot be used (the message names it)."""


def _read_manifest(manifest: Path, forced_split: str | None) -> list[Source]:
    sources = []
    for number, line in enumerate(manifest.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            video = manifest.parent / record["video"]
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise SourceError(f"{manifest}:{number}: not a manifest record with a 'video' "
                              f"field ({error})") from None
        split = forced_split or record.get("split", "train")
        if split not in SPLITS:
            raise SourceError(f"{manifest}:{number}: split {split!r} is not one of {SPLITS}")
        captions = record.get("captions")
        sources.append(Source(
            video_id=str(record.get("id") or video.stem), path=video, split=split,
            captions=manifest.parent / captions if captions else find_captions(video),
            labels_json=json.dumps(record.get("labels")),
        ))
    return sources


def _scan_folder(folder: Path, forced_split: str | None) -> list[Source]:
    sources = []
    for video in sorted(p for p in folder.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES):
        if video.name.startswith("."):
            continue
        relative = video.relative_to(folder)
        top = relative.parts[0] if len(relative.parts) > 1 else None
        split = forced_split or (top if top in SPLITS else "train")
        video_id = str(relative.with_suffix("")).replace("/", "__")
        sources.append(Source(video_id, video, split, find_captions(video)))
    return sources


def list_sources(src: str | Path, split: str | None = None) -> list[Source]:
    """Sources of `src` (a folder or a manifest file), sorted by split and id; ids must be unique.
    Their paths are absolute, so what records them (shards, embeddings) works from any folder."""
    src = Path(src).absolute()
    if split is not None and split not in SPLITS:
        raise SourceError(f"split must be one of {SPLITS}, got {split!r}")
    if src.is_file():
        sources = _read_manifest(src, split)
    elif (src / MANIFEST_NAME).is_file():
        sources = _read_manifest(src / MANIFEST_NAME, split)
    elif src.is_dir():
        sources = _scan_folder(src, split)
    else:
        raise SourceError(f"{src} is neither a folder nor a manifest file")
    if not sources:
        raise SourceError(f"{src}: no videos found (looked for {', '.join(VIDEO_SUFFIXES)})")
    seen: set[str] = set()
    for source in sources:
        if source.video_id in seen:
            raise SourceError(f"{src}: video id {source.video_id!r} appears twice")
        seen.add(source.video_id)
    return sorted(sources, key=lambda s: (SPLITS.index(s.split), s.video_id))


def decode_source(source: Source, settings: DecodeSettings) -> DecodedClip | str:
    """Decode one source with its captions; never raises for a bad file: returns the reason instead."""
    try:
        clip = decode_video(source.path, settings.fps, settings.short_side, settings.sample_rate,
                            settings.jpeg_quality)
    except MediaError as error:
        return str(error)
    except Exception as error:  # a decoder crash on one file must not stop the run
        return f"{source.path}: {type(error).__name__}: {error}"
    captions = []
    if source.captions is not None:
        try:
            captions, caption_notes = read_captions(source.captions, clip.duration)
            clip.notes.extend(caption_notes)
        except CaptionError as error:
            clip.notes.append(f"captions skipped: {error}")
    return dataclasses.replace(clip, video_id=source.video_id, source=str(source.path), split=source.split,
                               captions=captions, labels_json=source.labels_json)
