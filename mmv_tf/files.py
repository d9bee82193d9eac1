"""Output folders that appear whole or not at all, are never a user's own folder or an input, and
have one writer at a time.

- `atomic_path`: write to a hidden sibling `.NAME.partial`, then swap it in.
- `check_output`: refuse an `--out` that overlaps an input, or an existing folder mmv-tf did not
  write for the same command (unless `overwrite`); folders mmv-tf writes carry `OWNER_FILE`.
- `output_lock`: one writer per output (a locked `.NAME.lock` sibling names the holder).
- `written_folder` (replaced whole) and `claimed_folder` (written in place, resumable) combine them.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import json
import os
import shutil
import sys
from collections.abc import Iterable
from pathlib import Path

from mmv_tf.errors import InputError

OWNER_FILE = ".mmv-tf.json"


class OutputError(InputError):
    """An output path that must not be written: it overlaps an input, holds a user's files, or another
    run is writing it."""


def partial_path(path: str | Path) -> Path:
    """The hidden sibling `.NAME.partial` that `path` is written to before it is renamed."""
    path = Path(path)
    return path.with_name(f".{path.name}.partial")


def remove_path(path: Path) -> None:
    """Delete a file or a folder tree, if there."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


_RENAME_EXCHANGE = 2


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux renameat2); False where the system cannot."""
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is None:
        return False
    at_cwd = -100
    if renameat2(at_cwd, os.fsencode(a), at_cwd, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    if ctypes.get_errno() in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()), str(b))


@contextlib.contextmanager
def atomic_path(path: str | Path):
    """Yield a partial path to write (a file or a folder); on success it replaces `path`, on an
    error it is removed. An existing folder is swapped with the new one in one step, so the path
    never stands empty (two renames where the file system cannot swap)."""
    path = Path(path)
    partial = partial_path(path)
    remove_path(partial)
    try:
        yield partial
        if partial.is_dir() and path.is_dir():
            if not _exchange(partial, path):
                old = path.with_name(f".{path.name}.old")
                remove_path(old)
                os.replace(path, old)
                os.replace(partial, path)
                remove_path(old)
        else:
            os.replace(partial, path)
    finally:
        remove_path(partial)


def write_text_atomically(path: str | Path, text: str) -> None:
    with atomic_path(path) as partial:
        partial.write_text(text, encoding="utf-8")


def folder_kind(folder: Path) -> str | None:
    """The kind of output mmv-tf wrote into `folder` (`OWNER_FILE`), or None."""
    try:
        return json.loads((folder / OWNER_FILE).read_text(encoding="utf-8"))["kind"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def mark_folder(folder: Path, kind: str) -> None:
    """Record in `folder` that mmv-tf wrote it as a `kind` output."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / OWNER_FILE).write_text(json.dumps({"written_by": "mmv-tf", "kind": kind}) + "\n",
                                     encoding="utf-8")


def check_output(out: str | Path, kind: str, inputs: Iterable[str | Path] = (),
                 overwrite: bool = False) -> None:
    """Refuse `out` if it is, holds or lies inside one of `inputs`, or if it exists, is not empty
    and was not written by mmv-tf as a `kind` output, unless `overwrite`."""
    target = Path(out).resolve()
    for source in inputs:
        source = Path(source).resolve()
        if target == source or source in target.parents or target in source.parents:
            raise OutputError(f"the output {out} overlaps the input {source}: choose an --out "
                              "outside it")
    if overwrite or not target.exists():
        return
    if not target.is_dir():
        raise OutputError(f"{out} is a file; pass --overwrite to replace it, or choose another --out")
    if any(target.iterdir()) and folder_kind(target) != kind:
        raise OutputError(f"{out} already exists and mmv-tf did not write it as {kind} output; pass "
                          "--overwrite to replace it (its files are deleted), or choose another --out")


@contextlib.contextmanager
def output_lock(out: str | Path):
    """Hold the lock of output `out` (the sibling `.NAME.lock`, which names the holder) while the
    block runs; raise `OutputError` naming the holder if another run holds it."""
    out = Path(out)
    lock = out.with_name(f".{out.name}.lock")
    while True:
        try:
            lock.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            raise OutputError(f"cannot write to the folder of {out} ({error.filename}: "
                              f"{error.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip() or "unknown"
            os.close(fd)
            raise OutputError(f"{out} is being written by another mmv-tf run ({holder}); wait for it "
                              "to finish, or choose another --out") from None
        try:
            if os.stat(lock).st_ino == os.fstat(fd).st_ino:
                break  # still the lock file at that path, not one its last holder removed
        except FileNotFoundError:
            pass
        os.close(fd)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()}: {' '.join(sys.argv)}".encode(), 0)
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)
        os.close(fd)


@contextlib.contextmanager
def written_folder(out: str | Path, kind: str, *, inputs: Iterable[str | Path] = (),
                   overwrite: bool = False):
    """Write folder `out` whole, as a `kind` output: checked (`check_output`), locked, and built in
    the yielded partial path (not yet made, for writers that make it), which then replaces `out`."""
    out = Path(out)
    check_output(out, kind, inputs, overwrite)
    with output_lock(out), atomic_path(out) as partial:
        yield partial
        mark_folder(partial, kind)


@contextlib.contextmanager
def claimed_folder(out: str | Path, kind: str, *, inputs: Iterable[str | Path] = ()):
    """Write into folder `out` in place (resumable writers), as a `kind` output: checked, locked,
    made and marked; the block gets `out`."""
    out = Path(out)
    check_output(out, kind, inputs)
    with output_lock(out):
        mark_folder(out, kind)
        yield out
