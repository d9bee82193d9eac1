"""The reader of DeepMind's released checkpoints: round trips through the released pickle format and
refusals of everything else (no TensorFlow needed)."""

import hashlib
import pickle

import numpy as np
import pytest
from deepmind_pickles import (
    pickle_globals,
    released_pickle_bytes,
    write_malicious_pickle,
    write_released_pickle,
)

from mmv_tf.deepmind.checkpoint import CheckpointError, read_checkpoint
from mmv_tf.errors import InputError

ROOT = "text_audio_video"
ALLOWED_GLOBALS = {"haiku._src.data_structures.FlatMapping", "dill._dill._create_array", "numpy.ndarray",
                   "numpy.dtype"}
BN = f"{ROOT}/visual_module/~/S3D/Mixed_3b/Branch_1_Conv2d_0b_3x3/__cross_replica_batch_norm"


def _tree():
    rng = np.random.default_rng(0)
    params = {
        f"{ROOT}/text_module/~/embed/embeddings": rng.normal(size=(7, 5)).astype(np.float32),
        f"{ROOT}/text_module/~/text_conv1/w": rng.normal(size=(1, 5, 4)).astype(np.float32),
        f"{ROOT}/text_module/~/text_conv1/b": rng.normal(size=(4,)).astype(np.float32),
        f"{ROOT}/visual_module/~/S3D/Conv2d_1a_7x7/~/conv3_d/w":
            rng.normal(size=(2, 4, 4, 24, 3)).astype(np.float32),
        f"{BN}/scale": rng.normal(size=(1, 1, 1, 1, 3)).astype(np.float32),
        f"{BN}/offset": rng.normal(size=(1, 1, 1, 3)).astype(np.float32),
        f"{ROOT}/~_get_pair_embedding_heads/vis_embd/final_projection/w":
            np.asfortranarray(rng.normal(size=(3, 2)).astype(np.float32)),
    }
    state = {}
    for ema in ("mean_ema", "var_ema"):
        state[f"{BN}/~/{ema}/average"] = rng.normal(size=(1, 1, 1, 3)).astype(np.float32)
        state[f"{BN}/~/{ema}/hidden"] = rng.normal(size=(1, 1, 1, 3)).astype(np.float32)
        state[f"{BN}/~/{ema}/counter"] = np.array(1, np.int32)
    return params, state


def _assert_same(got, want):
    assert set(got) == set(want)
    for name, value in want.items():
        assert got[name].dtype == value.dtype and got[name].shape == value.shape, name
        np.testing.assert_array_equal(got[name], value)


@pytest.mark.parametrize("protocol", [3, 4])
@pytest.mark.parametrize("numpy_module", ["numpy.core.multiarray", "numpy._core.multiarray"])
def test_round_trip(tmp_path, numpy_module, protocol):
    params, state = _tree()
    path = write_released_pickle(tmp_path / "mmv.pkl", params, state, numpy_module, protocol)
    assert pickle_globals(path.read_bytes()) == ALLOWED_GLOBALS | {f"{numpy_module}._reconstruct"}
    checkpoint = read_checkpoint(str(path))
    _assert_same(checkpoint.params, params)
    _assert_same(checkpoint.state, state)
    assert checkpoint.state[f"{BN}/~/mean_ema/counter"].shape == ()
    assert checkpoint.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert checkpoint.path == path


def test_written_format_matches_the_release():
    data = released_pickle_bytes({"m/~/conv/w": np.zeros((1, 1, 1, 2), np.float32)}, {})
    # Without the stand-ins the file cannot be loaded: it needs Haiku and dill, as a released one does.
    with pytest.raises(ModuleNotFoundError, match="haiku|dill"):
        pickle.loads(data)
    assert pickle_globals(data) == ALLOWED_GLOBALS | {"numpy.core.multiarray._reconstruct"}


def test_malicious_pickle_is_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"
    control = write_malicious_pickle(tmp_path / "control.pkl", tmp_path / "control_marker")
    pickle.loads(control.read_bytes())  # The payload works when unpickled without restrictions.
    assert (tmp_path / "control_marker").exists()

    path = write_malicious_pickle(tmp_path / "evil.pkl", marker)
    with pytest.raises(CheckpointError) as caught:
        read_checkpoint(path)
    message = str(caught.value)
    assert str(path) in message and ("posix.system" in message or "os.system" in message)
    assert "\n" not in message
    assert not marker.exists()


def _refused(path, *words):
    with pytest.raises(CheckpointError) as caught:
        read_checkpoint(path)
    message = str(caught.value)
    assert isinstance(caught.value, InputError)
    assert str(path) in message and "\n" not in message
    for word in words:
        assert word in message
    return message


def test_not_a_pickle(tmp_path):
    path = tmp_path / "notes.pkl"
    path.write_text("these are not weights\n")
    _refused(path, "not a released MMV checkpoint pickle")
    (tmp_path / "empty.pkl").write_bytes(b"")
    _refused(tmp_path / "empty.pkl", "EOFError")


def test_truncated(tmp_path):
    data = released_pickle_bytes(*_tree())
    path = tmp_path / "half.pkl"
    path.write_bytes(data[: len(data) // 2])
    _refused(path, "not a released MMV checkpoint pickle")


def test_missing_file(tmp_path):
    _refused(tmp_path / "absent.pkl", "cannot read")


@pytest.mark.parametrize("tree, words", [
    ([1, 2, 3], ["'params' and 'state'", "list"]),
    ({"state": {}}, ["'params' and 'state'"]),
    ({"params": {}, "state": {}, "extra": {}}, ["'extra'"]),
    ({"params": [], "state": {}}, ["params", "list"]),
    ({"params": {"m": np.zeros(2, np.float32)}, "state": {}}, ["'m'", "ndarray"]),
])
def test_wrong_structure(tmp_path, tree, words):
    path = tmp_path / "wrong.pkl"
    path.write_bytes(pickle.dumps(tree, protocol=4))
    _refused(path, *words)


def test_leaf_that_is_not_an_array(tmp_path):
    path = write_released_pickle(tmp_path / "str.pkl", {"m/~/conv/w": "weights"}, {})
    _refused(path, "'m/~/conv/w'", "str", "not a numpy array")


def test_leaf_of_another_dtype(tmp_path):
    path = write_released_pickle(tmp_path / "u8.pkl", {"m/~/conv/w": np.zeros(3, np.uint8)}, {})
    _refused(path, "'m/~/conv/w'", "uint8")
