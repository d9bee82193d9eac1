"""Zero-shot retrieval between captions and videos (MSRVTT style), in the space the model shares
between text and video.

Each caption of the manifest is a query; its clip is the model's window centred on the caption's
span (`start`, `end`), or, for a record without times or with `clips="whole"`, the whole video
(`windows` linearly spaced windows, embeddings averaged). Captions of the same clip share it.
text -> video: the rank of the caption's clip among all clips; video -> text: the rank of the
clip's best caption among all captions. R@1/5/10, median and mean rank, with chance levels; where
every caption has a label, text -> video label precision@10 and R-precision (precision over the
top R clips, R = the clips of the query's label).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from mmv_tf.errors import InputError
from mmv_tf.evaluation.datasets import Caption, read_captions
from mmv_tf.evaluation.report import (
    cached_features,
    check_evaluation_output,
    draw_recall_curves,
    feature_key,
    files_key,
    markdown_report,
    value_key,
    write_evaluation,
)

RECALL_AT = (1, 5, 10)
CURVE_LENGTH = 50


def ranks_of_positives(similarity: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """For each row of `similarity` `[Q, G]`: 1 + the number of gallery items scored above its best
    positive (`positive` bool `[Q, G]`, at least one per row)."""
    best = np.where(positive, similarity, -np.inf).max(axis=1)
    return 1 + (similarity > best[:, None]).sum(axis=1)


def recall_figures(ranks: np.ndarray, gallery: int) -> dict:
    """R@K, median and mean rank of `ranks`, and their chance levels for one positive in `gallery`."""
    return {**{f"R@{k}": float(np.mean(ranks <= k)) for k in RECALL_AT},
            "median_rank": float(np.median(ranks)), "mean_rank": float(np.mean(ranks)),
            "chance": {**{f"R@{k}": min(k / gallery, 1.0) for k in RECALL_AT},
                       "median_rank": (gallery + 1) / 2}}


def label_figures(similarity: np.ndarray, query_labels: np.ndarray, item_labels: np.ndarray) -> dict:
    """Label precision@10 and R-precision of text -> video `similarity` `[Q, C]`, with chance."""
    same = query_labels[:, None] == item_labels[None, :]
    order = np.argsort(-similarity, axis=1, kind="stable")
    hits = np.take_along_axis(same, order, axis=1)
    relevant = same.sum(axis=1)
    r_precision = [hits[q, :r].mean() for q, r in enumerate(relevant) if r]
    chance = float(same.mean())  # a random ranking's precision at any depth
    return {"label_precision@10": float(hits[:, :10].mean()),
            "label_R_precision": float(np.mean(r_precision)),
            "chance": {"label_precision@10": chance, "label_R_precision": chance}}


def retrieval_metrics(similarity: np.ndarray, clip_of: np.ndarray, labels: list[str | None]) -> dict:
    """The figures of text -> video `similarity` `[Q, C]` where caption q shows clip `clip_of[q]`."""
    captions, clips = similarity.shape
    positive = np.zeros_like(similarity, bool)
    positive[np.arange(captions), clip_of] = True
    text_ranks = ranks_of_positives(similarity, positive)
    video_ranks = ranks_of_positives(similarity.T, positive.T)
    result = {"captions": captions, "clips": clips,
              "text_to_video": recall_figures(text_ranks, clips),
              "video_to_text": recall_figures(video_ranks, captions),
              "curves": {"text -> video": [float(np.mean(text_ranks <= k))
                                           for k in range(1, min(CURVE_LENGTH, clips) + 1)],
                         "video -> text": [float(np.mean(video_ranks <= k))
                                           for k in range(1, min(CURVE_LENGTH, captions) + 1)]}}
    if all(label is not None for label in labels):
        labels_array = np.asarray(labels)
        first_caption = np.array([np.flatnonzero(clip_of == c)[0] for c in range(clips)])
        labelled = label_figures(similarity, labels_array, labels_array[first_caption])
        text_to_video = result["text_to_video"]
        text_to_video |= {**labelled, "chance": text_to_video["chance"] | labelled["chance"]}
    return result


def clip_inputs(captions: list[Caption], whole: bool) -> tuple[list, np.ndarray]:
    """(the distinct clips as (video, start, end), grouped by video; clip index of each caption `[Q]`)."""
    keys = [(str(c.video), None, None) if whole or c.start is None else c.clip for c in captions]
    clips = sorted(dict.fromkeys(keys), key=lambda clip: clip[0])  # a video's clips together: one decode
    index = {key: i for i, key in enumerate(clips)}
    return clips, np.array([index[key] for key in keys])


def embed_clips(model, clips: list[tuple], space: str, windows: int,
                note: Callable[[str], None]) -> np.ndarray:
    """The unit embeddings `[C, D]` in `space` of each clip: its centred window, or the mean of
    `windows` spaced windows of the whole video."""
    from tqdm import tqdm

    from mmv_tf.data.preprocessing import (
        centred_window_start,
        evaluation_window_starts,
        last_window_start,
        model_frames,
        window_frames,
    )
    from mmv_tf.index import l2_normalized

    vectors, path, frames = [], None, None
    for video, start, end in tqdm(clips, desc="embedding clips", unit="clip"):
        if video != path:  # clips of one video come together: decode it once
            path, frames = video, model_frames(model, video)
        last = int(last_window_start(len(frames), model.num_frames))
        if start is None:
            starts = np.unique(evaluation_window_starts(last, windows))
        else:
            starts = [centred_window_start((start + end) / 2, model.window_seconds, model.fps, last)]
        embedded = model.embed_video(np.stack([window_frames(frames, s, model.num_frames)
                                               for s in starts]))[space]
        vectors.append(l2_normalized(embedded).mean(axis=0))
    return l2_normalized(np.stack(vectors))


def evaluate_retrieval(model_path: str | Path, manifest: str | Path, out: str | Path,
                       split: str | None = "test", clips: str = "caption", windows: int = 4,
                       overwrite: bool = False, note: Callable[[str], None] = print) -> dict:
    """Text <-> video retrieval of the captions of `split` in `manifest` (module docstring);
    `clips`: caption (the caption's span where it has one) or whole (whole videos)."""
    from mmv_tf.index import l2_normalized
    from mmv_tf.saved_model import ExportedModel
    from mmv_tf.search import space_between

    if clips not in ("caption", "whole"):
        raise InputError(f"clips must be caption or whole, not {clips!r}")
    out = Path(out)
    check_evaluation_output(out, (manifest, model_path), overwrite)
    captions = read_captions(manifest, split)
    model = ExportedModel(model_path)
    if not model.has_text or "video" not in model.metadata["signatures"]:
        raise InputError(f"model {model.path} needs video and text signatures for retrieval")
    space = space_between(model.metadata, "text", "video")
    clip_list, clip_of = clip_inputs(captions, clips == "whole")
    key = feature_key(verb="retrieval", model=model.identity["weights_sha256"],
                      captions=value_key([[c.clip, c.text] for c in captions]), rows=value_key(clip_list),
                      files=files_key(sorted({c.video for c in captions})), clips=clips, windows=windows)

    def embed():
        texts = l2_normalized(model.embed_text([c.text for c in captions])[space])
        return {"texts": texts, "clips": embed_clips(model, clip_list, space, windows, note)}, {}

    arrays, _ = cached_features(out, key, embed, note)
    figures = retrieval_metrics(arrays["texts"] @ arrays["clips"].T, clip_of, [c.label for c in captions])
    curves = figures.pop("curves")
    result = {"verb": "retrieval", "model": {"path": str(model.path), **model.identity},
              "data": str(manifest), "settings": {"split": split, "clips": clips, "windows": windows},
              "space": space, **figures, "recall_curves": curves}
    rows = [(f"{direction.replace('_', ' ')} {name}", f"{figures[direction][name]:.3f}")
            for direction in ("text_to_video", "video_to_text")
            for name in (*(f"R@{k}" for k in RECALL_AT), "median_rank", "label_R_precision",
                         "label_precision@10") if name in figures[direction]]
    report = markdown_report("retrieval", result, rows + [("captions", str(figures["captions"])),
                                                          ("clips", str(figures["clips"]))], ["recall_at_k"])
    write_evaluation(out, result, report, {"recall_at_k": draw_recall_curves(
        {name: np.asarray(curve) for name, curve in curves.items()})},
        (arrays, key, {}), (manifest, model_path), overwrite)
    return result
