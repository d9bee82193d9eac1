"""Model configs and the preset registry (keras-hub style `MMV.from_preset`)."""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

from mmv_tf import config as config_lib
from mmv_tf.models.audio import AudioResNet
from mmv_tf.models.heads import make_head
from mmv_tf.models.mmv import MMV
from mmv_tf.models.s3dg import S3DG
from mmv_tf.models.text import TextEncoder
from mmv_tf.models.tsm import TSMResNet
from mmv_tf.text.word_vectors import PACKAGED_GLOVE, WordVectors, load_word_vectors


@dataclasses.dataclass(frozen=True)
class VideoConfig:
    backbone: Literal["s3dg", "tsm_resnet"] = "s3dg"
    width: float = 1.0
    num_frames: int = 32
    image_size: int = 200  # training crop; evaluation may use other sizes
    fps: float = 10.0
    first_temporal_kernel: int = 7  # S3D-G "conv" stem only
    shift_fraction: float = 0.125  # TSM only
    # Defaults are DeepMind's released form; the tiny presets keep the earlier one ("conv", "mmv_tf").
    # S3D-G only: "space_to_depth" rearranges the clip in the graph to [B,T/2,H/2,W/2,24] before a
    # (2,4,4) stride-1 Conv2d_1a (T, H, W even); "conv": a (first_temporal_kernel,7,7) stride-2 conv.
    stem: Literal["conv", "space_to_depth"] = "space_to_depth"
    # TSM only: "released": output channels [0,n) from input [C-n,C) at t+1, [C-n,C) from [0,n) at
    # t-1; "mmv_tf": [0,n) from t-1, [n,2n) from t+1 (n = C * shift_fraction).
    shift_layout: Literal["mmv_tf", "released"] = "released"


@dataclasses.dataclass(frozen=True)
class AudioConfig:
    width: float = 1.0
    sample_rate: int = 48000
    frame_length: int = 2048  # STFT window in samples (recipe unverified for MMV)
    frame_step: int = 1024
    num_mel_bins: int = 80
    lower_hz: float = 80.0
    upper_hz: float = 7600.0


@dataclasses.dataclass(frozen=True)
class TextConfig:
    word_vectors: str = PACKAGED_GLOVE  # or a GloVe / word2vec file (the paper: GoogleNews word2vec)
    vocabulary_size: int = 65536
    output_dim: int = 2048
    max_words: int = 16
    # "all": max over all max_words positions, padding included (DeepMind's release);
    # "masked": max over the real words only (the tiny presets).
    pooling: Literal["masked", "all"] = "all"


@dataclasses.dataclass(frozen=True)
class HeadConfig:
    design: Literal["shared", "disjoint", "fac"] = "fac"
    va_dim: int = 512
    vat_dim: int = 256
    video_projection: Literal["linear", "mlp"] = "mlp"
    audio_projection: Literal["linear", "mlp"] = "linear"
    text_projection: Literal["linear", "mlp"] = "linear"
    # FAC only (other designs ignore them); defaults are DeepMind's released form, the tiny
    # presets keep the earlier one (False, False, "shared"). See heads.FACHead.
    va_to_vat_bias: bool = True  # bias on the va -> vat Dense (vis_embd)
    text_to_va: bool = True  # text also projected to va (txt2audio_embd)
    audio_vat_in_training: Literal["shared", "own_head"] = "own_head"  # own: audio2txt_embd


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    video: VideoConfig = dataclasses.field(default_factory=VideoConfig)
    audio: AudioConfig = dataclasses.field(default_factory=AudioConfig)
    text: TextConfig = dataclasses.field(default_factory=TextConfig)
    head: HeadConfig = dataclasses.field(default_factory=HeadConfig)
    sync_bn: bool = False


@dataclasses.dataclass(frozen=True)
class Preset:
    name: str
    description: str
    config: ModelConfig


_TINY_AUDIO = AudioConfig(width=0.25, sample_rate=16000, frame_length=512, frame_step=256)
_TINY_TEXT = TextConfig(vocabulary_size=32768, output_dim=512, pooling="masked")
_TINY_HEAD = HeadConfig(va_dim=128, vat_dim=64, va_to_vat_bias=False, text_to_va=False,
                        audio_vat_in_training="shared")

PRESETS = {
    preset.name: preset
    for preset in (
        Preset("s3dg", "S3D-G video, ResNet50 audio, word2vec-style text, FAC head (paper)",
               ModelConfig(video=VideoConfig(backbone="s3dg"))),
        Preset("tsm_resnet50", "TSM-ResNet50 video, FAC head (paper)",
               ModelConfig(video=VideoConfig(backbone="tsm_resnet"))),
        Preset("tsm_resnet50x2", "TSM-ResNet50x2 video, FAC head (paper's best)",
               ModelConfig(video=VideoConfig(backbone="tsm_resnet", width=2.0))),
        Preset("s3dg_tiny", "S3D-G at width 0.25, 16 frames of 64x64, 16 kHz audio (tests, demo)",
               ModelConfig(video=VideoConfig(backbone="s3dg", width=0.25, num_frames=16,
                                             image_size=64, stem="conv", shift_layout="mmv_tf"),
                           audio=_TINY_AUDIO, text=_TINY_TEXT, head=_TINY_HEAD)),
        Preset("tsm_resnet50_tiny", "TSM-ResNet50 at width 0.25, 16 frames of 64x64, 16 kHz audio",
               ModelConfig(video=VideoConfig(backbone="tsm_resnet", width=0.25, num_frames=16,
                                             image_size=64, stem="conv", shift_layout="mmv_tf"),
                           audio=_TINY_AUDIO, text=_TINY_TEXT, head=_TINY_HEAD)),
    )
}


def preset_config(name: str, overrides: dict | None = None) -> ModelConfig:
    """The config of preset `name`, with nested `overrides` applied (e.g. {"head": {"design": "shared"}})."""
    if name not in PRESETS:
        raise config_lib.ConfigError(f"unknown preset {name!r}; presets: {', '.join(PRESETS)}")
    config = PRESETS[name].config
    return config_lib.merge(config, overrides) if overrides else config


def build_video_encoder(video: VideoConfig, sync_bn: bool = False):
    if video.backbone == "s3dg":
        return S3DG(video.num_frames, video.width, video.first_temporal_kernel, sync_bn,
                    stem=video.stem)
    return TSMResNet(video.num_frames, video.width, video.shift_fraction, sync_bn,
                     shift_layout=video.shift_layout)


def build_model(config: ModelConfig, word_vectors: WordVectors | None = None,
                name: str = "mmv") -> MMV:
    """An MMV model for `config`, its text table filled from `word_vectors` (or the config's source)."""
    if word_vectors is None:
        word_vectors = load_word_vectors(config.text.word_vectors, config.text.vocabulary_size)
    audio = config.audio
    text_encoder = TextEncoder(word_vectors.words[: config.text.vocabulary_size], word_vectors.dim,
                               config.text.output_dim, config.text.max_words, config.text.pooling)
    text_encoder.set_word_vectors(word_vectors.vectors[: config.text.vocabulary_size])
    head = config.head
    fac_options = (dict(va_to_vat_bias=head.va_to_vat_bias, text_to_va=head.text_to_va,
                        audio_vat_in_training=head.audio_vat_in_training)
                   if head.design == "fac" else {})
    return MMV(
        video_encoder=build_video_encoder(config.video, config.sync_bn),
        audio_encoder=AudioResNet(audio.width, audio.sample_rate, audio.frame_length,
                                  audio.frame_step, audio.num_mel_bins, audio.lower_hz,
                                  audio.upper_hz, config.sync_bn),
        text_encoder=text_encoder,
        head=make_head(head.design, va_dim=head.va_dim, vat_dim=head.vat_dim,
                       video_projection=head.video_projection,
                       audio_projection=head.audio_projection,
                       text_projection=head.text_projection, sync_bn=config.sync_bn,
                       **fac_options),
        model_config={**config_lib.to_dict(config), "word_vectors_source": word_vectors.source},
        name=name,
    )


def from_preset(name: str, overrides: dict | None = None,
                word_vectors: WordVectors | None = None) -> MMV:
    """Build preset `name` (see `PRESETS`) with optional nested config overrides."""
    return build_model(preset_config(name, overrides), word_vectors)


def trainable_parameters(layer) -> int:
    return sum(math.prod(w.shape) for w in layer.trainable_weights)


def describe_model(model: MMV) -> dict:
    """Trainable parameters per part and output sizes per modality and space."""
    head = model.head
    dims = {"va": head.va_dim, "vat": head.vat_dim, "vt": head.vat_dim}
    towers = {"video": model.video_encoder, "audio": model.audio_encoder, "text": model.text_encoder}
    return {
        "trainable_parameters": {
            **{m: trainable_parameters(t) for m, t in towers.items()},
            "head": trainable_parameters(head),
        },
        "output_dims": {
            m: {"before_head": t.output_dim, **{s: dims[s] for s in head.spaces_of(m)}}
            for m, t in towers.items()
        },
    }


def describe_preset(name: str) -> dict:
    """One row of `mmv-tf presets`: the preset's setting, parameter counts and output sizes."""
    preset = PRESETS[name]
    video = preset.config.video
    return {
        "name": name,
        "description": preset.description,
        "video_backbone": f"{video.backbone} x{video.width:g}",
        "head": preset.config.head.design,
        "input": {"frames": video.num_frames, "image_size": video.image_size, "fps": video.fps,
                  "sample_rate": preset.config.audio.sample_rate,
                  "max_words": preset.config.text.max_words},
        **describe_model(from_preset(name)),
    }
