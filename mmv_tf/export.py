"""Export an MMV network as a TensorFlow SavedModel whose signatures mirror TF-Hub's MMV modules.

Signatures (dynamic batch size B):
  video: float32 `[B, T, H, W, 3]` frames in [0, 1] (T = the model's frames) -> before_head, va, vat
  audio: float32 `[B, N]` mono waveform in [-1, 1] at the model's rate (log-mel inside) -> same
  text:  string `[B]` (tokenised inside) -> before_head and the text's spaces (vat for FAC)
Outputs are raw embeddings, as TF-Hub's: L2-normalise before taking cosine similarities.

A model folder, in keras-hub's layout, with the SavedModel derived from it:
  config.json                       the network's Keras config (vocabularies left out)
  model.weights.h5                  its weights, keyed by layer names (Keras `save_weights`)
  assets/tokenizer/vocabulary.txt   the text table's words in row order (row i + 2), one per line
  mmv_tf.json                       what a caller needs to feed it (frames, fps, image size, sample
                                    rate, spaces and their sizes) and where it came from
  saved_model.pb, variables/        the SavedModel with the signatures above
`saved_model.load_network` rebuilds the Keras network from the first three (training, deflation);
the SavedModel needs TensorFlow and `import tensorflow_text` (the tokeniser's ops) alone.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path

from mmv_tf import spaces
from mmv_tf.errors import InputError
from mmv_tf.files import written_folder

METADATA_FILE = "mmv_tf.json"
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.weights.h5"
VOCABULARY_FILE = "assets/tokenizer/vocabulary.txt"
FORMAT_VERSION = 2


class ExportError(InputError):
    """A run or model folder that cannot be exported or loaded."""


def describe_network(network) -> dict:
    """What a caller needs to feed `network` and read its outputs (the metadata's model part)."""
    from mmv_tf.models.presets import describe_model

    config = network.model_config
    outputs = describe_model(network)["output_dims"]
    return {
        "head_design": config.get("head", {}).get("design"),
        "video": {"num_frames": network.num_frames, "fps": config["video"]["fps"],
                  "image_size": config["video"]["image_size"], "backbone": config["video"]["backbone"]},
        "audio": {"sample_rate": network.sample_rate},
        "text": {"max_words": network.max_words, "word_vectors": config.get("word_vectors_source")},
        "spaces": {m: space_embeddings(dims) for m, dims in outputs.items()},
        # Where the design compares (and trained) each pair: FAC's text also reaches `va` when the
        # model has the released text -> va head, but text pairs are compared in `vat`.
        "pair_spaces": spaces.pair_spaces(network.head.DESIGN, tuple(outputs)),
        "before_head": {m: dims["before_head"] for m, dims in outputs.items()},
    }


def space_embeddings(outputs: dict) -> dict:
    """The per-space entries of a modality's outputs (or of their sizes), without `before_head`."""
    return {space: value for space, value in outputs.items() if space != "before_head"}


def export_network(network, out: str | Path, *, name: str | None = None, training: dict | None = None,
                   overwrite: bool = False, inputs: tuple = (), text: bool = True,
                   source: dict | None = None) -> Path:
    """Write `network` (an `MMV`, TensorFlow backend) as a SavedModel folder `out`; returns it.

    `training` (e.g. {"steps": 600, "run": "runs/demo", "config": {...}}) and `source` (where
    imported weights came from) go into the metadata. Without `text`, the text signature and the
    text spaces are left out (a model whose vocabulary is unknown). The folder appears whole or
    not at all, never over one of `inputs` (the run or checkpoint it came from).
    """
    import tensorflow as tf

    out = Path(out)
    archive, tokenizer = _archive_with_tokenizer(network, out, overwrite)

    def outputs_of(modality, inputs):
        return dict(network(inputs, training=False)[modality])

    frames = tf.TensorSpec([None, None, None, None, 3], tf.float32, name="video")  # any T, H, W
    archive.add_endpoint("video", lambda video: outputs_of("video", {"video": video}), [frames])
    archive.add_endpoint("audio", lambda audio: outputs_of("audio", {"audio": audio}),
                         [tf.TensorSpec([None, None], tf.float32, name="audio")])
    bins = network.audio_encoder.get_config()["num_mel_bins"]
    archive.add_endpoint("audio_spectrogram",
                         lambda spectrogram: outputs_of("audio", {"audio_spectrogram": spectrogram}),
                         [tf.TensorSpec([None, None, bins, 1], tf.float32, name="audio_spectrogram")])
    signatures = {"video": "float32 [B,T,H,W,3] in [0,1]", "audio": "float32 [B,N] in [-1,1]",
                  "audio_spectrogram": f"float32 [B,frames,{bins},1] log-mel"}
    described = describe_network(network)
    if text:
        archive.add_endpoint("text", lambda text: outputs_of("text", {"text": tokenizer(text)}),
                             [tf.TensorSpec([None], tf.string, name="text")])
        signatures["text"] = "string [B]"
    else:
        for part in ("spaces", "before_head"):
            described[part].pop("text")
        described["pair_spaces"] = spaces.pair_spaces(network.head.DESIGN, ("video", "audio"))
    metadata = {
        "format": "mmv_tf.savedmodel", "format_version": FORMAT_VERSION,
        "name": name or out.name,
        "preset": (training or {}).get("preset"),
        "created": _now(),
        "signatures": signatures,
        **described,
        "training": training or {},
        **({"source": source} if source else {}),
    }
    return _write(archive, network, metadata, out, inputs)


def export_image_network(image_network, out: str | Path, *, source_metadata: dict, deflation: dict,
                         overwrite: bool = False, inputs: tuple = ()) -> Path:
    """Write a deflated `ImageMMV` as a SavedModel with signatures `image` (float32 `[B, H, W, 3]`
    in [0, 1] -> before_head and the video's spaces) and `text` (as the source model's)."""
    import tensorflow as tf

    out = Path(out)
    network = image_network.network
    archive, tokenizer = _archive_with_tokenizer(network, out, overwrite)
    archive.add_endpoint("image", lambda image: dict(image_network(image, training=False)),
                         [tf.TensorSpec([None, None, None, 3], tf.float32, name="image")])
    archive.add_endpoint(
        "text", lambda text: dict(network({"text": tokenizer(text)}, training=False)["text"]),
        [tf.TensorSpec([None], tf.string, name="text")])
    described = describe_network(network)
    metadata = {
        **source_metadata, "format_version": FORMAT_VERSION, "name": out.name, "created": _now(),
        "signatures": {"image": "float32 [B,H,W,3] in [0,1]", "text": "string [B]"},
        "spaces": {"image": described["spaces"]["video"], "text": described["spaces"]["text"]},
        "before_head": {"image": described["before_head"]["video"],
                        "text": described["before_head"]["text"]},
        "deflation": deflation,
    }
    return _write(archive, image_network, metadata, out, inputs)


def _archive_with_tokenizer(network, out: Path, overwrite: bool):
    """(a new ExportArchive tracking `network`'s tokenizer, the tokenizer), once `out` may be written."""
    import keras
    import tensorflow as tf

    if out.exists() and not overwrite:
        raise ExportError(f"{out} already exists (pass overwrite to replace it)")
    tokenizer = network.make_tokenizer()
    tokenizer(tf.constant([""]))  # build, so that its lookup tables can be tracked
    archive = keras.export.ExportArchive()
    archive.track(tokenizer)  # its lookup tables; the network's variables come with the endpoints
    return archive, tokenizer


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def _write(archive, keras_object, metadata: dict, out: Path, inputs: tuple) -> Path:
    """Write the archive, the metadata, the config, the weights and the vocabulary into folder
    `out`, whole or not at all (`_archive_with_tokenizer` already refused an existing `out` without
    overwrite)."""
    import keras

    config = keras.saving.serialize_keras_object(keras_object)
    text_config = text_encoder_config(config)
    vocabulary = text_config.pop("vocabulary")
    if any("\n" in word or "\r" in word for word in vocabulary):
        raise ExportError("a vocabulary word holds a line break; words must be one per line")
    # The endpoints capture the network's tf.Variables; a collection of them makes the archive save
    # each once (tracking the Keras wrappers as well would store every weight twice).
    archive.add_variable_collection("variables", [v.value for v in keras_object.variables])
    with written_folder(out, "model", inputs=inputs, overwrite=True) as partial:
        archive.write_out(str(partial), verbose=False)
        (partial / METADATA_FILE).write_text(json.dumps(metadata, indent=1) + "\n", encoding="utf-8")
        (partial / CONFIG_FILE).write_text(json.dumps(config) + "\n", encoding="utf-8")
        keras_object.save_weights(str(partial / WEIGHTS_FILE))
        (partial / VOCABULARY_FILE).parent.mkdir(parents=True, exist_ok=True)
        (partial / VOCABULARY_FILE).write_text("".join(f"{word}\n" for word in vocabulary),
                                              encoding="utf-8")
    return out


def text_encoder_config(config: dict) -> dict:
    """The `TextEncoder`'s config inside a serialised network (at any depth: an image model nests
    its video model's config)."""
    def found(node):
        if isinstance(node, dict):
            if "text_encoder" in node:
                return node["text_encoder"]["config"]
            return next(filter(None, map(found, node.values())), None)
        return None

    text = found(config)
    if text is None:
        raise ExportError("the network's config has no text encoder")
    return text


def export_run(run_dir: str | Path, out: str | Path, *, overwrite: bool = False) -> Path:
    """Export the latest checkpoint of training run `run_dir` (see `mmv_tf.training.run`; either
    kind, `mmv_tf.training.checkpoints`)."""
    from mmv_tf import config as config_lib
    from mmv_tf.training.checkpoints import has_checkpoint, restore_network
    from mmv_tf.training.config import load_train_config
    from mmv_tf.training.run import build_network

    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise ExportError(f"{run_dir} is not a training run: it has no config.yaml")
    config = load_train_config(run_dir / "config.yaml")
    if not has_checkpoint(run_dir / "checkpoints"):
        raise ExportError(f"{run_dir / 'checkpoints'} holds no checkpoint to export")
    network = build_network(config)
    training = {"run": str(run_dir), "preset": config.preset,
                **restore_network(network, run_dir / "checkpoints"), "config": config_lib.to_dict(config)}
    return export_network(network, out, name=Path(out).name, training=training, overwrite=overwrite,
                          inputs=(run_dir,))
