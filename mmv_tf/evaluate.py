"""Zero-shot text-to-video retrieval on a corpus whose manifest lists narrated events (the demo's).

Each narrated event of the split gives one query (its narration) and one clip (the model's window
centred on the event). Every query ranks all clips by cosine similarity in the text-video space.
Reported: R@1/5/10 and the median rank of the query's own clip, with their chance levels, and label
precision@10: the share of the top 10 clips that show the query's digit moving its way (several
clips share a label, so this is the "mostly correct top hits" figure).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mmv_tf.errors import InputError

RECALL_AT = (1, 5, 10)


def narrated_events(corpus: str | Path, split: str) -> list[dict]:
    """[{video, start, end, text, label}] for the narrated events of `split` in the corpus manifest."""
    manifest = Path(corpus) / "manifest.jsonl"
    if not manifest.is_file():
        raise InputError(f"{manifest} not found: retrieval needs a manifest with events (mmv-tf data demo)")
    events = []
    for line in manifest.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        if record.get("split") != split:
            continue
        for event in record.get("events", []):
            if event.get("narration"):
                events.append({"video": Path(corpus) / record["video"], "start": event["start"],
                               "end": event["end"], "text": event["narration"]["text"],
                               "label": f"{event['digit']} {event['direction']}"})
    if not events:
        raise InputError(f"{manifest}: no narrated events in split {split!r}")
    return events


def event_clips(model, events: list[dict]) -> np.ndarray:
    """The model's window centred on each event: float32 `[E, T, S, S, 3]`."""
    from mmv_tf.data.preprocessing import centred_window_start, last_window_start, model_frames, window_frames

    clips, path, frames = [], None, None
    for event in events:  # grouped by video: decode each once
        if event["video"] != path:
            path = event["video"]
            frames = model_frames(model, path)
        first = centred_window_start((event["start"] + event["end"]) / 2, model.window_seconds, model.fps,
                                     last_window_start(len(frames), model.num_frames))
        clips.append(window_frames(frames, first, model.num_frames))
    return np.stack(clips)


def retrieval_metrics(similarity: np.ndarray, labels: list[str]) -> dict:
    """Metrics of `similarity` `[Q, C]` where query i's own clip is clip i, with chance levels."""
    count = len(similarity)
    own = np.diag(similarity)
    ranks = 1 + (similarity > own[:, None]).sum(axis=1)
    top = np.argsort(-similarity, axis=1, kind="stable")[:, :10]
    labels = np.asarray(labels)
    precision = (labels[top] == labels[:, None]).mean()
    same_label = (labels[None, :] == labels[:, None]).sum(axis=1) / count
    return {
        "queries": count,
        **{f"R@{k}": float(np.mean(ranks <= k)) for k in RECALL_AT},
        "median_rank": float(np.median(ranks)),
        "label_precision@10": float(precision),
        "chance": {**{f"R@{k}": min(k / count, 1.0) for k in RECALL_AT},
                   "median_rank": (count + 1) / 2, "label_precision@10": float(same_label.mean())},
    }


def text_to_video_retrieval(model, corpus: str | Path, split: str = "test") -> dict:
    """Zero-shot text->video retrieval of `model` (an `ExportedModel`) on `split` of `corpus`."""
    from mmv_tf.index import l2_normalized
    from mmv_tf.search import space_between

    events = narrated_events(corpus, split)
    space = space_between(model.metadata, "text", "video")
    clips = l2_normalized(model.embed_video(event_clips(model, events))[space])
    texts = l2_normalized(model.embed_text([e["text"] for e in events])[space])
    return {"model": model.metadata["name"], "corpus": str(corpus), "split": split, "space": space,
            **retrieval_metrics(texts @ clips.T, [e["label"] for e in events])}
