"""The checkpoints of a training run, in RUN/checkpoints/: the last K, of one of two kinds.

TensorFlow backend: `tf.train.CheckpointManager`'s ckpt-N.index / ckpt-N.data-* (network and
optimizer). JAX backend (device-resident training, where TensorFlow is absent): folders ckpt-N/ with
  network.weights.h5   the network's weights by layer name (Keras `save_weights`, as model folders)
  optimizer.npz        the optimizer's variables by path (its step, `iteration`, among them)
A run is resumed under the backend that wrote it; `export_run` (TensorFlow) reads either kind.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from mmv_tf.errors import InputError
from mmv_tf.files import atomic_path, remove_path
from mmv_tf.saved_model import load_weights

NETWORK_WEIGHTS = "network.weights.h5"
OPTIMIZER_STATE = "optimizer.npz"
_FOLDER = re.compile(r"ckpt-(\d+)")


class CheckpointError(InputError):
    """A checkpoint that does not fit the network or optimizer it is restored into."""


def _name(variable) -> str:
    """An optimizer variable's path without the optimizer's own name (`adam/`, `adam_1/`, ...),
    which depends on how many optimizers the process made before."""
    return variable.path.split("/", 1)[-1]


def _load_network(network, folder: Path) -> None:
    load_weights(network, folder / NETWORK_WEIGHTS, "the run's network", CheckpointError)


class KerasCheckpoint:
    """Writes and reads `network` and `optimizer` as a ckpt-N/ folder (above), on any backend."""

    def __init__(self, network, optimizer):
        self.network = network
        self.optimizer = optimizer

    def save(self, folder: Path) -> None:
        import keras

        self.network.save_weights(str(folder / NETWORK_WEIGHTS))
        np.savez(folder / OPTIMIZER_STATE, **{_name(v): keras.ops.convert_to_numpy(v.value)
                                              for v in self.optimizer.variables})

    def restore(self, folder: str | Path) -> None:
        folder = Path(folder)
        _load_network(self.network, folder)
        variables = {_name(v): v for v in self.optimizer.variables}
        with np.load(folder / OPTIMIZER_STATE) as saved:
            if set(saved.files) != set(variables):
                raise CheckpointError(
                    f"{folder / OPTIMIZER_STATE} does not fit the run's optimizer: missing "
                    f"{sorted(set(variables) - set(saved.files))[:5]}, extra "
                    f"{sorted(set(saved.files) - set(variables))[:5]}")
            for name, variable in variables.items():
                if saved[name].shape != tuple(variable.shape):
                    raise CheckpointError(f"{folder / OPTIMIZER_STATE}: {name} has shape "
                                          f"{saved[name].shape}, the optimizer's {tuple(variable.shape)}")
                variable.assign(saved[name])


def keras_checkpoints(directory: str | Path) -> list[Path]:
    """The complete ckpt-N/ folders of `directory`, by step."""
    found = [(int(m.group(1)), p) for p in Path(directory).glob("ckpt-*")
             if (m := _FOLDER.fullmatch(p.name)) and (p / OPTIMIZER_STATE).is_file()]
    return [path for _, path in sorted(found)]


class KerasCheckpointManager:
    """`tf.train.CheckpointManager` for a `KerasCheckpoint`, as much of it as `StepCheckpoint` uses:
    `save(checkpoint_number)` writes ckpt-N/ whole (or not at all) and keeps the last `max_to_keep`."""

    def __init__(self, checkpoint: KerasCheckpoint, directory: str | Path, max_to_keep: int):
        self.checkpoint = checkpoint
        self.directory = str(directory)
        self.max_to_keep = max_to_keep

    @property
    def latest_checkpoint(self) -> str | None:
        found = keras_checkpoints(self.directory)
        return str(found[-1]) if found else None

    def save(self, checkpoint_number: int) -> str:
        folder = Path(self.directory) / f"ckpt-{checkpoint_number}"
        with atomic_path(folder) as partial:
            partial.mkdir(parents=True)
            self.checkpoint.save(partial)
        for old in keras_checkpoints(self.directory)[:-self.max_to_keep]:
            remove_path(old)
        return str(folder)


def has_checkpoint(directory: str | Path) -> bool:
    """Whether `directory` holds a checkpoint of either kind."""
    return bool(keras_checkpoints(directory)) or any(Path(directory).glob("ckpt-*.index"))


def restore_network(network, directory: str | Path) -> dict:
    """Load the weights of the latest checkpoint in `directory` (either kind; the TensorFlow kind
    needs TensorFlow) into `network`, leaving the optimizer's; returns {"checkpoint": its name,
    "steps": its step} (ckpt-STEP, as `StepCheckpoint` numbers them). Check `has_checkpoint` first."""
    found = keras_checkpoints(directory)
    if found:
        latest = found[-1]
        _load_network(network, latest)
    else:
        import tensorflow as tf

        latest = tf.train.latest_checkpoint(str(directory))
        # The network alone: the checkpoint's optimizer slots are left unread.
        tf.train.Checkpoint(network=network).restore(latest).expect_partial().assert_existing_objects_matched()
    name = Path(latest).name
    return {"checkpoint": name, "steps": int(name.rsplit("-", 1)[1])}


def restore_latest(checkpoint, manager) -> None:
    """Restore `manager`'s latest checkpoint into `checkpoint`: a `KerasCheckpoint` or a
    `tf.train.Checkpoint` (every object it tracks must be matched)."""
    if isinstance(checkpoint, KerasCheckpoint):
        checkpoint.restore(manager.latest_checkpoint)
    else:
        checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()
