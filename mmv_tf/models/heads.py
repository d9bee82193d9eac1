"""Projection heads from tower representations into the shared embedding spaces.

Which space each design embeds each modality in, and where it compares each pair, is
`mmv_tf.spaces`' table; a head's `embed` gives exactly those outputs.

FAC options for DeepMind's released form (deepmind/README.md): a bias on the va -> vat Dense
(`vis_embd`), text also projected to va (`txt2audio_embd`), and in training audio's vat from its own
Linear head (`audio2txt_embd`) so that audio never updates the shared va -> vat BN statistics.

Embeddings are raw (not L2-normalised): the losses and search normalise.
"""

import keras
from keras import layers

from mmv_tf import spaces
from mmv_tf.models.norm import batch_norm
from mmv_tf.spaces import MODALITIES


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

    Subclasses set `DESIGN` (a design of `mmv_tf.spaces`) and implement `embed(modality, x,
    training)`, giving `modality` the spaces `spaces_of(modality)` names.
    """

    DESIGN: str

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
        """The space where the design compares (and the losses train) two modalities, None if it
        has none (`spaces.pair_space`: options such as FAC's text `va` do not change it)."""
        return spaces.pair_space(cls.DESIGN, modality_a, modality_b)

    def spaces_of(self, modality: str) -> tuple[str, ...]:
        """The spaces this head embeds `modality` in, finest first."""
        return spaces.spaces_of(self.DESIGN, modality)

    def untrained_layers(self) -> list:
        """Layers that no mmv-tf loss reaches; training keeps them as they are."""
        return []

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

    DESIGN = "shared"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.to_vat = {m: self._projection(m, "vat") for m in MODALITIES}

    def embed(self, modality, x, training=None):
        return {"vat": self.to_vat[modality](x, training=training)}


@keras.saving.register_keras_serializable(package="mmv_tf")
class DisjointHead(Head):
    """Two spaces: `va` for video-audio and `vt` (of size vat_dim) for video-text."""

    DESIGN = "disjoint"

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


AUDIO_VAT_IN_TRAINING = ("shared", "own_head")


@keras.saving.register_keras_serializable(package="mmv_tf")
class FACHead(Head):
    """Fine and coarse: video, audio -> va; ReLU(va) -> Dense-BN -> vat, shared by both (at
    inference; see `audio_vat_in_training`); text -> vat directly.

    Args (besides `Head`'s; the defaults are mmv-tf's earlier form, the released one in brackets):
        va_to_vat_bias: a bias on the va -> vat Dense (`va_to_vat_dense`) [True: `vis_embd`'s
            Linear(256) has one; without, it is foldable into the BN moving mean].
        text_to_va: also project text into va with `text_to_va`, a Dense(va_dim) with bias on
            the text representation [True: `txt2audio_embd`]. The design's pair spaces do not
            change (`space_for`: video-text and audio-text are still compared in vat).
        audio_vat_in_training: "shared": audio reaches vat through `va_to_vat` in training too,
            so audio batches update its BN statistics. "own_head" [released]: in training, audio's
            vat is `audio_to_vat_training`, a Dense(vat_dim) with bias on the audio representation
            (`audio2txt_embd`; no loss uses audio's vat), so only video updates `va_to_vat`'s BN;
            at inference audio's vat is `va_to_vat(audio va)` either way.
    """

    DESIGN = "fac"

    def __init__(self, va_to_vat_bias: bool = False, text_to_va: bool = False,
                 audio_vat_in_training: str = "shared", **kwargs):
        super().__init__(**kwargs)
        if audio_vat_in_training not in AUDIO_VAT_IN_TRAINING:
            raise ValueError(f"audio_vat_in_training must be one of {AUDIO_VAT_IN_TRAINING}, "
                             f"got {audio_vat_in_training!r}")
        self.va_to_vat_bias = bool(va_to_vat_bias)
        self.text_to_va_enabled = bool(text_to_va)
        self.audio_vat_in_training = audio_vat_in_training
        self.video_to_va = self._projection("video", "va")
        self.audio_to_va = self._projection("audio", "va")
        self.va_to_vat = keras.Sequential(
            [layers.ReLU(name="va_relu"),
             layers.Dense(self.vat_dim, use_bias=self.va_to_vat_bias, name="va_to_vat_dense"),
             batch_norm("va_to_vat_bn", self.sync_bn)],
            name="va_to_vat",
        )
        self.text_to_vat = self._projection("text", "vat")
        self.text_to_va = None
        if self.text_to_va_enabled:
            self.text_to_va = layers.Dense(self.va_dim, name="text_to_va")
        self.audio_to_vat_training = None
        if audio_vat_in_training == "own_head":
            self.audio_to_vat_training = layers.Dense(self.vat_dim, name="audio_to_vat_training")

    def build(self, input_shape: dict):
        super().build(input_shape)
        own = self.audio_to_vat_training
        if own is not None and not own.built and "audio" in input_shape:
            own.build(tuple(input_shape["audio"]))  # used in training only: build() never calls it

    def spaces_of(self, modality: str) -> tuple[str, ...]:
        return spaces.spaces_of(self.DESIGN, modality, self.text_to_va_enabled)

    def untrained_layers(self) -> list:
        """The released heads that no mmv-tf loss reaches (text's va, audio's vat in training)."""
        return [layer for layer in (self.text_to_va, self.audio_to_vat_training) if layer is not None]

    def embed(self, modality, x, training=None):
        if modality == "text":
            out = {"vat": self.text_to_vat(x, training=training)}
            if self.text_to_va is not None:
                out = {"va": self.text_to_va(x), **out}
            return out
        to_va = self.video_to_va if modality == "video" else self.audio_to_va
        va = to_va(x, training=training)
        if modality == "audio" and training and self.audio_to_vat_training is not None:
            return {"va": va, "vat": self.audio_to_vat_training(x)}
        return {"va": va, "vat": self.va_to_vat(va, training=training)}

    def get_config(self):
        return {**super().get_config(), "va_to_vat_bias": self.va_to_vat_bias,
                "text_to_va": self.text_to_va_enabled,
                "audio_vat_in_training": self.audio_vat_in_training}


HEADS = {head.DESIGN: head for head in (SharedHead, DisjointHead, FACHead)}


def make_head(design: str, **kwargs) -> Head:
    """Head by design name: 'shared', 'disjoint' or 'fac' (FAC alone takes `FACHead`'s options)."""
    if design not in HEADS:
        raise ValueError(f"head design must be one of {sorted(HEADS)}, got {design!r}")
    return HEADS[design](name=f"{design}_head", **kwargs)
