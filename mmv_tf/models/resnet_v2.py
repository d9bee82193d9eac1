"""Pre-activation bottleneck ResNet-50 (V2) trunk.

It serves the audio tower (2D on a log-mel image) and, with a temporal channel shift in every
block, the TSM video tower (`mmv_tf.models.tsm`).
"""

from keras import layers

from mmv_tf.models.norm import batch_norm

STAGE_BLOCKS = (3, 4, 6, 3)
STAGE_WIDTHS = (256, 512, 1024, 2048)
STAGE_STRIDES = (1, 2, 2, 2)
STEM_WIDTH = 64


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
    a `tsm.TemporalShift` over the N = B*T frames of clips.
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
