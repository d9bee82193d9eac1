"""Callbacks of a training run: the NaN guard, step checkpoints and the metrics logs."""

from __future__ import annotations

import csv
import io
import json
import math
import time
from pathlib import Path

import keras

from mmv_tf.errors import NonFiniteLossError
from mmv_tf.files import remove_path, write_text_atomically


def _step(model) -> int:
    return int(model.optimizer.iterations.numpy())


class NaNGuard(keras.callbacks.Callback):
    """Stops training at the first step whose loss is NaN or infinite, naming the step.

    Not keras.callbacks.TerminateOnNaN: that one ends `fit` quietly, so the run would exit 0 and
    export the last checkpoint as if training had finished."""

    def on_train_batch_end(self, batch, logs=None):
        loss = float((logs or {}).get("loss", 0.0))
        if not math.isfinite(loss):
            raise NonFiniteLossError(
                f"the loss is {loss} at step {_step(self.model)}; training stopped (the last "
                "checkpoint holds the last good weights). Lower optimizer.learning_rate or set "
                "optimizer.clip_norm, and check the data for NaN frames or audio.")


class StepCheckpoint(keras.callbacks.Callback):
    """Saves a `tf.train.CheckpointManager` checkpoint every `every` steps and when training ends.

    A step that ends an epoch (a validation round) is saved at the epoch's end, after the
    callbacks listed before this one (the metrics logs) have written its row: a kill can then
    leave a row past the last checkpoint (dropped on resume, `MetricsLog.keep_until`), never a
    checkpoint whose row is missing.
    """

    def __init__(self, manager, every: int):
        super().__init__()
        self.manager = manager
        self.every = every

    def _save(self, step: int) -> None:
        latest = self.manager.latest_checkpoint
        if latest is None or not latest.endswith(f"-{step}"):
            try:
                self.manager.save(checkpoint_number=step)
            except BaseException:  # a full disk, a kill: leave no half-written checkpoint behind
                for temporary in Path(self.manager.directory).glob("*_temp*"):
                    remove_path(temporary)
                raise

    def on_train_batch_end(self, batch, logs=None):
        step = _step(self.model)
        if step % self.every == 0 and batch + 1 != self.params.get("steps"):
            self._save(step)

    def on_epoch_end(self, epoch, logs=None):
        step = _step(self.model)
        if step % self.every == 0:
            self._save(step)

    def on_train_end(self, logs=None):
        self._save(_step(self.model))


def read_metrics(path: Path) -> list[dict]:
    """The records of a metrics.jsonl (a torn last line, left by a kill mid-write, is left out)."""
    path = Path(path)
    records = []
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and isinstance(record.get("step"), int):
                records.append(record)
    return records


def metrics_csv(records: list[dict]) -> str:
    """The CSV table of metrics records: one column per key (in first-seen order), one row each."""
    columns = list(dict.fromkeys(key for record in records for key in record))
    text = io.StringIO()
    writer = csv.DictWriter(text, columns, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(records)
    return text.getvalue()


class MetricsLog(keras.callbacks.Callback):
    """One record per validation round (step, learning rate, train and val metrics): appended to
    `path` (JSON lines) and mirrored in `csv_path` (rewritten whole from the JSON lines, so the two
    always list the same rows)."""

    def __init__(self, path: Path, csv_path: Path | None = None):
        super().__init__()
        self.path = Path(path)
        self.csv_path = Path(csv_path) if csv_path else None
        self.started = time.time()

    def keep_until(self, step: int) -> int:
        """Drop the records past `step` (written after the checkpoint a run resumes from, before a
        kill) and torn lines, rewriting both files atomically; returns how many were dropped."""
        if not self.path.exists():
            return 0
        lines = self.path.read_text(encoding="utf-8").splitlines()
        kept = [record for record in read_metrics(self.path) if record["step"] <= step]
        write_text_atomically(self.path, "".join(json.dumps(record) + "\n" for record in kept))
        self._write_csv(kept)
        return len(lines) - len(kept)

    def _write_csv(self, records: list[dict]) -> None:
        if self.csv_path is not None:
            write_text_atomically(self.csv_path, metrics_csv(records))

    def on_epoch_end(self, epoch, logs=None):
        optimizer = self.model.optimizer
        record = {"step": _step(self.model),
                  "learning_rate": float(keras.ops.convert_to_numpy(optimizer.learning_rate)),
                  "seconds": round(time.time() - self.started, 1),
                  **{k: float(v) for k, v in (logs or {}).items()}}
        with self.path.open("a", encoding="utf-8") as log:
            log.write(json.dumps(record) + "\n")
        self._write_csv(read_metrics(self.path))
