"""Callbacks of a training run: the NaN guard, step checkpoints and the JSON metrics log."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import keras

from mmv_tf.errors import NonFiniteLossError


def _step(model) -> int:
    return int(model.optimizer.iterations.numpy())


class NaNGuard(keras.callbacks.Callback):
    """Stops training at the first step whose loss is NaN or infinite, naming the step."""

    def on_train_batch_end(self, batch, logs=None):
        loss = float((logs or {}).get("loss", 0.0))
        if not math.isfinite(loss):
            raise NonFiniteLossError(
                f"the loss is {loss} at step {_step(self.model)}; training stopped (the last "
                "checkpoint holds the last good weights). Lower optimizer.learning_rate or set "
                "optimizer.clip_norm, and check the data for NaN frames or audio.")


class StepCheckpoint(keras.callbacks.Callback):
    """Saves a `tf.train.CheckpointManager` checkpoint every `every` steps and when training ends."""

    def __init__(self, manager, every: int):
        super().__init__()
        self.manager = manager
        self.every = every

    def on_train_batch_end(self, batch, logs=None):
        step = _step(self.model)
        if step % self.every == 0:
            self.manager.save(checkpoint_number=step)

    def on_train_end(self, logs=None):
        step = _step(self.model)
        if self.manager.latest_checkpoint is None or not self.manager.latest_checkpoint.endswith(
                f"-{step}"):
            self.manager.save(checkpoint_number=step)


class MetricsLog(keras.callbacks.Callback):
    """Appends one JSON line per validation round: step, learning rate, train and val metrics."""

    def __init__(self, path: Path):
        super().__init__()
        self.path = Path(path)
        self.started = time.time()

    def on_epoch_end(self, epoch, logs=None):
        optimizer = self.model.optimizer
        record = {"step": _step(self.model),
                  "learning_rate": float(keras.ops.convert_to_numpy(optimizer.learning_rate)),
                  "seconds": round(time.time() - self.started, 1),
                  **{k: float(v) for k, v in (logs or {}).items()}}
        with self.path.open("a", encoding="utf-8") as log:
            log.write(json.dumps(record) + "\n")
