"""Linear evaluation of a model's representation (`before_head`) on labelled videos, sounds and images,
by the paper's protocols (../shared/reference/mmv-spec.md, "Evaluation protocols"):

- videos: the released UCF101 protocol. Each training video gives `passes` clips, each a random
  window of `frames` frames every `stride`-th (at the model's frame rate), shorter side `crop`, a
  random `crop` square, flipped half the time (`flip`); each test video gives `test_windows` spaced
  windows, centre-cropped. StandardScaler + LinearSVC(C); a test video's class scores are its
  windows' decision functions averaged; top-1 and top-5.
- sounds: the same classifier on the audio `before_head` of `windows` linearly spaced windows of
  the model's length (every window a training example; test scores averaged), k-fold when the
  data has folds (ESC-50).
- images: the same classifier on the image (or static-video) `before_head`, and zero-shot by class
  names in the space the model shares with text; top-1, or mAP for multi-label data (VOC).

Each verb embeds once (the features are cached in --out), then fits and scores.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

from mmv_tf.errors import InputError
from mmv_tf.evaluation.datasets import LabelledData, Partition, read_labelled
from mmv_tf.evaluation.report import (
    cached_features,
    check_evaluation_output,
    draw_confusion,
    feature_key,
    files_key,
    markdown_report,
    value_key,
    write_evaluation,
)

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg")
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".m4a", ".aac", ".opus")


@dataclasses.dataclass(frozen=True)
class Protocol:
    """Settings of a linear evaluation; the defaults are the released UCF101 protocol's."""

    frames: int = 32  # frames per clip
    stride: int = 2  # every stride-th frame at the model's frame rate
    crop: int = 224  # shorter side, then a square of this side
    passes: int = 10  # random clips of each training video
    flip: bool = True  # mirror training clips half the time (not where left and right are classes)
    test_windows: int = 10  # linearly spaced windows of each test video (or sound)
    c: float = 0.001  # LinearSVC's C, on standardised features
    held_out: float = 0.25  # share of each class tested, for data without a split or folds
    seed: int = 0

    def feature_settings(self, *names: str) -> dict:
        """The settings that change the features (the cache key), by name."""
        return {name: getattr(self, name) for name in (*names, "held_out", "seed")}


def linear_classifier(c: float, seed: int, multi_label: bool):
    """StandardScaler + LinearSVC (one-vs-rest over the label matrix for multi-label data)."""
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    classifier = make_pipeline(StandardScaler(), LinearSVC(C=c, random_state=seed, max_iter=5000))
    return OneVsRestClassifier(classifier) if multi_label else classifier


def class_scores(classifier, features: np.ndarray, owners: np.ndarray, examples: np.ndarray,
                 classes: int) -> np.ndarray:
    """Scores `[len(examples), classes]`: the decision functions of each example's rows of
    `features` (those whose `owners` entry is the example), averaged."""
    from mmv_tf.classify import class_columns

    decision = class_columns(classifier.decision_function(features))
    full = np.full((len(decision), classes), -np.inf)  # a class the fit rows lack never wins
    full[:, classifier.classes_] = decision
    return np.stack([full[owners == example].mean(axis=0) for example in examples])


def top_k(scores: np.ndarray, labels: np.ndarray, k: int) -> float:
    """The share of rows whose label is among their `k` highest scores."""
    best = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return float(np.mean((best == labels[:, None]).any(axis=1)))


def mean_average_precision(scores: np.ndarray, truth: np.ndarray) -> tuple[float, np.ndarray]:
    """(mAP, AP per class `[C]`) of `scores` against 0/1 `truth` `[N, C]`; classes without a
    positive test example are left out of the mean (NaN in the list)."""
    from sklearn.metrics import average_precision_score

    per_class = np.array([average_precision_score(truth[:, c], scores[:, c]) if truth[:, c].any()
                          else np.nan for c in range(truth.shape[1])])
    return float(np.nanmean(per_class)), per_class


def linear_evaluation(data: LabelledData, features: dict[str, np.ndarray], partitions: list[Partition],
                      protocol: Protocol) -> dict:
    """Fit on each partition's fit rows, score its test examples; figures averaged over partitions.
    `features`: "fit" `[R, D]` with "fit_of" `[R]` (the example of each row), "test" / "test_of"."""
    outcome: dict = {"partitions": []}
    confusion = np.zeros((len(data.classes),) * 2, np.int64)
    targets = data.label_matrix() if data.multi_label else data.label_indices()
    for partition in partitions:
        fit_rows = np.isin(features["fit_of"], partition.fit)
        test_rows = np.isin(features["test_of"], partition.test)
        if not data.multi_label and len(np.unique(targets[features["fit_of"][fit_rows]])) < 2:
            raise InputError(f"{data.source}: the examples to fit ({partition.name}) hold fewer than two "
                             "classes")
        classifier = linear_classifier(protocol.c, protocol.seed, data.multi_label).fit(
            features["fit"][fit_rows], targets[features["fit_of"][fit_rows]])
        scores = class_scores(classifier, features["test"][test_rows], features["test_of"][test_rows],
                              partition.test, len(data.classes))
        outcome["partitions"].append({"name": partition.name, "fit": len(partition.fit),
                                      "test": len(partition.test), **scored(data, scores, partition.test)})
        if not data.multi_label:
            predicted = scores.argmax(axis=1)
            np.add.at(confusion, (targets[partition.test], predicted), 1)
    names = [k for k in outcome["partitions"][0] if k not in ("name", "fit", "test")]
    outcome.update({name: float(np.mean([p[name] for p in outcome["partitions"]])) for name in names})
    outcome["confusion"] = confusion
    return outcome


def scored(data: LabelledData, scores: np.ndarray, examples: np.ndarray) -> dict:
    """top1 / top5 (single-label) or mAP (multi-label) of `scores` for `examples`."""
    if data.multi_label:
        return {"mAP": mean_average_precision(scores, data.label_matrix()[examples])[0]}
    labels = data.label_indices()[examples]
    return {"top1": top_k(scores, labels, 1), "top5": top_k(scores, labels, min(5, scores.shape[1]))}


# ------------------------------------------------------------------ features of each modality

def _seed_of(protocol: Protocol, path: Path, draw: int) -> np.ndarray:
    """The augmentation seed `[2]` of draw `draw` of a file: the same for the same file and seed."""
    return np.array([protocol.seed, zlib.crc32(f"{path.name}:{draw}".encode())], np.uint32)


def video_clips(model, path: Path, protocol: Protocol, fit: bool, test: bool) -> tuple[list, list]:
    """(training clips, test windows) of one video, each float32 `[frames, crop, crop, 3]`."""
    from mmv_tf.data.media import decode_video
    from mmv_tf.data.preprocessing import (
        augment_frames,
        decode_jpeg,
        evaluation_window_starts,
        frames_to_float,
        last_window_start,
        random_window_start,
        resize_and_centre_crop,
    )

    jpegs = decode_video(path, model.fps, protocol.crop).jpeg_frames
    span = (protocol.frames - 1) * protocol.stride
    last = int(last_window_start(len(jpegs), protocol.frames, protocol.stride))

    def window(start: int):
        indices = np.minimum(start + np.arange(0, span + 1, protocol.stride), len(jpegs) - 1)
        return frames_to_float(np.stack([np.asarray(decode_jpeg(jpegs[i])) for i in indices]))

    fit_clips = []
    for draw in range(protocol.passes if fit else 0):
        seed = _seed_of(protocol, path, draw)
        clip = window(int(random_window_start(seed, last)))
        fit_clips.append(np.asarray(augment_frames(clip, seed, protocol.crop, min_crop_scale=1.0,
                                                   flip=protocol.flip, color_jitter=0.0)))
    starts = evaluation_window_starts(last, protocol.test_windows) if test else []
    test_clips = [np.asarray(resize_and_centre_crop(window(int(start)), protocol.crop)) for start in starts]
    return fit_clips, test_clips


def sound_windows(model, path: Path, protocol: Protocol) -> np.ndarray:
    """Up to `test_windows` spread windows of the model's length (`evaluation_window_starts`; one for a
    sound no longer than a window): float32 `[W, samples]`."""
    from mmv_tf.data.media import decode_audio
    from mmv_tf.data.preprocessing import evaluation_window_starts, window_audio, window_samples

    waveform = decode_audio(path, model.sample_rate)
    samples = window_samples(model.window_seconds, model.sample_rate)
    last = max(len(waveform) - samples, 0)
    starts = np.unique(evaluation_window_starts(last, protocol.test_windows)) / model.sample_rate
    return np.asarray(window_audio(waveform, starts, samples, model.sample_rate))


def _embedded_examples(data: LabelledData, embed_one: Callable[[int], tuple[list, list]],
                       what: str, note: Callable[[str], None]) -> tuple[dict, dict]:
    """(arrays, info) from `embed_one(row)` -> (fit features, test features) of each example
    (lists of `[D]`); files that cannot be read are skipped and named."""
    from tqdm import tqdm

    from mmv_tf.data.media import MediaError

    rows = {"fit": [], "fit_of": [], "test": [], "test_of": []}
    kept, skipped = [], []
    for row in tqdm(range(len(data.examples)), desc=f"embedding {what}", unit="file"):
        try:
            fit, test = embed_one(row)
        except MediaError as error:
            skipped.append(str(error))
            note(f"skipped {error}")
            continue
        number = len(kept)
        kept.append(row)
        rows["fit"] += fit
        rows["fit_of"] += [number] * len(fit)
        rows["test"] += test
        rows["test_of"] += [number] * len(test)
    dim = len((rows["fit"] or rows["test"] or [[0.0]])[0])
    arrays = {name: np.asarray(values, np.float32).reshape(-1, dim) if name in ("fit", "test")
              else np.asarray(values, np.int64) for name, values in rows.items()}
    return arrays, {"kept": kept, "skipped": skipped}


def needs(partitions: list[Partition], examples: int) -> tuple[np.ndarray, np.ndarray]:
    """Which examples are fitted on in some partition, and which are tested in some: bool `[N]` each."""
    fit, test = np.zeros(examples, bool), np.zeros(examples, bool)
    for partition in partitions:
        fit[partition.fit] = True
        test[partition.test] = True
    return fit, test


# ------------------------------------------------------------------ the verbs

def evaluate_videos(model_path: str | Path, source: str | Path, out: str | Path,
                    protocol: Protocol = Protocol(), train_list: Path | None = None,
                    test_list: Path | None = None, overwrite: bool = False,
                    note: Callable[[str], None] = print) -> dict:
    """Video classification by the released UCF101 protocol (module docstring); writes `out`."""
    def embed(model, data, partitions):
        fit_needed, test_needed = needs(partitions, len(data.examples))

        def embed_one(row):
            fit, test = video_clips(model, data.examples[row].path, protocol, fit_needed[row],
                                    test_needed[row])
            embedded = model.embed_video(np.stack(fit + test))["before_head"]
            return list(embedded[:len(fit)]), list(embedded[len(fit):])
        return _embedded_examples(data, embed_one, "videos", note)

    return _linear_verb("video-classification", "video", model_path, source, out, protocol,
                        VIDEO_SUFFIXES, embed, ("frames", "stride", "crop", "passes", "flip", "test_windows"),
                        (train_list, test_list), overwrite, note)


def evaluate_sounds(model_path: str | Path, source: str | Path, out: str | Path,
                    protocol: Protocol = Protocol(), train_list: Path | None = None,
                    test_list: Path | None = None, overwrite: bool = False,
                    note: Callable[[str], None] = print) -> dict:
    """Sound classification: a linear classifier on the audio `before_head` (ESC-50 style)."""
    def embed(model, data, partitions):
        def embed_one(row):
            windows = list(model.embed_audio(sound_windows(model, data.examples[row].path, protocol))
                           ["before_head"])
            return windows, windows
        return _embedded_examples(data, embed_one, "sounds", note)

    return _linear_verb("audio-classification", "audio", model_path, source, out, protocol,
                        AUDIO_SUFFIXES, embed, ("test_windows",), (train_list, test_list), overwrite, note)


def evaluate_images(model_path: str | Path, source: str | Path, out: str | Path,
                    protocol: Protocol = Protocol(), template: str = "{}", train_list: Path | None = None,
                    test_list: Path | None = None, overwrite: bool = False,
                    note: Callable[[str], None] = print) -> dict:
    """Image classification: the linear classifier on `before_head` and zero-shot by class names
    (`template` holds `{}` for the name); top-1, or mAP for multi-label data (VOC). Takes image
    models (`mmv-tf deflate`) and video models, which see each image as a static video."""
    from mmv_tf.classify import check_template, zero_shot_scores, zero_shot_space
    from mmv_tf.images import IMAGE_SUFFIXES, load_images

    check_template(template)

    def embed(model, data, partitions):
        space = zero_shot_space(model) if model.has_text else None
        loaded = load_images([e.path for e in data.examples], model.image_size)
        for line in loaded.notes:
            note(line)
        embedded = model.embed_images(loaded.images)
        row_of = {path: row for row, path in enumerate(loaded.paths)}
        kept = [row for row, e in enumerate(data.examples) if e.path in row_of]
        arrays = {"fit": embedded["before_head"], "fit_of": np.arange(len(kept)),
                  "test": embedded["before_head"], "test_of": np.arange(len(kept))}
        if space is not None:
            arrays["zero_shot"] = embedded[space]
        return arrays, {"kept": kept, "skipped": [n for n in loaded.notes if n.startswith("skipped")]}

    def zero_shot(model, data, partitions, arrays):
        if "zero_shot" not in arrays:
            note(f"no zero-shot: model {model.path} has no text signature")
            return {}
        tested = np.unique(np.concatenate([p.test for p in partitions]))
        scores = zero_shot_scores(model, arrays["zero_shot"][tested], data.classes, template)
        return {f"zero_shot_{k}": v for k, v in scored(data, scores, tested).items()} | {
            "zero_shot_space": zero_shot_space(model), "template": template}

    return _linear_verb("image-classification", "image", model_path, source, out, protocol,
                        IMAGE_SUFFIXES, embed, (), (train_list, test_list), overwrite, note, zero_shot)


def _linear_verb(verb: str, modality: str, model_path, source, out, protocol: Protocol,
                 suffixes: tuple[str, ...], embed, feature_names: tuple[str, ...], lists: tuple,
                 overwrite: bool, note, extra: Callable | None = None) -> dict:
    """Read the data, embed it (or read the cache), fit and score, write `out`; the result.
    `extra(model, data, partitions, arrays)` adds figures (zero-shot) to the result."""
    from mmv_tf.saved_model import ExportedModel

    out = Path(out)
    check_evaluation_output(out, (source, model_path), overwrite)
    data = read_labelled(source, suffixes, *lists)
    model = ExportedModel(model_path)
    require_modality(model, modality)
    partitions = data.partitions(protocol.held_out, protocol.seed)
    key = feature_key(verb=verb, model=model.identity["weights_sha256"],
                      files=files_key([e.path for e in data.examples]),
                      settings=protocol.feature_settings(*feature_names),
                      rows=value_key([[p.name, p.fit.tolist(), p.test.tolist()] for p in partitions]))
    arrays, info = cached_features(out, key, lambda: embed(model, data, partitions), note)
    kept = data.keep(info["kept"])
    partitions = remapped(partitions, info["kept"])
    outcome = linear_evaluation(kept, arrays, partitions, protocol)
    result = {
        "verb": verb, "model": {"path": str(model.path), **model.identity}, "data": str(data.source),
        "settings": protocol.feature_settings(*feature_names) | {
            "c": protocol.c, "classifier": "StandardScaler + LinearSVC"},
        "classes": kept.classes, "examples": len(kept.examples), "skipped": info["skipped"],
        **{k: v for k, v in outcome.items() if k != "confusion"},
        "chance": {"top1": 1 / len(kept.classes), "top5": min(5, len(kept.classes)) / len(kept.classes)},
    }
    if extra is not None:
        result.update(extra(model, kept, partitions, arrays))
    figures = [(name, f"{result[name]:.3f}") for name in ("top1", "top5", "mAP", "zero_shot_top1",
                                                          "zero_shot_mAP") if name in result]
    plots = {} if kept.multi_label else {"confusion": draw_confusion(outcome["confusion"], kept.classes)}
    if not kept.multi_label:
        result["confusion"] = outcome["confusion"].tolist()
    report = markdown_report(verb, result, figures + [("examples", str(len(kept.examples))),
                                                      ("partitions", str(len(partitions)))], list(plots))
    write_evaluation(out, result, report, plots, (arrays, key, info), (source, model_path), overwrite)
    return result


def remapped(partitions: list[Partition], kept: list[int]) -> list[Partition]:
    """The partitions over the kept examples, renumbered as `LabelledData.keep` numbers them."""
    number = {row: i for i, row in enumerate(kept)}
    return [Partition(p.name, np.array([number[r] for r in p.fit if r in number], np.int64),
                      np.array([number[r] for r in p.test if r in number], np.int64)) for p in partitions]


def require_modality(model, modality: str) -> None:
    """Refuse a model without the signature a verb needs."""
    signatures = model.metadata.get("signatures", [])
    present = modality in signatures or (modality == "image" and "video" in signatures)
    if not present:
        raise InputError(f"model {model.path} has no {modality} signature (it has "
                         f"{', '.join(signatures)}): it cannot be evaluated on {modality}")
