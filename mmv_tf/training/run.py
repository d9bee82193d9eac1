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

Distribution (`distribution.strategy`): `mirrored` (TensorFlow, one machine's GPUs), `multi_worker`
(TensorFlow, several machines: `mmv_tf.training.multi_worker`, whose chief alone writes RUN_DIR) and
`data_parallel` (JAX, device-resident: Keras's `DataParallel` over every local device).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
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


def _strategy(distribution):
    """The `tf.distribute` strategy of a `DistributionConfig` (multi_worker: one per process, which
    joins the cluster)."""
    import tensorflow as tf

    if distribution.strategy == "mirrored":
        return tf.distribute.MirroredStrategy()
    if distribution.strategy == "multi_worker":
        from mmv_tf.training.multi_worker import multi_worker_strategy

        return multi_worker_strategy(distribution.timeout_seconds)
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
    import keras

    from mmv_tf.training.checkpoints import KerasCheckpoint, KerasCheckpointManager
    from mmv_tf.training.trainer import MMVTrainer, learning_rate_schedule

    schedule = config.train
    jax = keras.backend.backend() == "jax"
    with contextlib.nullcontext() if jax else _strategy(config.distribution).scope():
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
    """Refuse a config that this process's Keras backend or devices cannot train."""
    import keras

    backend = keras.backend.backend()
    strategy = config.distribution.strategy
    if not config.data.device_resident:
        if backend != "tensorflow":
            raise RunError(f"training from shards reads them with tf.data under Keras's TensorFlow "
                           f"backend, not {backend}; under JAX, pack them (`mmv-tf data pack`) and "
                           "train with data.device_resident (--device-resident)")
        if strategy == "data_parallel":
            raise RunError("distribution.strategy data_parallel is Keras's JAX distribution, for "
                           "device-resident training (KERAS_BACKEND=jax, --device-resident); under "
                           "TensorFlow use mirrored or multi_worker")
        return
    if backend != "jax":
        raise RunError(f"data.device_resident trains under Keras's JAX backend, not {backend}: set "
                       "KERAS_BACKEND=jax (under TensorFlow, train from shards without it)")
    if strategy not in ("none", "data_parallel"):
        raise RunError(f"device-resident training runs on one device or, with distribution.strategy "
                       f"data_parallel, on every local device; {strategy} is TensorFlow's")
    devices = len(keras.distribution.list_devices()) if strategy == "data_parallel" else 1
    if config.train.batch_size % devices:
        raise RunError(f"train.batch_size {config.train.batch_size} does not split over the {devices} "
                       f"devices of distribution.strategy data_parallel: use a multiple of {devices}")
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
    strategy = config.distribution.strategy
    # multi_worker: joining the cluster waits for every worker; the chief alone writes `out`.
    chief = strategy != "multi_worker" or _strategy(config.distribution).extended.should_checkpoint
    with contextlib.ExitStack() as context:
        if chief:
            context.enter_context(claimed_folder(out, "run", inputs=[folder for folder, _ in sources]))
        if strategy == "multi_worker":
            from mmv_tf.training.multi_worker import stops_with_the_cluster

            context.enter_context(stops_with_the_cluster(out / "checkpoints"))
        if strategy == "data_parallel":
            import keras

            context.enter_context(keras.distribution.DataParallel().scope())
        return _train_into(out, config, clip_settings(config, model_config, fps), sources, resume,
                           verbose, chief)


def _shard_data(config: TrainConfig, clip: dict, sources: list, network):
    """(steps s .. s + n - 1 -> their clips, the validation clips or None): the tf.data reader."""
    import tensorflow as tf

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
        # Its length known (one pass fills the cache): Keras's `evaluate` on a dataset of unknown
        # length makes one more call at its end, which still counts a batch in each mean.
        validation = validation.apply(tf.data.experimental.assert_cardinality(sum(1 for _ in validation)))

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


def _fit(trainer, data, *, epoch: int, steps: int, validation, callbacks: list, verbose) -> dict:
    """Keras's `fit` for validation round `epoch` (`steps` steps); returns the round's logs."""
    history = trainer.fit(data, epochs=epoch + 1, initial_epoch=epoch, steps_per_epoch=steps,
                          validation_data=validation, callbacks=callbacks, verbose=verbose, shuffle=False)
    return {k: v[-1] for k, v in history.history.items()}


def _train_into(out: Path, config: TrainConfig, clip: dict, sources: list, resume: bool, verbose,
                chief: bool = True) -> dict:
    """`train`'s work once its inputs are checked and `out` is claimed; a multi_worker worker that is
    not the `chief` writes nothing into `out`."""
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
    if chief and not resume:
        (out / CONFIG_NAME).write_text(yaml.safe_dump(config_lib.to_dict(config), sort_keys=False))
    resumed_from = 0
    if resume:
        restore_latest(checkpoint, manager)
        resumed_from = int(optimizer.iterations.numpy())

    callbacks = [NaNGuard()]
    if chief:
        metrics_log = MetricsLog(out / "metrics.jsonl", out / "metrics.csv")
        if resume:
            metrics_log.keep_until(resumed_from)  # rows written after that checkpoint, before a kill
        callbacks.append(metrics_log)
        if device_clips is None:  # TensorBoard's writer is TensorFlow's
            callbacks.append(keras.callbacks.TensorBoard(str(out / "tensorboard"), update_freq=50,
                                                         write_graph=False))
    fit = functools.partial(_fit, trainer)
    saving = contextlib.nullcontext(manager)
    if config.distribution.strategy == "multi_worker":
        from mmv_tf.training.multi_worker import MultiWorkerFit, scratch_checkpoints

        fit = MultiWorkerFit(trainer)
        if not chief:
            saving = scratch_checkpoints(checkpoint)
    step = int(optimizer.iterations.numpy())
    logs: dict = {}
    with saving as saver:
        # Last: a round's row comes before its checkpoint.
        callbacks.append(StepCheckpoint(saver, schedule.checkpoint_every))
        while step < schedule.steps:
            segment = min(schedule.validate_every - step % schedule.validate_every, schedule.steps - step)
            logs = fit(training(step, segment), epoch=step // schedule.validate_every, steps=segment,
                       validation=validation, callbacks=callbacks, verbose=verbose)
            step = int(optimizer.iterations.numpy())
    return {"step": step, "resumed_from_step": resumed_from, "run_dir": str(out),
            **{k: float(v) for k, v in logs.items()}}
