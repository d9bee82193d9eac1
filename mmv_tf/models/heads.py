"""Projection heads from tower representations into the shared embedding spaces.

| design   | spaces                                                     |
|----------|------------------------------------------------------------|
| shared   | vat: video, audio and text in one space                    |
| disjoint | va: video-audio, vt: video-text (audio and text not comparable) |
| fac      | va (fine) for video-audio; vat (coarse) for all three, video and audio reaching it through va |

Embeddings are raw (not L2-normalised): the losses and search normalise.
"""

import keras
from keras import layers

from mmv_tf.models.norm import batch_norm

MODALITIES = ("video", "audio", "text")


def projection(kind: str, dim: int, sync_bn: bool, name: str) -> keras.Sequential:
    """`linear`: Dense(dim). `mlp`: Dense(dim)-BN-ReLU-Dense(dim, no bias)-BN (the released video->va)."""
    if kind == "linear":
        stack = [layers.Dense(dim, name=f"{name}_dense")]
    elif kind == "mlp":
        stack = [
            layers.Dense(dim, name=f"{name}_dense1"),
            batch_norm(f"{name}_bn1", sync_bn),
            layers.ReLU(name=f"{name}_relu"),
            layers.Dense(dim, use_bias=False, name=f"{name}_dense2"),
            batch_norm(f"{name}_bn2", sync_bn),
        ]
    else:
        raise ValueError(f"projection kind must be 'linear' or 'mlp', got {kind!r}")
    return keras.Sequential(stack, name=name)


class Head(layers.Layer):
    """Maps `{modality: [N, C_m]}` representations to `{modality: {space: [N, D_space]}}`.

    Subclasses set `SPACES` ({space: modalities embedded there}) and implement
    `embed(modality, x, training)`.
    """

    SPACES: dict[str, tuple[str, ...]] = {}

    def __init__(self, va_dim: int = 512, vat_dim: int = 256, video_projection: str = "mlp",
                 audio_projection: str = "linear", text_projection: str = "linear",
                 sync_bn: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.va_dim = va_dim
        self.vat_dim = vat_dim
        self.kinds = {"video": video_projection, "audio": audio_projection, "text": text_projection}
        self.sync_bn = sync_bn

    def _projection(self, modality: str, space: str) -> keras.Sequential:
        dim = self.va_dim if space == "va" else self.vat_dim
        return projection(self.kinds[modality], dim, self.sync_bn, f"{modality}_to_{space}")

    @classmethod
    def space_for(cls, modality_a: str, modality_b: str) -> str | None:
        """The space where two modalities are compared (None if this design has none)."""
        for space, members in cls.SPACES.items():
            if modality_a in members and modality_b in members:
                return space
        return None

    @classmethod
    def spaces_of(cls, modality: str) -> tuple[str, ...]:
        return tuple(space for space, members in cls.SPACES.items() if modality in members)

    def build(self, input_shape: dict):
        """Create the projections of each modality in `input_shape` ({modality: (N, C)})."""
        for modality, shape in input_shape.items():
            self.embed(modality, keras.KerasTensor(tuple(shape)))
        self.built = True

    def call(self, representations: dict, training=None) -> dict:
        return {m: self.embed(m, x, training) for m, x in representations.items()}

    def embed(self, modality: str, x, training=None) -> dict:
        raise NotImplementedError

    def get_config(self):
        return {
            **super().get_config(), "va_dim": self.va_dim, "vat_dim": self.vat_dim,
            "video_projection": self.kinds["video"], "audio_projection": self.kinds["audio"],
            "text_projection": self.kinds["text"], "sync_bn": self.sync_bn,
        }


@keras.saving.register_keras_serializable(package="mmv_tf")
class SharedHead(Head):
    """One space `vat` for all three modalities."""

    SPACES = {"vat": MODALITIES}

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.to_vat = {m: self._projection(m, "vat") for m in MODALITIES}

    def embed(self, modality, x, training=None):
        return {"vat": self.to_vat[modality](x, training=training)}


@keras.saving.register_keras_serializable(package="mmv_tf")
class DisjointHead(Head):
    """Two spaces: `va` for video-audio and `vt` (of size vat_dim) for video-text."""

    SPACES = {"va": ("video", "audio"), "vt": ("video", "text")}

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.video_to_va = self._projection("video", "va")
        self.video_to_vt = self._projection("video", "vt")
        self.audio_to_va = self._projection("audio", "va")
        self.text_to_vt = self._projection("text", "vt")

    def embed(self, modality, x, training=None):
        if modality == "video":
            return {"va": self.video_to_va(x, training=training),
                    "vt": self.video_to_vt(x, training=training)}
        if modality == "audio":
            return {"va": self.audio_to_va(x, training=training)}
        return {"vt": self.text_to_vt(x, training=training)}


@keras.saving.register_keras_serializable(package="mmv_tf")
class FACHead(Head):
    """Fine and coarse: video, audio -> va; ReLU(va) -> Dense(no bias)-BN -> vat, shared by both;
    text -> vat directly."""

    SPACES = {"va": ("video", "audio"), "vat": MODALITIES}

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.video_to_va = self._projection("video", "va")
        self.audio_to_va = self._projection("audio", "va")
        self.va_to_vat = keras.Sequential(
            [layers.ReLU(name="va_relu"),
             layers.Dense(self.vat_dim, use_bias=False, name="va_to_vat_dense"),
             batch_norm("va_to_vat_bn", self.sync_bn)],
            name="va_to_vat",
        )
        self.text_to_vat = self._projection("text", "vat")

    def embed(self, modality, x, training=None):
        if modality == "text":
            return {"vat": self.text_to_vat(x, training=training)}
        to_va = self.video_to_va if modality == "video" else self.audio_to_va
        va = to_va(x, training=training)
        return {"va": va, "vat": self.va_to_vat(va, training=training)}


HEADS = {"shared": SharedHead, "disjoint": DisjointHead, "fac": FACHead}


def make_head(design: str, **kwargs) -> Head:
    """Head by design name: 'shared', 'disjoint' or 'fac'."""
    if design not in HEADS:
        raise ValueError(f"head design must be one of {sorted(HEADS)}, got {design!r}")
    return HEADS[design](name=f"{design}_head", **kwargs)
