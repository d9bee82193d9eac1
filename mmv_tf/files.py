"""Files and folders that appear whole or not at all: write to a hidden sibling, then rename."""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path


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


@contextlib.contextmanager
def atomic_path(path: str | Path):
    """Yield a partial path to write (a file or a folder); on success it replaces `path`, on an
    error it is removed. A folder replaces an existing folder in two renames."""
    path = Path(path)
    partial = partial_path(path)
    remove_path(partial)
    try:
        yield partial
        if partial.is_dir() and path.is_dir():
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
