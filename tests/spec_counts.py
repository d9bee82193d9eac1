"""Trainable-parameter counts derived from the spec's layer tables, independently of the model code.

Conventions from the spec: convs are bias-free, every conv is followed by BN
(trainable gamma and beta), gating is Dense(C) with bias, heads as released.
"""

S3DG_STEM = [("conv", (7, 7, 7), 3, 64), ("conv", (1, 1, 1), 64, 64), ("sep_gated", 3, 64, 192)]
# Conv2d_1a (kernel volume, input channels) per stem: the paper's (7,7,7) conv on RGB, or the
# released checkpoints' (2,4,4) conv on the space-to-depth video's 2*2*2*3 = 24 channels.
S3DG_CONV2D_1A = {"conv": (7 * 7 * 7, 3), "space_to_depth": (2 * 4 * 4, 24)}
S3DG_BLOCKS = [  # (input channels are the previous block's output)
    (64, 96, 128, 16, 32, 32), (128, 128, 192, 32, 96, 64),
    (192, 96, 208, 16, 48, 64), (160, 112, 224, 24, 64, 64), (128, 128, 256, 24, 64, 64),
    (112, 144, 288, 32, 64, 64), (256, 160, 320, 32, 128, 128),
    (256, 160, 320, 32, 128, 128), (384, 192, 384, 48, 128, 128),
]


def bn(c):
    return 2 * c


def gate(c):
    return c * c + c


def conv_bn(kernel_volume, cin, cout):
    return kernel_volume * cin * cout + bn(cout)


def separable_gated(cin, cout):
    """(1,3,3) conv-BN then (3,1,1) conv-BN, then gating."""
    return conv_bn(9, cin, cout) + conv_bn(3, cout, cout) + gate(cout)


def s3dg(stem: str = "space_to_depth") -> int:
    """S3D-G at width 1; `stem` "space_to_depth" (the `s3dg` preset, as released) or "conv"."""
    volume, cin = S3DG_CONV2D_1A[stem]
    total = conv_bn(volume, cin, 64) + conv_bn(1, 64, 64) + separable_gated(64, 192)
    cin = 192
    for b0, b1r, b1, b2r, b2, b3 in S3DG_BLOCKS:
        total += conv_bn(1, cin, b0) + gate(b0)
        total += conv_bn(1, cin, b1r) + separable_gated(b1r, b1)
        total += conv_bn(1, cin, b2r) + separable_gated(b2r, b2)
        total += conv_bn(1, cin, b3) + gate(b3)
        cin = b0 + b1 + b2 + b3
    return total


def resnet50_v2(in_channels: int, width: int = 1) -> int:
    """Stem 7x7 conv (no BN), bottlenecks (3,4,6,3) with pre-activation BN, final BN."""
    total = 49 * in_channels * 64 * width
    cin = 64 * width
    for blocks, out in zip((3, 4, 6, 3), (256, 512, 1024, 2048)):
        out *= width
        mid = out // 4
        for block in range(blocks):
            total += bn(cin)
            if block == 0:
                total += cin * out  # projection shortcut
            total += conv_bn(1, cin, mid) + conv_bn(9, mid, mid) + mid * out
            cin = out
    return total + bn(cin)


def text(embedding_dim: int, output_dim: int = 2048) -> int:
    return embedding_dim * output_dim + output_dim


def fac_head(video_dim: int, audio_dim: int = 2048, text_dim: int = 2048, va: int = 512,
             vat: int = 256, released: bool = True) -> int:
    """As released: va -> vat Linear with bias (vis_embd), text -> va Linear (txt2audio_embd) and
    audio's training-only -> vat Linear (audio2txt_embd, on the audio representation)."""
    video_to_va = video_dim * va + va + bn(va) + va * va + bn(va)
    audio_to_va = audio_dim * va + va
    va_to_vat = va * vat + bn(vat) + (vat if released else 0)
    text_to_vat = text_dim * vat + vat
    total = video_to_va + audio_to_va + va_to_vat + text_to_vat
    if released:
        total += text_dim * va + va  # txt2audio_embd
        total += audio_dim * vat + vat  # audio2txt_embd
    return total
