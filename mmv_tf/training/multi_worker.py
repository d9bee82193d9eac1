"""Training on several machines: `distribution.strategy: multi_worker`, TensorFlow's
MultiWorkerMirroredStrategy over the cluster that the TF_CONFIG variable names on each worker.

Every worker runs the same `mmv-tf train` command. Each reads the same training stream and keeps its
share of every global batch (tf.data's DATA auto-sharding), so a step trains on the batch that one
process would; the replicas' loss shares and summed gradients are then that batch's (`MMVTrainer`).
The chief (task `chief`, else worker 0) alone writes the run folder: config, metrics, TensorBoard and
checkpoints. The others save each checkpoint too, as TensorFlow's multi-worker checkpointing asks,
into a temporary folder they delete. On `--resume` every worker restores the latest checkpoint of
its --out, so --out is one folder that all workers see (a shared file system). A worker that stops
ends the others' collectives (TensorFlow's heartbeats notice it in about 10 seconds; a hung one, after
`distribution.timeout_seconds`), and they stop with a `ClusterError` that says how to go on.

Keras 3's `fit` fails under this strategy (keras-team/keras#20585: it reduces its first batch, and
then each step's logs, across workers in ways the strategy refuses), so `MultiWorkerFit` runs the
trainer's own `train_step` and `test_step` in a loop, calling the callbacks as `fit` calls them.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import tempfile
from pathlib import Path

from mmv_tf.errors import InputError

TF_CONFIG_EXAMPLE = ('{"cluster": {"worker": ["host0:port", "host1:port"]}, '
                     '"task": {"type": "worker", "index": 0}}')


class ClusterError(InputError):
    """The cluster of a multi-worker run cannot train: TF_CONFIG is missing or wrong, or a worker
    stopped or cannot be reached (then every worker stops, and `--resume` continues)."""


def check_tf_config() -> None:
    """Refuse a TF_CONFIG that is not {"cluster": {job: ["host:port", ...]}, "task": {"type": job,
    "index": i}}, saying what is missing."""
    text = os.environ.get("TF_CONFIG", "")
    if not text.strip():
        raise ClusterError("distribution.strategy multi_worker reads the cluster from the TF_CONFIG "
                           f"environment variable, which is not set; set it on each worker, e.g. "
                           f"{TF_CONFIG_EXAMPLE} (index: this worker's place in the list)")
    try:
        tf_config = json.loads(text)
    except ValueError as error:
        raise ClusterError(f"TF_CONFIG is not JSON ({error}); e.g. {TF_CONFIG_EXAMPLE}") from None
    cluster = tf_config.get("cluster") if isinstance(tf_config, dict) else None
    if not isinstance(cluster, dict) or not cluster or not all(
            isinstance(addresses, list) and addresses for addresses in cluster.values()):
        raise ClusterError(f"TF_CONFIG: cluster must list each job's worker addresses, got {cluster!r}; "
                           f"e.g. {TF_CONFIG_EXAMPLE}")
    task = tf_config.get("task")
    if (not isinstance(task, dict) or task.get("type") not in cluster
            or not isinstance(task.get("index"), int)
            or not 0 <= task["index"] < len(cluster[task["type"]])):
        raise ClusterError(f"TF_CONFIG: task must name a job of the cluster ({', '.join(cluster)}) "
                           f"and this worker's index in its list, got {task!r}")


@functools.cache
def multi_worker_strategy(timeout_seconds: float):
    """This process's MultiWorkerMirroredStrategy (one per process): joins TF_CONFIG's cluster,
    waiting for every worker; its collectives give up after `timeout_seconds`."""
    import tensorflow as tf

    check_tf_config()
    options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=timeout_seconds)
    return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)


@contextlib.contextmanager
def scratch_checkpoints(checkpoint):
    """A `tf.train.CheckpointManager` of `checkpoint` in a temporary folder, deleted at the end: where
    the workers other than the chief save."""
    import tensorflow as tf

    with tempfile.TemporaryDirectory(prefix="mmv-tf-worker-") as folder:
        yield tf.train.CheckpointManager(checkpoint, folder, max_to_keep=1)


@contextlib.contextmanager
def stops_with_the_cluster(checkpoints: Path):
    """Turn the errors that a worker's collectives end with when another worker stops (Unavailable)
    or hangs (DeadlineExceeded) into a `ClusterError` naming the run's last checkpoint in
    `checkpoints`."""
    import tensorflow as tf

    try:
        yield
    except (tf.errors.UnavailableError, tf.errors.DeadlineExceededError) as error:
        tasks = sorted({f"{job} {index}" for job, index in
                        re.findall(r"/job:(\w+)/replica:\d+/task:(\d+)", error.message)})
        lost = ", ".join(tasks) if tasks else "a worker"
        cause = ("it missed TensorFlow's heartbeats" if "heartbeat" in error.message
                 else f"a collective had no answer ({type(error).__name__})")
        latest = tf.train.latest_checkpoint(str(checkpoints))
        resume = (f"every worker with --resume, which continues from the last checkpoint, {latest}"
                  if latest else "every worker with a new --out: no checkpoint was written yet")
        raise ClusterError(f"training stopped: {lost} of the cluster stopped or cannot be reached "
                           f"({cause}), so every worker stops. Run the same command again on "
                           f"{resume}") from None


class MultiWorkerFit:
    """`trainer.fit` for one validation round, under the MultiWorkerMirroredStrategy `trainer` was
    built in: `trainer.train_step` on every replica (`strategy.run`) with its share of each global
    batch, then `trainer.test_step` on each worker over the whole validation set, as on one device
    (no collectives, so uneven last batches need no care). Logs are averaged over replicas, as
    `fit` averages them."""

    def __init__(self, trainer):
        import tensorflow as tf

        strategy = trainer.distribute_strategy

        def train_step(batches):
            logs = strategy.run(trainer.train_step, args=(next(batches),))
            return {name: strategy.reduce("MEAN", value, axis=None) for name, value in logs.items()}

        self.trainer = trainer
        self.train_step = tf.function(train_step, jit_compile=trainer.jit_compile)
        self.test_step = tf.function(trainer.test_step, jit_compile=trainer.jit_compile)

    def __call__(self, data, *, epoch: int, steps: int, validation, callbacks: list, verbose) -> dict:
        """Round `epoch`: `steps` steps on `data` (a dataset of global batches), then the batches of
        `validation` (or None); calls `callbacks` and returns the round's logs (`val_` for validation)."""
        import keras
        import tensorflow as tf

        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        batches = iter(self.trainer.distribute_strategy.experimental_distribute_dataset(
            data.with_options(options)))
        hooks = keras.callbacks.CallbackList(callbacks, add_progbar=verbose != 0, verbose=verbose,
                                             epochs=epoch + 1, steps=steps, model=self.trainer)
        hooks.on_train_begin()
        self.trainer.reset_metrics()
        hooks.on_epoch_begin(epoch)
        logs = {}
        for batch in range(steps):
            hooks.on_train_batch_begin(batch)
            logs = self.train_step(batches)
            hooks.on_train_batch_end(batch, logs)
        logs = {name: float(value) for name, value in logs.items()}
        if validation is not None:
            logs.update({f"val_{name}": value for name, value in self._evaluate(validation, hooks).items()})
        hooks.on_epoch_end(epoch, logs)
        hooks.on_train_end(logs)
        return logs

    def _evaluate(self, validation, hooks) -> dict:
        """The means of `trainer.test_step` over the batches of `validation`, on this worker alone."""
        self.trainer.reset_metrics()
        hooks.on_test_begin()
        logs = {}
        for index, batch in enumerate(validation):
            hooks.on_test_batch_begin(index)
            logs = self.test_step(batch)
            hooks.on_test_batch_end(index, logs)
        logs = {name: float(value) for name, value in logs.items()}
        hooks.on_test_end(logs)
        return logs
