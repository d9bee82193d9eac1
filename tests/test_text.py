"""Word-vector loading and the in-graph tokenizer."""

import struct

import numpy as np
import pytest
import tensorflow as tf

from mmv_tf.text.tokenizer import OOV_ID, PAD_ID, TextTokenizer
from mmv_tf.text.word_vectors import WordVectorError, load_word_vectors

ROWS = [("The", [0.1, 0.2, 0.3]), ("seven", [1.0, 2.0, 3.0]), ("slides", [4.0, 5.0, 6.0]),
        ("the", [9.0, 9.0, 9.0]), (",", [7.0, 7.0, 7.0]), ("New_York", [8.0, 8.0, 8.0]),
        ("left", [-1.0, -2.0, -3.0])]
EXPECTED_WORDS = ("the", "seven", "slides", "left")  # lowercased, deduplicated, tokens only


def write_glove(path):
    path.write_text("".join(f"{w} {' '.join(map(str, v))}\n" for w, v in ROWS), encoding="utf-8")


def write_word2vec_text(path):
    path.write_text(f"{len(ROWS)} 3\n" + "".join(f"{w} {' '.join(map(str, v))}\n" for w, v in ROWS),
                    encoding="utf-8")


def write_word2vec_binary(path):
    with path.open("wb") as f:
        f.write(f"{len(ROWS)} 3\n".encode())
        for word, vector in ROWS:
            f.write(word.encode() + b" " + struct.pack("<3f", *vector) + b"\n")


@pytest.mark.parametrize("writer,name", [(write_glove, "vectors.txt"),
                                         (write_word2vec_text, "vectors.w2v.txt"),
                                         (write_word2vec_binary, "vectors.bin")])
def test_loaders_read_the_same_vocabulary_in_frequency_order(tmp_path, writer, name):
    path = tmp_path / name
    writer(path)
    vectors = load_word_vectors(str(path))
    assert vectors.words == EXPECTED_WORDS
    np.testing.assert_allclose(vectors.vectors, [[0.1, 0.2, 0.3], [1, 2, 3], [4, 5, 6], [-1, -2, -3]],
                               rtol=1e-6)
    limited = load_word_vectors(str(path), limit=2)
    assert limited.words == EXPECTED_WORDS[:2] and limited.dim == 3


def test_packaged_glove_keeps_the_most_frequent_token_words():
    vectors = load_word_vectors("glove-6b-50d", limit=65536)
    assert len(vectors.words) == 65536 and vectors.dim == 50
    assert vectors.words[:3] == ("the", "of", "to")
    assert all(w.isalnum() for w in vectors.words)
    near = {w: vectors.vectors[vectors.words.index(w)] for w in ("seven", "eight", "slides")}
    cosine = lambda a, b: a @ b / np.linalg.norm(a) / np.linalg.norm(b)  # noqa: E731
    assert cosine(near["seven"], near["eight"]) > cosine(near["seven"], near["slides"])


@pytest.mark.parametrize("content,message", [
    ("the 0.1 0.2\nseven 0.3\n", r"bad\.txt:2: expected 2 numbers after the word, got 1"),
    ("the 0.1 0.2\nseven 0.3 abc\n", r"bad\.txt:2: not a number"),
    ("the\n", r"bad\.txt:1: a word with no numbers"),
])
def test_malformed_text_files_name_the_file_and_line(tmp_path, content, message):
    path = tmp_path / "bad.txt"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(WordVectorError, match=message):
        load_word_vectors(str(path))


def test_broken_binary_and_missing_files_are_reported(tmp_path):
    path = tmp_path / "cut.bin"
    write_word2vec_binary(path)
    path.write_bytes(path.read_bytes()[:30])
    with pytest.raises(WordVectorError, match=r"cut\.bin: entry 2 \(seven\): file ends inside"):
        load_word_vectors(str(path))
    (tmp_path / "header.bin").write_bytes(b"oops\n")
    with pytest.raises(WordVectorError, match=r"header\.bin:1: expected a 'count dim' header"):
        load_word_vectors(str(tmp_path / "header.bin"))
    (tmp_path / "latin1.txt").write_bytes("caf\xe9 1.0\n".encode("latin-1"))
    with pytest.raises(WordVectorError, match=r"latin1\.txt:1: not UTF-8"):
        load_word_vectors(str(tmp_path / "latin1.txt"))
    with pytest.raises(WordVectorError, match=r"nowhere\.txt does not exist"):
        load_word_vectors(str(tmp_path / "nowhere.txt"))


def test_tokenizer_normalises_drops_stop_words_truncates_and_pads():
    vocabulary = ["seven", "slides", "left", "up", "three", "café", "moving"]
    tokenizer = TextTokenizer(vocabulary, max_words=4)
    out = tokenizer(tf.constant([
        "Now the SEVEN slides to the left!",  # stop words, case, punctuation
        "a three moving up and up again",  # truncated after 4 words; 'again' would be OOV
        "",
        "Cafe\u0301 zebra",  # NFKC composes é; unknown word -> OOV
    ]))
    ids, mask = out["token_ids"].numpy(), out["padding_mask"].numpy()
    word = {w: i + 2 for i, w in enumerate(vocabulary)}
    assert ids.tolist() == [
        [word["seven"], word["slides"], word["left"], PAD_ID],
        [word["three"], word["moving"], word["up"], word["up"]],
        [PAD_ID] * 4,
        [word["café"], OOV_ID, PAD_ID, PAD_ID],
    ]
    np.testing.assert_array_equal(mask, ids != PAD_ID)


def test_tokenizer_keeps_the_candidate_axis():
    tokenizer = TextTokenizer(["seven", "up"], max_words=3)
    out = tokenizer(tf.constant([["seven up", "x"], ["up", ""]]))
    assert out["token_ids"].shape == (2, 2, 3)
    assert out["token_ids"].numpy()[1, 0].tolist() == [3, 0, 0]
    config = tokenizer.get_config()
    rebuilt = TextTokenizer.from_config(config)
    np.testing.assert_array_equal(rebuilt(tf.constant(["up seven"]))["token_ids"], [[3, 2, 0]])
