"""Deflation: the video network as an image network, in the same embedding spaces.

naive: the video tower rebuilt in 2D (`S3DGImage`, `TSMResNetImage`) with the trained weights, each
3D kernel summed over time; on a static video, away from its ends, the two compute the same thing.
bn:    then new BN gamma and beta, learnt on unlabelled images so that the image tower's output on an
image comes close (in L1) to the video tower's on the static video that repeats it; the video tower
saw zero temporal padding at clip ends, which naive deflation cannot mimic.
The heads are the video network's own: a deflated image lands where its static video would.
`deflate_model` does it all for an exported model folder: images in, exported image model out.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np

from mmv_tf.errors import InputError
from mmv_tf.models.s3dg import S3DG, S3DGImage
from mmv_tf.models.tsm import TSMResNet, TSMResNetImage

MODES = ("naive", "bn")


class DeflationError(InputError):
    """A network or setting that cannot be deflated."""


@dataclasses.dataclass(frozen=True)
class DeflationSettings:
    mode: str = "bn"
    tsm_shift: str = "remove"  # TSM only: "remove" (paper) or "alpha" (DeepMind's later code)
    tsm_alpha: float = 0.3
    held_out: float = 0.2  # share of the images kept to measure the L1 gap
    epochs: int = 4
    batch_size: int = 32
    learning_rate: float = 1e-3
    seed: int = 0


def image_backbone_for(video_encoder, settings: DeflationSettings = DeflationSettings()):
    """The untrained 2D counterpart of a video tower (S3D-G or TSM-ResNet)."""
    config = video_encoder.get_config()
    if isinstance(video_encoder, S3DG):
        return S3DGImage(config["width"], config["first_temporal_kernel"], stem=config.get("stem", "conv"))
    if isinstance(video_encoder, TSMResNet):
        return TSMResNetImage(config["width"], config["shift_fraction"], settings.tsm_shift,
                              settings.tsm_alpha, shift_layout=config.get("shift_layout", "mmv_tf"))
    raise DeflationError(f"cannot deflate a {type(video_encoder).__name__} video tower: "
                         "deflation knows S3D-G and TSM-ResNet")


def carry_weights(video_encoder, image_encoder) -> None:
    """Copy every weight of the video tower into the same-named layer of the image tower; a 3D
    kernel `[kt, kh, kw, Cin, Cout]` becomes its sum over time `[kh, kw, Cin, Cout]`."""
    video_layers = {layer.name: layer for layer in video_encoder.layers}
    for layer in image_encoder.layers:
        if not layer.weights:
            continue
        source = video_layers[layer.name]
        for target, weight in zip(layer.weights, source.weights, strict=True):
            value = keras.ops.convert_to_numpy(weight)
            if value.ndim == 5 and len(target.shape) == 4:
                value = value.sum(axis=0)
            target.assign(value)


@keras.saving.register_keras_serializable(package="mmv_tf")
class ImageMMV(keras.Model):
    """A deflated MMV network: images `[B, H, W, 3]` in [0, 1] -> `{"before_head": [B, C],
    <space>: [B, D]}` through the image tower and the video's head; `network` (the source `MMV`)
    keeps its text path for zero-shot queries."""

    def __init__(self, image_encoder, network, **kwargs):
        super().__init__(**kwargs)
        self.image_encoder = image_encoder
        self.network = network
        self.built = True  # both parts are built: weights load by name before a first call

    def call(self, images, training=None) -> dict:
        representation = self.image_encoder(images, training=training)
        return {"before_head": representation,
                **self.network.head.embed("video", representation, training=training)}

    def get_config(self):
        serialize = keras.saving.serialize_keras_object
        return {"name": self.name, "image_encoder": serialize(self.image_encoder),
                "network": serialize(self.network)}

    @classmethod
    def from_config(cls, config):
        deserialize = keras.saving.deserialize_keras_object
        return cls(deserialize(config["image_encoder"]), deserialize(config["network"]),
                   name=config.get("name"))


def static_videos(images: np.ndarray, num_frames: int) -> np.ndarray:
    """Images `[B, H, W, 3]` -> the videos that repeat them, `[B, num_frames, H, W, 3]`."""
    return np.repeat(np.asarray(images, np.float32)[:, None], num_frames, axis=1)


def _in_batches(tower, inputs: np.ndarray, batch_size: int) -> np.ndarray:
    return np.concatenate([keras.ops.convert_to_numpy(tower(inputs[i:i + batch_size], training=False))
                           for i in range(0, len(inputs), batch_size)])


def video_representations(network, images: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """The video tower's `before_head` on the static video of each image, `[N, C]`."""
    return np.concatenate([_in_batches(network.video_encoder,
                                       static_videos(images[i:i + batch_size], network.num_frames),
                                       batch_size)
                           for i in range(0, len(images), batch_size)])


def l1_gap(image_encoder, images: np.ndarray, targets: np.ndarray, batch_size: int = 64) -> float:
    """Mean absolute difference between the image tower's outputs and `targets` `[N, C]`."""
    return float(np.mean(np.abs(_in_batches(image_encoder, images, batch_size) - targets)))


class _InferenceMode(keras.Model):
    """Runs a tower with BN in inference mode (moving statistics) even while fitting."""

    def __init__(self, tower):
        super().__init__(name="bn_tuning")
        self.tower = tower

    def call(self, images):
        return self.tower(images, training=False)


def tune_batch_norm(image_encoder, images: np.ndarray, targets: np.ndarray,
                    settings: DeflationSettings, verbose: int = 1) -> None:
    """Learn only the BN gammas and betas of `image_encoder` to bring its outputs on `images`
    towards `targets` `[N, C]` in L1 (Adam; a Keras progress bar per epoch)."""
    trainable = {layer.name: layer.trainable for layer in image_encoder.layers}
    for layer in image_encoder.layers:
        layer.trainable = isinstance(layer, keras.layers.BatchNormalization)
    try:
        model = _InferenceMode(image_encoder)
        model.compile(keras.optimizers.Adam(settings.learning_rate), loss="mean_absolute_error")
        model.fit(images, targets, batch_size=settings.batch_size, epochs=settings.epochs,
                  shuffle=True, verbose=verbose)
    finally:
        for layer in image_encoder.layers:
            layer.trainable = trainable[layer.name]


def deflate(network, images: np.ndarray | None = None,
            settings: DeflationSettings = DeflationSettings(), verbose: int = 1) -> tuple[ImageMMV, dict]:
    """(image network, report) for MMV `network`. With `images` `[N, S, S, 3]`, the report gives
    the L1 gap on the held-out share before and (mode "bn") after tuning the BN parameters."""
    if settings.mode not in MODES:
        raise DeflationError(f"deflation mode must be one of {', '.join(MODES)}; got {settings.mode!r}")
    image_encoder = image_backbone_for(network.video_encoder, settings)
    carry_weights(network.video_encoder, image_encoder)
    report = {"mode": settings.mode, "settings": dataclasses.asdict(settings)}
    if images is None:
        if settings.mode == "bn":
            raise DeflationError("BN-tuned deflation needs images")
        return ImageMMV(image_encoder, network), report
    if len(images) < 10:
        raise DeflationError(f"deflation needs at least 10 images; got {len(images)}")
    order = np.random.default_rng(settings.seed).permutation(len(images))
    cut = max(1, int(round(settings.held_out * len(images))))
    held_out, tuning = images[order[:cut]], images[order[cut:]]
    held_out_targets = video_representations(network, held_out, settings.batch_size)
    report.update(images={"tuning": len(tuning), "held_out": len(held_out)},
                  l1_naive=l1_gap(image_encoder, held_out, held_out_targets))
    if settings.mode == "bn":
        tuning_targets = video_representations(network, tuning, settings.batch_size)
        tune_batch_norm(image_encoder, tuning, tuning_targets, settings, verbose)
        report["l1_tuned"] = l1_gap(image_encoder, held_out, held_out_targets)
    return ImageMMV(image_encoder, network), report


def deflation_images(source: str | Path, size: int, count: int,
                     note: Callable[[str], None] = print) -> np.ndarray:
    """Images `[N, size, size, 3]` from a folder of images, or `count` frames sampled from the train
    videos of a media corpus; `note` hears conversions, skipped files and the sampling."""
    from mmv_tf.images import corpus_frames, image_files, read_image_folder

    source = Path(source)
    if not source.exists():
        raise FileNotFoundError(f"{source} does not exist: pass --images (a folder of images or a "
                                "video corpus), or run `mmv-tf demo --prepare-only` to make the demo corpus")
    if source.is_dir() and image_files(source):
        loaded = read_image_folder(source, size)
        for line in loaded.notes:
            note(line)
        return loaded.images
    note(f"sampling {count} frames from the train videos of {source}")
    return corpus_frames(source, size, count)


def deflate_model(model: str | Path, out: str | Path, images: str | Path,
                  settings: DeflationSettings = DeflationSettings(), frames: int = 2000,
                  overwrite: bool = False, note: Callable[[str], None] = print) -> dict:
    """Deflate the exported video model `model` into the image model folder `out` (signatures
    `image` and `text`, in the same spaces) with the images of `images` (`deflation_images`);
    returns the report, also written into `out`'s metadata as `deflation`."""
    from mmv_tf.export import export_image_network
    from mmv_tf.files import check_output
    from mmv_tf.saved_model import load_network, read_metadata, weights_sha256

    check_output(out, "model", (model,), overwrite)  # before the deflation's minutes of work
    metadata = read_metadata(model)
    if "video" not in metadata["signatures"]:
        raise DeflationError(f"{model} has no video signature: it is not a video model")
    network = load_network(model)
    pictures = deflation_images(images, metadata["video"]["image_size"], frames, note)
    image_network, report = deflate(network, pictures, settings)
    report.update(source_model=str(model), image_source=str(images),
                  source_weights_sha256=weights_sha256(model))
    export_image_network(image_network, out, source_metadata=metadata, deflation=report,
                         overwrite=overwrite, inputs=(model,))
    return report
