"""Load an exported mmv-tf SavedModel (see `mmv_tf.export`) and embed media and text with it."""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path

import numpy as np

from mmv_tf.errors import InputError
from mmv_tf.export import (
    CONFIG_FILE,
    FORMAT_VERSION,
    METADATA_FILE,
    VOCABULARY_FILE,
    WEIGHTS_FILE,
    ExportError,
    text_encoder_config,
)

# The default model, trained on the demo corpus; package data, so every install has it.
DEFAULT_MODEL = Path(__file__).resolve().parent / "savedmodels" / "mmv_s3dg_tiny_demo"


def read_metadata(path: str | Path) -> dict:
    """The `mmv_tf.json` of model folder `path`, with a clear error when it is not one."""
    path = Path(path)
    if not path.is_dir():
        raise ExportError(f"model folder {path} does not exist")
    if not (path / METADATA_FILE).is_file() or not (path / "saved_model.pb").is_file():
        raise ExportError(f"{path} is not an mmv-tf SavedModel (it lacks {METADATA_FILE} or saved_model.pb)")
    return json.loads((path / METADATA_FILE).read_text(encoding="utf-8"))


def weights_sha256(path: str | Path) -> str:
    """The sha256 of model folder `path`'s weights files (`variables/`): tells two models apart."""
    digest = hashlib.sha256()
    for file in sorted((Path(path) / "variables").glob("variables.*")):
        digest.update(file.name.encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()


class ExportedModel:
    """An exported model with checked, batched calls; outputs are numpy `{name: [B, D]}`."""

    def __init__(self, path: str | Path, batch_size: int = 16):
        import tensorflow as tf
        import tensorflow_text  # noqa: F401  (registers the tokeniser's ops)

        self.path = Path(path)
        self.metadata = read_metadata(self.path)
        self.batch_size = batch_size
        try:
            self._module = tf.saved_model.load(str(self.path))
        except (OSError, ValueError, tf.errors.OpError) as error:
            reason = " ".join(str(getattr(error, "message", None) or error).split())
            raise ExportError(f"cannot load the model in {self.path} (damaged or incomplete?): "
                              f"{reason}") from None

    @functools.cached_property
    def identity(self) -> dict:
        """What embeddings and indexes record of the model that made them: name, creation time,
        spaces, and the sha256 of its weights files (`variables/`), which tells two models apart."""
        return {"name": self.metadata.get("name"), "created": self.metadata.get("created"),
                "spaces": self.metadata["spaces"], "weights_sha256": weights_sha256(self.path)}

    @property
    def num_frames(self) -> int:
        return int(self.metadata["video"]["num_frames"])

    @property
    def fps(self) -> float:
        return float(self.metadata["video"]["fps"])

    @property
    def image_size(self) -> int:
        return int(self.metadata["video"]["image_size"])

    @property
    def sample_rate(self) -> int:
        return int(self.metadata["audio"]["sample_rate"])

    @property
    def window_seconds(self) -> float:
        return self.num_frames / self.fps

    def spaces(self, modality: str) -> dict[str, int]:
        """{space: dimension} that `modality` is embedded in."""
        return dict(self.metadata["spaces"][modality])

    def _batched(self, signature: str, inputs) -> dict[str, np.ndarray]:
        function = getattr(self._module, signature)
        parts = [function(inputs[start:start + self.batch_size])
                 for start in range(0, len(inputs), self.batch_size)]
        return {name: np.concatenate([np.asarray(p[name]) for p in parts]) for name in parts[0]}

    def embed_video(self, frames: np.ndarray) -> dict[str, np.ndarray]:
        """Frames float `[B, T, H, W, 3]` in [0, 1]: any T (the model was trained on `num_frames`)."""
        frames = np.asarray(frames, dtype=np.float32)
        if frames.ndim != 5 or not frames.shape[1] or frames.shape[-1] != 3 or not len(frames):
            raise InputError(f"video frames must have shape [B, T, H, W, 3] with B, T >= 1 (the model "
                             f"was trained on T = {self.num_frames}); got {list(frames.shape)}")
        if min(frames.shape[2:4]) < 32:
            raise InputError(f"video frames of {frames.shape[2]}x{frames.shape[3]} are too small "
                             f"(the model was trained on {self.image_size}x{self.image_size})")
        return self._batched("video", frames)

    def embed_audio(self, waveform: np.ndarray) -> dict[str, np.ndarray]:
        """Mono waveform float `[B, N]` in [-1, 1] at `sample_rate`."""
        waveform = np.asarray(waveform, dtype=np.float32)
        if waveform.ndim != 2 or not len(waveform) or waveform.shape[1] < self.sample_rate // 10:
            raise InputError(f"audio must have shape [B, N] with B >= 1 and N >= {self.sample_rate // 10} "
                             f"samples at {self.sample_rate} Hz; got {list(waveform.shape)}")
        return self._batched("audio", waveform)

    @property
    def is_image_model(self) -> bool:
        """Whether this is a deflated image model (signature `image`) rather than a video model."""
        return "image" in self.metadata["signatures"]

    def embed_images(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """Images float `[B, H, W, 3]` in [0, 1]: through the `image` signature of a deflated model,
        or, for a video model, the video signature on the static videos that repeat them."""
        images = np.asarray(images, dtype=np.float32)
        if images.ndim != 4 or images.shape[-1] != 3 or not len(images):
            raise InputError(f"images must have shape [B, H, W, 3] with B >= 1; got {list(images.shape)}")
        if self.is_image_model:
            return self._batched("image", images)
        from mmv_tf.deflation import static_videos

        return self.embed_video(static_videos(images, self.num_frames))

    @functools.cached_property
    def _vocabulary(self) -> frozenset[str]:
        return frozenset(self._tokenizer.vocabulary)

    @functools.cached_property
    def _tokenizer(self):
        """The model's `TextTokenizer`, rebuilt from its config and vocabulary files."""
        from mmv_tf.text.tokenizer import TextTokenizer

        text = text_encoder_config(read_network_config(self.path))
        return TextTokenizer(text["vocabulary"], max_words=text["max_words"])

    @property
    def has_text(self) -> bool:
        """Whether the model embeds text (a model imported without its word list does not)."""
        return "text" in self.metadata["signatures"]

    def _require_text(self) -> None:
        if not self.has_text:
            raise ExportError(f"model {self.path} has no text signature (its vocabulary is unknown: "
                              "import it with --vocabulary); query it with audio or video")

    def known_words(self, text: str) -> list[str]:
        """The words of `text` that the model looks up (in its vocabulary, not stop words)."""
        self._require_text()
        words = self._tokenizer.words(np.array([text])).to_list()[0]
        return [w.decode() for w in words if w.decode() in self._vocabulary]

    def embed_text(self, texts: list[str]) -> dict[str, np.ndarray]:
        """One embedding per string; empty strings are refused."""
        self._require_text()
        texts = list(texts)
        if not texts or any(not t.strip() for t in texts):
            raise InputError("text queries must be non-empty strings")
        return self._batched("text", np.asarray(texts, dtype=object))


def read_network_config(path: str | Path) -> dict:
    """The serialised Keras network of model folder `path` (`config.json`), its text encoder's
    vocabulary read back from the tokenizer assets."""
    path = Path(path)
    metadata = read_metadata(path)
    if metadata.get("format_version", 1) < FORMAT_VERSION or not (path / CONFIG_FILE).is_file():
        raise ExportError(f"{path} was written by an older mmv-tf (no {CONFIG_FILE} and {WEIGHTS_FILE}); "
                          "export it again from its run or checkpoint")
    config = json.loads((path / CONFIG_FILE).read_text(encoding="utf-8"))
    words = (path / VOCABULARY_FILE).read_text(encoding="utf-8").split("\n")[:-1]
    text_encoder_config(config)["vocabulary"] = words
    return config


def load_network(path: str | Path):
    """The Keras network of model folder `path` (`MMV`, or `ImageMMV` for a deflated one): built
    from `config.json` and the vocabulary, its weights loaded by layer name from `model.weights.h5`
    (a missing, extra or misshapen layer is an error naming it)."""
    import keras

    import mmv_tf.deflation  # noqa: F401  (registers the layers for deserialisation)
    import mmv_tf.models.presets  # noqa: F401

    network = keras.saving.deserialize_keras_object(read_network_config(path))
    load_weights(network, Path(path) / WEIGHTS_FILE, f"the network of {Path(path) / CONFIG_FILE}")
    return network


def load_weights(network, weights_file: Path, fits: str, error: type[Exception] = ExportError) -> None:
    """`network.load_weights(weights_file)` (Keras, by layer name, any backend); a missing, extra or
    misshapen layer raises `error` naming the file and `fits`, what it should have fitted."""
    try:
        network.load_weights(str(weights_file))
    except (ValueError, OSError) as reason:
        raise error(f"{weights_file} does not fit {fits}: {' '.join(str(reason).split())[:400]}") from None
