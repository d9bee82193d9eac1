"""Reads DeepMind's released MMV checkpoints (`mmv_s3d.pkl`, `mmv_tsm_resnet_x1.pkl`, `..._x2.pkl`).

Format: a pickle (written with `dill`) of `{"params": P, "state": S}`, where `P` and `S` map a Haiku
module path to a mapping of leaf name -> array. Both levels were pickled as
`haiku._src.data_structures.FlatMapping(dict)`, each array as `dill._dill._create_array(f, args, state,
npdict=None)`, which calls `f(*args)` (numpy's `_reconstruct`) and then `__setstate__(state)`. Files
written with NumPy 1.x name `numpy.core.multiarray`, with NumPy 2.x `numpy._core.multiarray`.

Unpickling calls whatever the file names, so the unpickler is restricted: it resolves exactly the globals
above (FlatMapping and `_create_array` to local stand-ins, so neither Haiku nor dill is needed; the numpy
ones to numpy's own) and refuses any other global without importing or calling it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import pickle
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from mmv_tf.errors import InputError

try:
    from numpy._core import multiarray as _multiarray
except ImportError:  # NumPy 1.x.
    from numpy.core import multiarray as _multiarray

_reconstruct = _multiarray._reconstruct
_LEAF_DTYPES = (np.float32, np.float64, np.int32, np.int64)


class CheckpointError(InputError):
    """A file that is not a released MMV checkpoint, or one that names a global a checkpoint never names."""


@dataclasses.dataclass(frozen=True)
class ReleasedCheckpoint:
    """Leaves keyed by `"<module path>/<leaf>"`, e.g. `text_audio_video/text_module/~/embed/embeddings`."""

    params: dict[str, np.ndarray]
    state: dict[str, np.ndarray]
    sha256: str  # Of the file's bytes.
    path: Path


class _BadArray(Exception):
    """Raised while unpickling; becomes a CheckpointError that names the file."""


def _flat_mapping(mapping):
    """Stands in for `haiku._src.data_structures.FlatMapping`: a plain dict."""
    return dict(mapping)


def _create_array(f, args, state, npdict=None):
    """Stands in for `dill._dill._create_array`, restricted to numpy's `_reconstruct`."""
    if f is not _reconstruct or npdict is not None:
        raise _BadArray(f"an array made by {f!r} with npdict {npdict!r}")
    array = f(*args)
    array.__setstate__(state)
    return array


_ALLOWED = {
    ("haiku._src.data_structures", "FlatMapping"): _flat_mapping,
    ("dill._dill", "_create_array"): _create_array,
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class _Unpickler(pickle.Unpickler):
    def __init__(self, file, path: Path):
        super().__init__(file)
        self._path = path

    def find_class(self, module, name):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise CheckpointError(
                f"{self._path}: refusing to load the global {module}.{name}: a released MMV checkpoint "
                "names only FlatMapping, dill's _create_array and numpy's _reconstruct, ndarray and dtype"
            ) from None


def _one_line(error: BaseException) -> str:
    return f"{type(error).__name__}: {' '.join(str(error).split())}"


def _leaves(tree, kind: str, path: Path) -> dict[str, np.ndarray]:
    """Flattens module -> {leaf -> array} into {"module/leaf": array}, checking every level."""
    if not isinstance(tree, Mapping):
        raise CheckpointError(f"{path}: '{kind}' is a {type(tree).__name__}, not a mapping of modules")
    leaves = {}
    for module, group in tree.items():
        if not isinstance(module, str) or not isinstance(group, Mapping):
            raise CheckpointError(
                f"{path}: '{kind}' entry {module!r} is a {type(group).__name__}, not a mapping of leaves")
        for leaf, value in group.items():
            name = f"{module}/{leaf}"
            if not isinstance(leaf, str) or not isinstance(value, np.ndarray):
                raise CheckpointError(
                    f"{path}: {kind} leaf {name!r} is a {type(value).__name__}, not a numpy array")
            if value.dtype not in _LEAF_DTYPES:
                raise CheckpointError(f"{path}: {kind} leaf {name!r} has dtype {value.dtype}")
            leaves[name] = value
    return leaves


def read_checkpoint(path: str | os.PathLike) -> ReleasedCheckpoint:
    """Reads a released checkpoint without Haiku or dill; raises CheckpointError for any other file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read the checkpoint ({_one_line(e)})") from None
    try:
        tree = _Unpickler(io.BytesIO(data), path).load()
    except CheckpointError:
        raise
    except (_BadArray, pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError,
            KeyError, MemoryError, OverflowError, RecursionError) as e:
        raise CheckpointError(f"{path}: not a released MMV checkpoint pickle ({_one_line(e)})") from None
    if not isinstance(tree, dict) or set(tree) != {"params", "state"}:
        found = f"keys {sorted(map(repr, tree))}" if isinstance(tree, dict) else f"a {type(tree).__name__}"
        raise CheckpointError(f"{path}: expected a dict with exactly 'params' and 'state', found {found}")
    return ReleasedCheckpoint(params=_leaves(tree["params"], "params", path),
                              state=_leaves(tree["state"], "state", path),
                              sha256=hashlib.sha256(data).hexdigest(), path=path)
