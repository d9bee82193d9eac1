"""Fine-tuning: `mmv-tf train --init MODEL` starts from an exported model's network and weights,
with the usual config, checkpoints, resume and export (issue 14, item 4)."""

import dataclasses
import json

import numpy as np
from conftest import run_config
from mmv_tf.cli.main import app
from typer.testing import CliRunner

from mmv_tf.data.reader import ReaderConfig, read_clips
from mmv_tf.training.config import load_train_config
from mmv_tf.training.run import build_training, train


def fixed_batch_loss(config, network, trainer, shards) -> float:
    """The loss of `network` on the first evaluation batch of the train split (centred windows)."""
    model = config.model_config()
    reader = ReaderConfig(num_frames=model.video.num_frames, fps=10.0, sample_rate=model.audio.sample_rate,
                          crop_size=model.video.image_size, num_candidates=config.data.num_candidates,
                          eval_windows=1)
    batch = next(iter(read_clips(shards, network.make_tokenizer(), reader, training=False,
                                 batch_size=8, split="train")))
    return float(trainer.test_step(batch)["loss"])


def test_training_from_an_exported_model_moves_its_weights_and_lowers_the_loss(
        small_savedmodel, demo_shards, tmp_path):
    network, path = small_savedmodel
    config = dataclasses.replace(
        run_config(**{"train.steps": 8, "train.validate_every": 8, "train.checkpoint_every": 8,
                      "optimizer.learning_rate": 0.01}), init=str(path))
    assert config.model_config().video.image_size == 32  # the model's clip, not the demo preset's
    start, start_trainer, *_ = build_training(config, tmp_path / "start")
    for mine, exported in zip(start.weights, network.weights):  # the run starts at the export
        np.testing.assert_array_equal(mine.numpy(), exported.numpy(), err_msg=mine.path)
    before = fixed_batch_loss(config, start, start_trainer, demo_shards)

    out = tmp_path / "run"
    assert train(config, demo_shards, out, verbose=0)["step"] == 8
    trained, trainer, _, checkpoint, manager = build_training(config, out)
    checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()
    moved = [w.path for w, e in zip(trained.trainable_weights, network.trainable_weights)
             if not np.allclose(w.numpy(), e.numpy())]
    assert len(moved) > 0.9 * len(trained.trainable_weights)
    table = trained.text_encoder.get_layer("word_vectors").embeddings
    np.testing.assert_array_equal(table.numpy(), network.text_encoder.get_layer("word_vectors")
                                  .embeddings.numpy())  # frozen, as in training from scratch
    after = fixed_batch_loss(config, trained, trainer, demo_shards)
    assert after < before, (before, after)


def test_init_is_checked_before_a_run_folder_exists(demo_shards, tmp_path, small_savedmodel):
    runner = CliRunner()
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", "--config", "configs/demo.yaml", "--data", str(demo_shards),
                                 "--out", str(out), "--init", str(tmp_path / "nomodel")])
    assert result.exit_code == 1 and "nomodel" in result.output and not out.exists()
    image_model = tmp_path / "image"
    image_model.mkdir()
    for name in ("mmv_tf.json", "saved_model.pb"):
        (image_model / name).write_bytes((small_savedmodel[1] / name).read_bytes())
    (image_model / "keras_config.json").write_text(json.dumps({"class_name": "ImageMMV", "config": {}}))
    result = runner.invoke(app, ["train", "--config", "configs/demo.yaml", "--data", str(demo_shards),
                                 "--out", str(out), "--init", str(image_model)])
    assert result.exit_code == 1 and "not a video model" in result.output and not out.exists()


def test_init_round_trips_through_the_run_config(small_savedmodel):
    config = load_train_config(None, [f"init={json.dumps(str(small_savedmodel[1]))}"])
    assert config.init == str(small_savedmodel[1])
    assert config.model_config().head.vat_dim == 16
