"""Pre-activation bottleneck ResNet-50 (V2) trunk, and the TSM-ResNet video backbone built on it.

The same trunk serves the audio tower (2D on a log-mel image) and, with a
temporal channel shift in every block, the TSM video tower, which runs the
frames of a clip as one `[B*T, H, W, C]` batch.
"""

import keras
from keras import layers, ops

from mmv_tf.models.backbone import Backbone
from mmv_tf.models.norm import batch_norm

STAGE_BLOCKS = (3, 4, 6, 3)
STAGE_WIDTHS = (256, 512, 1024, 2048)
STAGE_STRIDES = (1, 2, 2, 2)
STEM_WIDTH = 64
SHIFT_LAYOUTS = ("mmv_tf", "released")


def _check_layout(layout: str) -> None:
    if layout not in SHIFT_LAYOUTS:
        raise ValueError(f"shift layout must be one of {', '.join(map(repr, SHIFT_LAYOUTS))}, "
                         f"got {layout!r}")


@keras.saving.register_keras_serializable(package="mmv_tf")
class TemporalShift(layers.Layer):
    """TSM shift on a frame batch `[B*T, H, W, C]` -> same shape; n = int(C * fraction).

    `layout` "mmv_tf": output channels `[0, n)` at time t take input channels `[0, n)` of time t-1,
    `[n, 2n)` take `[n, 2n)` of time t+1, the rest stay.
    `layout` "released" (DeepMind's released TSM-ResNets): output `[0, n)` takes input `[C-n, C)`
    of time t+1, `[n, C-n)` stay, output `[C-n, C)` takes input `[0, n)` of time t-1.
    Either way the clip ends see zeros.
    """

    def __init__(self, num_frames: int, fraction: float = 0.125, layout: str = "mmv_tf", **kwargs):
        super().__init__(**kwargs)
        _check_layout(layout)
        self.num_frames = num_frames
        self.fraction = fraction
        self.layout = layout

    def call(self, x, clip=None):
        """`x` `[B*T, H, W, C]`; T is `clip`'s frame count (`[B, T, ...]`, any T) when given, else
        `num_frames`."""
        shape = ops.shape(x)
        channels = x.shape[-1]
        n = int(channels * self.fraction)
        frames = self.num_frames if clip is None else ops.shape(clip)[1]
        clips = ops.reshape(x, (-1, frames, shape[1], shape[2], channels))
        zeros = ops.zeros_like(clips[:, :1, :, :, :n])
        if self.layout == "released":
            from_future = ops.concatenate([clips[:, 1:, :, :, channels - n:], zeros], axis=1)
            from_past = ops.concatenate([zeros, clips[:, :-1, :, :, :n]], axis=1)
            shifted = ops.concatenate([from_future, clips[..., n:channels - n], from_past], axis=-1)
        else:
            from_past = ops.concatenate([zeros, clips[:, :-1, :, :, :n]], axis=1)
            from_future = ops.concatenate([clips[:, 1:, :, :, n : 2 * n], zeros], axis=1)
            shifted = ops.concatenate([from_past, from_future, clips[..., 2 * n :]], axis=-1)
        return ops.reshape(shifted, shape)

    def compute_output_shape(self, x_shape, clip_shape=None):
        return x_shape

    def get_config(self):
        return {**super().get_config(), "num_frames": self.num_frames, "fraction": self.fraction,
                "layout": self.layout}


@keras.saving.register_keras_serializable(package="mmv_tf")
class DeflatedShift(layers.Layer):
    """What a deflated TSM block does in place of the shift, on images `[B, H, W, C]` -> same shape:
    the two shifted groups of channels are swapped and scaled by `alpha`, a middle ground between
    a static video and a lone frame (shifted channels see zeros).

    `layout` "mmv_tf": groups `[0, n)` and `[n, 2n)`; "released": `[0, n)` and `[C-n, C)`. With the
    released layout a static clip's shift is exactly that swap (alpha 1), away from the clip ends.
    """

    def __init__(self, fraction: float = 0.125, alpha: float = 0.3, layout: str = "mmv_tf",
                 **kwargs):
        super().__init__(**kwargs)
        _check_layout(layout)
        self.fraction = fraction
        self.alpha = alpha
        self.layout = layout

    def call(self, x):
        channels = x.shape[-1]
        n = int(channels * self.fraction)
        if self.layout == "released":
            return ops.concatenate([self.alpha * x[..., channels - n:], x[..., n:channels - n],
                                    self.alpha * x[..., :n]], axis=-1)
        return ops.concatenate([self.alpha * x[..., n:2 * n], self.alpha * x[..., :n], x[..., 2 * n:]],
                               axis=-1)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "fraction": self.fraction, "alpha": self.alpha,
                "layout": self.layout}


@keras.saving.register_keras_serializable(package="mmv_tf")
class FramesToBatch(layers.Layer):
    """`[B, T, H, W, C]` -> `[B*T, H, W, C]`."""

    def call(self, x):
        shape = ops.shape(x)
        return ops.reshape(x, (-1, shape[2], shape[3], x.shape[-1]))

    def compute_output_shape(self, input_shape):
        return (None,) + tuple(input_shape[2:])


@keras.saving.register_keras_serializable(package="mmv_tf")
class ClipMean(layers.Layer):
    """Per-frame features `[B*T, C]` -> their mean over each clip's T frames, `[B, C]`."""

    def __init__(self, num_frames: int, **kwargs):
        super().__init__(**kwargs)
        self.num_frames = num_frames

    def call(self, x, clip=None):
        frames = self.num_frames if clip is None else ops.shape(clip)[1]  # as TemporalShift
        return ops.mean(ops.reshape(x, (-1, frames, x.shape[-1])), axis=1)

    def compute_output_shape(self, x_shape, clip_shape=None):
        return (None, x_shape[-1])

    def get_config(self):
        return {**super().get_config(), "num_frames": self.num_frames}


def _bottleneck(x, width, stride, *, shift, sync_bn, name):
    """Pre-activation bottleneck; the shortcut is taken from the pre-activation before the shift.

    `shift`: None, or a function of a layer name giving the layer applied before conv1 (TSM)."""
    preact = batch_norm(f"{name}_preact_bn", sync_bn)(x)
    preact = layers.ReLU(name=f"{name}_preact_relu")(preact)
    if stride != 1 or x.shape[-1] != width:
        shortcut = layers.Conv2D(width, 1, stride, use_bias=False, name=f"{name}_shortcut")(preact)
    else:
        shortcut = x
    h = preact
    if shift is not None:
        h = shift(f"{name}_shift")(h)
    inner = max(1, width // 4)
    h = layers.Conv2D(inner, 1, use_bias=False, name=f"{name}_conv1")(h)
    h = batch_norm(f"{name}_bn1", sync_bn)(h)
    h = layers.ReLU(name=f"{name}_relu1")(h)
    h = layers.Conv2D(inner, 3, stride, padding="same", use_bias=False, name=f"{name}_conv2")(h)
    h = batch_norm(f"{name}_bn2", sync_bn)(h)
    h = layers.ReLU(name=f"{name}_relu2")(h)
    h = layers.Conv2D(width, 1, use_bias=False, name=f"{name}_conv3")(h)
    return layers.Add(name=f"{name}_add")([shortcut, h])


def resnet_v2_trunk(x, *, width: float, sync_bn: bool, shift=None, stage_blocks=STAGE_BLOCKS):
    """ResNet-50 V2 on images `[N, H, W, C]` -> `[N, 2048*width]` (BN-ReLU-mean over H, W).

    `shift` (a function of a layer name) adds a layer before each block's first conv: for TSM,
    a `TemporalShift` over the N = B*T frames of clips.
    """
    x = layers.Conv2D(max(1, int(STEM_WIDTH * width)), 7, 2, padding="same", use_bias=False,
                      name="stem_conv")(x)
    x = layers.MaxPooling2D(3, 2, padding="same", name="stem_pool")(x)
    for stage, (blocks, stage_width, stride) in enumerate(
        zip(stage_blocks, STAGE_WIDTHS, STAGE_STRIDES), start=1
    ):
        for block in range(blocks):
            x = _bottleneck(
                x, max(1, int(stage_width * width)), stride if block == 0 else 1,
                shift=shift, sync_bn=sync_bn, name=f"stage{stage}_block{block + 1}",
            )
    x = batch_norm("final_bn", sync_bn)(x)
    x = layers.ReLU(name="final_relu")(x)
    return layers.GlobalAveragePooling2D(name="mean_hw")(x)


@keras.saving.register_keras_serializable(package="mmv_tf")
class TSMResNet(Backbone):
    """TSM-ResNet50: frames `[B, T, H, W, 3]` in [0, 1] -> `[B, 2048*width]`, any T.

    Args:
        num_frames: the clip length it is trained on (any T runs: the shifts regroup frames by
            the input's own T).
        width: channel multiplier; 1 and 2 are the paper's TSM-ResNet50 and TSM-ResNet50x2.
        shift_fraction: fraction of channels shifted each way in time (1/8).
        sync_bn: synchronise BN statistics across replicas.
        shift_layout: which channels the shift moves (`TemporalShift`): "mmv_tf" (`[0,n)` from t-1,
            `[n,2n)` from t+1) or "released" (DeepMind's checkpoints: output `[0,n)` from input
            `[C-n,C)` at t+1, output `[C-n,C)` from input `[0,n)` at t-1).
    """

    def __init__(self, num_frames: int = 32, width: float = 1.0, shift_fraction: float = 0.125,
                 sync_bn: bool = False, shift_layout: str = "mmv_tf", name: str = "tsm_resnet",
                 **kwargs):
        _check_layout(shift_layout)
        frames = keras.Input((None, None, None, 3), name="frames")  # any T: the shifts read it

        def shift(name):
            layer = TemporalShift(num_frames, shift_fraction, shift_layout, name=name)
            return lambda x: layer(x, frames)

        per_frame = resnet_v2_trunk(FramesToBatch(name="frames_to_batch")(frames), width=width,
                                    sync_bn=sync_bn, shift=shift)
        features = ClipMean(num_frames, name="mean_t")(per_frame, frames)
        super().__init__(
            frames, features,
            config=dict(num_frames=num_frames, width=width, shift_fraction=shift_fraction,
                        sync_bn=sync_bn, shift_layout=shift_layout),
            name=name, **kwargs,
        )


@keras.saving.register_keras_serializable(package="mmv_tf")
class TSMResNetImage(Backbone):
    """Deflated TSM-ResNet50: images `[B, H, W, 3]` in [0, 1] -> `[B, 2048*width]`.

    `shift`: "remove" drops the temporal shift (the paper); "alpha" puts a `DeflatedShift` in its
    place (DeepMind's later code, alpha 0.3). `shift_layout` must be the video tower's; with
    "released", "alpha" at alpha 1 is what the video tower computes on a static clip away from its
    ends, "remove" is not.
    """

    def __init__(self, width: float = 1.0, shift_fraction: float = 0.125, shift: str = "remove",
                 alpha: float = 0.3, sync_bn: bool = False, shift_layout: str = "mmv_tf",
                 name: str = "tsm_resnet_image", **kwargs):
        if shift not in ("remove", "alpha"):
            raise ValueError(f"shift must be 'remove' or 'alpha', got {shift!r}")
        _check_layout(shift_layout)
        images = keras.Input((None, None, 3), name="images")
        features = resnet_v2_trunk(
            images, width=width, sync_bn=sync_bn,
            shift=(lambda name: DeflatedShift(shift_fraction, alpha, shift_layout, name=name))
            if shift == "alpha" else None)
        super().__init__(images, features, config=dict(width=width, shift_fraction=shift_fraction,
                                                       shift=shift, alpha=alpha, sync_bn=sync_bn,
                                                       shift_layout=shift_layout),
                         name=name, **kwargs)
