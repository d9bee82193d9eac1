"""Training on several machines: `mmv-tf train` with distribution.strategy multi_worker in two worker
processes on 127.0.0.1 (TF_CONFIG), one of them killed mid-run and the pair resumed, against one
process on the same global batches; and JAX's data_parallel on two CPU devices against one device.

The processes start together: the JAX run compiles while the TensorFlow workers train.
"""

import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from conftest import SMALL_SETS
from test_device_training import _weights

from mmv_tf.training.callbacks import read_metrics
from mmv_tf.training.config import load_train_config
from mmv_tf.training.multi_worker import ClusterError
from mmv_tf.training.run import RunError, train

ROOT = Path(__file__).parents[1]
LEARNING_RATE = 0.002  # configs/demo.yaml's; warm-up over steps 0 and 1, so step 3's rate
# Three steps of 4 clips, a checkpoint at step 2, a validation round at the end, synchronised BN (so
# that two replicas of 2 clips normalise as one of 4 does).
SETS = SMALL_SETS + ["train.batch_size=4", "train.steps=3", "train.validate_every=3",
                     "train.checkpoint_every=2", "optimizer.warmup_steps=2", "train.validation_steps=1",
                     "data.num_candidates=2", "distribution.sync_bn=true",
                     "distribution.timeout_seconds=120"]
DEVICE_SETS = SMALL_SETS + ["train.batch_size=4", "train.steps=2", "train.validate_every=2",
                            "train.checkpoint_every=2", "optimizer.warmup_steps=2",
                            "train.validation_steps=1", "data.num_candidates=2", "data.device_resident=true"]

# `mmv-tf train ARGS`; with DIE_BEFORE_STEP=N the process kills itself (SIGKILL, as a machine that
# fails: no cleanup) before training step N.
WORKER = r"""
import os, signal, sys
import tensorflow as tf

tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})  # slower than it saves here
from mmv_tf.cli.main import app
from mmv_tf.training.callbacks import NaNGuard

die_before = int(os.environ.get("DIE_BEFORE_STEP", 0))
if die_before:
    def die(self, batch, logs=None):
        if int(self.model.optimizer.iterations.numpy()) == die_before - 1:
            os.kill(os.getpid(), signal.SIGKILL)
    NaNGuard.on_train_batch_begin = die
app(sys.argv[1:], prog_name="mmv-tf")
"""

# Under KERAS_BACKEND=jax on two host devices: the same device-resident run on one device and with
# data_parallel over both.
DATA_PARALLEL = r"""
import json, sys
from pathlib import Path
import keras
from mmv_tf.training.config import load_train_config
from mmv_tf.training.run import train

pack, work, sets = Path(sys.argv[1]), Path(sys.argv[2]), json.loads(sys.argv[3])
results = {"devices": len(keras.distribution.list_devices())}
for strategy in ("none", "data_parallel"):
    config = load_train_config("configs/demo.yaml", sets + [f"distribution.strategy={strategy}"])
    results[strategy] = train(config, pack, work / strategy, verbose=0)
(work / "results.json").write_text(json.dumps(results))
"""


def _set_args(sets: list[str]) -> list[str]:
    return [arg for value in sets for arg in ("--set", value)]


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


class Processes:
    """Started subprocesses, their output in LOGS/NAME.log; all killed at `close`."""

    def __init__(self, logs: Path):
        self.logs, self.running = logs, {}

    def start(self, name: str, command: list[str], **env) -> subprocess.Popen:
        with (self.logs / f"{name}.log").open("w") as log:
            process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                       env={**os.environ, **env})
        self.running[name] = process
        return process

    def train(self, name: str, out: Path, data: Path, *extra: str, **env) -> subprocess.Popen:
        return self.start(name, [sys.executable, "-c", WORKER, "train", "--config", "configs/demo.yaml",
                                 "--data", str(data), "--out", str(out), *_set_args(SETS), *extra], **env)

    def cluster(self, name: str, out: Path, data: Path, *extra: str, die_before=(0, 0)) -> list:
        """Two workers of one cluster on free local ports; worker i dies before step die_before[i]."""
        addresses = [f"127.0.0.1:{port}" for port in _free_ports(2)]
        scratch = self.logs / f"{name}-tmp"
        workers = []
        for index in range(2):
            (scratch / str(index)).mkdir(parents=True)
            tf_config = {"cluster": {"worker": addresses}, "task": {"type": "worker", "index": index}}
            workers.append(self.train(f"{name}-{index}", out, data, *extra,
                                      "--set", "distribution.strategy=multi_worker",
                                      TF_CONFIG=json.dumps(tf_config), TMPDIR=str(scratch / str(index)),
                                      DIE_BEFORE_STEP=str(die_before[index])))
        return workers

    def finish(self, name: str, timeout: float = 600) -> tuple[int, str]:
        """(exit code, output) of process `name`."""
        code = self.running.pop(name).wait(timeout)
        return code, (self.logs / f"{name}.log").read_text()

    def close(self) -> None:
        for process in self.running.values():
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def processes(tmp_path_factory):
    started = Processes(tmp_path_factory.mktemp("logs"))
    yield started
    started.close()


@pytest.fixture(scope="module")
def data_parallel(processes, demo_shards, tmp_path_factory, jax_env):
    """The JAX process (packing the shards first): started here, waited for by its test."""
    work = tmp_path_factory.mktemp("data_parallel")
    pack = [sys.executable, "-m", "mmv_tf.cli.main", "data", "pack", str(demo_shards), "--out",
            str(work / "pack"), "--config", "configs/demo.yaml", *_set_args(DEVICE_SETS)]
    run = [sys.executable, "-c", DATA_PARALLEL, str(work / "pack"), str(work), json.dumps(DEVICE_SETS)]
    # The pack is TensorFlow's work, the run JAX's: jax_env's backend for the run alone.
    jax_settings = {k: v for k, v in jax_env.items() if k.startswith(("XLA_", "JAX_"))}
    processes.start("data_parallel",
                    ["sh", "-c", f"{shlex.join(pack)} && KERAS_BACKEND=jax {shlex.join(run)}"],
                    **{**jax_settings,
                       "XLA_FLAGS": f"{jax_settings['XLA_FLAGS']} --xla_force_host_platform_device_count=2"})
    return work


@pytest.fixture(scope="module")
def killed(processes, data_parallel, demo_shards, tmp_path_factory):
    """A two-worker run whose worker 1 dies before step 3, after the checkpoint of step 2:
    {"out", "chief": (exit code, output), "seconds": from worker 1's death to the chief's exit,
    "files": the run folder's files then}."""
    out = tmp_path_factory.mktemp("killed") / "run"
    chief, worker = processes.cluster("killed", out, demo_shards, die_before=(0, 3))
    worker.wait(600)
    died = time.monotonic()
    return {"out": out, "worker": processes.finish("killed-1"), "chief": processes.finish("killed-0"),
            "seconds": time.monotonic() - died,
            "files": sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()
                            and "tensorboard" not in p.parts)}


@pytest.fixture(scope="module")
def resumed(processes, killed, demo_shards, tmp_path_factory):
    """The killed run resumed by both workers, and a copy of it resumed by one process (strategy
    none) on the same batches: {"cluster": run folder, "one": run folder, "outputs": [chief,
    worker, one process]}."""
    one = tmp_path_factory.mktemp("one") / "run"
    shutil.copytree(killed["out"], one)
    processes.cluster("resumed", killed["out"], demo_shards, "--resume")
    processes.train("one", one, demo_shards, "--resume")
    outputs = [processes.finish(name) for name in ("resumed-0", "resumed-1", "one")]
    for code, output in outputs:
        assert code == 0, output[-3000:]
    return {"cluster": killed["out"], "one": one, "outputs": outputs,
            "worker_scratch": processes.logs / "resumed-tmp"}


def test_a_worker_that_dies_stops_the_others_with_a_clear_message_and_nothing_half_written(killed):
    assert killed["worker"][0] == -signal.SIGKILL
    code, output = killed["chief"]
    assert code == 1, output[-3000:]
    message = next(line for line in output.splitlines() if line.startswith("error: training stopped"))
    assert "training stopped: worker 1 of the cluster stopped or cannot be reached" in message
    assert f"with --resume, which continues from the last checkpoint, {killed['out']}/checkpoints/ckpt-2" \
        in message
    assert killed["seconds"] < 60  # TensorFlow's heartbeats: about 10 seconds
    # The chief's files, complete: the checkpoint of step 2 (no metrics row: validation is at step 3).
    assert killed["files"] == [".mmv-tf.json", "checkpoints/checkpoint",
                               "checkpoints/ckpt-2.data-00000-of-00001", "checkpoints/ckpt-2.index",
                               "config.yaml"]
    assert not list(killed["out"].parent.glob(".*lock"))


# Two runs of the same steps agree on their metrics to this relative tolerance, not to rounding: Adam's
# sign-like first steps move weights whose gradients are rounding noise either way (`_assert_trained_alike`),
# which moved the loss by up to 1.3e-3 (measured in CI).
METRICS_TOLERANCE = 5e-3


def _assert_trained_alike(differences: np.ndarray) -> None:
    """`differences`: |a - b| of the weights of two runs of the same steps from the same weights.
    Adam moves each weight by up to about the learning rate; all but a few agree to a tenth of that.
    The few have gradients that are rounding noise (the tiny network's near-constant BN channels),
    and Adam's sign-like first steps move them either way."""
    assert np.mean(differences > 0.1 * LEARNING_RATE) < 0.01
    assert np.median(differences) < 0.005 * LEARNING_RATE
    assert differences.max() < 2.5 * LEARNING_RATE


def _checkpoint(path: Path) -> dict[str, np.ndarray]:
    reader = tf.train.load_checkpoint(str(path))
    return {name: reader.get_tensor(name) for name, _ in tf.train.list_variables(str(path))
            if name != "_CHECKPOINTABLE_OBJECT_GRAPH"}


def test_resumed_workers_train_as_one_process_on_the_same_batches(killed, resumed):
    """Step 3 from checkpoint 2: two workers of 2 clips each against one process of 4 clips."""
    (cluster,), (one,) = (read_metrics(resumed[run] / "metrics.jsonl") for run in ("cluster", "one"))
    assert cluster["step"] == one["step"] == 3
    for name in ("loss", "nce_va", "mil_nce_vt", "val_loss", "val_nce_va"):
        assert cluster[name] == pytest.approx(one[name], rel=METRICS_TOLERANCE), name
    assert "trained to step 3" in resumed["outputs"][0][1]
    assert not any(resumed["worker_scratch"].rglob("*.index"))  # worker 1's checkpoints: deleted

    start = _checkpoint(killed["out"] / "checkpoints" / "ckpt-2")
    trained, reference = (_checkpoint(resumed[run] / "checkpoints" / "ckpt-3") for run in ("cluster", "one"))
    assert trained.keys() == reference.keys() == start.keys()
    assert trained["optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE"] == 3
    weights = [name for name in trained if name.startswith("optimizer/_trainable_variables/")]
    moved = np.concatenate([np.abs(trained[n] - start[n]).ravel() for n in weights])
    assert np.median(moved) > 0.25 * LEARNING_RATE  # measured: 0.5
    # Measured: 0.06% of the weights over a tenth of the rate, the median 1e-4 of it, the most 0.4.
    _assert_trained_alike(np.concatenate([np.abs(trained[n] - reference[n]).ravel() for n in weights]))


def test_data_parallel_on_two_devices_trains_as_one_device(processes, data_parallel):
    code, output = processes.finish("data_parallel")
    assert code == 0, output[-3000:]
    results = json.loads((data_parallel / "results.json").read_text())
    assert results["devices"] == 2
    for name in ("loss", "nce_va", "mil_nce_vt", "val_loss", "val_acc_va"):
        assert results["data_parallel"][name] == pytest.approx(results["none"][name], rel=METRICS_TOLERANCE,
                                                                abs=1e-5)
    one, two = (_weights(data_parallel / run / "checkpoints" / "ckpt-2") for run in ("none", "data_parallel"))
    assert one.keys() == two.keys()
    # Measured: 0.002% of the weights over a tenth of the rate, the most 0.8 of it.
    _assert_trained_alike(np.concatenate([np.abs(one[n] - two[n]).ravel() for n in one
                                          if not n.startswith("optimizer/")]))


@pytest.mark.parametrize("tf_config,message", [
    (None, "reads the cluster from the TF_CONFIG environment variable, which is not set"),
    ("{cluster: [", "TF_CONFIG is not JSON"),
    ('{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": 1}}',
     r"task must name a job of the cluster \(worker\) and this worker's index in its list"),
])
def test_a_bad_tf_config_is_refused_before_anything_is_written(tf_config, message, demo_shards, tmp_path,
                                                                monkeypatch):
    if tf_config is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", tf_config)
    config = load_train_config("configs/demo.yaml", SETS + ["distribution.strategy=multi_worker"])
    with pytest.raises(ClusterError, match=message):
        train(config, demo_shards, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_data_parallel_is_refused_under_tensorflow(demo_shards, tmp_path):
    config = load_train_config("configs/demo.yaml", SETS + ["distribution.strategy=data_parallel"])
    with pytest.raises(RunError, match="data_parallel is Keras's JAX distribution"):
        train(config, demo_shards, tmp_path / "run")
