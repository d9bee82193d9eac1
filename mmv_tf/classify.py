"""Image classification with an exported model: a linear probe on its representation, and zero-shot
by class names through its text signature.

Works with a deflated image model (signature `image`) or a video model, which sees each image as
the static video repeating it. Both report accuracy on the same stratified held-out split.
"""

from __future__ import annotations

import json
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

from mmv_tf.errors import InputError
from mmv_tf.files import written_folder

PROBE_FILE = "probe.npz"  # plain arrays, read with allow_pickle=False: loading runs no code
PROBE_INFO = "probe.json"
PICKLED_PROBE_FILE = "probe.joblib"  # how older versions saved it; never loaded (unpickling runs code)
PROBE_ARRAYS = ("mean", "scale", "coef", "intercept", "classes")


def visual_modality(model) -> str:
    return "image" if model.is_image_model else "video"


def held_out_split(labels: np.ndarray, held_out: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(fit rows, held-out rows), stratified, with at least one image of each class on each side."""
    from sklearn.model_selection import train_test_split

    classes = len(np.unique(labels))
    count = min(max(classes, int(round(held_out * len(labels)))), len(labels) - classes)
    return train_test_split(np.arange(len(labels)), test_size=count, stratify=labels,
                            random_state=seed)


def fit_probe(features: np.ndarray, labels: np.ndarray, seed: int = 0):
    """A standardised logistic-regression classifier on `features` `[N, C]`."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000, random_state=seed)).fit(
        features, labels)


def zero_shot_space(model) -> str:
    """The space where `model` compares images (or videos) and text."""
    from mmv_tf.spaces import model_pair_space

    space = model_pair_space(model.metadata, visual_modality(model), "text")
    if space is None or not model.has_text:
        raise InputError(f"model {model.path} has no space shared by images and text: no zero-shot")
    return space


def zero_shot_scores(model, vectors: np.ndarray, class_names: list[str], template: str = "{}") -> np.ndarray:
    """Cosine similarities `[N, C]` of image embeddings `vectors` `[N, D]` in `zero_shot_space` to
    each class name put into `template` and embedded by the text signature."""
    from mmv_tf.index import l2_normalized

    texts = model.embed_text([template.format(name.replace("_", " ")) for name in class_names])
    return l2_normalized(vectors) @ l2_normalized(texts[zero_shot_space(model)]).T


def zero_shot_predictions(model, embeddings: dict[str, np.ndarray], class_names: list[str],
                          template: str = "{}") -> tuple[np.ndarray, str]:
    """(predicted class per image, space): the class whose name is nearest (`zero_shot_scores`)."""
    space = zero_shot_space(model)
    return np.argmax(zero_shot_scores(model, embeddings[space], class_names, template), axis=1), space


def evaluate_classification(model, images: np.ndarray, labels: np.ndarray, class_names: list[str],
                            held_out: float = 0.25, seed: int = 0, template: str = "{}") -> dict:
    """Fit the probe on the fit rows; report probe and zero-shot accuracy on the held-out rows."""
    embeddings = model.embed_images(images)
    fit_rows, test_rows = held_out_split(labels, held_out, seed)
    probe = fit_probe(embeddings["before_head"][fit_rows], labels[fit_rows], seed)
    predicted, space = zero_shot_predictions(
        model, {k: v[test_rows] for k, v in embeddings.items()}, class_names, template)
    return {
        "probe": probe,
        "classes": class_names,
        "images": {"fit": len(fit_rows), "held_out": len(test_rows)},
        "linear_probe_accuracy": float(probe.score(embeddings["before_head"][test_rows],
                                                   labels[test_rows])),
        "zero_shot_accuracy": float(np.mean(predicted == labels[test_rows])),
        "zero_shot_space": space,
        "chance": 1.0 / len(class_names),
    }


def class_columns(decision: np.ndarray) -> np.ndarray:
    """A linear classifier's decision function as one score per class `[N, C]`: for two classes
    scikit-learn (and `LinearProbe`) give one score `[N]`, for the second class."""
    return np.stack([-decision, decision], axis=1) if decision.ndim == 1 else decision


class LinearProbe:
    """A fitted StandardScaler + LogisticRegression as plain arrays: `predict` does what the
    scikit-learn pipeline's `predict` does, step by step, so it gives the same classes."""

    def __init__(self, mean: np.ndarray, scale: np.ndarray, coef: np.ndarray,
                 intercept: np.ndarray, classes: np.ndarray):
        self.mean, self.scale, self.coef = mean, scale, coef
        self.intercept, self.classes = intercept, classes

    @classmethod
    def from_pipeline(cls, pipeline) -> LinearProbe:
        """The arrays of `fit_probe`'s pipeline (a LinearProbe is returned as it is)."""
        if isinstance(pipeline, cls):
            return pipeline
        scaler, classifier = (step for _, step in pipeline.steps)
        if not (scaler.with_mean and scaler.with_std):
            raise ValueError("the probe's scaler must centre and scale, as fit_probe's does")
        return cls(scaler.mean_, scaler.scale_, classifier.coef_, classifier.intercept_,
                   classifier.classes_)

    def arrays(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name) for name in PROBE_ARRAYS}

    def decision_function(self, features: np.ndarray) -> np.ndarray:
        features = np.asarray(features)
        if features.ndim != 2 or features.shape[1] != self.mean.shape[0]:
            raise ValueError(f"the probe takes features [N, {self.mean.shape[0]}], "
                             f"not {list(features.shape)}")
        if features.dtype not in (np.float64, np.float32, np.float16):
            features = features.astype(np.float64)
        scaled = features.copy()  # as StandardScaler.transform: in the features' float type
        scaled -= self.mean.astype(scaled.dtype)
        scaled /= self.scale.astype(scaled.dtype)
        scores = scaled @ self.coef.T + self.intercept  # as LogisticRegression.decision_function
        return scores.reshape(-1) if scores.shape[1] == 1 else scores

    def predict(self, features: np.ndarray) -> np.ndarray:
        scores = self.decision_function(features)
        indices = (scores > 0).astype(np.intp) if scores.ndim == 1 else scores.argmax(axis=1)
        return self.classes.take(indices, axis=0)


def fit_classifier(images: str | Path, model: str | Path, out: str | Path | None = None,
                   held_out: float = 0.25, seed: int = 0, template: str = "{}",
                   overwrite: bool = False, note: Callable[[str], None] = print) -> dict:
    """`evaluate_classification` of exported `model` on the labelled image folder `images` (one
    sub-folder per class); with `out`, the probe is saved there (`save_probe`). Returns the summary
    (without the probe); `note` hears image conversions and skipped files."""
    from mmv_tf.files import check_output
    from mmv_tf.images import read_labelled_folder
    from mmv_tf.saved_model import ExportedModel

    check_template(template)
    if out is not None:
        check_output(out, "probe", (model, images), overwrite)  # before the images are embedded
    exported = ExportedModel(model)
    loaded, labels, classes = read_labelled_folder(images, exported.image_size)
    for line in loaded.notes:
        note(line)
    result = evaluate_classification(exported, loaded.images, labels, classes, held_out, seed, template)
    if out is not None:
        save_probe(result, Path(model), out, inputs=(images,), overwrite=overwrite)
    return {k: v for k, v in result.items() if k != "probe"}


def predict_files(files: list[str | Path], probe: str | Path,
                  note: Callable[[str], None] = print) -> list[tuple[Path, str]]:
    """[(image, class name)] for the readable images of `files`, by the probe saved in folder
    `probe`; `note` hears conversions and skipped files."""
    from mmv_tf.images import ImageFolderError, load_images
    from mmv_tf.saved_model import ExportedModel

    classifier, info = load_probe(probe)
    exported = ExportedModel(info["model"])
    loaded = load_images([Path(f) for f in files], exported.image_size)
    for line in loaded.notes:
        note(line)
    if not loaded.paths:
        raise ImageFolderError("none of the files is a readable image")
    predicted = classifier.predict(exported.embed_images(loaded.images)[info["feature"]])
    return [(path, info["classes"][label]) for path, label in zip(loaded.paths, predicted)]


def check_template(template: str) -> None:
    """Refuse a zero-shot template without exactly one `{}` for the class name."""
    try:
        filled = template.format("\0")
    except (IndexError, KeyError, ValueError):
        filled = None
    if filled is None or filled.count("\0") != 1:
        raise InputError(f"--template {template!r} must hold one {{}} for the class name and no other "
                         "braces, e.g. 'a photo of a {}'")


def save_probe(result: dict, model_path: Path, out: str | Path, *, inputs: tuple = (),
               overwrite: bool = False) -> Path:
    """Write the fitted probe (its arrays, no pickle) and what it needs (model, classes,
    accuracies) into folder `out`, which may replace an earlier probe (any folder if `overwrite`)
    but none of `inputs`."""
    out = Path(out)
    probe = LinearProbe.from_pipeline(result["probe"])
    if probe.classes.dtype.kind not in "iu":
        raise ValueError("the probe's classes must be integers: indices of result['classes']")
    info = {"model": str(Path(model_path).resolve()), "feature": "before_head",
            **{k: v for k, v in result.items() if k != "probe"}}
    with written_folder(out, "probe", inputs=(model_path, *inputs), overwrite=overwrite) as partial:
        partial.mkdir(parents=True)
        with open(partial / PROBE_FILE, "wb") as file:
            np.savez(file, **probe.arrays())
        (partial / PROBE_INFO).write_text(json.dumps(info, indent=1) + "\n", encoding="utf-8")
    return out


def load_probe(folder: str | Path) -> tuple[LinearProbe, dict]:
    """(probe, info) from a `save_probe` folder. Only plain numeric arrays are read: a pickle, an
    object array, a malformed file or wrong shapes are refused with an InputError naming the file."""
    folder = Path(folder)
    if not (folder / PROBE_INFO).is_file():
        raise InputError(f"{folder} is not a probe folder (no {PROBE_INFO}; make one with "
                         "mmv-tf classify fit)")
    info = _read_probe_info(folder / PROBE_INFO)
    path = folder / PROBE_FILE
    if not path.is_file():
        if (folder / PICKLED_PROBE_FILE).exists():
            raise InputError(f"{folder / PICKLED_PROBE_FILE}: a pickled probe of an older mmv-tf, "
                             "not loaded because unpickling can run code; fit it again with "
                             "mmv-tf classify fit")
        raise InputError(f"{path}: missing; make the probe with mmv-tf classify fit")
    probe = _read_probe_arrays(path)
    if not all(0 <= c < len(info["classes"]) for c in probe.classes.tolist()):
        raise InputError(f"{path}: its classes {probe.classes.tolist()} are not indices of the "
                         f"{len(info['classes'])} classes in {PROBE_INFO}")
    return probe, info


def _read_probe_info(path: Path) -> dict:
    try:
        info = json.loads(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(f"{path}: not a readable JSON probe description ({error})") from None
    if not (isinstance(info, dict) and isinstance(info.get("model"), str)
            and isinstance(info.get("feature"), str) and isinstance(info.get("classes"), list)):
        raise InputError(f"{path}: needs a JSON object with the text fields model and feature and "
                         "the list classes")
    return info


def _read_probe_arrays(path: Path) -> LinearProbe:
    """The probe's arrays, checked: float mean/scale/coef/intercept, integer classes, and
    shapes that fit together (one coef row for two classes, one per class for more)."""
    def refuse(why: str):
        return InputError(f"{path}: not a probe file of mmv-tf classify fit ({why})")

    try:
        data = np.load(path, allow_pickle=False)  # a pickle or an object array raises ValueError
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise refuse("a single array, not an npz archive")
        with data:
            if sorted(data.files) != sorted(PROBE_ARRAYS):
                raise refuse(f"holds {sorted(data.files)}, not {sorted(PROBE_ARRAYS)}")
            arrays = {name: data[name] for name in PROBE_ARRAYS}
    except InputError:
        raise
    except (OSError, ValueError, EOFError, KeyError, NotImplementedError, RuntimeError,
            zipfile.BadZipFile, zlib.error) as error:
        why = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        if "pickle" in why.lower() or "object arrays" in why.lower():  # numpy's refusal to unpickle
            why = ("not an npz archive of plain arrays; pickled data is never loaded, because "
                   "unpickling can run code")
        raise refuse(why) from None
    for name, array in arrays.items():  # NpzFile gives a member that is not .npy as bytes
        if not isinstance(array, np.ndarray):
            raise refuse(f"{name} is not an .npy array")
    for name in ("mean", "scale", "coef", "intercept"):
        if arrays[name].dtype.kind != "f":
            raise refuse(f"{name} must hold floats, not {arrays[name].dtype}")
        if not np.all(np.isfinite(arrays[name])):
            raise refuse(f"{name} holds NaN or infinite values")
    classes = arrays["classes"]
    if classes.dtype.kind not in "iu" or classes.ndim != 1 or len(classes) < 2 \
            or len(np.unique(classes)) != len(classes):
        raise refuse("classes must be two or more distinct integers")
    mean, scale, coef, intercept = (arrays[n] for n in ("mean", "scale", "coef", "intercept"))
    rows = 1 if len(classes) == 2 else len(classes)
    if mean.ndim != 1 or len(mean) == 0 or scale.shape != mean.shape \
            or coef.shape != (rows, len(mean)) or intercept.shape != (rows,):
        raise refuse(f"shapes mean {list(mean.shape)}, scale {list(scale.shape)}, coef "
                     f"{list(coef.shape)}, intercept {list(intercept.shape)} do not fit "
                     f"{len(classes)} classes")
    if not np.all(scale > 0):
        raise refuse("scale must be positive")
    return LinearProbe(mean, scale, coef, intercept, classes)
