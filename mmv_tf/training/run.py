"""`mmv-tf train`: one training run from a config, shards and an output folder.

RUN_DIR holds config.yaml (the resolved config), checkpoints/ (the last K
`tf.train.Checkpoint`s: weights, optimizer state, step; the schedule follows
the step), metrics.jsonl (one line per validation round), metrics.csv and
tensorboard/. `resume=True` restores the latest checkpoint and continues from
its step; the data order after a resume is reseeded from that step, and the
metrics rows past it (written before a kill, ahead of their checkpoint) are
dropped, so every step is listed once.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import yaml

from mmv_tf import config as config_lib
from mmv_tf.errors import InputError
from mmv_tf.files import claimed_folder
from mmv_tf.training.config import TrainConfig

CONFIG_NAME = "config.yaml"


class RunError(InputError):
    """The data, output folder or resume point cannot be used; raised before training starts."""


def _shard_settings(folder: Path) -> dict:
    from mmv_tf.data.shards import DATASET_NAME, check_dataset

    if not folder.is_dir():
        raise RunError(f"data folder {folder} does not exist")
    check_dataset(folder, "train")  # a finished ingest with training videos, else a DatasetError
    dataset = folder / DATASET_NAME
    return json.loads(dataset.read_text())["settings"] if dataset.exists() else {}


def _check_out(out: Path, config: TrainConfig, resume: bool) -> None:
    saved = out / CONFIG_NAME
    if resume:
        if not saved.exists() or not list((out / "checkpoints").glob("ckpt-*.index")):
            raise RunError(f"nothing to resume in {out}: no {CONFIG_NAME} or checkpoint")
        previous = config_lib.from_dict(TrainConfig, config_lib.load_yaml(saved))
        if previous.model_config() != config.model_config():
            raise RunError(f"cannot resume {out}: it was trained with another architecture "
                           f"(preset {previous.preset!r}, model {previous.model}); "
                           f"this config asks for preset {config.preset!r}, model {config.model}")
    elif saved.exists():
        raise RunError(f"{out} already holds a run; pass --resume to continue it or choose another --out")


def _strategy(name: str):
    import tensorflow as tf

    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def build_training(config: TrainConfig, out: str | Path):
    """The network, trainer, compiled optimizer and checkpoint manager of a run (nothing restored).

    Returns (network, trainer, optimizer, checkpoint, manager).
    """
    import keras
    import tensorflow as tf

    from mmv_tf.models.presets import build_model
    from mmv_tf.saved_model import load_network
    from mmv_tf.training.trainer import MMVTrainer, learning_rate_schedule

    schedule = config.train
    with _strategy(config.distribution.strategy).scope():
        network = load_network(config.init) if config.init else build_model(config.model_config())
        trainer = MMVTrainer(network, config.loss)
        optimizer = keras.optimizers.Adam(learning_rate_schedule(config.optimizer, schedule.steps),
                                          global_clipnorm=config.optimizer.clip_norm)
        trainer.compile(optimizer=optimizer, jit_compile=config.precision.jit_compile)
        optimizer.build(network.trainable_variables)
    checkpoint = tf.train.Checkpoint(network=network, optimizer=optimizer)
    manager = tf.train.CheckpointManager(checkpoint, Path(out) / "checkpoints",
                                         max_to_keep=schedule.keep_checkpoints)
    return network, trainer, optimizer, checkpoint, manager


def train(config: TrainConfig, data: str | Path, out: str | Path, resume: bool = False,
          verbose: int | str = "auto") -> dict:
    """Train, checkpoint and log; returns the last metrics. Bad inputs fail before any step runs."""
    data, out = Path(data), Path(out)
    model_config = config.model_config()
    sources = [(Path(s.path) if s.path else data, s.weight) for s in config.data.sources]
    shard_settings = {folder: _shard_settings(folder) for folder, _ in sources}
    for folder, settings in shard_settings.items():
        rate = settings.get("sample_rate", model_config.audio.sample_rate)
        if rate != model_config.audio.sample_rate:
            raise RunError(f"shards in {folder} hold {rate} Hz audio but the model "
                           f"({config.init or 'preset ' + repr(config.preset)}) "
                           f"expects {model_config.audio.sample_rate} Hz; re-ingest with "
                           f"--sample-rate {model_config.audio.sample_rate}")
    fps = shard_settings[sources[0][0]].get("fps", model_config.video.fps)
    with claimed_folder(out, "run", inputs=[folder for folder, _ in sources]):
        return _train_into(out, config, model_config, sources, fps, resume, verbose)


def _train_into(out: Path, config: TrainConfig, model_config, sources: list, fps: float, resume: bool,
                verbose) -> dict:
    """`train`'s work once its inputs are checked and `out` is claimed."""
    import keras

    from mmv_tf.data.reader import ReaderConfig, read_clips
    from mmv_tf.data.shards import shard_files
    from mmv_tf.training.callbacks import MetricsLog, NaNGuard, StepCheckpoint

    _check_out(out, config, resume)
    if not resume:
        (out / CONFIG_NAME).write_text(yaml.safe_dump(config_lib.to_dict(config), sort_keys=False))

    keras.utils.set_random_seed(config.seed)
    keras.mixed_precision.set_global_policy(config.precision.policy)
    schedule = config.train
    network, trainer, optimizer, checkpoint, manager = build_training(config, out)
    metrics_log = MetricsLog(out / "metrics.jsonl", out / "metrics.csv")
    resumed_from = 0
    if resume:
        checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()
        resumed_from = int(optimizer.iterations.numpy())
        metrics_log.keep_until(resumed_from)  # rows written after that checkpoint, before a kill

    reader = ReaderConfig(
        num_frames=model_config.video.num_frames, frame_stride=config.data.frame_stride, fps=fps,
        sample_rate=model_config.audio.sample_rate, crop_size=model_config.video.image_size,
        min_crop_scale=config.data.min_crop_scale, flip=config.data.flip,
        color_jitter=config.data.color_jitter, num_candidates=config.data.num_candidates,
        shuffle_buffer=config.data.shuffle_buffer)
    tokenizer = network.make_tokenizer()
    validation = None
    if shard_files(sources[0][0], config.data.validation_split):
        # One centred window per video, so a batch's negatives are other videos.
        validation = read_clips(sources[0][0], tokenizer, dataclasses.replace(reader, eval_windows=1),
                                training=False, batch_size=schedule.batch_size,
                                split=config.data.validation_split)
        if schedule.validation_steps is not None:
            validation = validation.take(schedule.validation_steps)
        validation = validation.cache()
    callbacks = [
        NaNGuard(),
        metrics_log,
        keras.callbacks.TensorBoard(str(out / "tensorboard"), update_freq=50, write_graph=False),
        StepCheckpoint(manager, schedule.checkpoint_every),  # last: a round's row comes before its checkpoint
    ]
    step = int(optimizer.iterations.numpy())
    logs: dict = {}
    while step < schedule.steps:
        segment = min(schedule.validate_every - step % schedule.validate_every, schedule.steps - step)
        clips = read_clips([f for f, _ in sources], tokenizer, reader, training=True,
                           batch_size=schedule.batch_size, split="train",
                           weights=[w for _, w in sources], seed=config.seed + step)
        epoch = step // schedule.validate_every
        history = trainer.fit(clips, epochs=epoch + 1, initial_epoch=epoch, steps_per_epoch=segment,
                              validation_data=validation, callbacks=callbacks, verbose=verbose,
                              shuffle=False)
        logs = {k: v[-1] for k, v in history.history.items()}
        step = int(optimizer.iterations.numpy())
    return {"step": step, "resumed_from_step": resumed_from, "run_dir": str(out),
            **{k: float(v) for k, v in logs.items()}}
