"""What every evaluation verb writes to its `--out` folder, and the feature cache inside it.

OUT/metrics.json   the figures (top1, top5, mAP, R@K, ...), the settings, the model, the data
OUT/report.md      the same as a Markdown report, with the plots
OUT/*.png          confusion matrix (classification) or recall@K curves (retrieval)
OUT/features.npz   the embedded features, with OUT/features.json: the key they were made under
                   (mmv-tf's version, model weights, data files, feature settings, the rows they
                   hold in order). A rerun into the same --out with the same key (e.g. another C)
                   reads them instead of embedding again.
The folder is written whole or not at all (`mmv_tf.files.written_folder`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from mmv_tf.files import check_output, written_folder

KIND = "evaluation"
FEATURES, FEATURES_KEY = "features.npz", "features.json"


def feature_key(**parts) -> dict:
    """The key of a verb's features: `parts` (what they were made from) and the installed mmv-tf
    version, so features made by another release are made again."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        installed = version("mmv-tf")
    except PackageNotFoundError:  # the source tree on sys.path, not installed
        installed = "unknown"
    return {"mmv_tf": installed, **parts}


def value_key(value) -> str:
    """A digest of a JSON-able `value` (e.g. which rows the features hold, in their order)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def files_key(paths: list[Path]) -> str:
    """A digest of the files' names, sizes and modification times: changes when a file does."""
    digest = hashlib.sha256()
    for path in paths:
        stat = path.stat()
        digest.update(f"{path.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def cached_features(out: Path, key: dict, compute: Callable[[], tuple[dict, dict]],
                    note: Callable[[str], None]) -> tuple[dict[str, np.ndarray], dict]:
    """(arrays, info) from OUT/features.npz when it was made under `key`, else `compute()`."""
    try:
        stored = json.loads((out / FEATURES_KEY).read_text(encoding="utf-8"))
        if stored["key"] == key:
            with np.load(out / FEATURES, allow_pickle=False) as arrays:
                loaded = {name: arrays[name] for name in arrays.files}
            note(f"reusing the features in {out / FEATURES}")
            return loaded, stored["info"]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return compute()


def write_evaluation(out: Path, result: dict, report: str, plots: dict[str, Callable],
                     features: tuple[dict, dict, dict], inputs: tuple, overwrite: bool) -> None:
    """Write the folder: metrics.json (`result`), report.md, each plot `name.png` drawn by
    `plots[name](axes)`, and the features with their (key, info)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arrays, key, info = features
    with written_folder(out, KIND, inputs=inputs, overwrite=overwrite) as partial:
        partial.mkdir(parents=True)
        (partial / "metrics.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
        (partial / "report.md").write_text(report, encoding="utf-8")
        for name, draw in plots.items():
            figure, axes = plt.subplots(figsize=(6.4, 5.2))
            draw(axes)
            figure.tight_layout()
            figure.savefig(partial / f"{name}.png", dpi=100)
            plt.close(figure)
        with open(partial / FEATURES, "wb") as file:
            np.savez(file, **arrays)
        (partial / FEATURES_KEY).write_text(json.dumps({"key": key, "info": info}) + "\n", encoding="utf-8")


def check_evaluation_output(out: Path, inputs: tuple, overwrite: bool) -> None:
    """Refuse `--out` before any work (see `mmv_tf.files.check_output`)."""
    check_output(out, KIND, inputs, overwrite)


def markdown_report(title: str, result: dict, rows: list[tuple[str, str]], plots: list[str]) -> str:
    """A report: the model, data and settings of `result`, a table of `rows` (name, value), plots."""
    lines = [f"# {title}", "", f"- model: `{result['model']['path']}`", f"- data: `{result['data']}`"]
    lines += [f"- {name}: {value}" for name, value in result["settings"].items()]
    lines += ["", "| metric | value |", "|---|---|", *(f"| {name} | {value} |" for name, value in rows), ""]
    lines += [f"![{name}]({name}.png)" for name in plots]
    return "\n".join(lines) + "\n"


def draw_confusion(confusion: np.ndarray, classes: list[str]):
    """A plot of `confusion` `[C, C]` (rows: true class, columns: predicted), for `write_evaluation`."""
    def draw(axes):
        from sklearn.metrics import ConfusionMatrixDisplay

        ConfusionMatrixDisplay(confusion, display_labels=classes).plot(
            ax=axes, include_values=len(classes) <= 20, colorbar=False,
            xticks_rotation="vertical")
        axes.set_title("confusion matrix (test examples)")
        if len(classes) > 20:
            axes.set_xticks([])
            axes.set_yticks([])
    return draw


def draw_recall_curves(curves: dict[str, np.ndarray]):
    """A plot of recall@K for K = 1.. for each named direction `curves[name]` `[K]`."""
    def draw(axes):
        for name, recall in curves.items():
            axes.plot(np.arange(1, len(recall) + 1), recall, label=name)
        axes.set_xlabel("K")
        axes.set_ylabel("recall@K")
        axes.set_ylim(0, 1.02)
        axes.grid(alpha=0.3)
        axes.legend()
    return draw
