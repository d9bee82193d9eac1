"""Shared test settings: quiet TensorFlow, fixed seeds, a small word-vector set."""

import os
import shutil
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

# Two logical CPUs, so distribution tests can run replicas on this machine.
_cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    _cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
)

from mmv_tf.text.word_vectors import WordVectors  # noqa: E402

# Overrides that shrink s3dg_tiny further, for tests that build or train many models.
SMALL_MODEL = {"video": {"width": 0.125, "num_frames": 8, "image_size": 32}, "audio": {"width": 0.125},
               "text": {"output_dim": 64}, "head": {"va_dim": 32, "vat_dim": 16}}
SMALL_SETS = [f"model.{section}.{key}={value}" for section, fields in SMALL_MODEL.items()
              for key, value in fields.items()]


def run_config(**extra):
    """configs/demo.yaml on SMALL_MODEL: 6 steps of 4 clips, checkpoints every 3; `extra` overrides."""
    from mmv_tf.training.config import load_train_config

    sets = SMALL_SETS + ["train.batch_size=4", "train.steps=6", "train.validate_every=3",
                         "train.checkpoint_every=3", "train.keep_checkpoints=5",
                         "optimizer.warmup_steps=2", "data.validation_split=none",
                         "data.num_candidates=2"] + [f"{k}={v}" for k, v in extra.items()]
    return load_train_config("configs/demo.yaml", sets)


@pytest.fixture(scope="session")
def two_replicas():
    """One MirroredStrategy over the two logical CPUs, shared: separate strategies in one process
    can hand out clashing collective keys."""
    return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])


@pytest.fixture(scope="session")
def jax_env(tmp_path_factory) -> dict:
    """The environment of a subprocess under KERAS_BACKEND=jax on the CPU: XLA compiles with its
    cheap CPU passes (about half the compile time of these tests' programs, results within their
    tolerances) into one compilation cache (per pytest-xdist worker), so a later program of the
    same shapes (a resumed run, another test's on the same worker) loads instead of compiling."""
    import os

    return {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu",
            "XLA_FLAGS": "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true",
            "JAX_COMPILATION_CACHE_DIR": str(tmp_path_factory.mktemp("jax_cache")),
            "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}


@pytest.fixture(autouse=True)
def _seed():
    import keras

    keras.utils.set_random_seed(0)


@pytest.fixture(scope="session")
def small_word_vectors() -> WordVectors:
    """A 200-word, 8-d vocabulary: fast tiny models whose table content does not matter."""
    words = tuple(f"w{i}" for i in range(190)) + (
        "seven", "three", "slides", "left", "up", "moves", "digit", "down", "right", "zero")
    vectors = np.random.default_rng(0).normal(size=(len(words), 8)).astype(np.float32)
    return WordVectors(words, vectors, "test")


DEMO_VIDEOS = 20


def _made_once(tmp_path_factory, name: str, make) -> Path:
    """Folder `name`, written by `make(folder)` once for the whole run: under pytest-xdist the first
    worker to ask makes it in the run's shared temporary folder and the others wait for it and read
    it (tests must not change it)."""
    from filelock import FileLock

    if not os.environ.get("PYTEST_XDIST_WORKER"):
        folder = tmp_path_factory.mktemp(name)
        make(folder)
        return folder
    shared = tmp_path_factory.getbasetemp().parent
    folder, done = shared / name, shared / f"{name}.done"
    with FileLock(str(shared / f"{name}.lock")):
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)  # left by a worker whose `make` failed
            folder.mkdir()
            make(folder)
            done.touch()
    return folder


@pytest.fixture(scope="session")
def demo(tmp_path_factory):
    """A 20-video demo corpus (read only)."""
    from mmv_tf.data.demo import generate_demo_corpus

    return _made_once(tmp_path_factory, "demo",
                      lambda out: generate_demo_corpus(out, DEMO_VIDEOS, seed=3, progress=False))


@pytest.fixture(scope="session")
def demo_shards(demo, tmp_path_factory):
    """`demo` ingested into shards of 4 videos (read only)."""
    from mmv_tf.data.ingest import ingest
    from mmv_tf.data.sources import DecodeSettings

    return _made_once(tmp_path_factory, "shards", lambda out: ingest(
        demo, out, DecodeSettings(short_side=72), videos_per_shard=4, progress=False))


@pytest.fixture(scope="session")
def small_savedmodel(tmp_path_factory, small_word_vectors):
    """(network, folder): a SMALL_MODEL network with random weights and its SavedModel export."""
    from mmv_tf.export import export_network
    from mmv_tf.models.presets import from_preset

    network = from_preset("s3dg_tiny", SMALL_MODEL, small_word_vectors)
    path = export_network(network, tmp_path_factory.mktemp("models") / "small",
                          training={"steps": 7, "preset": "s3dg_tiny"})
    return network, path


@pytest.fixture(scope="session")
def small_run(demo_shards, tmp_path_factory):
    """(config, run folder, result) of the 6-step `run_config()` run on the demo shards (read only)."""
    from mmv_tf.training.run import train

    config = run_config()
    out = tmp_path_factory.mktemp("runs") / "small"
    return config, out, train(config, demo_shards, out, verbose=0)


@pytest.fixture(scope="module")
def no_tf32():
    """TF32 convs on recent GPUs put random-weight comparisons with DeepMind's outputs far over
    tolerance (shared/reference/deepmind/README.md): off for the module."""
    before = tf.config.experimental.tensor_float_32_execution_enabled()
    tf.config.experimental.enable_tensor_float_32_execution(False)
    yield
    tf.config.experimental.enable_tensor_float_32_execution(before)


def killed_after_step_3(run, copy):
    """A copy of the 6-step `run` as a kill between its steps 3 and 6 leaves it: checkpoint 6 gone
    (metrics files untouched); returns `copy`."""
    import shutil

    shutil.copytree(run, copy)
    for late in (copy / "checkpoints").glob("ckpt-6.*"):
        late.unlink()
    (copy / "checkpoints" / "checkpoint").write_text(
        'model_checkpoint_path: "ckpt-3"\nall_model_checkpoint_paths: "ckpt-3"\n')
    return copy


@pytest.fixture(scope="session")
def imported_s3d(tmp_path_factory):
    """(model folder, released checkpoint): the S3D-G fixture's seeded network written as a released
    checkpoint and imported (`import_released`) with an 8-frame video signature, 40 mel bins and
    the vocabulary w<row> for each table row. DeepMind's seeded weights: untrained."""
    from test_import_cli import write_released

    from mmv_tf.deepmind.importer import import_released
    from mmv_tf.deepmind.mapping import TABLE_ROWS

    folder = tmp_path_factory.mktemp("imported")
    vocabulary = folder / "words.txt"
    vocabulary.write_text("".join(f"w{row}\n" for row in range(TABLE_ROWS)))
    checkpoint, _ = write_released("s3d", folder)
    import_released(checkpoint, folder / "mmv_s3d", vocabulary=vocabulary, num_frames=8, num_mel_bins=40)
    return folder / "mmv_s3d", checkpoint


# The slowest modules (CI's --durations), run first: with `pytest -n 2` (scripts/test.sh) each worker
# takes the next module when it finishes one, so the long ones must not be left for the end.
SLOWEST_MODULES = ("test_multi_worker.py", "test_import_cli.py", "test_training.py", "test_finetune.py",
                   "test_device_training.py", "test_app.py", "test_deflation.py", "test_cli_faults.py",
                   "test_released_heads.py")


def pytest_collection_modifyitems(items):
    def rank(item):
        name = item.path.name
        return SLOWEST_MODULES.index(name) if name in SLOWEST_MODULES else len(SLOWEST_MODULES)

    items.sort(key=rank)  # stable: each module keeps its order
