"""Cross-modal queries: embed a text, an audio file or a video file and rank an index's windows.

The space follows the pair, as the model's head design compares it (`mmv_tf.spaces`): for FAC
text<->video and text<->audio in S_vat, audio<->video in S_va; for Disjoint text<->video in S_vt.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mmv_tf import spaces
from mmv_tf.errors import InputError
from mmv_tf.export import space_embeddings


def space_between(metadata: dict, query: str, target: str) -> str:
    """The space in which a model compares modalities `query` and `target` (`spaces.model_pair_space`);
    refused where it has none."""
    space = spaces.model_pair_space(metadata, query, target)
    if space is None:
        raise InputError(f"this model's {metadata['head_design']} head gives {query} and {target} "
                         "no common space: they cannot be compared")
    return space


def embed_audio_file(model, path: str | Path) -> dict[str, np.ndarray]:
    """Mean over half-overlapping windows of the file's audio: {space: [D]}."""
    from mmv_tf.data.media import decode_audio
    from mmv_tf.data.preprocessing import sliding_window_starts, window_audio, window_samples

    waveform = decode_audio(path, model.sample_rate)
    length = window_samples(model.window_seconds, model.sample_rate)
    starts = np.array(sliding_window_starts(len(waveform), length, length // 2))
    clips = window_audio(waveform, starts / model.sample_rate, length, model.sample_rate)
    return {s: v.mean(axis=0) for s, v in space_embeddings(model.embed_audio(clips)).items()}


def embed_video_file(model, path: str | Path) -> dict[str, np.ndarray]:
    """Mean over half-overlapping windows of the file's frames: {space: [D]}."""
    from mmv_tf.data.preprocessing import model_frames, sliding_window_starts, window_frames

    frames = model_frames(model, path)
    starts = np.array(sliding_window_starts(len(frames), model.num_frames, model.num_frames // 2))
    clips = window_frames(frames, starts, model.num_frames)
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
    (default: where the model compares the two modalities, `space_between`); `k` from 1 to the
    vectors the gallery holds (`SearchIndex.search`)."""
    if target not in model.metadata["spaces"]:
        raise InputError(f"--target must be one of {', '.join(model.metadata['spaces'])}; got {target!r}")
    index.check_model(model)
    if space is None:
        space = space_between(model.metadata, modality, target)
    elif space not in spaces.shared_spaces(model.metadata, modality, target):
        raise InputError(f"{modality} and {target} do not share space {space!r}; they share "
                         f"{', '.join(spaces.shared_spaces(model.metadata, modality, target)) or 'none'}")
    return space, index.search(space, target, query[space], k)


def find(model, index, target: str = "video", k: int = 10, space: str | None = None,
         **query) -> tuple[str, str, list]:
    """(query modality, space, hits): `search` for the one query of `query` (`text=`, `audio=` or
    `video=`, as `embed_query`), refusing a model other than the index's before decoding it."""
    index.check_model(model)
    modality, embedded = embed_query(model, **query)
    return (modality, *search(model, index, modality, embedded, target, k, space))
