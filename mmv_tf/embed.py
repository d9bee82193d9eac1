"""Embed a corpus with an exported model: each window (with its times), each video, each caption.

Output folder (Parquet tables; embedding columns are fixed-size float32 lists named
`<modality>_<space>`, raw as the model returns them):
  windows.parquet   video_id, window, start, end, caption (the caption overlapping it most, or null),
                    video_va, video_vat, audio_va, audio_vat (audio columns null without audio)
  videos.parquet    video_id, split, source, duration, has_audio, windows, labels_json, and the
                    mean of its windows' embeddings
  captions.parquet  video_id, start, end, text, text_vat
  embeddings.json   the model's metadata, the source, the settings and counts; written last, so
                    its presence marks a complete folder.
Videos are embedded in parts of `videos_per_part` source videos, each written whole under `.parts/`
with the names of its undecodable files; a rerun after an interruption skips the parts that exist,
without decoding their videos, and then merges them.

Both runners share every step: which videos of which file (`list_media`, `read_media_file`), how a
video becomes model inputs (`video_inputs`), the model's calls (`embed_batches`), its rows
(`video_rows`), the parts (`write_part`) and their merge. The local runner takes the steps in this
process; `mmv_tf.embed_beam` takes them as an Apache Beam pipeline whose workers write the parts.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import shlex
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mmv_tf.data.preprocessing import (
    DecodedClip,
    at_rates,
    eval_frames,
    sliding_window_starts,
    window_audio,
    window_captions,
    window_frames,
    window_samples,
)
from mmv_tf.data.subtitles import Caption
from mmv_tf.errors import InputError
from mmv_tf.export import space_embeddings
from mmv_tf.files import atomic_path, claimed_folder, remove_path, write_text_atomically

if TYPE_CHECKING:
    from mmv_tf.data.sources import DecodeSettings, Source

TABLES = ("videos", "windows", "captions")
INFO_FILE = "embeddings.json"
SKIPPED_FILE = "skipped.json"  # in each part: the files of its span that could not be decoded
PARTS_LAYOUT = 2  # parts of an unfinished run made by another layout are not resumed


class EmbedError(InputError):
    """A source or output folder that cannot be embedded into, or a runner that cannot run."""


@dataclasses.dataclass(frozen=True)
class EmbedSettings:
    window_stride: float | None = None  # seconds between window starts; None: half a window
    split: str | None = None  # only this split of the source
    videos_per_part: int = 16


# ---------------------------------------------------------------- which videos of which file

@dataclasses.dataclass(frozen=True)
class MediaFile:
    """A file of a source and where its videos stand among the source's: a video file (one video,
    `source` its listing) or a shard file (`count` videos from position `first` on)."""

    path: str
    first: int
    count: int = 1
    source: Source | None = None


def list_media(src: str | Path, split: str | None = None) -> list[MediaFile]:
    """The files of `src`, in order: a shard folder (from `mmv-tf data ingest`) or a media folder /
    manifest, only those of `split` if given. Checked and listed without decoding anything."""
    from mmv_tf.data.ingest import DATASET_NAME
    from mmv_tf.data.shards import check_dataset, count_records, shard_files

    src = Path(src)
    if src.is_dir() and (shard_files(src) or (src / DATASET_NAME).is_file()):
        files = check_dataset(src, split)  # refuses unfinished or empty folders
        counts = [count_records(file) for file in files]
        firsts = itertools.accumulate(counts, initial=0)
        return [MediaFile(file, first, count) for file, first, count in zip(files, firsts, counts)]
    from mmv_tf.data.sources import SPLITS, list_sources

    if split is not None and split not in SPLITS:
        raise EmbedError(f"split must be one of {SPLITS}, got {split!r}")
    sources = [s for s in list_sources(src) if split is None or s.split == split]
    if not sources:
        raise EmbedError(f"{src} has no videos of split {split!r}")
    return [MediaFile(str(source.path), index, source=source) for index, source in enumerate(sources)]


def read_media_file(file: MediaFile, decoding: DecodeSettings,
                    skip: Callable[[int], bool] = lambda index: False
                    ) -> Iterator[tuple[int, DecodedClip | str | None]]:
    """(position among the source's videos, video) for each video of `file`: a `DecodedClip` (a
    video file decoded with `decoding`; a shard's as ingest stored it), a message naming a file that
    could not be decoded, or None where `skip(position)` (not decoded)."""
    if file.source is not None:
        from mmv_tf.data.sources import decode_source

        yield file.first, None if skip(file.first) else decode_source(file.source, decoding)
        return
    import tensorflow as tf

    from mmv_tf.data.shards import parse_video

    for index, example in enumerate(tf.data.TFRecordDataset(file.path).map(parse_video).as_numpy_iterator(),
                                    start=file.first):
        if skip(index):
            yield index, None
            continue
        captions = [Caption(float(s), float(e), t.decode()) for s, e, t in
                    zip(example["caption/start"], example["caption/end"], example["caption/string"])]
        yield index, DecodedClip(
            list(example["frames"]), example["waveform"], bool(example["WAVEFORM/present"]),
            float(example["video/fps"]), int(example["WAVEFORM/sample_rate"]), int(example["image/width"]),
            int(example["image/height"]), example["video/id"].decode(), example["video/source"].decode(),
            example["video/split"].decode(), captions, example["labels/json"].decode())


def model_decoding(model) -> DecodeSettings:
    """How video files are decoded for `model`: at its frame rate and sample rate, the shorter side
    its image size."""
    from mmv_tf.data.sources import DecodeSettings

    return DecodeSettings(fps=model.fps, short_side=model.image_size, sample_rate=model.sample_rate)


# ---------------------------------------------------------------- one video through the model

@dataclasses.dataclass(frozen=True)
class InputSpec:
    """What `video_inputs` needs of a model (`ExportedModel` attributes), without its weights."""

    fps: float
    sample_rate: int
    image_size: int
    num_frames: int
    has_text: bool

    @classmethod
    def of(cls, model) -> InputSpec:
        return cls(model.fps, model.sample_rate, model.image_size, model.num_frames, model.has_text)


@dataclasses.dataclass
class VideoInputs:
    """One video ready for the model: the clip at its rates, its windows' `starts` and `ends` in
    seconds `[W]`, and a batch per signature: video float32 `[W, T, S, S, 3]`, audio `[W, N]` (a
    video with audio), text `[C]` captions (a model with text)."""

    clip: DecodedClip
    starts: np.ndarray
    ends: np.ndarray
    batches: dict[str, np.ndarray]


def video_inputs(model, clip: DecodedClip, stride_frames: int) -> VideoInputs:
    """`clip`'s windows every `stride_frames` frames as `model` (an `ExportedModel` or `InputSpec`)
    takes them."""
    clip = at_rates(clip, model.fps, model.sample_rate)
    frames = eval_frames(clip.jpeg_frames, model.image_size)
    length = model.num_frames
    starts = np.array(sliding_window_starts(len(clip.jpeg_frames), length, stride_frames))
    times, ends = starts / model.fps, (starts + length) / model.fps
    batches = {"video": np.asarray(window_frames(frames, starts, length))}
    if clip.has_audio:
        batches["audio"] = np.asarray(window_audio(
            clip.waveform, times, window_samples(length / model.fps, model.sample_rate), model.sample_rate))
    if clip.captions and model.has_text:
        batches["text"] = np.array([c.text for c in clip.captions], dtype=object)
    return VideoInputs(clip, times, ends, batches)


def embed_batches(model, batches: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    """One video's embeddings per signature and space, `{"video": {"va": [W, D], ...}, ...}`:
    `model`'s signatures (through an `ExportedModel`) on its `VideoInputs.batches`."""
    calls = {"video": model.embed_video, "audio": model.embed_audio, "text": model.embed_text}
    return {signature: space_embeddings(calls[signature](batch)) for signature, batch in batches.items()}


def video_rows(inputs: VideoInputs, embeddings: dict[str, dict[str, np.ndarray]]) -> dict[str, list[dict]]:
    """Rows of the three tables for one video (see the module docstring) from its inputs and their
    `embed_batches` embeddings."""
    clip = inputs.clip
    window_columns = {f"{signature}_{space}": values for signature in ("video", "audio")
                      for space, values in embeddings.get(signature, {}).items()}
    overlapping = window_captions(clip.captions, inputs.starts, inputs.ends)
    windows = [{"video_id": clip.video_id, "window": index, "start": round(start, 3), "end": round(end, 3),
                "caption": caption, **{name: values[index] for name, values in window_columns.items()}}
               for index, (start, end, caption) in enumerate(zip(inputs.starts.tolist(), inputs.ends.tolist(),
                                                                 overlapping))]
    video = {"video_id": clip.video_id, "split": clip.split, "source": clip.source,
             "duration": round(clip.duration, 3), "has_audio": clip.has_audio, "windows": len(windows),
             "labels_json": clip.labels_json,
             **{name: values.mean(axis=0) for name, values in window_columns.items()}}
    text = embeddings.get("text", {})  # none from a model without text: it keeps no captions
    captions = [{"video_id": clip.video_id, "start": caption.start, "end": caption.end, "text": caption.text,
                 **{f"text_{space}": values[index] for space, values in text.items()}}
                for index, caption in enumerate(clip.captions) if text]
    return {"videos": [video], "windows": windows, "captions": captions}


def embed_media(model, clip: DecodedClip, stride_frames: int) -> dict[str, list[dict]]:
    """Rows of the three tables for one video, embedded in this process by `model`."""
    inputs = video_inputs(model, clip, stride_frames)
    return video_rows(inputs, embed_batches(model, inputs.batches))


# ---------------------------------------------------------------- parts and tables

def _table(rows: list[dict], dims: dict[str, int]):
    """A Parquet-ready Arrow table; embedding columns as float32 lists (null if absent; of variable
    size, as pyarrow before 26, which Apache Beam pins, cannot read nulls of a fixed-size list)."""
    import pyarrow as pa

    columns = {}
    names = list(dict.fromkeys(key for row in rows for key in row))
    for name in names:
        values = [row.get(name) for row in rows]
        if name in dims:
            columns[name] = pa.array([None if v is None else np.asarray(v, np.float32) for v in values],
                                     type=pa.list_(pa.float32()))
        else:
            columns[name] = pa.array(values)
    return pa.table(columns)


def embedding_dims(metadata: dict) -> dict[str, int]:
    """{column name: dimension} of a model's embedding columns, e.g. {"video_va": 512, ...}."""
    return {f"{modality}_{space}": dim for modality, spaces in metadata["spaces"].items()
            for space, dim in spaces.items()}


@dataclasses.dataclass(frozen=True)
class EmbedPlan:
    """How the videos are embedded and where their rows go: windows every `stride_frames` frames;
    part k of folder `parts` holds source videos k*N .. k*N+N-1 (N = `videos_per_part`), embedded
    or not, in tables with the embedding columns of `dims`."""

    parts: Path
    videos_per_part: int
    stride_frames: int
    dims: dict[str, int]

    def number(self, index: int) -> int:
        """The part of source video `index`."""
        return index // self.videos_per_part

    def folder(self, number: int) -> Path:
        return self.parts / f"{number:05d}"

    def done(self, index: int) -> bool:
        """Whether the part of source video `index` was written (by an earlier run)."""
        return self.folder(self.number(index)).is_dir()


def write_part(plan: EmbedPlan, number: int, videos: Iterable[tuple[int, dict | str]]) -> None:
    """Write part `number` whole: its videos' rows in source order (`videos`: (position, rows or
    the message of a file that could not be decoded), in any order), and the messages."""
    import pyarrow.parquet as pq

    rows: dict[str, list[dict]] = {name: [] for name in TABLES}
    skipped = []
    for _, video in sorted(videos, key=lambda item: item[0]):
        if isinstance(video, str):
            skipped.append(video)
        else:
            for name in TABLES:
                rows[name].extend(video[name])
    with atomic_path(plan.folder(number)) as partial:
        partial.mkdir()
        for name in TABLES:
            pq.write_table(_table(rows[name], plan.dims), partial / f"{name}.parquet")
        (partial / SKIPPED_FILE).write_text(json.dumps(skipped), encoding="utf-8")


def _embed_locally(files: list[MediaFile], model, plan: EmbedPlan, progress: bool) -> None:
    """Embed the videos of `files` whose parts are not done, in this process; each part is written
    as soon as its last video is embedded."""
    from tqdm import tqdm

    decoding = model_decoding(model)
    total = sum(f.count for f in files)
    videos: list[tuple[int, dict | str]] = []
    with tqdm(desc="embed", unit="video", total=total, disable=not progress) as bar:
        for file in files:
            for index, video in read_media_file(file, decoding, skip=plan.done):
                bar.update()
                if video is None:
                    continue
                if isinstance(video, str):
                    bar.write(f"skipped: {video}")
                    videos.append((index, video))
                else:
                    videos.append((index, embed_media(model, video, plan.stride_frames)))
                if (index + 1) % plan.videos_per_part == 0 or index + 1 == total:
                    write_part(plan, plan.number(index), videos)
                    videos = []


# ---------------------------------------------------------------- the corpus

def runner_flags(runner: str, beam_options: str | None) -> list[str] | None:
    """`embed_corpus`'s `beam_options` for the CLI's `--runner` (local or beam) and `--beam-options`
    (one shell-quoted string), checked: None for the local runner."""
    if runner not in ("local", "beam"):
        raise EmbedError(f"--runner must be local or beam, got {runner!r}")
    if runner == "local":
        if beam_options is not None:
            raise EmbedError("--beam-options needs --runner beam")
        return None
    try:
        flags = shlex.split(beam_options or "")
    except ValueError as error:
        raise EmbedError(f"--beam-options {beam_options!r}: {error}") from None
    _beam_run(flags)  # checked before the model is loaded
    return flags


def _beam_run(flags: list[str]):
    """`mmv_tf.embed_beam.beam_runner(flags)`, or how to install Apache Beam where it is missing."""
    try:
        from mmv_tf.embed_beam import beam_runner
    except ModuleNotFoundError as error:
        if error.name != "apache_beam":
            raise
        raise EmbedError("--runner beam needs Apache Beam: pip install 'mmv-tf[beam]'") from None
    return beam_runner(flags)


def embed_corpus(src: str | Path, model, out: str | Path, settings: EmbedSettings | None = None,
                 progress: bool = True, beam_options: list[str] | None = None) -> dict:
    """Embed every video of `src` with `model` (an `ExportedModel`) into `out`; returns the summary.

    In this process, or with `beam_options` (Beam pipeline flags; [] runs the DirectRunner) as an
    Apache Beam pipeline (`mmv_tf.embed_beam`). `out` is checked, the source listed and the Beam
    options and runner checked before anything is written."""
    settings = settings or EmbedSettings()
    out = Path(out)
    if (out / INFO_FILE).is_file():
        raise EmbedError(f"{out} already holds finished embeddings; choose another folder or delete it")
    files = list_media(src, settings.split)
    if beam_options is None:
        run = functools.partial(_embed_locally, progress=progress)
    else:
        run = _beam_run(beam_options)
    with claimed_folder(out, "embeddings", inputs=[src, model.path]):
        return _embed_into(out, files, src, model, settings, run)


def _embed_into(out: Path, files: list[MediaFile], src, model, settings: EmbedSettings, run) -> dict:
    """`embed_corpus`'s work, once `out` is claimed: `run(files, model, plan)` embeds into parts,
    then they are merged."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    parts = out / ".parts"
    parts.mkdir(parents=True, exist_ok=True)
    plan_record = {"source": str(Path(src).resolve()), "model": str(model.path.resolve()),
                   "model_created": model.metadata.get("created"), "settings": dataclasses.asdict(settings),
                   "parts_layout": PARTS_LAYOUT}
    plan_file = parts / "plan.json"
    if plan_file.is_file() and json.loads(plan_file.read_text(encoding="utf-8")) != plan_record:
        raise EmbedError(f"{out} holds an unfinished run with another source, model or settings; "
                         "delete it or choose another folder")
    write_text_atomically(plan_file, json.dumps(plan_record, indent=1))

    dims = embedding_dims(model.metadata)
    stride = int(round((settings.window_stride or model.window_seconds / 2) * model.fps))
    run(files, model, EmbedPlan(parts, settings.videos_per_part, stride, dims))

    finished = sorted(parts.glob("[0-9]*"))
    skipped = [m for p in finished for m in json.loads((p / SKIPPED_FILE).read_text(encoding="utf-8"))]
    tables = {}
    for name in TABLES:
        pieces = [t for t in (pq.read_table(p / f"{name}.parquet") for p in finished) if t.num_rows]
        tables[name] = pa.concat_tables(pieces, promote_options="default") if pieces else _table([], dims)
    if not tables["videos"].num_rows:
        raise EmbedError(f"{src}: no video could be embedded ({len(skipped)} skipped)")
    counts = {}
    for name, table in tables.items():
        with atomic_path(out / f"{name}.parquet") as partial:
            pq.write_table(table, partial)
        counts[name] = table.num_rows
    info = {"model": model.metadata, "model_identity": model.identity, "model_path": str(model.path),
            "source": str(Path(src).resolve()),
            "settings": dataclasses.asdict(settings), "window_seconds": model.window_seconds,
            "stride_seconds": stride / model.fps, "counts": counts, "skipped": skipped,
            "dims": dims}
    write_text_atomically(out / INFO_FILE, json.dumps(info, indent=1) + "\n")
    remove_path(parts)
    return info
