"""Labelled data folders cut from the demo corpus (`mmv-tf data demo`), for the evaluation commands.

- `write_labelled_clips`: OUT/<class>/<id>_e<k>.mp4, one clip per event, and OUT/<split>.txt lists
  of clip paths relative to OUT (UCF101-style).
- `write_captioned_clips`: OUT/videos/ (the split's videos and subtitles) and OUT/manifest.jsonl, one
  record per narrated event: its video, narration text, event times and label.
- `write_labelled_sounds`: OUT/<digit word>/<id>_e<k>.wav, each event's narration as 16-bit mono
  PCM, and OUT/<split>.txt lists.

Each folder is written whole or not at all (`mmv_tf.files.written_folder`).
"""

from __future__ import annotations

import json
import shutil
import wave
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from mmv_tf.data.demo import DemoSettings
from mmv_tf.data.synth import DIGIT_WORDS
from mmv_tf.errors import InputError
from mmv_tf.files import written_folder

SPLITS = ("train", "val", "test")
LABELS = ("digit", "direction", "event")


def _corpus_records(corpus: Path, splits: Iterable[str], narrated: bool = False
                    ) -> tuple[tuple[str, ...], list[dict]]:
    """(the split names, once each; the manifest records of the corpus's videos in them, in manifest
    order). InputError for an unknown split, a missing manifest, or a selection without events
    (narrated ones if `narrated`)."""
    splits = tuple(dict.fromkeys((splits,) if isinstance(splits, str) else splits))
    unknown = [split for split in splits if split not in SPLITS]
    if unknown or not splits:
        raise InputError(f"splits must be among {', '.join(SPLITS)}; got {', '.join(map(repr, splits))}")
    manifest = corpus / "manifest.jsonl"
    if not manifest.is_file():
        raise InputError(f"{manifest} not found: {corpus} is not a demo corpus (run `mmv-tf data demo` "
                         "to make one)")
    records = [json.loads(line) for line in manifest.read_text(encoding="utf-8").splitlines() if line.strip()]
    records = [record for record in records if record["split"] in splits]
    if not any(event["narration"] or not narrated for record in records for event in record["events"]):
        kind = "narrated events" if narrated else "events"
        raise InputError(f"{manifest}: no {kind} in split {' or '.join(splits)}")
    return splits, records


def _class_name(event: dict, label: str) -> str:
    word = DIGIT_WORDS[event["digit"]]
    return {"digit": word, "direction": event["direction"], "event": f"{word}_{event['direction']}"}[label]


def _write_split_lists(folder: Path, lists: dict[str, list[str]]) -> None:
    for split, lines in lists.items():
        (folder / f"{split}.txt").write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def _videos(records: list[dict], desc: str, progress: bool):
    from tqdm import tqdm

    return tqdm(records, desc=desc, unit="video", disable=not progress)


def write_labelled_clips(corpus: str | Path, out: str | Path, splits: Iterable[str] = ("train", "test"),
                         label: str = "digit", margin: float = 0.25, overwrite: bool = False,
                         progress: bool = True) -> dict:
    """One clip per event of the videos in `splits`, the event's span widened by `margin` seconds on each
    side (within the video), at the corpus's frame rate, size and sample rate, in OUT/<class>/ with the
    class from `label` (digit word, direction, or "<word>_<direction>") and OUT/<split>.txt lists.
    Returns {"clips": {split: count}, "classes": [...], "out": ...}."""
    from mmv_tf.data.media import decode_clip, write_mp4

    if label not in LABELS:
        raise InputError(f"label must be one of {', '.join(LABELS)}; got {label!r}")
    if margin < 0:
        raise InputError(f"margin must be 0 or more seconds; got {margin}")
    corpus, settings = Path(corpus), DemoSettings()
    splits, records = _corpus_records(corpus, splits)
    lists: dict[str, list[str]] = {split: [] for split in splits}
    with written_folder(out, "labelled clips", inputs=(corpus,), overwrite=overwrite) as partial:
        for record in _videos(records, "clips", progress):
            for k, event in enumerate(record["events"]):
                start = max(0.0, event["start"] - margin)
                end = min(record["duration"], event["end"] + margin)
                frames, audio = decode_clip(corpus / record["video"], start, end, settings.fps,
                                            settings.frame_size, settings.sample_rate)
                if audio is None:
                    audio = np.zeros(round((end - start) * settings.sample_rate), np.float32)
                name = f"{_class_name(event, label)}/{record['id']}_e{k}.mp4"
                (partial / name).parent.mkdir(parents=True, exist_ok=True)
                write_mp4(partial / name, frames, settings.fps, audio, settings.sample_rate)
                lists[record["split"]].append(name)
        _write_split_lists(partial, lists)
    classes = sorted({name.split("/")[0] for names in lists.values() for name in names})
    return {"clips": {split: len(names) for split, names in lists.items()}, "classes": classes,
            "out": str(out)}


def write_captioned_clips(corpus: str | Path, out: str | Path, split: str = "test", overwrite: bool = False,
                          progress: bool = True) -> dict:
    """The `split`'s videos (and subtitles) in OUT/videos/ and OUT/manifest.jsonl: one record per
    narrated event, {video, text, start, end, label: "<digit word> <direction>", split}, with the event's
    times (what the narration describes). Returns {"captions": count, "videos": count, "out": ...}."""
    corpus = Path(corpus)
    _, records = _corpus_records(corpus, (split,), narrated=True)
    captions = []
    with written_folder(out, "captioned clips", inputs=(corpus,), overwrite=overwrite) as partial:
        (partial / "videos").mkdir(parents=True)
        for record in _videos(records, "captioned videos", progress):
            video = f"videos/{record['id']}.mp4"
            shutil.copyfile(corpus / record["video"], partial / video)
            if record["captions"]:
                shutil.copyfile(corpus / record["captions"], partial / f"videos/{record['id']}.srt")
            captions += [{"video": video, "text": event["narration"]["text"], "start": event["start"],
                          "end": event["end"], "label": f"{DIGIT_WORDS[event['digit']]} {event['direction']}",
                          "split": split}
                         for event in record["events"] if event["narration"]]
        (partial / "manifest.jsonl").write_text("".join(json.dumps(c) + "\n" for c in captions),
                                                encoding="utf-8")
    return {"captions": len(captions), "videos": len(records), "out": str(out)}


def write_labelled_sounds(corpus: str | Path, out: str | Path, splits: Iterable[str] = ("train", "test"),
                          overwrite: bool = False, progress: bool = True) -> dict:
    """The narration of each narrated event of the videos in `splits`, cut from the video's audio at the
    corpus's sample rate, as 16-bit mono WAV in OUT/<digit word>/, with OUT/<split>.txt lists.
    Returns {"sounds": {split: count}, "classes": [...], "out": ...}."""
    from mmv_tf.data.media import decode_audio

    corpus, rate = Path(corpus), DemoSettings().sample_rate
    splits, records = _corpus_records(corpus, splits, narrated=True)
    lists: dict[str, list[str]] = {split: [] for split in splits}
    with written_folder(out, "labelled sounds", inputs=(corpus,), overwrite=overwrite) as partial:
        for record in _videos(records, "sounds", progress):
            narrated = [(k, event) for k, event in enumerate(record["events"]) if event["narration"]]
            if not narrated:
                continue
            waveform = decode_audio(corpus / record["video"], rate)
            for k, event in narrated:
                said = event["narration"]
                span = waveform[round(said["start"] * rate):round(said["end"] * rate)]
                name = f"{DIGIT_WORDS[event['digit']]}/{record['id']}_e{k}.wav"
                (partial / name).parent.mkdir(parents=True, exist_ok=True)
                with wave.open(str(partial / name), "wb") as sound:
                    sound.setnchannels(1)
                    sound.setsampwidth(2)
                    sound.setframerate(rate)
                    sound.writeframes(np.round(np.clip(span, -1, 1) * 32767).astype("<i2").tobytes())
                lists[record["split"]].append(name)
        _write_split_lists(partial, lists)
    classes = sorted({name.split("/")[0] for names in lists.values() for name in names})
    return {"sounds": {split: len(names) for split, names in lists.items()}, "classes": classes,
            "out": str(out)}
