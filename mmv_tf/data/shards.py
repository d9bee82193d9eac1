"""The shard format: one `tf.train.SequenceExample` per video, DMVR style.

Context: `video/id`, `video/split`, `video/source`, `video/fps`, `video/duration`,
`image/height`, `image/width`, `WAVEFORM/sample_rate`, `WAVEFORM/present`,
`caption/string`, `caption/start`, `caption/end` (seconds), `labels/json`.
Sequences: `image/encoded` (one JPEG per frame), `WAVEFORM/feature/floats`
(one entry: the mono waveform).
"""

from __future__ import annotations

import json
from pathlib import Path

import tensorflow as tf

from mmv_tf.data.ingest import DATASET_NAME, REPORT_NAME
from mmv_tf.data.preprocessing import DecodedClip
from mmv_tf.errors import InputError

SHARD_SUFFIX = ".tfrecord"
_SPLIT_NAMES = {"train": "training", "val": "validation"}

CONTEXT_FEATURES = {
    "video/id": tf.io.FixedLenFeature([], tf.string),
    "video/split": tf.io.FixedLenFeature([], tf.string),
    "video/source": tf.io.FixedLenFeature([], tf.string),
    "video/fps": tf.io.FixedLenFeature([], tf.float32),
    "video/duration": tf.io.FixedLenFeature([], tf.float32),
    "image/height": tf.io.FixedLenFeature([], tf.int64),
    "image/width": tf.io.FixedLenFeature([], tf.int64),
    "WAVEFORM/sample_rate": tf.io.FixedLenFeature([], tf.int64),
    "WAVEFORM/present": tf.io.FixedLenFeature([], tf.int64),
    "caption/string": tf.io.RaggedFeature(tf.string),
    "caption/start": tf.io.RaggedFeature(tf.float32),
    "caption/end": tf.io.RaggedFeature(tf.float32),
    "labels/json": tf.io.FixedLenFeature([], tf.string, default_value="null"),
}
SEQUENCE_FEATURES = {
    "image/encoded": tf.io.FixedLenSequenceFeature([], tf.string),
    "WAVEFORM/feature/floats": tf.io.RaggedFeature(tf.float32),
}


def _bytes(values):
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=values))


def _floats(values):
    return tf.train.Feature(float_list=tf.train.FloatList(value=values))


def _ints(values):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=values))


def encode_video(clip: DecodedClip) -> bytes:
    """Serialized SequenceExample of a decoded clip."""
    context = {
        "video/id": _bytes([clip.video_id.encode()]),
        "video/split": _bytes([clip.split.encode()]),
        "video/source": _bytes([clip.source.encode()]),
        "video/fps": _floats([clip.fps]),
        "video/duration": _floats([clip.duration]),
        "image/height": _ints([clip.height]),
        "image/width": _ints([clip.width]),
        "WAVEFORM/sample_rate": _ints([clip.sample_rate]),
        "WAVEFORM/present": _ints([int(clip.has_audio)]),
        "caption/string": _bytes([c.text.encode() for c in clip.captions]),
        "caption/start": _floats([c.start for c in clip.captions]),
        "caption/end": _floats([c.end for c in clip.captions]),
        "labels/json": _bytes([clip.labels_json.encode()]),
    }
    sequences = {
        "image/encoded": tf.train.FeatureList(feature=[_bytes([jpeg]) for jpeg in clip.jpeg_frames]),
        "WAVEFORM/feature/floats": tf.train.FeatureList(feature=[_floats(clip.waveform)]),
    }
    return tf.train.SequenceExample(
        context=tf.train.Features(feature=context),
        feature_lists=tf.train.FeatureLists(feature_list=sequences),
    ).SerializeToString()


def parse_video(serialized: tf.Tensor) -> dict:
    """One serialized example -> a dict of tensors: the context fields, `frames` (JPEG strings `[F]`)
    and `waveform` (`[N]` float32)."""
    context, sequences = tf.io.parse_single_sequence_example(
        serialized, context_features=CONTEXT_FEATURES, sequence_features=SEQUENCE_FEATURES)
    return {**context, "frames": sequences["image/encoded"],
            "waveform": sequences["WAVEFORM/feature/floats"].flat_values}


def shard_files(folder, split: str | None = None) -> list[str]:
    """Complete shard files of `folder` (partial files are hidden and never listed), sorted."""
    pattern = f"{split}-*{SHARD_SUFFIX}" if split else f"*{SHARD_SUFFIX}"
    return sorted(str(p) for p in Path(folder).glob(pattern))


class DatasetError(InputError):
    """A shard folder cannot be read: missing, unfinished (ingest still running or stopped) or empty."""


def check_dataset(folder, split: str | None = None) -> list[str]:
    """The shard files of `folder` (of `split` if given) after checking that the folder can be read:
    its ingest finished (`dataset.json` says `complete`) and it holds at least one video (of `split`).

    Every reader of shard folders (training, embedding, stats) calls this, so an unfinished or
    empty dataset is refused with a message instead of being read as partial or hanging a reader.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"shard folder {folder} does not exist")
    dataset = folder / DATASET_NAME
    summary = None
    if dataset.is_file():
        try:
            summary = json.loads(dataset.read_text(encoding="utf-8"))
            complete = summary["complete"]
        except (ValueError, KeyError, TypeError):
            raise DatasetError(f"{dataset} is not an ingest summary (no `complete` field); rerun "
                               f"`mmv-tf data ingest` with --out {folder} to rebuild it") from None
        if complete is not True:
            raise DatasetError(f"{folder} holds an unfinished ingest ({DATASET_NAME}: complete is false; "
                               f"the ingest is still running or was stopped); rerun `mmv-tf data ingest` "
                               f"with the same source and --out {folder} to finish it")
    files = shard_files(folder, split)
    of_split = f" of split {split!r}" if split else ""
    if not files:
        what = f"{_SPLIT_NAMES.get(split, split)} " if split else ""
        pattern = f"{split}-*{SHARD_SUFFIX}" if split else f"*{SHARD_SUFFIX}"
        raise DatasetError(f"data folder {folder} holds no {what}shards ({pattern}); make them with "
                           "`mmv-tf data ingest`")
    # TFRecord files have no header: a shard whose videos were all skipped is an empty file.
    if (summary is not None and split is None and summary.get("videos") == 0) or not any(
            Path(f).stat().st_size for f in files):
        raise DatasetError(f"{folder} holds no videos{of_split}: ingest skipped every one (reasons in "
                           f"{folder / REPORT_NAME}); fix the sources and rerun `mmv-tf data ingest` "
                           "into a new --out folder")
    return files


def count_records(file: str | Path) -> int:
    """The number of videos (TFRecords) in shard `file`, from their length headers alone (a record is
    8 bytes of length, 4 of checksum, the data and 4 more of checksum); a file that ends inside a
    record is a `DatasetError` naming it."""
    size, offset, count = Path(file).stat().st_size, 0, 0
    with open(file, "rb") as stream:
        while offset + 12 <= size:
            stream.seek(offset)
            offset += 12 + int.from_bytes(stream.read(8), "little") + 4
            count += 1
    if offset != size:
        raise DatasetError(f"{file} ends inside a record (truncated or not a shard); ingest its source again")
    return count
