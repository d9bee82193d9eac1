"""The labelled data the evaluation verbs read, and how it is split into fit and test parts.

Two layouts, for videos, sounds or images alike:
- a folder with one sub-folder of files per class, optionally with split files `train.txt` and
  `test.txt` beside them (UCF101's form: one path relative to the folder per line, an optional
  class number after it, ignored);
- a JSONL manifest (or a folder holding `manifest.jsonl`), one record per file:
  `{"path": "rel/or/abs", "label": "cat"}` or, multi-label, `"labels": ["cat", "dog"]`, with
  an optional `"split"` (train / test; others are left out) or `"fold"` (an integer: k-fold).

Captioned data for retrieval is a JSONL manifest of
`{"video": path, "text": caption, "start"?: s, "end"?: e, "label"?: l, "split"?: sp}`.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from pathlib import Path

import numpy as np

from mmv_tf.errors import InputError

MANIFEST = "manifest.jsonl"
SPLIT_FILES = ("train.txt", "test.txt")


@dataclasses.dataclass(frozen=True)
class Example:
    path: Path
    labels: tuple[str, ...]  # one for single-label data
    split: str | None = None  # train or test
    fold: int | None = None


@dataclasses.dataclass(frozen=True)
class Partition:
    """One fit / test division of the examples: row indices of each."""

    name: str
    fit: np.ndarray
    test: np.ndarray


@dataclasses.dataclass
class LabelledData:
    examples: list[Example]
    classes: list[str]
    source: Path

    @property
    def multi_label(self) -> bool:
        return any(len(e.labels) != 1 for e in self.examples)

    def label_indices(self) -> np.ndarray:
        """int `[N]`: each example's class (single-label data)."""
        index = {name: i for i, name in enumerate(self.classes)}
        return np.array([index[e.labels[0]] for e in self.examples])

    def label_matrix(self) -> np.ndarray:
        """0/1 `[N, C]`: which classes each example has."""
        index = {name: i for i, name in enumerate(self.classes)}
        matrix = np.zeros((len(self.examples), len(self.classes)), np.int64)
        for row, example in enumerate(self.examples):
            matrix[row, [index[label] for label in example.labels]] = 1
        return matrix

    def keep(self, rows: list[int]) -> LabelledData:
        """The examples at `rows` (e.g. those whose files could be read), checked again."""
        return checked(LabelledData([self.examples[r] for r in rows], self.classes, self.source))

    def partitions(self, held_out: float = 0.25, seed: int = 0) -> list[Partition]:
        """k-fold partitions when every example has a fold; the train / test split when the data
        names one; otherwise one held-out share (`held_out`; stratified by class, as
        `classify fit` holds out, for single-label data)."""
        rows = np.arange(len(self.examples))
        folds = [e.fold for e in self.examples]
        if any(f is not None for f in folds):
            if any(f is None for f in folds):
                raise InputError(f"{self.source}: some records have a fold and some do not")
            names = sorted(set(folds))
            if len(names) < 2:
                raise InputError(f"{self.source}: k-fold needs at least two folds; all records are "
                                 f"in fold {names[0]}")
            return [Partition(f"fold {f}", rows[np.array(folds) != f], rows[np.array(folds) == f])
                    for f in names]
        splits = np.array([e.split or "" for e in self.examples])
        if (splits != "").any():
            fit, test = rows[splits == "train"], rows[splits == "test"]
            if not len(fit) or not len(test):
                raise InputError(f"{self.source}: the split names {len(fit)} training and {len(test)} "
                                 "test examples; both are needed")
            return [Partition("test", fit, test)]
        if self.multi_label:  # label sets: no stratification, no per-class guarantee
            from sklearn.model_selection import train_test_split

            fit, test = train_test_split(rows, test_size=held_out, random_state=seed)
        else:
            from mmv_tf.classify import held_out_split

            fit, test = held_out_split(self.label_indices(), held_out, seed)
        return [Partition("held out", np.sort(fit), np.sort(test))]


def checked(data: LabelledData) -> LabelledData:
    """Refuse data with fewer than two classes or a class with fewer than two examples."""
    counts = Counter(label for e in data.examples for label in e.labels)
    present = [c for c in data.classes if counts[c]]
    if len(present) < 2:
        raise InputError(f"{data.source}: {len(present)} class(es) with examples; classification "
                         "needs at least two")
    few = [f"{c} ({counts[c]})" for c in data.classes if counts[c] < 2]
    if few:
        raise InputError(f"{data.source}: each class needs at least two examples (one to fit, one to "
                         f"test); too few: {', '.join(few)}")
    return data


def read_labelled(source: str | Path, suffixes: tuple[str, ...], train_list: Path | None = None,
                  test_list: Path | None = None) -> LabelledData:
    """The labelled examples of `source` (a class folder or a manifest, see the module's docstring)
    whose files end in one of `suffixes`. `train_list` / `test_list` name split files other than
    the folder's `train.txt` / `test.txt`."""
    source = Path(source)
    if source.is_dir() and (source / MANIFEST).is_file():
        source = source / MANIFEST
    if source.is_file():
        data = _read_manifest(source)
    elif source.is_dir():
        data = _read_class_folder(source, suffixes, train_list, test_list)
    else:
        raise InputError(f"{source} does not exist: give a folder with one sub-folder per class, or a "
                         "JSONL manifest")
    return checked(data)


def _read_class_folder(folder: Path, suffixes: tuple[str, ...], train_list: Path | None,
                       test_list: Path | None) -> LabelledData:
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    files = {path.relative_to(folder).as_posix(): path
             for name in classes for path in sorted((folder / name).iterdir())
             if path.is_file() and path.suffix.lower() in suffixes}
    if not files:
        raise InputError(f"{folder} holds no class sub-folder with {'/'.join(suffixes)} files")
    lists = {"train": train_list or folder / SPLIT_FILES[0], "test": test_list or folder / SPLIT_FILES[1]}
    split_of: dict[str, str] = {}
    for split, listing in lists.items():
        if not listing.is_file():
            if (train_list, test_list)[split == "test"] is not None:
                raise InputError(f"split file {listing} does not exist")
            continue
        for number, line in enumerate(listing.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            name = line.split()[0]
            if name not in files:
                raise InputError(f"{listing}, line {number}: {name} is not a {'/'.join(suffixes)} file "
                                 f"in a class folder of {folder}")
            split_of[name] = split
    if split_of and len(set(split_of.values())) < 2:
        raise InputError(f"{folder}: give both split files ({', '.join(map(str, lists.values()))}) "
                         "or neither")
    examples = [Example(path, (name.split("/")[0],), split_of.get(name))
                for name, path in files.items() if not split_of or name in split_of]
    return LabelledData(examples, classes, folder)


def _read_manifest(manifest: Path) -> LabelledData:
    examples = []
    for number, record in read_jsonl(manifest):
        labels = record.get("labels", [record["label"]] if "label" in record else None)
        if not isinstance(record.get("path"), str) or not isinstance(labels, list) or not labels:
            raise InputError(f"{manifest}, line {number}: a record needs a text field 'path' and "
                             "'label' (or a non-empty list 'labels')")
        fold = record.get("fold")
        if fold is not None and not isinstance(fold, int):
            raise InputError(f"{manifest}, line {number}: 'fold' must be an integer, not {fold!r}")
        split = record.get("split")
        if split is not None and split not in ("train", "test", "val"):
            raise InputError(f"{manifest}, line {number}: 'split' must be train, test or val")
        if split == "val":
            continue
        examples.append(Example(resolved_file(manifest, number, record["path"]),
                                tuple(str(label) for label in labels), split, fold))
    if not examples:
        raise InputError(f"{manifest}: no records")
    return LabelledData(examples, sorted({label for e in examples for label in e.labels}), manifest)


def read_jsonl(manifest: Path):
    """(line number, record) of each non-empty line of `manifest`, every one a JSON object."""
    for number, line in enumerate(manifest.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise InputError(f"{manifest}, line {number}: not JSON ({error.msg})") from None
        if not isinstance(record, dict):
            raise InputError(f"{manifest}, line {number}: not a JSON object")
        yield number, record


def resolved_file(manifest: Path, number: int, name: str) -> Path:
    """`name` of line `number` of `manifest`, relative to the manifest's folder; it must exist."""
    path = Path(name) if Path(name).is_absolute() else manifest.parent / name
    if not path.is_file():
        raise InputError(f"{manifest}, line {number}: {name} does not exist")
    return path


@dataclasses.dataclass(frozen=True)
class Caption:
    """A caption of a video, and the span it describes (None: the whole video)."""

    video: Path
    text: str
    start: float | None
    end: float | None
    label: str | None

    @property
    def clip(self) -> tuple:
        return (str(self.video), self.start, self.end)


def read_captions(manifest: str | Path, split: str | None) -> list[Caption]:
    """The captions of `split` (all records when None) of a retrieval manifest."""
    manifest = Path(manifest)
    if manifest.is_dir():
        manifest = manifest / MANIFEST
    if not manifest.is_file():
        raise InputError(f"{manifest} does not exist: retrieval reads a JSONL manifest of captioned "
                         "videos (mmv-tf data captions writes one)")
    captions = []
    for number, record in read_jsonl(manifest):
        if not isinstance(record.get("video"), str) or not str(record.get("text", "")).strip():
            raise InputError(f"{manifest}, line {number}: a record needs the text fields 'video' and "
                             "'text'")
        if split is not None and record.get("split", split) != split:
            continue
        start, end = record.get("start"), record.get("end")
        if (start is None) != (end is None) or (start is not None and not 0 <= start <= end):
            raise InputError(f"{manifest}, line {number}: give 'start' and 'end' in seconds, start <= "
                             "end, or neither (the whole video)")
        captions.append(Caption(resolved_file(manifest, number, record["video"]), str(record["text"]),
                                start, end, None if record.get("label") is None else str(record["label"])))
    if len(captions) < 2:
        raise InputError(f"{manifest}: {len(captions)} caption(s)"
                         + (f" in split {split!r}" if split else "") + "; retrieval needs at least two")
    return captions
