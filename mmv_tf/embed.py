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
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path

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

TABLES = ("videos", "windows", "captions")
INFO_FILE = "embeddings.json"
SKIPPED_FILE = "skipped.json"  # in each part: the files of its span that could not be decoded
PARTS_LAYOUT = 2  # parts of an unfinished run made by another layout are not resumed


class EmbedError(InputError):
    """A source or output folder that cannot be embedded into."""


@dataclasses.dataclass(frozen=True)
class EmbedSettings:
    window_stride: float | None = None  # seconds between window starts; None: half a window
    split: str | None = None  # only this split of the source
    videos_per_part: int = 16


def read_media(src: str | Path, fps: float, sample_rate: int, short_side: int,
               split: str | None = None, skip=lambda index: False
               ) -> tuple[int | None, Iterator[DecodedClip | str | None]]:
    """(number of videos if known, the videos) of `src`: a shard folder (from `mmv-tf data ingest`)
    or a media folder / manifest, only those of `split` if given.

    The iterator yields `DecodedClip`s, a message (str) naming a file that could not be decoded, or None
    for the videos whose position `skip(index)` accepts (these are not decoded).
    """
    from mmv_tf.data.ingest import DATASET_NAME
    from mmv_tf.data.shards import check_dataset, shard_files

    src = Path(src)
    if src.is_dir() and (shard_files(src) or (src / DATASET_NAME).is_file()):
        files = check_dataset(src, split)  # refuses unfinished or empty folders
        summary = src / DATASET_NAME  # ingest's summary counts the videos, not those of each split
        total = json.loads(summary.read_text(encoding="utf-8")).get("videos") if summary.is_file() else None
        return (total if split is None else None), _media_from_shards(files, skip)
    from mmv_tf.data.sources import SPLITS, list_sources

    if split is not None and split not in SPLITS:
        raise EmbedError(f"split must be one of {SPLITS}, got {split!r}")
    sources = [s for s in list_sources(src) if split is None or s.split == split]
    if not sources:
        raise EmbedError(f"{src} has no videos of split {split!r}")
    return len(sources), _media_from_sources(sources, fps, sample_rate, short_side, skip)


def _media_from_sources(sources, fps: float, sample_rate: int, short_side: int,
                        skip) -> Iterator[DecodedClip | str | None]:
    from mmv_tf.data.sources import DecodeSettings, decode_source

    settings = DecodeSettings(fps=fps, short_side=short_side, sample_rate=sample_rate)
    for index, source in enumerate(sources):
        yield None if skip(index) else decode_source(source, settings)


def _media_from_shards(files: list[str], skip) -> Iterator[DecodedClip | None]:
    import tensorflow as tf

    from mmv_tf.data.shards import parse_video

    for index, example in enumerate(tf.data.TFRecordDataset(files).map(parse_video).as_numpy_iterator()):
        if skip(index):
            yield None
            continue
        captions = [Caption(float(s), float(e), t.decode()) for s, e, t in
                    zip(example["caption/start"], example["caption/end"], example["caption/string"])]
        yield DecodedClip(list(example["frames"]), example["waveform"], bool(example["WAVEFORM/present"]),
                          float(example["video/fps"]), int(example["WAVEFORM/sample_rate"]),
                          int(example["image/width"]), int(example["image/height"]),
                          example["video/id"].decode(), example["video/source"].decode(),
                          example["video/split"].decode(), captions, example["labels/json"].decode())


def embed_media(model, clip: DecodedClip, stride_frames: int) -> dict[str, list[dict]]:
    """Rows of the three tables for one video (see the module docstring)."""
    clip = at_rates(clip, model.fps, model.sample_rate)
    frames = eval_frames(clip.jpeg_frames, model.image_size)
    length = model.num_frames
    starts = np.array(sliding_window_starts(len(clip.jpeg_frames), length, stride_frames))
    times, ends = starts / model.fps, (starts + length) / model.fps
    embeddings = {f"video_{s}": v for s, v in space_embeddings(model.embed_video(
        window_frames(frames, starts, length))).items()}
    if clip.has_audio:
        audio = window_audio(clip.waveform, times, window_samples(model.window_seconds, model.sample_rate),
                             model.sample_rate)
        embeddings.update({f"audio_{s}": v for s, v in space_embeddings(model.embed_audio(audio)).items()})
    windows = []
    for index, (start, end, caption) in enumerate(zip(times.tolist(), ends.tolist(),
                                                      window_captions(clip.captions, times, ends))):
        windows.append({"video_id": clip.video_id, "window": index, "start": round(start, 3),
                        "end": round(end, 3), "caption": caption,
                        **{name: values[index] for name, values in embeddings.items()}})
    video = {"video_id": clip.video_id, "split": clip.split, "source": clip.source,
             "duration": round(clip.duration, 3), "has_audio": clip.has_audio, "windows": len(starts),
             "labels_json": clip.labels_json,
             **{name: values.mean(axis=0) for name, values in embeddings.items()}}
    captions = []
    if clip.captions and model.has_text:  # a model without text keeps no captions
        texts = space_embeddings(model.embed_text([c.text for c in clip.captions]))
        for index, caption in enumerate(clip.captions):
            captions.append({"video_id": clip.video_id, "start": caption.start, "end": caption.end,
                             "text": caption.text,
                             **{f"text_{s}": v[index] for s, v in texts.items()}})
    return {"videos": [video], "windows": windows, "captions": captions}


def _table(rows: list[dict], dims: dict[str, int]):
    """A Parquet-ready Arrow table; embedding columns as fixed-size float32 lists (null if absent)."""
    import pyarrow as pa

    columns = {}
    names = list(dict.fromkeys(key for row in rows for key in row))
    for name in names:
        values = [row.get(name) for row in rows]
        if name in dims:
            columns[name] = pa.array([None if v is None else np.asarray(v, np.float32) for v in values],
                                     type=pa.list_(pa.float32(), dims[name]))
        else:
            columns[name] = pa.array(values)
    return pa.table(columns)


def embedding_dims(metadata: dict) -> dict[str, int]:
    """{column name: dimension} of a model's embedding columns, e.g. {"video_va": 512, ...}."""
    return {f"{modality}_{space}": dim for modality, spaces in metadata["spaces"].items()
            for space, dim in spaces.items()}


def embed_corpus(src: str | Path, model, out: str | Path, settings: EmbedSettings | None = None,
                 progress: bool = True) -> dict:
    """Embed every video of `src` with `model` (an `ExportedModel`) into `out`; returns the summary.
    `out` is checked, and the source listed, before anything is written."""
    settings = settings or EmbedSettings()
    out = Path(out)
    if (out / INFO_FILE).is_file():
        raise EmbedError(f"{out} already holds finished embeddings; choose another folder or delete it")
    parts = out / ".parts"
    total, media_iter = read_media(src, model.fps, model.sample_rate, model.image_size, settings.split,
                                   skip=lambda index: _part(parts, index, settings).is_dir())  # done earlier
    with claimed_folder(out, "embeddings", inputs=[src, model.path]):
        return _embed_into(out, parts, total, media_iter, src, model, settings, progress)


def _part(parts: Path, index: int, settings: EmbedSettings) -> Path:
    """The part folder of source video `index`: part k holds videos k*N .. k*N+N-1 (embedded or not)."""
    return parts / f"{index // settings.videos_per_part:05d}"


def _embed_into(out: Path, parts: Path, total: int | None, media_iter, src, model, settings: EmbedSettings,
                progress: bool) -> dict:
    """`embed_corpus`'s work, once `out` is claimed: embed into parts, then merge them."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from tqdm import tqdm

    parts.mkdir(parents=True, exist_ok=True)
    plan = {"source": str(Path(src).resolve()), "model": str(model.path.resolve()),
            "model_created": model.metadata.get("created"), "settings": dataclasses.asdict(settings),
            "parts_layout": PARTS_LAYOUT}
    plan_file = parts / "plan.json"
    if plan_file.is_file() and json.loads(plan_file.read_text(encoding="utf-8")) != plan:
        raise EmbedError(f"{out} holds an unfinished run with another source, model or settings; "
                         "delete it or choose another folder")
    write_text_atomically(plan_file, json.dumps(plan, indent=1))

    dims = embedding_dims(model.metadata)
    stride = int(round((settings.window_stride or model.window_seconds / 2) * model.fps))
    per_part = settings.videos_per_part

    def write_part(folder: Path, rows: dict, skipped: list[str]) -> None:
        with atomic_path(folder) as partial:
            partial.mkdir()
            for name in TABLES:
                pq.write_table(_table(rows[name], dims), partial / f"{name}.parquet")
            (partial / SKIPPED_FILE).write_text(json.dumps(skipped), encoding="utf-8")

    rows: dict[str, list[dict]] = {name: [] for name in TABLES}
    skipped: list[str] = []
    index = -1
    with tqdm(desc="embed", unit="video", total=total, disable=not progress) as bar:
        for index, item in enumerate(media_iter):
            bar.update()
            if isinstance(item, str):
                skipped.append(item)
                bar.write(f"skipped: {item}")
            elif item is not None:
                for name, new in embed_media(model, item, stride).items():
                    rows[name].extend(new)
            if item is not None and (index + 1) % per_part == 0:
                write_part(_part(parts, index, settings), rows, skipped)
                rows, skipped = {name: [] for name in TABLES}, []
        if index >= 0 and not _part(parts, index, settings).is_dir():
            write_part(_part(parts, index, settings), rows, skipped)

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
