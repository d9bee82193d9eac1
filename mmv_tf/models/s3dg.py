"""S3D-G video backbone (separable 3D Inception with feature gating): [B,T,H,W,3] -> [B,1024].

Layout per the MMV spec: every conv is bias-free with SAME padding, followed by
BN and ReLU; separable temporal convs and gating start at Conv2d_2c.

Two stems (`stem`): "conv", the paper's (k,7,7) stride-2 conv on RGB frames, and "space_to_depth",
the form of DeepMind's released checkpoints: the clip is rearranged in the graph into
`[B,T/2,H/2,W/2,24]` (`SpaceToDepth`), then Conv2d_1a is a (2,4,4) stride-1 conv. Both take RGB
frames `[B,T,H,W,3]` in [0,1] and give Conv2d_1a outputs of the same size.
"""

import math

import keras
from keras import layers, ops

from mmv_tf.models.backbone import Backbone
from mmv_tf.models.norm import batch_norm

# Inception channels: (branch0 1x1, branch1 1x1 reduce, branch1 3x3,
#                      branch2 1x1 reduce, branch2 3x3, branch3 1x1 after max-pool).
INCEPTION_CHANNELS = {
    "Mixed_3b": (64, 96, 128, 16, 32, 32),
    "Mixed_3c": (128, 128, 192, 32, 96, 64),
    "Mixed_4b": (192, 96, 208, 16, 48, 64),
    "Mixed_4c": (160, 112, 224, 24, 64, 64),
    "Mixed_4d": (128, 128, 256, 24, 64, 64),
    "Mixed_4e": (112, 144, 288, 32, 64, 64),
    "Mixed_4f": (256, 160, 320, 32, 128, 128),
    "Mixed_5b": (256, 160, 320, 32, 128, 128),
    "Mixed_5c": (384, 192, 384, 48, 128, 128),
}
# Max-pools inserted before a block: (pool size, strides) in (T, H, W).
POOLS_BEFORE = {
    "Mixed_3b": ("MaxPool_3a", (1, 3, 3), (1, 2, 2)),
    "Mixed_4b": ("MaxPool_4a", (3, 3, 3), (2, 2, 2)),
    "Mixed_5b": ("MaxPool_5a", (2, 2, 2), (2, 2, 2)),
}


STEMS = ("conv", "space_to_depth")


def scale_channels(channels: int, width: float) -> int:
    """Channel count under a width multiplier (at least 1)."""
    return max(1, int(round(channels * width)))


@keras.saving.register_keras_serializable(package="mmv_tf")
class SelfGating(layers.Layer):
    """Feature gating: x * sigmoid(Dense(C)(mean of x over all non-batch, non-channel axes)).

    [B,T,H,W,C] -> [B,T,H,W,C] (also [B,H,W,C] -> [B,H,W,C], for deflated nets).
    """

    def build(self, input_shape):
        self.dense = layers.Dense(input_shape[-1], name="dense")
        self.dense.build((None, input_shape[-1]))

    def call(self, x):
        pooled_axes = tuple(range(1, len(x.shape) - 1))
        gate = ops.sigmoid(self.dense(ops.mean(x, axis=pooled_axes)))
        return x * ops.reshape(gate, (-1,) + (1,) * len(pooled_axes) + (x.shape[-1],))


@keras.saving.register_keras_serializable(package="mmv_tf")
class MaxPool3D(layers.Layer):
    """3D max-pooling with SAME padding: [B,T,H,W,C] -> [B,ceil(T/st),ceil(H/sh),ceil(W/sw),C].

    Computed as a 2D pool over each frame, then a pool over time; the max over a box
    is separable, so this equals `MaxPooling3D`. It exists because TensorFlow 2.21's
    oneDNN MaxPool3D gradient is wrong in graph mode when windows overlap, while its
    2D pool's is right (tests/test_towers.py).
    """

    def __init__(self, pool_size, strides, **kwargs):
        super().__init__(**kwargs)
        self.pool_size, self.strides = tuple(pool_size), tuple(strides)

    def call(self, x):
        (kt, kh, kw), (st, sh, sw) = self.pool_size, self.strides
        shape, channels = ops.shape(x), x.shape[-1]
        frames = ops.max_pool(ops.reshape(x, (-1, shape[2], shape[3], channels)), (kh, kw), (sh, sw),
                              padding="same")
        height, width = ops.shape(frames)[1], ops.shape(frames)[2]
        x = ops.reshape(frames, (shape[0], shape[1], height * width, channels))
        x = ops.max_pool(x, (kt, 1), (st, 1), padding="same")
        return ops.reshape(x, (shape[0], -1, height, width, channels))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], *(None if n is None else math.ceil(n / s)
                                  for n, s in zip(input_shape[1:4], self.strides)), input_shape[4])

    def get_config(self):
        return {**super().get_config(), "pool_size": self.pool_size, "strides": self.strides}


@keras.saving.register_keras_serializable(package="mmv_tf")
class Conv3DAs2D(layers.Conv3D):
    """Bias-free SAME Conv3D whose kernel spans space alone or time alone, run as a 2D conv.

    `[B,T,H,W,Cin] -> [B,T',H',W',Cout]`, the same weights and values as `Conv3D`. A `1 x kh x kw`
    kernel is a 2D conv over the frames `[B*T,H,W,Cin]` (`1 x 1 x 1`: a matrix product over
    channels), a `kt x 1 x 1` kernel a 2D conv over `[B,T,H*W,Cin]`. GPU conv libraries tune 2D
    convs and matrix products far better than 3D ones (benchmarks/results/gpu_train_step.json).
    A kernel spanning both (Conv2d_1a) stays a 3D conv.
    """

    def call(self, x):
        (kt, kh, kw), (st, sh, sw) = self.kernel_size, self.strides
        shape, kernel = ops.shape(x), self.kernel
        if (kt, kh, kw, st, sh, sw) == (1,) * 6:
            return ops.matmul(x, kernel[0, 0, 0])
        if kt == 1 and st == 1:
            frames = ops.conv(ops.reshape(x, (-1, shape[2], shape[3], shape[4])), kernel[0], (sh, sw),
                              padding="same")
            return ops.reshape(frames, (shape[0], shape[1], *ops.shape(frames)[1:]))
        if (kh, kw, sh, sw) == (1, 1, 1, 1):
            series = ops.conv(ops.reshape(x, (shape[0], shape[1], -1, shape[4])), kernel[:, :, 0], (st, 1),
                              padding="same")
            return ops.reshape(series, (shape[0], -1, shape[2], shape[3], self.filters))
        return super().call(x)


@keras.saving.register_keras_serializable(package="mmv_tf")
class SpaceToDepth(layers.Layer):
    """Each 2x2x2 block of a clip as one position with its 8 pixels x C colours as channels.

    `video`: `[B, T, H, W, C] -> [B, T/2, H/2, W/2, 8C]`, channel `((t*2 + h)*2 + w)*C + c` holding
    pixel (2i+t, 2j+h, 2k+w) colour c: the order (t, h, w, colour) of DeepMind's released S3D-G.
    Not `video` (the deflated image tower): `[B, H, W, C] -> [B, H/2, W/2, 8C]`, the same for the
    static clip of two copies of the image (channels of t=0 and t=1 equal), so that a video
    kernel summed over time applies (`mmv_tf.deflation.carry_weights`).
    T, H and W must be even (a ValueError names the shape otherwise; H and W are checked where
    they are known when the layer runs).
    """

    def __init__(self, video: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.video = bool(video)

    def _check(self, shape):
        spatial = shape[1:-1]
        if any(n is not None and not isinstance(n, int) for n in spatial):
            return  # a symbolic size (TensorFlow graph with unknown H, W): nothing to check here
        if any(n is not None and n % 2 for n in spatial):
            axes = "T, H and W" if self.video else "H and W"
            raise ValueError(f"the space_to_depth stem needs even {axes}; got input shape "
                             f"[{', '.join('?' if n is None else str(n) for n in shape)}]")

    def call(self, x):
        self._check(tuple(x.shape))
        shape, channels = ops.shape(x), x.shape[-1]
        if self.video:
            t, h, w = shape[1] // 2, shape[2] // 2, shape[3] // 2
            x = ops.reshape(x, (-1, t, 2, h, 2, w, 2, channels))
            x = ops.transpose(x, (0, 1, 3, 5, 2, 4, 6, 7))
            return ops.reshape(x, (-1, t, h, w, 8 * channels))
        h, w = shape[1] // 2, shape[2] // 2
        x = ops.reshape(x, (-1, h, 2, w, 2, channels))
        x = ops.reshape(ops.transpose(x, (0, 1, 3, 2, 4, 5)), (-1, h, w, 4 * channels))
        return ops.concatenate([x, x], axis=-1)  # t = 0 and t = 1 of a static clip

    def compute_output_shape(self, input_shape):
        self._check(tuple(input_shape))
        half = tuple(None if n is None else n // 2 for n in input_shape[1:-1])
        return (input_shape[0], *half, 8 * input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "video": self.video}


def _conv(channels, kernel, strides, name, video):
    """Conv3D over (T, H, W); deflated (`video` false), the Conv2D over (H, W) it becomes."""
    if video:
        return Conv3DAs2D(channels, kernel, strides, padding="same", use_bias=False, name=name)
    return layers.Conv2D(channels, kernel[1:], strides[1:], padding="same", use_bias=False, name=name)


def _pool(size, strides, name, video):
    if video:
        return MaxPool3D(size, strides, name=name)
    return layers.MaxPooling2D(size[1:], strides[1:], padding="same", name=name)


def _unit(x, channels, kernel, strides, *, separable, gated, sync_bn, video, name):
    """Conv-BN-ReLU (or spatial then temporal Conv-BN-ReLU if separable), then optional gating."""
    if separable and kernel[1] > 1:
        convs = [
            ("spatial", (1,) + tuple(kernel[1:]), (1,) + tuple(strides[1:])),
            ("temporal", (kernel[0], 1, 1), (strides[0], 1, 1)),
        ]
    else:
        convs = [("conv", tuple(kernel), tuple(strides))]
    for suffix, k, s in convs:
        x = _conv(channels, k, s, f"{name}_{suffix}", video)(x)
        x = batch_norm(f"{name}_{suffix}_bn", sync_bn)(x)
        x = layers.ReLU(name=f"{name}_{suffix}_relu")(x)
    if gated:
        x = SelfGating(name=f"{name}_gating")(x)
    return x


def _inception(x, channels, *, width, sync_bn, video, name):
    c = [scale_channels(ch, width) for ch in channels]
    unit = dict(sync_bn=sync_bn, video=video)
    one = (1, 1, 1)
    b0 = _unit(x, c[0], one, one, separable=False, gated=True, name=f"{name}_b0_1x1", **unit)
    b1 = _unit(x, c[1], one, one, separable=False, gated=False, name=f"{name}_b1_1x1", **unit)
    b1 = _unit(b1, c[2], (3, 3, 3), one, separable=True, gated=True, name=f"{name}_b1_3x3", **unit)
    b2 = _unit(x, c[3], one, one, separable=False, gated=False, name=f"{name}_b2_1x1", **unit)
    b2 = _unit(b2, c[4], (3, 3, 3), one, separable=True, gated=True, name=f"{name}_b2_3x3", **unit)
    b3 = _pool((3, 3, 3), one, f"{name}_b3_pool", video)(x)
    b3 = _unit(b3, c[5], one, one, separable=False, gated=True, name=f"{name}_b3_1x1", **unit)
    return layers.Concatenate(axis=-1, name=name)([b0, b1, b2, b3])


def _check_stem(stem: str) -> None:
    if stem not in STEMS:
        raise ValueError(f"stem must be one of {', '.join(map(repr, STEMS))}, got {stem!r}")


def s3dg_features(inputs, *, width: float, first_temporal_kernel: int, sync_bn: bool, video: bool,
                  stem: str = "conv"):
    """The S3D-G graph on frames `[B, T, H, W, 3]` (`video`) or, deflated, on images `[B, H, W, 3]`:
    the mean of Mixed_5c, `[B, 1024*width]`. Layer names are the same in both, so weights map.

    `stem` "conv": Conv2d_1a is a (first_temporal_kernel, 7, 7) stride-2 conv on the frames;
    "space_to_depth": `SpaceToDepth` then a (2, 4, 4) stride-1 conv, kernel (2,4,4,24,64*width)
    (first_temporal_kernel unused)."""
    _check_stem(stem)
    unit = dict(sync_bn=sync_bn, video=video)
    if stem == "space_to_depth":
        x = SpaceToDepth(video, name="Conv2d_1a_space_to_depth")(inputs)
        x = _unit(x, scale_channels(64, width), (2, 4, 4), (1, 1, 1),
                  separable=False, gated=False, name="Conv2d_1a", **unit)
    else:
        x = _unit(inputs, scale_channels(64, width), (first_temporal_kernel, 7, 7), (2, 2, 2),
                  separable=False, gated=False, name="Conv2d_1a", **unit)
    x = _pool((1, 3, 3), (1, 2, 2), "MaxPool_2a", video)(x)
    x = _unit(x, scale_channels(64, width), (1, 1, 1), (1, 1, 1),
              separable=False, gated=False, name="Conv2d_2b", **unit)
    x = _unit(x, scale_channels(192, width), (3, 3, 3), (1, 1, 1),
              separable=True, gated=True, name="Conv2d_2c", **unit)
    for block, channels in INCEPTION_CHANNELS.items():
        if block in POOLS_BEFORE:
            pool_name, size, strides = POOLS_BEFORE[block]
            x = _pool(size, strides, pool_name, video)(x)
        x = _inception(x, channels, width=width, name=block, **unit)
    mean = layers.GlobalAveragePooling3D if video else layers.GlobalAveragePooling2D
    return mean(name="mean_thw")(x)


@keras.saving.register_keras_serializable(package="mmv_tf")
class S3DG(Backbone):
    """S3D-G: frames `[B, T, H, W, 3]` in [0, 1] -> mean of Mixed_5c, `[B, 1024*width]`, any T.

    Args:
        num_frames: the clip length it is trained on (any T runs).
        width: channel multiplier (1.0 is the paper's network; 0.25 for tiny presets).
        first_temporal_kernel: temporal size of Conv2d_1a's kernel, 1, 3, 5 or 7 ("conv" stem only).
        sync_bn: synchronise BN statistics across replicas.
        stem: "conv" (the paper: a (first_temporal_kernel,7,7) stride-2 conv on RGB) or
            "space_to_depth" (DeepMind's released checkpoints: the clip rearranged in the graph
            to `[B,T/2,H/2,W/2,24]`, then a (2,4,4) stride-1 conv; T, H and W must be even).
            Callers feed RGB frames either way.
    """

    def __init__(
        self,
        num_frames: int = 32,
        width: float = 1.0,
        first_temporal_kernel: int = 7,
        sync_bn: bool = False,
        stem: str = "conv",
        name: str = "s3dg",
        **kwargs,
    ):
        if first_temporal_kernel not in (1, 3, 5, 7):
            raise ValueError(f"first_temporal_kernel must be 1, 3, 5 or 7, got {first_temporal_kernel}")
        _check_stem(stem)
        if stem == "space_to_depth" and num_frames % 2:
            raise ValueError(f"the space_to_depth stem needs an even num_frames, got {num_frames}")
        frames = keras.Input((None, None, None, 3), name="frames")  # any T (even for space_to_depth)
        features = s3dg_features(frames, width=width, first_temporal_kernel=first_temporal_kernel,
                                 sync_bn=sync_bn, video=True, stem=stem)
        super().__init__(
            frames,
            features,
            config=dict(num_frames=num_frames, width=width,
                        first_temporal_kernel=first_temporal_kernel, sync_bn=sync_bn, stem=stem),
            name=name,
            **kwargs,
        )


@keras.saving.register_keras_serializable(package="mmv_tf")
class S3DGImage(Backbone):
    """Deflated S3D-G: images `[B, H, W, 3]` in [0, 1] -> `[B, 1024*width]`.

    Each 3D kernel becomes the 2D kernel summed over its temporal axis (`mmv_tf.deflation`), temporal
    pools and gating become 2D; on a static video, away from the clip ends, it computes what S3D-G does.
    `stem` must be the video tower's: with "space_to_depth" the image is rearranged as the static
    two-frame clip would be (`SpaceToDepth(video=False)`, `[B,H/2,W/2,24]`, H and W even) and
    Conv2d_1a is the (4,4) conv whose kernel is the (2,4,4) video kernel summed over time.
    """

    def __init__(self, width: float = 1.0, first_temporal_kernel: int = 7, sync_bn: bool = False,
                 stem: str = "conv", name: str = "s3dg_image", **kwargs):
        _check_stem(stem)
        images = keras.Input((None, None, 3), name="images")
        features = s3dg_features(images, width=width, first_temporal_kernel=first_temporal_kernel,
                                 sync_bn=sync_bn, video=False, stem=stem)
        super().__init__(images, features, config=dict(width=width,
                                                       first_temporal_kernel=first_temporal_kernel,
                                                       sync_bn=sync_bn, stem=stem),
                         name=name, **kwargs)
