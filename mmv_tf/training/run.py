"""`mmv-tf train`: one training run from a config, data and an output folder.

Two ways to feed the same trainer, schedule, callbacks and run folder: the tf.data reader over
shards (TensorFlow backend), or with `data.device_resident` a pack held in accelerator memory whose
clips each jitted step samples itself (JAX backend, no TensorFlow; `mmv_tf.training.device`).
RUN_DIR holds config.yaml (the resolved config), checkpoints/ (the last K, weights, optimizer state
and step, from which the schedule follows; `mmv_tf.training.checkpoints`), metrics.jsonl (one line
per validation round), metrics.csv and, under TensorFlow, tensorboard/. `resume=True` restores the
latest checkpoint and continues from its step; the data order after a resume is reseeded from that
step, and the metrics rows past it (written before a kill, ahead of their checkpoint) are dropped,
so every step is listed once.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import yaml

from mmv_tf import config as config_lib
from mmv_tf.errors import InputError
from mmv_tf.files import claimed_folder
from mmv_tf.training.checkpoints import has_checkpoint
from mmv_tf.training.config import TrainConfig

CONFIG_NAME = "config.yaml"


class RunError(InputError):
    """The data, output folder or resume point cannot be used; raised before training starts."""


def shard_settings(folder: Path) -> dict:
    from mmv_tf.data.shards import DATASET_NAME, check_dataset

    if not folder.is_dir():
        raise RunError(f"data folder {folder} does not exist")
    check_dataset(folder, "train")  # a finished ingest with training videos, else a DatasetError
    dataset = folder / DATASET_NAME
    return json.loads(dataset.read_text())["settings"] if dataset.exists() else {}


def _check_out(out: Path, config: TrainConfig, resume: bool) -> None:
    saved = out / CONFIG_NAME
    if resume:
        if not saved.exists() or not has_checkpoint(out / "checkpoints"):
            raise RunError(f"nothing to resume in {out}: no {CONFIG_NAME} or checkpoint")
        previous = config_lib.from_dict(TrainConfig, config_lib.load_yaml(saved))
        if previous.data.device_resident != config.data.device_resident:
            raise RunError(f"cannot resume {out}: it was trained with data.device_resident "
                           f"{previous.data.device_resident}, and its checkpoints are that path's")
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


def build_network(config: TrainConfig):
    """The run's `MMV` before training: the `init` model's network and weights, or a new network of
    the config's architecture."""
    from mmv_tf.models.presets import build_model
    from mmv_tf.saved_model import load_network

    return load_network(config.init) if config.init else build_model(config.model_config())


def build_training(config: TrainConfig, out: str | Path, device_clips=None):
    """The network, trainer, compiled optimizer and checkpoint manager of a run (nothing restored):
    `tf.train` checkpoints under TensorFlow, `KerasCheckpoint`s under JAX. `device_clips`: the
    trainer's `DeviceClips` for device-resident training.

    Returns (network, trainer, optimizer, checkpoint, manager).
    """
    import contextlib

    import keras

    from mmv_tf.training.checkpoints import KerasCheckpoint, KerasCheckpointManager
    from mmv_tf.training.trainer import MMVTrainer, learning_rate_schedule

    schedule = config.train
    jax = keras.backend.backend() == "jax"
    with contextlib.nullcontext() if jax else _strategy(config.distribution.strategy).scope():
        network = build_network(config)
        trainer = MMVTrainer(network, config.loss, device_clips)
        optimizer = keras.optimizers.Adam(learning_rate_schedule(config.optimizer, schedule.steps),
                                          global_clipnorm=config.optimizer.clip_norm)
        # Under JAX an unjitted step would run op by op: jitted always.
        trainer.compile(optimizer=optimizer, jit_compile=config.precision.jit_compile or jax)
        optimizer.build(network.trainable_variables)
    directory = Path(out) / "checkpoints"
    if jax:
        checkpoint = KerasCheckpoint(network, optimizer)
        return (network, trainer, optimizer, checkpoint,
                KerasCheckpointManager(checkpoint, directory, schedule.keep_checkpoints))
    import tensorflow as tf

    checkpoint = tf.train.Checkpoint(network=network, optimizer=optimizer)
    manager = tf.train.CheckpointManager(checkpoint, directory, max_to_keep=schedule.keep_checkpoints)
    return network, trainer, optimizer, checkpoint, manager


def check_sample_rate(folder: Path, settings: dict, config: TrainConfig, model_config) -> None:
    """Refuse data (shards or a pack, whose `settings` name its sample rate) that the model cannot hear."""
    rate = settings.get("sample_rate", model_config.audio.sample_rate)
    if rate != model_config.audio.sample_rate:
        raise RunError(f"shards in {folder} hold {rate} Hz audio but the model "
                       f"({config.init or 'preset ' + repr(config.preset)}) "
                       f"expects {model_config.audio.sample_rate} Hz; re-ingest with "
                       f"--sample-rate {model_config.audio.sample_rate}")


def clip_settings(config: TrainConfig, model_config, fps: float) -> dict:
    """The `ReaderConfig` fields of a run's training clips: the model's clip, the data's frame rate
    `fps` and the config's augmentation (read by the tf.data reader and by `DeviceClips`)."""
    data = config.data
    return dict(num_frames=model_config.video.num_frames, frame_stride=data.frame_stride, fps=fps,
                sample_rate=model_config.audio.sample_rate, crop_size=model_config.video.image_size,
                min_crop_scale=data.min_crop_scale, flip=data.flip, color_jitter=data.color_jitter,
                num_candidates=data.num_candidates, shuffle_buffer=data.shuffle_buffer)


def _check_backend(config: TrainConfig) -> None:
    import keras

    backend = keras.backend.backend()
    if not config.data.device_resident:
        if backend != "tensorflow":
            raise RunError(f"training from shards reads them with tf.data under Keras's TensorFlow "
                           f"backend, not {backend}; under JAX, pack them (`mmv-tf data pack`) and "
                           "train with data.device_resident (--device-resident)")
        return
    if backend != "jax":
        raise RunError(f"data.device_resident trains under Keras's JAX backend, not {backend}: set "
                       "KERAS_BACKEND=jax (under TensorFlow, train from shards without it)")
    if config.distribution.strategy != "none":
        raise RunError("device-resident training runs on one device: set distribution.strategy none")
    if len(config.data.sources) > 1 or config.data.sources[0].path:
        raise RunError("device-resident training reads one pack, the --data folder: data.sources "
                       f"lists {[s.path or '--data' for s in config.data.sources]}")


def train(config: TrainConfig, data: str | Path, out: str | Path, resume: bool = False,
          verbose: int | str = "auto") -> dict:
    """Train, checkpoint and log; returns the last metrics. Bad inputs fail before any step runs.
    `data`: a shard folder, or with `data.device_resident` a pack (`mmv_tf.training.pack`)."""
    data, out = Path(data), Path(out)
    model_config = config.model_config()
    _check_backend(config)
    if config.data.device_resident:
        from mmv_tf.training.pack import read_pack_metadata

        if not data.is_dir():
            raise RunError(f"pack folder {data} does not exist")
        settings = {data: read_pack_metadata(data)}
        sources = [(data, 1.0)]
    else:
        sources = [(Path(s.path) if s.path else data, s.weight) for s in config.data.sources]
        settings = {folder: shard_settings(folder) for folder, _ in sources}
    for folder, found in settings.items():
        check_sample_rate(folder, found, config, model_config)
    fps = settings[sources[0][0]].get("fps", model_config.video.fps)
    with claimed_folder(out, "run", inputs=[folder for folder, _ in sources]):
        return _train_into(out, config, clip_settings(config, model_config, fps), sources, resume,
                           verbose)


def _shard_data(config: TrainConfig, clip: dict, sources: list, network):
    """(steps s .. s + n - 1 -> their clips, the validation clips or None): the tf.data reader."""
    from mmv_tf.data.reader import ReaderConfig, read_clips
    from mmv_tf.data.shards import shard_files

    reader = ReaderConfig(**clip)
    tokenizer = network.make_tokenizer()
    validation = None
    if shard_files(sources[0][0], config.data.validation_split):
        # One centred window per video, so a batch's negatives are other videos.
        validation = read_clips(sources[0][0], tokenizer, dataclasses.replace(reader, eval_windows=1),
                                training=False, batch_size=config.train.batch_size,
                                split=config.data.validation_split)
        if config.train.validation_steps is not None:
            validation = validation.take(config.train.validation_steps)
        validation = validation.cache()

    def training(step: int, count: int):
        return read_clips([f for f, _ in sources], tokenizer, reader, training=True,
                          batch_size=config.train.batch_size, split="train",
                          weights=[w for _, w in sources], seed=config.seed + step)

    return training, validation


def _device_data(config: TrainConfig, pack: Path, splits, network):
    """`_shard_data` for device-resident training: requests for the trainer's `DeviceClips`."""
    import numpy as np

    from mmv_tf.training.device import TrainingRequests, ValidationRequests
    from mmv_tf.training.pack import PackError, read_pack_metadata, tokenizer_fingerprint

    text = network.text_encoder
    if read_pack_metadata(pack)["tokenizer"] != tokenizer_fingerprint(text.vocabulary, network.max_words):
        raise PackError(f"pack {pack} was tokenised for another vocabulary or word limit than this "
                        "run's model: pack the shards again with this config (`mmv-tf data pack "
                        "SHARDS --config CONFIG --out PACK`)")
    schedule = config.train
    rows = np.flatnonzero(splits == config.data.validation_split)
    if schedule.validation_steps is not None:
        rows = rows[: schedule.validation_steps * schedule.batch_size]
    validation = ValidationRequests(rows, schedule.batch_size) if len(rows) else None
    train_rows = np.flatnonzero(splits == "train")
    return (lambda step, count: TrainingRequests(train_rows, schedule.batch_size, config.seed, step,
                                                 count)), validation


def _train_into(out: Path, config: TrainConfig, clip: dict, sources: list, resume: bool, verbose) -> dict:
    """`train`'s work once its inputs are checked and `out` is claimed."""
    import keras

    from mmv_tf.training.callbacks import MetricsLog, NaNGuard, StepCheckpoint
    from mmv_tf.training.checkpoints import restore_latest

    _check_out(out, config, resume)
    keras.utils.set_random_seed(config.seed)
    keras.mixed_precision.set_global_policy(config.precision.policy)
    schedule = config.train
    device_clips = splits = None
    if config.data.device_resident:
        from mmv_tf.training.device import DeviceClips
        from mmv_tf.training.pack import load_pack

        arrays = load_pack(sources[0][0])
        splits = arrays["splits"]
        device_clips = DeviceClips(arrays, clip)
    network, trainer, optimizer, checkpoint, manager = build_training(config, out, device_clips)
    if device_clips is None:
        training, validation = _shard_data(config, clip, sources, network)
    else:
        training, validation = _device_data(config, sources[0][0], splits, network)
    if not resume:
        (out / CONFIG_NAME).write_text(yaml.safe_dump(config_lib.to_dict(config), sort_keys=False))
    metrics_log = MetricsLog(out / "metrics.jsonl", out / "metrics.csv")
    resumed_from = 0
    if resume:
        restore_latest(checkpoint, manager)
        resumed_from = int(optimizer.iterations.numpy())
        metrics_log.keep_until(resumed_from)  # rows written after that checkpoint, before a kill

    callbacks = [NaNGuard(), metrics_log]
    if device_clips is None:  # TensorBoard's writer is TensorFlow's
        callbacks.append(keras.callbacks.TensorBoard(str(out / "tensorboard"), update_freq=50,
                                                     write_graph=False))
    # Last: a round's row comes before its checkpoint.
    callbacks.append(StepCheckpoint(manager, schedule.checkpoint_every))
    step = int(optimizer.iterations.numpy())
    logs: dict = {}
    while step < schedule.steps:
        segment = min(schedule.validate_every - step % schedule.validate_every, schedule.steps - step)
        epoch = step // schedule.validate_every
        history = trainer.fit(training(step, segment), epochs=epoch + 1, initial_epoch=epoch,
                              steps_per_epoch=segment, validation_data=validation, callbacks=callbacks,
                              verbose=verbose, shuffle=False)
        logs = {k: v[-1] for k, v in history.history.items()}
        step = int(optimizer.iterations.numpy())
    return {"step": step, "resumed_from_step": resumed_from, "run_dir": str(out),
            **{k: float(v) for k, v in logs.items()}}
