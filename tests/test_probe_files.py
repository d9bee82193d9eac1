"""The saved linear probe of `mmv-tf classify fit`: plain arrays that predict what the fitted
scikit-learn pipeline predicts, and no file of a probe folder can run code when it is loaded."""

import io
import json
import os
import pickle
import re
import zipfile

import numpy as np
import pytest

from mmv_tf.classify import PROBE_FILE, PROBE_INFO, fit_probe, load_probe, save_probe
from mmv_tf.errors import InputError
from mmv_tf.files import OWNER_FILE


def fitted(classes: int, dtype=np.float32, seed: int = 0, rows: int = 60, columns: int = 12):
    """A probe fitted with `fit_probe` on overlapping random clusters, and fresh features."""
    rng = np.random.default_rng(seed)
    labels = np.arange(rows) % classes
    centres = rng.normal(size=(classes, columns))
    features = (centres[labels] + 1.5 * rng.normal(size=(rows, columns))).astype(dtype)
    features[:, 3] = 2.0  # a constant feature: its scale is 1, not 0
    test = (3 * rng.normal(size=(500, columns))).astype(dtype)
    return fit_probe(features, labels, seed), test


def saved(pipeline, folder, classes: int):
    result = {"probe": pipeline, "classes": [f"class{i}" for i in range(classes)],
              "linear_probe_accuracy": 1.0}
    return save_probe(result, folder / "model", folder / "probe")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("classes", [2, 3])
def test_loaded_probe_predicts_what_the_pipeline_predicts(tmp_path, classes, dtype):
    pipeline, test = fitted(classes, dtype)
    probe, info = load_probe(saved(pipeline, tmp_path, classes))
    written = sorted(p.name for p in (tmp_path / "probe").iterdir())
    assert written == sorted([OWNER_FILE, PROBE_FILE, PROBE_INFO])
    assert info["classes"] == [f"class{i}" for i in range(classes)]
    assert info["feature"] == "before_head" and info["model"] == str((tmp_path / "model").resolve())
    expected = pipeline.predict(test)
    assert len(set(expected.tolist())) == classes  # the features reach every class
    predicted = probe.predict(test)
    assert predicted.dtype == expected.dtype and np.array_equal(predicted, expected)
    assert np.array_equal(probe.decision_function(test), pipeline.decision_function(test))
    assert np.array_equal(probe.predict(test.astype(np.float64)),
                          pipeline.predict(test.astype(np.float64)))
    assert [info["classes"][label] for label in predicted[:3]]  # what `classify predict` prints
    with np.load(tmp_path / "probe" / PROBE_FILE, allow_pickle=False) as arrays:  # no pickle inside
        assert sorted(arrays.files) == ["classes", "coef", "intercept", "mean", "scale"]
        assert arrays["coef"].shape == (1 if classes == 2 else classes, test.shape[1])


class RunsCode:
    """Unpickling this runs a shell command that makes `marker`."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch '{self.marker}'",)


@pytest.fixture
def probe_folder(tmp_path):
    """A genuine probe folder of a 3-class probe, to plant files in."""
    return saved(fitted(3)[0], tmp_path, 3)


def test_the_payload_runs_code_when_unpickled(tmp_path):
    marker = tmp_path / "control"
    pickle.loads(pickle.dumps(RunsCode(marker)))  # so the refusals below are not vacuous
    assert marker.exists()


def test_pickled_probes_are_refused_without_running_them(probe_folder, tmp_path):
    marker = tmp_path / "code-ran"
    payload = pickle.dumps(RunsCode(marker))
    with np.load(probe_folder / PROBE_FILE, allow_pickle=False) as genuine:
        arrays = dict(genuine)

    # the pickle of an older mmv-tf, or one planted in its place
    (probe_folder / PROBE_FILE).unlink()
    (probe_folder / "probe.joblib").write_bytes(payload)
    with pytest.raises(InputError, match="probe.joblib.*unpickling can run code"):
        load_probe(probe_folder)
    # a pickle named probe.npz
    (probe_folder / PROBE_FILE).write_bytes(payload)
    with pytest.raises(InputError, match=f"{PROBE_FILE}.*pickled data is never loaded"):
        load_probe(probe_folder)
    # an npz whose arrays are pickled objects
    for name in ("mean", "classes"):
        planted = {**arrays, name: np.array([RunsCode(marker)] * len(arrays[name]), dtype=object)}
        np.savez(probe_folder / PROBE_FILE, **planted)
        with pytest.raises(InputError, match=f"{PROBE_FILE}.*pickled data is never loaded"):
            load_probe(probe_folder)
    # a leftover pickle beside a good npz is never opened
    np.savez(probe_folder / PROBE_FILE, **arrays)
    assert np.array_equal(load_probe(probe_folder)[0].classes, [0, 1, 2])
    assert not marker.exists()


def npz_bytes(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def malformed_npz(arrays: dict) -> dict:
    """Name: bytes of a probe.npz that is refused, each from the genuine `arrays`."""
    def edit(**changes):
        return npz_bytes(**{k: v for k, v in {**arrays, **changes}.items() if v is not None})

    npy = io.BytesIO()
    np.save(npy, arrays["mean"])
    broken_member = io.BytesIO()
    with zipfile.ZipFile(broken_member, "w") as archive:
        for name, array in arrays.items():
            member = io.BytesIO()
            np.save(member, array)
            archive.writestr(f"{name}.npy", b"not an npy" if name == "mean" else member.getvalue())
    return {
        "empty": b"",
        "text": b"not an archive\n",
        "truncated": npz_bytes(**arrays)[:200],
        "single npy": npy.getvalue(),
        "bad member": broken_member.getvalue(),
        "missing coef": edit(coef=None),
        "extra array": edit(extra=np.zeros(2)),
        "coef rows": edit(coef=arrays["coef"][:2]),
        "coef columns": edit(coef=arrays["coef"][:, :-1]),
        "intercept shape": edit(intercept=arrays["intercept"][:, None]),
        "scale shape": edit(scale=arrays["scale"][:-1]),
        "mean 2-D": edit(mean=arrays["mean"][None]),
        "text mean": edit(mean=arrays["mean"].astype(str)),
        "nan mean": edit(mean=np.full_like(arrays["mean"], np.nan)),
        "zero scale": edit(scale=np.zeros_like(arrays["scale"])),
        "float classes": edit(classes=arrays["classes"].astype(float)),
        "one class": edit(classes=arrays["classes"][:1]),
        "repeated classes": edit(classes=np.array([0, 1, 1])),
        "classes beyond probe.json": edit(classes=np.array([0, 1, 7])),
    }


def test_malformed_probe_files_are_refused_naming_the_file(probe_folder):
    path = probe_folder / PROBE_FILE
    with np.load(path, allow_pickle=False) as genuine:
        arrays = dict(genuine)
    for name, content in malformed_npz(arrays).items():
        path.write_bytes(content)
        with pytest.raises(InputError) as refused:
            load_probe(probe_folder)
        message = str(refused.value)
        assert str(path) in message and "\n" not in message, (name, message)

    path.write_bytes(npz_bytes(**arrays))
    info_path = probe_folder / PROBE_INFO
    info = json.loads(info_path.read_text())
    for content in ("{not json", "[]", json.dumps({**info, "classes": "abc"}),
                    json.dumps({k: v for k, v in info.items() if k != "model"})):
        info_path.write_text(content)
        with pytest.raises(InputError) as refused:
            load_probe(probe_folder)
        assert str(info_path) in str(refused.value) and "\n" not in str(refused.value), content

    info_path.write_text(json.dumps(info))
    path.unlink()
    with pytest.raises(InputError, match=re.escape(f"{path}: missing")):
        load_probe(probe_folder)
    info_path.unlink()
    with pytest.raises(InputError, match="is not a probe folder"):
        load_probe(probe_folder)
