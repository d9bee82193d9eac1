"""Image classification with an exported model: a linear probe on its representation, and zero-shot
by class names through its text signature.

Works with a deflated image model (signature `image`) or a video model, which sees each image as
the static video repeating it. Both report accuracy on the same stratified held-out split.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mmv_tf.errors import InputError
from mmv_tf.files import atomic_path

PROBE_FILE = "probe.joblib"
PROBE_INFO = "probe.json"


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


def zero_shot_predictions(model, embeddings: dict[str, np.ndarray], class_names: list[str],
                          template: str = "{}") -> tuple[np.ndarray, str]:
    """(predicted class per image, space): the class whose name, put into `template` and embedded
    by the text signature, is nearest in the space the images share with text."""
    from mmv_tf.index import l2_normalized
    from mmv_tf.search import common_spaces

    spaces = common_spaces(model.metadata, visual_modality(model), "text")
    if not spaces:
        raise InputError(f"model {model.path} has no space shared by images and text: no zero-shot")
    space = spaces[0]
    texts = model.embed_text([template.format(name.replace("_", " ")) for name in class_names])[space]
    return np.argmax(l2_normalized(embeddings[space]) @ l2_normalized(texts).T, axis=1), space


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


def save_probe(result: dict, model_path: Path, out: str | Path) -> Path:
    """Write the fitted probe and what it needs (model, classes, accuracies) into folder `out`."""
    import joblib

    out = Path(out)
    info = {"model": str(Path(model_path).resolve()), "feature": "before_head",
            **{k: v for k, v in result.items() if k != "probe"}}
    with atomic_path(out) as partial:
        partial.mkdir(parents=True)
        joblib.dump(result["probe"], partial / PROBE_FILE)
        (partial / PROBE_INFO).write_text(json.dumps(info, indent=1) + "\n", encoding="utf-8")
    return out


def load_probe(folder: str | Path) -> tuple[object, dict]:
    import joblib

    folder = Path(folder)
    if not (folder / PROBE_INFO).is_file():
        raise InputError(f"{folder} is not a probe folder (no {PROBE_INFO}; make one with "
                         "mmv-tf classify fit)")
    return joblib.load(folder / PROBE_FILE), json.loads((folder / PROBE_INFO).read_text("utf-8"))
