"""The MMV task model: video, audio and text towers plus a projection head."""

import keras
from keras import ops

from mmv_tf.models.heads import Head


def _check_shape(modality: str, shape, expected: tuple, meaning: str) -> None:
    """Raise a ValueError naming `expected` (None = any size) when the static `shape` disagrees."""
    shape = tuple(shape)
    ok = len(shape) == len(expected) and all(
        e is None or s is None or s == e for s, e in zip(shape, expected)
    )
    if not ok:
        wanted = ", ".join("?" if e is None else str(e) for e in expected)
        raise ValueError(f"{modality} must have shape [{wanted}] ({meaning}); got {list(shape)}")


@keras.saving.register_keras_serializable(package="mmv_tf")
class MMV(keras.Model):
    """Multimodal versatile network.

    Inputs: a dict with any of
      - `video`: float `[B, T, H, W, 3]` frames in [0, 1] (any T; `num_frames` is the clip length
        the model is trained on);
      - `audio`: float `[B, N]` waveform in [-1, 1] at the tower's sample rate, or instead
        `audio_spectrogram`: float `[B, frames, num_mel_bins, 1]`, its log-mel spectrogram (the
        released audio network's input); either gives the `audio` outputs;
      - `text`: `{"token_ids": int [B, L] or [B, K, L], "padding_mask": bool, same shape}`
        (K candidate narrations per clip for MIL-NCE), from `make_tokenizer()`.

    Outputs: for each input modality, `{"before_head": [B, C_m], <space>: [B, D_space], ...}`
    with the spaces the head gives it (`head.spaces_of(modality)`; text keeps its K axis). A FAC
    head with `text_to_va` also gives text `va` (DeepMind's `txt2audio_embd`), beside `vat`.
    """

    def __init__(self, video_encoder, audio_encoder, text_encoder, head: Head,
                 model_config: dict | None = None, **kwargs):
        super().__init__(**kwargs)
        self.video_encoder = video_encoder
        self.audio_encoder = audio_encoder
        self.text_encoder = text_encoder
        self.head = head
        self.model_config = dict(model_config or {})
        self._build_head()

    def _build_head(self) -> None:
        self.head.build({"video": (None, self.video_encoder.output_dim),
                         "audio": (None, self.audio_encoder.output_dim),
                         "text": (None, self.text_encoder.output_dim)})
        self.built = True

    @property
    def num_frames(self) -> int:
        return int(self.video_encoder.get_config()["num_frames"])

    @property
    def max_words(self) -> int:
        return int(self.text_encoder.get_config()["max_words"])

    @property
    def sample_rate(self) -> int:
        return int(self.audio_encoder.get_config()["sample_rate"])

    def make_tokenizer(self):
        """The in-graph `TextTokenizer` for this model's vocabulary (TensorFlow backend)."""
        from mmv_tf.text.tokenizer import TextTokenizer

        return TextTokenizer(self.text_encoder.vocabulary, max_words=self.max_words)

    def _representations(self, inputs: dict, training):
        unknown = sorted(set(inputs) - {"video", "audio", "audio_spectrogram", "text"})
        if unknown:
            raise ValueError(f"unknown input {unknown[0]!r}: inputs are 'video', 'audio' (or "
                             "'audio_spectrogram') and 'text'")
        if "audio" in inputs and "audio_spectrogram" in inputs:
            raise ValueError("give 'audio' or 'audio_spectrogram', not both")
        reps = {}
        if "video" in inputs:
            video = inputs["video"]
            _check_shape("video", video.shape, (None, None, None, None, 3),
                         "batch, frames, height, width, RGB in [0, 1]")
            reps["video"] = self.video_encoder(video, training=training)
        if "audio" in inputs:
            audio = inputs["audio"]
            _check_shape("audio", audio.shape, (None, None), "batch, mono samples in [-1, 1]")
            min_samples = self.audio_encoder.min_samples
            if audio.shape[1] is not None and audio.shape[1] < min_samples:
                raise ValueError(f"audio needs at least {min_samples} samples per clip "
                                 f"(one spectrogram frame); got shape {list(audio.shape)}")
            reps["audio"] = self.audio_encoder(audio, training=training)
        if "audio_spectrogram" in inputs:
            spectrogram = inputs["audio_spectrogram"]
            bins = self.audio_encoder.get_config()["num_mel_bins"]
            _check_shape("audio_spectrogram", spectrogram.shape, (None, None, bins, 1),
                         "batch, frames, mel bins, 1")
            reps["audio"] = self.audio_encoder.from_spectrogram(spectrogram, training=training)
        if "text" in inputs:
            text = inputs["text"]
            if not isinstance(text, dict) or set(text) != {"token_ids", "padding_mask"}:
                raise ValueError("text must be a dict with 'token_ids' and 'padding_mask' "
                                 "(see MMV.make_tokenizer)")
            ids = text["token_ids"]
            rank = len(ids.shape)
            expected = (None, self.max_words) if rank == 2 else (None, None, self.max_words)
            _check_shape("text token_ids", ids.shape, expected,
                         "batch, [candidates,] words")
            flat = {k: ops.reshape(v, (-1, self.max_words)) for k, v in text.items()}
            reps["text"] = self.text_encoder(flat, training=training)
        return reps

    def call(self, inputs: dict, training=None) -> dict:
        reps = self._representations(inputs, training)
        embeddings = self.head(reps, training=training)
        outputs = {}
        for modality, rep in reps.items():
            out = {"before_head": rep, **embeddings[modality]}
            if modality == "text" and len(inputs["text"]["token_ids"].shape) == 3:
                candidates = ops.shape(inputs["text"]["token_ids"])[1]
                out = {k: ops.reshape(v, (-1, candidates, v.shape[-1])) for k, v in out.items()}
            outputs[modality] = out
        return outputs

    def get_config(self):
        serialize = keras.saving.serialize_keras_object
        return {
            "name": self.name,
            "video_encoder": serialize(self.video_encoder),
            "audio_encoder": serialize(self.audio_encoder),
            "text_encoder": serialize(self.text_encoder),
            "head": serialize(self.head),
            "model_config": self.model_config,
        }

    @classmethod
    def from_config(cls, config):
        deserialize = keras.saving.deserialize_keras_object
        config = dict(config)
        for key in ("video_encoder", "audio_encoder", "text_encoder", "head"):
            config[key] = deserialize(config[key])
        return cls(**config)
