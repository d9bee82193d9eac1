"""Faults of a training run: the metrics logs after a kill and a resume list every step once."""

import csv
import json

import keras
import numpy as np
from conftest import killed_after_step_3

from mmv_tf.training.callbacks import MetricsLog, StepCheckpoint
from mmv_tf.training.run import train


def csv_rows(path):
    with path.open(newline="", encoding="utf-8") as table:
        return list(csv.DictReader(table))


def as_strings(records):
    return [{key: str(value) for key, value in record.items()} for record in records]


def test_a_round_row_is_written_before_its_checkpoint(tmp_path):
    """So a kill between the two leaves a row past the last checkpoint (dropped on resume), never a
    checkpoint without its row."""
    rows_at_save = {}

    class Manager:
        latest_checkpoint = None

        def save(self, checkpoint_number):
            lines = (tmp_path / "m.jsonl").read_text().splitlines() if (tmp_path / "m.jsonl").exists() else []
            rows_at_save[checkpoint_number] = [json.loads(line)["step"] for line in lines]
            self.latest_checkpoint = f"ckpt-{checkpoint_number}"

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    data = np.ones((8, 2), "float32"), np.ones((8, 1), "float32")
    callbacks = [MetricsLog(tmp_path / "m.jsonl", tmp_path / "m.csv"), StepCheckpoint(Manager(), 2)]
    model.fit(*data, batch_size=2, epochs=2, verbose=0, callbacks=callbacks)  # 4 steps an epoch
    assert rows_at_save == {2: [], 4: [4], 6: [4], 8: [4, 8]}
    assert [row["step"] for row in csv_rows(tmp_path / "m.csv")] == ["4", "8"]


def test_resume_after_a_kill_lists_each_step_once_in_both_metrics_files(demo_shards, small_run, tmp_path):
    config, whole_run, _ = small_run
    whole = [json.loads(line) for line in (whole_run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in whole] == [3, 6]
    assert csv_rows(whole_run / "metrics.csv") == as_strings(whole)
    # Killed after step 6's rows were written but before its checkpoint was saved, in the middle of a
    # further (torn) line: the run resumes from step 3 and logs step 6 again.
    killed = killed_after_step_3(whole_run, tmp_path / "killed")
    with (killed / "metrics.jsonl").open("a") as log:
        log.write('{"step": 6, "learning_r')

    resumed = train(config, demo_shards, killed, resume=True, verbose=0)
    assert resumed["resumed_from_step"] == 3 and resumed["step"] == 6
    records = [json.loads(line) for line in (killed / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [3, 6]
    assert records[0] == whole[0]  # the rows before the checkpoint are kept as they were
    assert csv_rows(killed / "metrics.csv") == as_strings(records)
