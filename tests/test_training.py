"""Training: the train step learns, resumes exactly, distributes exactly, masks and guards."""

import json
import re

import numpy as np
import pytest
import tensorflow as tf
from conftest import SMALL_MODEL, SMALL_SETS, killed_after_step_3, run_config
from typer.testing import CliRunner

from mmv_tf.cli.main import app
from mmv_tf.errors import NonFiniteLossError
from mmv_tf.files import mark_folder
from mmv_tf.models.presets import from_preset
from mmv_tf.training.callbacks import NaNGuard
from mmv_tf.training.config import LossConfig, load_train_config
from mmv_tf.training.run import RunError, build_training, train
from mmv_tf.training.trainer import MMVTrainer, retrieval_accuracy


def synthetic_batch(rng, batch=8, candidates=2, words=200):
    ids = rng.integers(2, words, size=(batch, candidates, 16)).astype("int32")
    ids[:, :, 6:] = 0
    text_mask = np.ones((batch, candidates), bool)
    text_mask[1] = False  # a clip without narration
    return {
        "video": rng.uniform(size=(batch, 8, 32, 32, 3)).astype("float32"),
        "audio": rng.uniform(-1, 1, size=(batch, 12800)).astype("float32"),
        "text": {"token_ids": ids, "padding_mask": ids != 0},
        "audio_mask": np.array([True] * (batch - 1) + [False]),
        "text_mask": text_mask,
    }


def test_retrieval_accuracy_counts_a_hit_on_any_own_candidate_and_skips_masked_keys():
    queries = np.array([[1, 0], [1, 0.2], [0, 1]], np.float32)
    keys = np.array([[[0.5, -1], [1, 0.1]],  # clip 0: its second narration is query 0's nearest
                     [[1, 0], [0.1, 1]],     # clip 1: the first, masked, would be query 0's nearest
                     [[0, 1], [0, 1]]], np.float32)  # clip 2: no valid narration, so not counted
    mask = np.array([[True, True], [False, True], [False, False]])
    # Query 0 finds clip 0 (hit); query 1 finds clip 0 too (miss); query 2 is not asked.
    assert float(retrieval_accuracy(queries, keys, mask)) == pytest.approx(0.5)
    assert float(retrieval_accuracy(queries, keys, np.ones_like(mask))) == pytest.approx(1 / 3)


def test_loss_falls_and_retrieval_rises_on_a_tiny_set_then_the_nan_guard_fires(small_word_vectors):
    import keras

    network = from_preset("s3dg_tiny", SMALL_MODEL, small_word_vectors)
    trainer = MMVTrainer(network, LossConfig())
    trainer.compile(optimizer=keras.optimizers.Adam(3e-3))
    batch = synthetic_batch(np.random.default_rng(0))
    data = tf.data.Dataset.from_tensors(batch).repeat()

    def measure():  # training-mode forward: BN uses the batch's statistics, as in the step
        outputs = network(MMVTrainer.model_inputs(batch), training=True)
        return {k: float(v) for k, v in trainer.compute_terms(batch, outputs).items()}

    first = measure()
    trainer.fit(data, steps_per_epoch=25, epochs=1, verbose=0, shuffle=False)
    last = measure()
    assert last["loss"] < 0.75 * first["loss"]
    assert last["nce_va"] < first["nce_va"] and last["mil_nce_vt"] < first["mil_nce_vt"]
    assert last["acc_va"] > first["acc_va"] and last["acc_vt"] > first["acc_vt"]

    broken = dict(batch, video=np.where(np.arange(8)[:, None, None, None, None] == 2, np.nan,
                                        batch["video"]).astype("float32"))
    with pytest.raises(NonFiniteLossError, match="the loss is nan at step 26"):
        trainer.fit(tf.data.Dataset.from_tensors(broken).repeat(), steps_per_epoch=3, epochs=1,
                    verbose=0, callbacks=[NaNGuard()], shuffle=False)


def test_clips_without_text_add_nothing_to_the_text_term(small_word_vectors):
    network = from_preset("s3dg_tiny", SMALL_MODEL, small_word_vectors)
    trainer = MMVTrainer(network)
    batch = synthetic_batch(np.random.default_rng(1))
    outputs = network(MMVTrainer.model_inputs(batch), training=False)
    keep = batch["text_mask"].any(axis=1)

    def subset(tree):
        return tf.nest.map_structure(lambda x: tf.boolean_mask(x, keep), tree)

    full = trainer.compute_terms(batch, outputs)
    without = trainer.compute_terms(subset(batch), subset(outputs))
    assert float(full["mil_nce_vt"]) == pytest.approx(float(without["mil_nce_vt"]), rel=1e-5)
    assert float(full["nce_va"]) != pytest.approx(float(without["nce_va"]), rel=1e-3)


@pytest.mark.parametrize("global_negatives", [True, False])
def test_two_replicas_give_the_single_device_loss_and_gradients(small_word_vectors, two_replicas,
                                                                global_negatives):
    """2 logical CPUs vs one device on the same global batch of 8.

    With global negatives the single-device loss scores each clip against all 8;
    without, it is the mean of the two halves' losses, each half its own negatives.
    BN runs on its moving statistics here: batch statistics of this untrained tiny
    network have near-zero variances whose gradients are too ill-conditioned to compare.
    """
    strategy = two_replicas
    loss_config = LossConfig(global_negatives=global_negatives)
    with strategy.scope():
        distributed = MMVTrainer(from_preset("s3dg_tiny", SMALL_MODEL, small_word_vectors), loss_config)
    single = MMVTrainer(from_preset("s3dg_tiny", SMALL_MODEL, small_word_vectors), loss_config)
    single.network.set_weights(distributed.network.get_weights())
    batch = synthetic_batch(np.random.default_rng(2))

    def loss_and_gradients(trainer, data):
        with tf.GradientTape() as tape:
            outputs = trainer.network(MMVTrainer.model_inputs(data), training=False)
            loss = trainer.compute_terms(data, outputs, trainer.gather())["loss"]
        return loss, tape.gradient(loss, trainer.network.trainable_variables)

    def part(data, start, size):
        return tf.nest.map_structure(lambda x: tf.constant(x[start:start + size]), data)

    if global_negatives:
        want_loss, want_grads = loss_and_gradients(single, batch)
    else:
        (loss_a, grads_a), (loss_b, grads_b) = (loss_and_gradients(single, part(batch, s, 4))
                                                for s in (0, 4))
        want_loss, want_grads = (loss_a + loss_b) / 2, [(a + b) / 2 for a, b in zip(grads_a, grads_b)]

    shares, grads = strategy.run(tf.function(lambda data: loss_and_gradients(distributed, data)), args=(
        strategy.experimental_distribute_values_from_function(
            lambda context: part(batch, 4 * context.replica_id_in_sync_group, 4)),))
    total = strategy.reduce("SUM", shares, axis=None)
    assert float(total) == pytest.approx(float(want_loss), rel=1e-4)
    for got, want in zip(grads, want_grads):
        summed = strategy.reduce("SUM", got, axis=None)
        np.testing.assert_allclose(summed, want, rtol=2e-3, atol=1e-4 * float(tf.reduce_max(tf.abs(want))))


def test_resume_after_a_kill_continues_from_the_checkpoint_exactly(demo_shards, small_run, tmp_path):
    config, whole_run, whole = small_run
    assert whole["step"] == 6 and whole["resumed_from_step"] == 0
    # A run killed between steps 3 and 6 leaves what the whole run had after step 3.
    killed = killed_after_step_3(whole_run, tmp_path / "killed")
    metrics = (killed / "metrics.jsonl").read_text().splitlines()
    (killed / "metrics.jsonl").write_text(metrics[0] + "\n")

    network, _, optimizer, checkpoint, manager = build_training(config, killed)
    checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()
    saved = tf.train.load_checkpoint(manager.latest_checkpoint)
    saved_optimizer = [saved.get_tensor(name) for name, _ in
                       tf.train.list_variables(manager.latest_checkpoint) if name.startswith("optimizer/")]
    assert int(optimizer.iterations.numpy()) == 3
    moments = [v.numpy() for v in optimizer.variables if "momentum" in v.path or "velocity" in v.path]
    assert moments and all(np.any(m) for m in moments[:4])
    for moment in moments:
        assert any(t.shape == moment.shape and np.array_equal(t, moment) for t in saved_optimizer)

    resumed = train(config, demo_shards, killed, resume=True, verbose=0)
    assert resumed["resumed_from_step"] == 3 and resumed["step"] == 6
    final_whole = build_training(config, whole_run)
    final_whole[3].restore(final_whole[4].latest_checkpoint)
    final_resumed = build_training(config, killed)
    final_resumed[3].restore(final_resumed[4].latest_checkpoint)
    for a, b in zip(final_whole[0].weights, final_resumed[0].weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-6)
    lines = (killed / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [3, 6]


@pytest.mark.parametrize("args,message", [
    (["--data", "{tmp}/nowhere"], "data folder .*nowhere does not exist"),
    (["--data", "{tmp}"], "holds no training shards"),
    (["--data", "{shards}", "--set", "train.stepz=3"], r"unknown config key train\.stepz"),
    (["--data", "{shards}", "--set", "model.video.depth=3"], r"unknown config key video\.depth"),
    (["--data", "{shards}", "--set", "preset=s3dg_huge"], "unknown preset 's3dg_huge'"),
    (["--data", "{shards}", "--out", "/proc/mmv-run"], "cannot write to the folder of /proc/mmv-run"),
    (["--data", "{shards}", "--resume"], "nothing to resume"),
])
def test_train_rejects_bad_input_before_training(args, message, demo_shards, tmp_path):
    args = [a.format(tmp=tmp_path, shards=demo_shards) for a in args]
    if "--out" not in args:
        args += ["--out", str(tmp_path / "run")]
    result = CliRunner().invoke(app, ["train", "--config", "configs/demo.yaml", *args])
    assert result.exit_code == 1, result.output
    assert re.search(message, result.output), result.output


def test_resume_refuses_a_run_of_another_architecture(demo_shards, tmp_path):
    out = tmp_path / "run"
    mark_folder(out, "run")  # a run folder, as `train` makes them
    (out / "checkpoints").mkdir()
    (out / "checkpoints" / "ckpt-3.index").write_text("")
    run_config()  # valid
    import yaml

    from mmv_tf import config as config_lib

    (out / "config.yaml").write_text(yaml.safe_dump(config_lib.to_dict(run_config())))
    other = load_train_config("configs/demo.yaml", SMALL_SETS + ["model.head.design=shared"])
    with pytest.raises(RunError, match="another architecture"):
        train(other, demo_shards, out, resume=True, verbose=0)
    result = CliRunner().invoke(app, ["train", "--data", str(demo_shards), "--out", str(out),
                                      "--config", "configs/demo.yaml"])
    assert result.exit_code == 1 and "already holds a run" in result.output
