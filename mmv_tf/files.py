"""Files that appear whole or not at all: write to a hidden sibling, then rename."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def partial_path(path: str | Path) -> Path:
    """The hidden sibling `.NAME.partial` that `path` is written to before it is renamed."""
    path = Path(path)
    return path.with_name(f".{path.name}.partial")


@contextlib.contextmanager
def atomic_path(path: str | Path):
    """Yield a partial path to write; on success it replaces `path`, on an error it is removed."""
    partial = partial_path(path)
    try:
        yield partial
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def write_text_atomically(path: str | Path, text: str) -> None:
    with atomic_path(path) as partial:
        partial.write_text(text, encoding="utf-8")
