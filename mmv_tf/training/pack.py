"""`mmv-tf data pack`: shards -> plain arrays for device-resident training (`mmv_tf.training.device`).

Device-resident training runs under Keras's JAX backend on machines that may lack TensorFlow, so
the shards' JPEG frames are decoded and the captions tokenised here (TensorFlow), once, for the
model of one training config. PACK/ holds pack.json (what was packed and for which tokenizer) and
one .npy per array (V videos, padded to the longest: F frames, N samples, C captions; L words):

  frames uint8 [V, F, H, W, 3]           frame_counts int32 [V]      splits str [V]
  waveforms float32 [V, N] (zeros past the end)                      audio_present bool [V]
  caption_starts, caption_ends float32 [V, C] (seconds)              caption_counts int32 [V]
  caption_token_ids int32 [V, C, L], caption_padding_mask bool [V, C, L]: each caption tokenised
  empty_token_ids int32 [L], empty_padding_mask bool [L]: "" tokenised (a missing candidate)

Every video of a pack has one frame size (its frames are one array).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from mmv_tf.errors import InputError
from mmv_tf.files import written_folder

PACK_FILE = "pack.json"
FORMAT_VERSION = 1
ARRAYS = ("frames", "frame_counts", "splits", "waveforms", "audio_present", "caption_starts",
          "caption_ends", "caption_counts", "caption_token_ids", "caption_padding_mask",
          "empty_token_ids", "empty_padding_mask")


class PackError(InputError):
    """A folder that is not a pack, or a pack that does not fit the run's model."""


def tokenizer_fingerprint(vocabulary, max_words: int) -> str:
    """What token ids depend on: the sha256 of the vocabulary and the word limit."""
    return hashlib.sha256(json.dumps([list(vocabulary), max_words]).encode()).hexdigest()


def read_pack_metadata(folder: str | Path) -> dict:
    """PACK/pack.json, with a clear error for a folder that is not a pack of this format."""
    folder = Path(folder)
    if not (folder / PACK_FILE).is_file():
        raise PackError(f"{folder} is not a pack (no {PACK_FILE}); device-resident training reads "
                        "a folder made by `mmv-tf data pack SHARDS --config CONFIG --out PACK`")
    metadata = json.loads((folder / PACK_FILE).read_text(encoding="utf-8"))
    if metadata.get("format_version") != FORMAT_VERSION:
        raise PackError(f"{folder} is a pack of format {metadata.get('format_version')}; this mmv-tf "
                        f"reads format {FORMAT_VERSION}: pack the shards again")
    return metadata


def load_pack(folder: str | Path) -> dict[str, np.ndarray]:
    """The arrays of pack `folder` (see above), by name."""
    return {name: np.load(Path(folder) / f"{name}.npy") for name in ARRAYS}


def pack_shards(data: str | Path, config, out: str | Path) -> dict:
    """Pack the training and validation shards of folder `data` for the model of `config` (a
    `TrainConfig`) into folder `out`; returns pack.json's contents."""
    import tensorflow as tf

    from mmv_tf.data.preprocessing import decode_jpeg
    from mmv_tf.data.shards import parse_video, shard_files
    from mmv_tf.training.run import build_network, check_sample_rate, shard_settings

    data = Path(data)
    model_config = config.model_config()
    settings = shard_settings(data)
    check_sample_rate(data, settings, config, model_config)
    splits = ["train"] + [s for s in [config.data.validation_split] if shard_files(data, s)]
    tokenizer = build_network(config).make_tokenizer()
    videos = []
    for split in splits:
        for video in tf.data.TFRecordDataset(shard_files(data, split)).map(parse_video):
            frames = tf.map_fn(decode_jpeg, video["frames"], fn_output_signature=tf.uint8).numpy()
            videos.append({"frames": frames, "split": split, "waveform": video["waveform"].numpy(),
                           "audio_present": bool(video["WAVEFORM/present"].numpy()),
                           "starts": video["caption/start"].numpy(), "ends": video["caption/end"].numpy(),
                           "captions": [c.decode() for c in video["caption/string"].numpy()],
                           "id": video["video/id"].numpy().decode()})
    sizes = {v["frames"].shape[1:] for v in videos}
    if len(sizes) > 1:
        first = next(v for v in videos if v["frames"].shape[1:] != videos[0]["frames"].shape[1:])
        raise PackError(f"a pack keeps every frame in one array, but the videos of {data} differ in "
                        f"frame size ({videos[0]['id']}: {videos[0]['frames'].shape[1:3]}, "
                        f"{first['id']}: {first['frames'].shape[1:3]}); ingest them at one size")
    count, most_captions = len(videos), max(1, max(len(v["captions"]) for v in videos))
    texts = [c for v in videos for c in v["captions"]] + [""]
    tokens = {k: np.asarray(t) for k, t in tokenizer(tf.constant(texts)).items()}
    words = tokens["token_ids"].shape[-1]
    arrays = {
        "frame_counts": np.array([len(v["frames"]) for v in videos], np.int32),
        "splits": np.array([v["split"] for v in videos]),
        "waveforms": np.zeros((count, max(len(v["waveform"]) for v in videos)), np.float32),
        "audio_present": np.array([v["audio_present"] for v in videos]),
        "caption_starts": np.zeros((count, most_captions), np.float32),
        "caption_ends": np.zeros((count, most_captions), np.float32),
        "caption_counts": np.array([len(v["captions"]) for v in videos], np.int32),
        "caption_token_ids": np.zeros((count, most_captions, words), np.int32),
        "caption_padding_mask": np.zeros((count, most_captions, words), bool),
        "empty_token_ids": tokens["token_ids"][-1], "empty_padding_mask": tokens["padding_mask"][-1],
    }
    first = 0
    for i, video in enumerate(videos):
        arrays["waveforms"][i, : len(video["waveform"])] = video["waveform"]
        captions = len(video["captions"])
        arrays["caption_starts"][i, :captions] = video["starts"]
        arrays["caption_ends"][i, :captions] = video["ends"]
        arrays["caption_token_ids"][i, :captions] = tokens["token_ids"][first:first + captions]
        arrays["caption_padding_mask"][i, :captions] = tokens["padding_mask"][first:first + captions]
        first += captions
    metadata = {
        "format": "mmv_tf.pack", "format_version": FORMAT_VERSION, "source": str(data.resolve()),
        "fps": settings.get("fps", model_config.video.fps),
        "sample_rate": settings.get("sample_rate", model_config.audio.sample_rate),
        "frame_size": list(videos[0]["frames"].shape[1:3]),
        "splits": {split: sum(v["split"] == split for v in videos) for split in splits},
        "tokenizer": tokenizer_fingerprint(tokenizer.vocabulary, tokenizer.max_words),
    }
    with written_folder(out, "pack", inputs=[data]) as partial:
        partial.mkdir(parents=True)
        frames = np.lib.format.open_memmap(
            partial / "frames.npy", "w+", np.uint8,
            (count, int(arrays["frame_counts"].max()), *videos[0]["frames"].shape[1:]))
        for i, video in enumerate(videos):
            frames[i, : len(video["frames"])] = video["frames"]
        frames.flush()
        del frames
        for name, array in arrays.items():
            np.save(partial / f"{name}.npy", array)
        (partial / PACK_FILE).write_text(json.dumps(metadata, indent=1) + "\n", encoding="utf-8")
    return metadata
