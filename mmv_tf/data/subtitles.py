"""Timestamped captions: SubRip / WebVTT files via pysubs2, plain-text captions, and SRT writing."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pysubs2

from mmv_tf.errors import InputError

CAPTION_SUFFIXES = (".srt", ".vtt", ".txt")
# Tried in order; latin-1 accepts any bytes, so it is the last resort (and is reported).
ENCODINGS = ("utf-8", "utf-8-sig", "cp1252", "latin-1")


@dataclasses.dataclass(frozen=True)
class Caption:
    start: float  # seconds
    end: float
    text: str


class CaptionError(InputError):
    """A caption file that cannot be read (the message names the file)."""


def _decode(path: Path) -> tuple[str, str | None]:
    """The file's text and, if it was not UTF-8, a note naming the encoding used."""
    raw = path.read_bytes()
    for encoding in ENCODINGS:
        try:
            text = raw.decode(encoding)
        except UnicodeDecodeError:
            continue
        return text, None if encoding.startswith("utf-8") else f"{path.name}: not UTF-8, read as {encoding}"
    raise AssertionError("latin-1 decodes any bytes")


def read_captions(path: str | Path, duration: float) -> tuple[list[Caption], list[str]]:
    """Captions of `path` (.srt, .vtt, or .txt = one caption spanning the video), sorted by start.

    Returns the captions and notes about what was repaired (encoding, clipped
    times, empty cues dropped). Raises CaptionError if nothing usable is found
    in a file that is not empty.
    """
    path = Path(path)
    try:
        text, note = _decode(path)
    except OSError as error:
        raise CaptionError(f"cannot read captions {path}: {error}") from None
    notes = [note] if note else []
    if path.suffix == ".txt":
        line = " ".join(text.split())
        return ([Caption(0.0, duration, line)] if line else []), notes
    try:
        cues = pysubs2.SSAFile.from_string(text, format_=path.suffix[1:])
    except Exception as error:  # pysubs2 raises several types for malformed files
        raise CaptionError(f"{path}: malformed {path.suffix[1:].upper()} subtitles ({error})") from None
    captions = []
    for cue in cues:
        words = " ".join(cue.plaintext.split())
        start, end = max(0.0, cue.start / 1000), min(duration, cue.end / 1000)
        if not words or end <= start:
            notes.append(f"{path.name}: dropped cue at {cue.start / 1000:.2f}s (empty or outside the video)")
            continue
        captions.append(Caption(start, end, words))
    if not captions and text.strip():
        raise CaptionError(f"{path}: no readable cues")
    return sorted(captions, key=lambda c: (c.start, c.end)), notes


def write_srt(path: str | Path, captions: list[Caption]) -> None:
    subs = pysubs2.SSAFile()
    for caption in captions:
        subs.append(pysubs2.SSAEvent(start=round(caption.start * 1000), end=round(caption.end * 1000),
                                     text=caption.text))
    subs.save(str(path), format_="srt", encoding="utf-8")


def find_captions(video: Path) -> Path | None:
    """The same-name caption file beside `video`, if any (.srt, then .vtt, then .txt)."""
    for suffix in CAPTION_SUFFIXES:
        candidate = video.with_suffix(suffix)
        if candidate.is_file():
            return candidate
    return None
