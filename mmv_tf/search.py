"""Cross-modal queries: embed a text, an audio file or a video file and rank an index's windows.

The space follows the pair: text<->video and text<->audio in S_vat, audio<->video in S_va
(the finest space both modalities reach; for the Disjoint head text<->video is in S_vt).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mmv_tf.errors import InputError
from mmv_tf.export import space_embeddings

SPACE_PREFERENCE = ("va", "vt", "vat")  # finest first


def common_spaces(metadata: dict, query: str, target: str) -> list[str]:
    """The spaces in which a model can compare modalities `query` and `target`, finest first."""
    spaces = metadata["spaces"]
    return [s for s in SPACE_PREFERENCE if s in spaces[query] and s in spaces[target]]


def space_between(metadata: dict, query: str, target: str) -> str:
    """The space in which a model compares modalities `query` and `target`: the one its head design
    names for the pair (`pair_spaces`), or, for models exported without it, the finest they share."""
    common = common_spaces(metadata, query, target)
    named = metadata.get("pair_spaces", {}).get(f"{query}-{target}")
    if named in common:
        return named
    if not common:
        raise InputError(f"this model's {metadata['head_design']} head gives {query} and {target} "
                         "no common space: they cannot be compared")
    return common[0]


def _windows(length: int, total: int) -> list[int]:
    from mmv_tf.embed import window_starts

    return window_starts(total, length, max(1, length // 2))


def embed_audio_file(model, path: str | Path) -> dict[str, np.ndarray]:
    """Mean over half-overlapping windows of the file's audio: {space: [D]}."""
    from mmv_tf.data.media import decode_audio
    from mmv_tf.embed import take_window

    waveform = decode_audio(path, model.sample_rate)
    length = int(round(model.window_seconds * model.sample_rate))
    clips = np.stack([take_window(waveform, s, length) for s in _windows(length, len(waveform))])
    return {s: v.mean(axis=0) for s, v in space_embeddings(model.embed_audio(clips)).items()}


def embed_video_file(model, path: str | Path) -> dict[str, np.ndarray]:
    """Mean over half-overlapping windows of the file's frames: {space: [D]}."""
    from mmv_tf.embed import model_frames, take_window

    frames = model_frames(model, path)
    clips = np.stack([take_window(frames, s, model.num_frames)
                      for s in _windows(model.num_frames, len(frames))])
    return {s: v.mean(axis=0) for s, v in space_embeddings(model.embed_video(clips)).items()}


def embed_query(model, text: str | None = None, audio: str | Path | None = None,
                video: str | Path | None = None) -> tuple[str, dict[str, np.ndarray]]:
    """(query modality, {space: [D]}) for exactly one of `text`, `audio` (a file), `video` (a file)."""
    given = [(m, v) for m, v in (("text", text), ("audio", audio), ("video", video)) if v is not None]
    if len(given) != 1:
        raise InputError("give exactly one query: a text, an audio file or a video file")
    modality, value = given[0]
    if modality == "text":
        if not value.strip():
            raise InputError("the text query is empty")
        if not model.known_words(value):
            raise InputError(f"no word of the text query {value!r} is known to the model (its "
                             "vocabulary, stop words such as 'the' left out): its results would mean "
                             "nothing; use other words")
        return modality, {s: v[0] for s, v in space_embeddings(model.embed_text([value])).items()}
    if modality == "audio":
        return modality, embed_audio_file(model, value)
    return modality, embed_video_file(model, value)


def search(model, index, modality: str, query: dict[str, np.ndarray], target: str = "video",
           k: int = 10, space: str | None = None) -> tuple[str, list]:
    """(space, hits) of the `k` windows whose `target` modality best matches the query, in `space`
    (default: the finest space the two modalities share)."""
    if k < 1:
        raise InputError(f"k must be at least 1; got {k}")
    if target not in model.metadata["spaces"]:
        raise InputError(f"--target must be one of {', '.join(model.metadata['spaces'])}; got {target!r}")
    index.check_model(model)
    if space is None:
        space = space_between(model.metadata, modality, target)
    elif space not in common_spaces(model.metadata, modality, target):
        raise InputError(f"{modality} and {target} do not share space {space!r}; they share "
                         f"{', '.join(common_spaces(model.metadata, modality, target)) or 'none'}")
    return space, index.search(space, target, query[space], k)
