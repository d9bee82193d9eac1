"""Fine-tuning: `mmv-tf train --init MODEL` starts from an exported model's network and weights,
with the usual config, checkpoints, resume and export (issue 14, item 4)."""

import dataclasses
import json
import shutil

import numpy as np
from conftest import run_config
from typer.testing import CliRunner

from mmv_tf.cli.main import app
from mmv_tf.data.reader import ReaderConfig, read_clips
from mmv_tf.training.config import load_train_config
from mmv_tf.training.run import build_training, clip_settings, train


def clip_reader(config, **changes) -> ReaderConfig:
    """The run's training clips (`clip_settings`; the demo's 10 fps), with `changes`."""
    return dataclasses.replace(ReaderConfig(**clip_settings(config, config.model_config(), 10.0)), **changes)


def losses_of_steps_on_one_batch(config, shards, start_dir, batch_size: int, learning_rate: float,
                                 steps: int = 4) -> list:
    """The training loss of one batch of the train split before each of `steps` steps on it at
    `learning_rate` (no warm-up), from the run's starting weights (`config.init`): a loss the steps
    must lower, free of the noise a held-out comparison has at this size."""
    optimizer = dataclasses.replace(config.optimizer, learning_rate=learning_rate, warmup_steps=0)
    _, trainer, *_ = build_training(dataclasses.replace(config, optimizer=optimizer), start_dir)
    batch = next(iter(read_clips(shards, trainer.network.make_tokenizer(), clip_reader(config),
                                 training=True, batch_size=batch_size, split="train", seed=0)))
    return [float(trainer.train_step(batch)["loss"]) for _ in range(steps)]


def test_training_from_an_exported_model_starts_at_its_weights_and_moves_them(
        small_savedmodel, demo_shards, tmp_path):
    """That the loss falls is tested from the imported network below: from this already trained
    model, a few Adam steps on one batch raise or lower its loss by chance (seen both ways)."""
    network, path = small_savedmodel
    config = dataclasses.replace(
        run_config(**{"train.steps": 12, "train.validate_every": 12, "train.checkpoint_every": 12,
                      "optimizer.learning_rate": 0.003}), init=str(path))
    assert config.model_config().video.image_size == 32  # the model's clip, not the demo preset's
    start, *_ = build_training(config, tmp_path / "start")
    for mine, exported in zip(start.weights, network.weights):  # the run starts at the export
        np.testing.assert_array_equal(mine.numpy(), exported.numpy(), err_msg=mine.path)

    out = tmp_path / "run"
    assert train(config, demo_shards, out, verbose=0)["step"] == 12
    trained, _, _, checkpoint, manager = build_training(config, out)
    checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()
    moved = [w.path for w, e in zip(trained.trainable_weights, network.trainable_weights)
             if not np.allclose(w.numpy(), e.numpy())]
    assert len(moved) > 0.9 * len(trained.trainable_weights)
    table = trained.text_encoder.get_layer("word_vectors").embeddings
    np.testing.assert_array_equal(table.numpy(), network.text_encoder.get_layer("word_vectors")
                                  .embeddings.numpy())  # frozen, as in training from scratch


def test_init_is_checked_before_a_run_folder_exists(demo_shards, tmp_path, small_savedmodel):
    runner = CliRunner()
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", "--config", "configs/demo.yaml", "--data", str(demo_shards),
                                 "--out", str(out), "--init", str(tmp_path / "nomodel")])
    assert result.exit_code == 1 and "nomodel" in result.output and not out.exists()
    image_model = tmp_path / "image"
    shutil.copytree(small_savedmodel[1], image_model)
    video_config = json.loads((image_model / "config.json").read_text())
    (image_model / "config.json").write_text(json.dumps({"class_name": "ImageMMV",
                                                         "config": {"network": video_config}}))
    result = runner.invoke(app, ["train", "--config", "configs/demo.yaml", "--data", str(demo_shards),
                                 "--out", str(out), "--init", str(image_model)])
    assert result.exit_code == 1 and "not a video model" in result.output and not out.exists()


def test_init_round_trips_through_the_run_config(small_savedmodel):
    config = load_train_config(None, [f"init={json.dumps(str(small_savedmodel[1]))}"])
    assert config.init == str(small_savedmodel[1])
    assert config.model_config().head.vat_dim == 16


def test_fine_tuning_an_imported_network_moves_its_weights_and_lowers_the_loss(imported_s3d, demo, tmp_path):
    """A few steps from the imported S3D-G network (the paper's architecture at full width, 8 frames
    of 200x200) on a tiny corpus, two narrated demo videos ingested at the model's 48 kHz: each
    batch holds both, so the loss measured on them is the one the steps lower."""
    from mmv_tf.data.ingest import ingest
    from mmv_tf.data.sources import DecodeSettings
    from mmv_tf.saved_model import load_network

    model = imported_s3d[0]
    corpus = tmp_path / "corpus"
    records = [json.loads(line) for line in (demo / "manifest.jsonl").read_text().splitlines()]
    chosen = [r for r in records if r["split"] == "train" and r["narrated"]][:2]
    for record in chosen:
        for part in ("video", "captions"):
            (corpus / record[part]).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(demo / record[part], corpus / record[part])
    (corpus / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in chosen))
    shards = tmp_path / "shards"
    ingest(corpus, shards, DecodeSettings(short_side=100, sample_rate=48000), progress=False)
    config = dataclasses.replace(
        run_config(**{"train.batch_size": 2, "train.steps": 4, "train.validate_every": 4,
                      "train.checkpoint_every": 4, "optimizer.learning_rate": 0.0001,
                      "optimizer.warmup_steps": 0}), init=str(model))
    assert config.model_config().video.num_frames == 8 and config.model_config().audio.sample_rate == 48000
    imported = load_network(model)

    out = tmp_path / "run"
    assert train(config, shards, out, verbose=0)["step"] == 4
    tuned, trainer, _, checkpoint, manager = build_training(config, out)
    checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()
    start_values = {w.path: w.numpy() for w in imported.weights}
    moved = [w.path for w in tuned.trainable_weights if not np.allclose(w.numpy(), start_values[w.path])]
    assert len(moved) > 0.9 * len(tuned.trainable_weights)
    for layer in tuned.head.untrained_layers():  # the released heads no loss reaches: kept
        for weight in layer.weights:
            np.testing.assert_array_equal(weight.numpy(), start_values[weight.path])

    losses = losses_of_steps_on_one_batch(config, shards, tmp_path / "steps", batch_size=2,
                                          learning_rate=1e-4)
    assert losses[-1] < losses[0], losses
