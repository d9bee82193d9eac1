"""TSM-ResNet: the ResNet-50 V2 trunk on each frame, with a temporal channel shift before every block
(Lin et al., TSM), and its deflated image form.

The frames of a clip run as one `[B*T, H, W, C]` batch; the shift moves two groups of n channels
(n = int(C * fraction)) one frame along time, regrouping frames by the clip's own T, so any T runs.
Shift layouts, by which channels move:
  "mmv_tf":   output `[0, n)` takes input `[0, n)` of time t-1, `[n, 2n)` takes `[n, 2n)` of t+1.
  "released": (DeepMind's checkpoints) output `[0, n)` takes input `[C-n, C)` of t+1, output
              `[C-n, C)` takes input `[0, n)` of t-1.
Either way the clip ends see zeros and the other channels stay.
"""

import keras
from keras import layers, ops

from mmv_tf.models.backbone import Backbone
from mmv_tf.models.resnet_v2 import resnet_v2_trunk

SHIFT_LAYOUTS = ("mmv_tf", "released")


def _check_layout(layout: str) -> None:
    if layout not in SHIFT_LAYOUTS:
        raise ValueError(f"shift layout must be one of {', '.join(map(repr, SHIFT_LAYOUTS))}, "
                         f"got {layout!r}")


def _groups(x, n: int, layout: str):
    """The two shifted channel groups of `x` `[..., C]`: (`[0, n)`, `[n, 2n)` or for "released"
    `[C-n, C)`), each `[..., n]`."""
    channels = x.shape[-1]
    return x[..., :n], x[..., channels - n:] if layout == "released" else x[..., n:2 * n]


def _with_groups(x, first, second, layout: str):
    """`x` `[..., C]` with its two shifted channel groups (`_groups`) replaced by `first` and
    `second` `[..., n]`."""
    n, channels = first.shape[-1], x.shape[-1]
    if layout == "released":
        return ops.concatenate([first, x[..., n:channels - n], second], axis=-1)
    return ops.concatenate([first, second, x[..., 2 * n:]], axis=-1)


@keras.saving.register_keras_serializable(package="mmv_tf")
class TemporalShift(layers.Layer):
    """TSM shift (module docstring) on a frame batch `[B*T, H, W, C]` -> same shape."""

    def __init__(self, fraction: float = 0.125, layout: str = "mmv_tf", **kwargs):
        super().__init__(**kwargs)
        _check_layout(layout)
        self.fraction = fraction
        self.layout = layout

    def call(self, x, clip):
        """`x` `[B*T, H, W, C]`; `clip` `[B, T, ...]` (the tower's input) gives T."""
        shape = ops.shape(x)
        clips = ops.reshape(x, (-1, ops.shape(clip)[1], shape[1], shape[2], x.shape[-1]))
        one, two = _groups(clips, int(x.shape[-1] * self.fraction), self.layout)
        zeros = ops.zeros_like(one[:, :1])
        one_from_past = ops.concatenate([zeros, one[:, :-1]], axis=1)  # time t takes t-1
        two_from_future = ops.concatenate([two[:, 1:], zeros], axis=1)  # time t takes t+1
        if self.layout == "released":  # the groups trade places
            shifted = _with_groups(clips, two_from_future, one_from_past, self.layout)
        else:
            shifted = _with_groups(clips, one_from_past, two_from_future, self.layout)
        return ops.reshape(shifted, shape)

    def compute_output_shape(self, x_shape, clip_shape):
        return x_shape

    def get_config(self):
        return {**super().get_config(), "fraction": self.fraction, "layout": self.layout}


@keras.saving.register_keras_serializable(package="mmv_tf")
class DeflatedShift(layers.Layer):
    """What a deflated TSM block does in place of the shift, on images `[B, H, W, C]` -> same shape:
    the two shifted groups of channels (`_groups`) are swapped and scaled by `alpha`, a middle
    ground between a static video and a lone frame (shifted channels see zeros). With the released
    layout a static clip's shift is exactly that swap (alpha 1), away from the clip ends.
    """

    def __init__(self, fraction: float = 0.125, alpha: float = 0.3, layout: str = "mmv_tf",
                 **kwargs):
        super().__init__(**kwargs)
        _check_layout(layout)
        self.fraction = fraction
        self.alpha = alpha
        self.layout = layout

    def call(self, x):
        one, two = _groups(x, int(x.shape[-1] * self.fraction), self.layout)
        return _with_groups(x, self.alpha * two, self.alpha * one, self.layout)

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

    def call(self, x, clip):
        """`clip` `[B, T, ...]` (the tower's input) gives T."""
        return ops.mean(ops.reshape(x, (-1, ops.shape(clip)[1], x.shape[-1])), axis=1)

    def compute_output_shape(self, x_shape, clip_shape):
        return (None, x_shape[-1])


@keras.saving.register_keras_serializable(package="mmv_tf")
class TSMResNet(Backbone):
    """TSM-ResNet50: frames `[B, T, H, W, 3]` in [0, 1] -> `[B, 2048*width]`, any T.

    Args:
        num_frames: the clip length it is trained on, recorded for callers (`MMV.num_frames`);
            any T runs.
        width: channel multiplier; 1 and 2 are the paper's TSM-ResNet50 and TSM-ResNet50x2.
        shift_fraction: fraction of channels shifted each way in time (1/8).
        sync_bn: synchronise BN statistics across replicas.
        shift_layout: which channels the shift moves: "mmv_tf" or "released" (module docstring).
    """

    def __init__(self, num_frames: int = 32, width: float = 1.0, shift_fraction: float = 0.125,
                 sync_bn: bool = False, shift_layout: str = "mmv_tf", name: str = "tsm_resnet",
                 **kwargs):
        _check_layout(shift_layout)
        frames = keras.Input((None, None, None, 3), name="frames")  # any T: the shifts read it

        def shift(name):
            layer = TemporalShift(shift_fraction, shift_layout, name=name)
            return lambda x: layer(x, frames)

        per_frame = resnet_v2_trunk(FramesToBatch(name="frames_to_batch")(frames), width=width,
                                    sync_bn=sync_bn, shift=shift)
        features = ClipMean(name="mean_t")(per_frame, frames)
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
