"""Writes pickles in the format of DeepMind's released MMV checkpoints, without dill or Haiku.

The released files were written by dill's pure-Python pickler (a `pickle._Pickler`): `{"params": P,
"state": S}` with `P`, `S` and each module's leaves as `haiku._src.data_structures.FlatMapping(dict)`, and
every array as `dill._dill._create_array(_reconstruct, (ndarray, (0,), b"b"), state, None)`. Here local
stand-ins take the places of FlatMapping, `_create_array` and `_reconstruct`, and `save` records
them as globals under the released names (modules that need not, and here cannot, be imported).
"""

from __future__ import annotations

import io
import os
import pickle
import pickletools
import shlex
from pathlib import Path

import numpy as np


class FlatMapping(dict):
    """Pickled as `haiku._src.data_structures.FlatMapping(dict(self))`."""


def _create_array(f, args, state, npdict=None):
    raise AssertionError("a stand-in: only its name is pickled")


def _reconstruct(*args):
    raise AssertionError("a stand-in: only its name is pickled")


class _ReleasedPickler(pickle._Pickler):
    def __init__(self, file, protocol: int, numpy_module: str):
        super().__init__(file, protocol=protocol)
        self._names = {
            id(FlatMapping): ("haiku._src.data_structures", "FlatMapping"),
            id(_create_array): ("dill._dill", "_create_array"),
            id(_reconstruct): (numpy_module, "_reconstruct"),
        }

    def reducer_override(self, obj):
        if type(obj) is np.ndarray:
            _, args, state = obj.__reduce__()
            return _create_array, (_reconstruct, args, state, None)
        if type(obj) is FlatMapping:
            return FlatMapping, (dict(obj),)
        return NotImplemented

    def save(self, obj, save_persistent_id=True):
        released = self._names.get(id(obj))
        if released is None or id(obj) in self.memo:
            return super().save(obj, save_persistent_id)
        self.framer.commit_frame()
        module, name = released
        if self.proto >= 4:
            super().save(module)
            super().save(name)
            self.write(pickle.STACK_GLOBAL)
        else:
            self.write(pickle.GLOBAL + f"{module}\n{name}\n".encode())
        self.memoize(obj)


def _grouped(leaves: dict) -> FlatMapping:
    """{"module/path/leaf": array} -> FlatMapping(module/path -> FlatMapping(leaf -> array))."""
    modules: dict[str, dict] = {}
    for name, value in leaves.items():
        module, leaf = name.rsplit("/", 1)
        modules.setdefault(module, {})[leaf] = value
    return FlatMapping({module: FlatMapping(group) for module, group in modules.items()})


def released_pickle_bytes(params: dict, state: dict, numpy_module: str = "numpy.core.multiarray",
                          protocol: int = 4) -> bytes:
    """The bytes of a released-format checkpoint of flat `"module/leaf"` params and state."""
    buffer = io.BytesIO()
    _ReleasedPickler(buffer, protocol, numpy_module).dump(
        {"params": _grouped(params), "state": _grouped(state)})
    return buffer.getvalue()


def write_released_pickle(path: str | os.PathLike, params: dict, state: dict,
                          numpy_module: str = "numpy.core.multiarray", protocol: int = 4) -> Path:
    path = Path(path)
    path.write_bytes(released_pickle_bytes(params, state, numpy_module, protocol))
    return path


class _Touch:
    def __init__(self, marker):
        self.marker = os.fspath(marker)

    def __reduce__(self):
        return os.system, (f"touch {shlex.quote(self.marker)}",)


def write_malicious_pickle(path: str | os.PathLike, marker: str | os.PathLike) -> Path:
    """A checkpoint-shaped pickle whose one leaf, when unpickled, runs `touch marker` through os.system."""
    path = Path(path)
    path.write_bytes(pickle.dumps({"params": {"m": {"w": _Touch(marker)}}, "state": {}}, protocol=4))
    return path


def pickle_globals(data: bytes) -> set[str]:
    """Every global ("module.name") that the pickle's GLOBAL / STACK_GLOBAL opcodes name."""
    found, pushed, memo = set(), [], {}
    for op, arg, _ in pickletools.genops(data):
        if op.name in ("SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE"):
            pushed.append(arg)
        elif op.name in ("GET", "BINGET", "LONG_BINGET"):
            pushed.append(memo[arg])
        elif op.name == "MEMOIZE":
            memo[len(memo)] = pushed[-1]
        elif op.name in ("PUT", "BINPUT", "LONG_BINPUT"):
            memo[arg] = pushed[-1]
        elif op.name == "GLOBAL":
            found.add(arg.replace(" ", "."))
            pushed.append(None)
        elif op.name == "STACK_GLOBAL":
            found.add(f"{pushed[-2]}.{pushed[-1]}")
            pushed.append(None)
        elif op.name.startswith("EXT"):
            found.add(f"extension {arg}")
            pushed.append(None)
        elif op.stack_after:
            pushed.append(None)
    return found
