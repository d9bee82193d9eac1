"""`mmv-tf data stats`: what a shard folder holds, per split."""

from __future__ import annotations

import collections
from pathlib import Path

import tensorflow as tf

from mmv_tf.data.shards import CONTEXT_FEATURES, check_dataset

_STATS_FEATURES = {key: CONTEXT_FEATURES[key] for key in (
    "video/id", "video/split", "video/duration", "WAVEFORM/present", "caption/string")}


def shard_stats(folder: str | Path, sample_captions: int = 5) -> dict:
    """Counts per split (videos, hours, with / without audio and text) and a few captions."""
    files = check_dataset(folder)  # refuses unfinished or empty folders
    splits = collections.defaultdict(collections.Counter)
    captions = []
    for serialized in tf.data.TFRecordDataset(files):
        context, _ = tf.io.parse_single_sequence_example(serialized, context_features=_STATS_FEATURES)
        counts = splits[context["video/split"].numpy().decode()]
        texts = context["caption/string"].numpy()
        counts["videos"] += 1
        counts["seconds"] += float(context["video/duration"])
        counts["with_audio" if int(context["WAVEFORM/present"]) else "without_audio"] += 1
        counts["with_text" if len(texts) else "without_text"] += 1
        counts["captions"] += len(texts)
        if len(captions) < sample_captions and len(texts):
            captions.append({"video": context["video/id"].numpy().decode(), "caption": texts[0].decode()})
    per_split = {
        split: {"videos": c["videos"], "hours": round(c["seconds"] / 3600, 3),
                "with_audio": c["with_audio"], "without_audio": c["without_audio"],
                "with_text": c["with_text"], "without_text": c["without_text"],
                "captions": c["captions"]}
        for split, c in sorted(splits.items())
    }
    return {"folder": str(folder), "shards": len(files), "splits": per_split, "sample_captions": captions}
