"""The demo corpus: narrated videos of handwritten digits moving, in the layout of users' own data.

DIR/videos/<id>.mp4 (H.264 + AAC), DIR/videos/<id>.srt (narrated videos only)
and DIR/manifest.jsonl (one line per video: split, files, events; the labels
are for evaluation only). About a fifth of the videos have no narration: their
audio carries a tone tied to each event instead, like AudioSet clips.
Test videos use digit images, phrasings, words and voices unseen in training.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
from pathlib import Path

import numpy as np

from mmv_tf.data import synth
from mmv_tf.data.speech import require_espeak, speak
from mmv_tf.data.subtitles import Caption, write_srt
from mmv_tf.files import atomic_path, claimed_folder, write_text_atomically, written_folder


@dataclasses.dataclass(frozen=True)
class Phrasing:
    templates: tuple[str, ...]
    nouns: tuple[str, ...]
    verbs: tuple[str, ...]
    directions: dict[str, tuple[str, ...]]
    voices: tuple[str, ...]


TRAIN_PHRASING = Phrasing(
    templates=("now {noun} {verb} {direction}", "{noun} {verb} {direction}",
               "look, {noun} {verb} {direction}", "here {noun} {verb} {direction}"),
    nouns=("the {digit}", "a {digit}", "digit {digit}"),
    verbs=("moves", "slides", "goes", "travels"),
    directions={"left": ("to the left", "left"), "right": ("to the right", "right"),
                "up": ("up", "upwards"), "down": ("down", "downwards")},
    voices=("en-us", "en-gb", "en-gb-x-rp", "en-us+f2", "en-gb+f3", "en-us+m3"),
)
# Only in the test split: new sentence frames, synonyms and voices.
TEST_ONLY_PHRASING = Phrasing(
    templates=("watch as {noun} {verb} {direction}", "and then {noun} {verb} {direction}"),
    nouns=("the number {digit}", "the numeral {digit}"),
    verbs=("glides", "drifts", "heads", "shifts"),
    directions={"left": ("toward the left side",), "right": ("toward the right side",),
                "up": ("toward the top",), "down": ("toward the bottom",)},
    voices=("en-gb-scotland+f4", "en-029+m5", "en-us-nyc+f1"),
)
SPLIT_EVERY_20 = ("train",) * 14 + ("val",) * 3 + ("test",) * 3


@dataclasses.dataclass(frozen=True)
class DemoSettings:
    frame_size: int = 96
    fps: int = 10
    sample_rate: int = 16000
    min_seconds: float = 8.0
    max_seconds: float = 15.0
    unnarrated_fraction: float = 0.2
    max_narration_offset: float = 1.0  # seconds between an event and its narration, either way


def _pick(rng: np.random.Generator, train: tuple, test_only: tuple, split: str):
    pool = train + test_only if split == "test" else train
    return pool[rng.integers(len(pool))]


def narration_text(digit: int, direction: str, split: str, rng: np.random.Generator) -> str:
    word = synth.DIGIT_WORDS[digit]
    noun = _pick(rng, TRAIN_PHRASING.nouns, TEST_ONLY_PHRASING.nouns, split).format(digit=word)
    verb = _pick(rng, TRAIN_PHRASING.verbs, TEST_ONLY_PHRASING.verbs, split)
    where = _pick(rng, TRAIN_PHRASING.directions[direction],
                  TEST_ONLY_PHRASING.directions[direction], split)
    template = _pick(rng, TRAIN_PHRASING.templates, TEST_ONLY_PHRASING.templates, split)
    return template.format(noun=noun, verb=verb, direction=where)


def _event_times(rng: np.random.Generator, duration: float) -> list[tuple[float, float]]:
    """2 to 4 non-overlapping events, one per equal slot, each 1.5-3 s long."""
    count = int(rng.integers(2, min(4, int(duration // 3)) + 1))
    slot = duration / count
    times = []
    for k in range(count):
        length = rng.uniform(1.5, min(3.0, slot - 0.3))
        start = k * slot + rng.uniform(0.1, slot - length - 0.1)
        times.append((round(start, 2), round(start + length, 2)))
    return times


@dataclasses.dataclass(frozen=True)
class RenderedVideo:
    """One demo video in memory: frames `[F, S, S, 3]` uint8, mono audio `[N]` float32 in [-1, 1],
    its narrations' captions and its manifest record."""

    frames: np.ndarray
    audio: np.ndarray
    captions: tuple[Caption, ...]
    record: dict


def render_video(index: int, seed: int, settings: DemoSettings, pools: dict[str, np.ndarray],
                 speak_fn=speak) -> RenderedVideo:
    """Render and speak video `index`. `speak_fn(text, voice, words_per_minute, pitch, sample_rate)`
    gives a narration's waveform; its output changes the audio and caption times, never the picture."""
    rng = np.random.default_rng([seed, index])
    split = SPLIT_EVERY_20[index % 20]
    video_id = f"demo_{index:05d}"
    duration = round(float(rng.uniform(settings.min_seconds, settings.max_seconds)), 1)
    num_frames = int(duration * settings.fps)
    narrated = bool(rng.uniform() >= settings.unnarrated_fraction)
    images, labels = synth.digit_images()

    frames = np.repeat(synth.background(rng, settings.frame_size)[None], num_frames, axis=0)
    frames += rng.normal(0, 0.015, size=frames.shape).astype(np.float32)
    audio = rng.normal(0, 0.01, size=int(duration * settings.sample_rate)).astype(np.float32)
    events, captions, speech_end = [], [], 0.0
    for start, end in _event_times(rng, duration):
        image_index = int(rng.choice(pools[split]))
        digit, direction = int(labels[image_index]), synth.DIRECTIONS[rng.integers(4)]
        rgb, alpha = synth.sprite(images[image_index], rng)
        first, last = int(start * settings.fps), min(num_frames, int(end * settings.fps))
        path = synth.sprite_path(direction, settings.frame_size, alpha.shape[0], last - first, rng)
        for frame, (y, x) in zip(frames[first:last], path):
            synth.paste(frame, rgb, alpha, y, x)
        event = {"start": start, "end": end, "digit": digit, "direction": direction,
                 "image_index": image_index, "narration": None}
        if narrated:
            text = narration_text(digit, direction, split, rng)
            voice = _pick(rng, TRAIN_PHRASING.voices, TEST_ONLY_PHRASING.voices, split)
            speech = speak_fn(text, voice, int(rng.integers(140, 191)), int(rng.integers(30, 71)),
                              settings.sample_rate)
            speech = 0.6 * speech / max(float(np.abs(speech).max()), 1e-6)
            said = len(speech) / settings.sample_rate
            offset = rng.uniform(-settings.max_narration_offset, settings.max_narration_offset)
            begin = min(max(start + offset, speech_end + 0.1), duration - said)
            if begin >= speech_end:  # leave out a narration that cannot fit without overlapping
                at = int(begin * settings.sample_rate)
                audio[at:at + len(speech)] += speech[: len(audio) - at]
                speech_end = begin + said
                caption = Caption(round(begin, 3), round(speech_end, 3), text)
                captions.append(caption)
                event["narration"] = {"text": text, "start": caption.start, "end": caption.end,
                                      "voice": voice}
        else:
            tone = synth.event_tone(digit, direction, end - start, settings.sample_rate)
            at = int(start * settings.sample_rate)
            audio[at:at + len(tone)] += tone[: len(audio) - at]
        events.append(event)

    record = {
        "id": video_id, "split": split, "video": f"videos/{video_id}.mp4",
        "captions": f"videos/{video_id}.srt" if captions else None, "duration": duration,
        "narrated": narrated,
        "labels": {"digits": [e["digit"] for e in events],
                   "directions": [e["direction"] for e in events]},
        "events": events,
    }
    return RenderedVideo((np.clip(frames, 0, 1) * 255).astype(np.uint8), np.clip(audio, -1, 1),
                         tuple(captions), record)


def make_video(index: int, seed: int, out_dir: Path, settings: DemoSettings,
               pools: dict[str, np.ndarray]) -> dict:
    """Render, speak and write video `index`; return its manifest record."""
    from mmv_tf.data.media import write_mp4  # PyAV: only writing needs an encoder

    video = render_video(index, seed, settings, pools)
    videos = out_dir / "videos"
    video_path, caption_path = out_dir / video.record["video"], videos / f"{video.record['id']}.srt"
    with atomic_path(video_path) as partial:
        write_mp4(partial, video.frames, settings.fps, video.audio, settings.sample_rate)
    if video.captions:
        with atomic_path(caption_path) as partial:
            write_srt(partial, video.captions)
    elif caption_path.exists():
        caption_path.unlink()
    return video.record


def _make_video_job(job):
    return make_video(*job)


def generate_demo_corpus(out_dir: str | Path, num_videos: int = 1000, seed: int = 0,
                         settings: DemoSettings | None = None, workers: int | None = None,
                         progress: bool = True) -> Path:
    """Write the corpus into `out_dir` and return the manifest's path.

    The content (manifest, captions, audio, rendered frames) is a function of
    (`seed`, `settings`); the H.264 bytes are not bit-exact between runs, since
    libx264 here varies slightly from one encoder instance to the next. The
    manifest is written last, atomically: a corpus without it is incomplete.
    """
    require_espeak()
    settings = settings or DemoSettings()
    with claimed_folder(out_dir, "corpus"):
        return _write_corpus(Path(out_dir), num_videos, seed, settings, workers, progress)


def _write_corpus(out_dir: Path, num_videos: int, seed: int, settings: DemoSettings, workers: int | None,
                  progress: bool) -> Path:
    (out_dir / "videos").mkdir(parents=True, exist_ok=True)
    pools = synth.split_digit_pools(seed)
    jobs = [(index, seed, out_dir, settings, pools) for index in range(num_videos)]
    workers = workers or min(len(os.sched_getaffinity(0)), 8)
    from tqdm import tqdm

    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        records = list(tqdm(pool.imap(_make_video_job, jobs, chunksize=4), total=num_videos,
                            desc="demo videos", unit="video", disable=not progress))
    manifest = out_dir / "manifest.jsonl"
    write_text_atomically(manifest, "".join(json.dumps(r) + "\n" for r in records))
    return manifest


def write_digit_images(out_dir: str | Path, split: str = "test", per_class: int = 30, seed: int = 0,
                       settings: DemoSettings | None = None, overwrite: bool = False) -> Path:
    """Still pictures of the corpus's digits for classification: `out_dir/<digit word>/NNN.png`, one
    sprite of the `split`'s digit images (by default unseen in training) on a texture, at a random
    place. Written whole or not at all (replacing earlier digits, or any folder if `overwrite`);
    returns `out_dir`."""
    from PIL import Image

    settings = settings or DemoSettings()
    images, labels = synth.digit_images()
    pool = synth.split_digit_pools(seed)[split]
    rng = np.random.default_rng([seed, 11])
    with written_folder(out_dir, "digits", overwrite=overwrite) as partial:
        for digit, word in enumerate(synth.DIGIT_WORDS):
            (partial / word).mkdir(parents=True)
            choices = pool[labels[pool] == digit]
            for number, index in enumerate(rng.choice(choices, per_class, replace=len(choices) < per_class)):
                frame = synth.background(rng, settings.frame_size)
                rgb, alpha = synth.sprite(images[index], rng)
                far = settings.frame_size - alpha.shape[0]
                synth.paste(frame, rgb, alpha, rng.uniform(0, far), rng.uniform(0, far))
                Image.fromarray((np.clip(frame, 0, 1) * 255).astype(np.uint8)).save(
                    partial / word / f"{number:03d}.png")
    return Path(out_dir)
