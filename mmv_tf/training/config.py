"""The training config: typed dataclasses, read from YAML and `--set a.b=value` overrides."""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from mmv_tf import config as config_lib
from mmv_tf.config import bounded
from mmv_tf.models.presets import ModelConfig, preset_config


@dataclasses.dataclass(frozen=True)
class DataSource:
    path: str = ""  # a shard folder; "" means the folder given with `--data`
    weight: float = bounded(1.0, above=0.0)


@dataclasses.dataclass(frozen=True)
class DataConfig:
    sources: tuple[DataSource, ...] = bounded((DataSource(),), min_items=1)
    frame_stride: int = bounded(1, least=1)
    min_crop_scale: float = bounded(0.7, above=0.0, most=1.0)
    flip: bool = True
    color_jitter: float = bounded(0.2, least=0.0)
    num_candidates: int = bounded(4, least=1)  # MIL-NCE narrations per clip
    shuffle_buffer: int = bounded(64, least=1)
    validation_split: str = "val"
    # Under KERAS_BACKEND=jax: --data is a pack (`mmv-tf data pack`) held in device memory, and each
    # jitted step samples and augments its clips there (`mmv_tf.training.device`).
    device_resident: bool = False


@dataclasses.dataclass(frozen=True)
class LossConfig:
    # The paper weighs the pairs 10:1 on HowTo100M alone and 1:1 with AudioSet;
    # which pair gets the 10 is unverified, so both weights are options.
    weight_va: float = bounded(1.0, least=0.0)
    weight_vt: float = bounded(1.0, least=0.0)
    temperature: float = bounded(0.07, above=0.0)
    global_negatives: bool = True  # gather negatives from every replica


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
    # Adam, linear warm-up then half-period cosine decay to 0.
    learning_rate: float = bounded(0.002, above=0.0)
    warmup_steps: int = bounded(5000, least=0)
    clip_norm: float | None = bounded(None, above=0.0)  # global gradient-norm clipping


@dataclasses.dataclass(frozen=True)
class ScheduleConfig:
    batch_size: int = bounded(32, least=1)  # global batch, split over replicas
    steps: int = bounded(500000, least=1)
    validate_every: int = bounded(1000, least=1)  # steps between validations (Keras "epochs")
    validation_steps: int | None = bounded(10, least=1)  # batches per validation; null: the whole split
    checkpoint_every: int = bounded(1000, least=1)
    keep_checkpoints: int = bounded(3, least=1)


@dataclasses.dataclass(frozen=True)
class DistributionConfig:
    # TensorFlow: `mirrored` (the GPUs of one machine), `multi_worker` (the machines of TF_CONFIG,
    # `mmv_tf.training.multi_worker`); JAX, device-resident: `data_parallel` (every local device).
    strategy: Literal["none", "mirrored", "multi_worker", "data_parallel"] = "none"
    sync_bn: bool = False
    # multi_worker: how long a worker waits in a collective for the others before it stops with an
    # error (a worker that dies is noticed sooner, by TensorFlow's heartbeats, in about 10 seconds).
    timeout_seconds: float = bounded(600.0, above=0.0)


@dataclasses.dataclass(frozen=True)
class PrecisionConfig:
    policy: Literal["float32", "mixed_bfloat16", "mixed_float16"] = "float32"
    jit_compile: bool = False


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    preset: str = "s3dg"
    model: dict[str, Any] = dataclasses.field(default_factory=dict)  # overrides of the preset
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    loss: LossConfig = dataclasses.field(default_factory=LossConfig)
    optimizer: OptimizerConfig = dataclasses.field(default_factory=OptimizerConfig)
    train: ScheduleConfig = dataclasses.field(default_factory=ScheduleConfig)
    distribution: DistributionConfig = dataclasses.field(default_factory=DistributionConfig)
    precision: PrecisionConfig = dataclasses.field(default_factory=PrecisionConfig)
    seed: int = 0
    # An exported or imported model folder whose network and weights the run starts from (fine-
    # tuning); its architecture then replaces `preset` and `model`.
    init: str = ""

    def model_config(self) -> ModelConfig:
        """The preset's model config with `model` overrides and the distribution's BN setting, or
        with `init`, the config recorded in that model folder."""
        if self.init:
            return init_model_config(self.init)
        overrides = {**self.model, "sync_bn": self.distribution.sync_bn}
        return preset_config(self.preset, overrides)


def init_model_config(path: str) -> ModelConfig:
    """The `ModelConfig` that model folder `path` records (`config.json`). Fields a model of an
    older mmv-tf lacks take today's defaults: read it for clip, image and audio settings, and build
    the network itself with `saved_model.load_network`."""
    from mmv_tf.saved_model import read_network_config

    saved = read_network_config(path)
    if saved.get("class_name") != "MMV":
        raise config_lib.ConfigError(f"init: {path} holds a {saved.get('class_name')}, not a video "
                                     "model (MMV) that training can start from")
    recorded = {k: v for k, v in saved["config"]["model_config"].items() if k != "word_vectors_source"}
    return config_lib.from_dict(ModelConfig, recorded, "init model")


def load_train_config(path=None, overrides=()) -> TrainConfig:
    """TrainConfig from an optional YAML file and `key.path=value` overrides, fully validated."""
    config = TrainConfig()
    if path is not None:
        config = config_lib.merge(config, config_lib.load_yaml(path))
    if overrides:
        config = config_lib.merge(config, config_lib.parse_overrides(list(overrides)))
    config.model_config()  # an unknown preset or a bad model override fails here, before training
    return config
