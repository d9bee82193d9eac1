"""Which embedding space serves which modalities: the one table that heads, losses, search and the app
read.

| design   | the head embeds                              | a pair is compared in                    |
|----------|----------------------------------------------|------------------------------------------|
| shared   | vat: video, audio, text                      | vat, every pair                          |
| disjoint | va: video, audio; vt: video, text            | video-audio va, video-text vt; audio-text none |
| fac      | va: video, audio; vat: video, audio, text    | video-audio va, any pair with text vat   |

A pair is compared (and the losses train it) in the finest space of its design that embeds both
(`FINEST_FIRST`). FAC's released option `text_to_va` (DeepMind's `txt2audio_embd`) embeds text in
`va` too: one more output, no pair moved (text pairs stay in `vat`, where the design trains them).

An exported model records its head's outputs as `spaces` ({modality: {space: size}}) and its pairs
as `pair_spaces` ({"a-b": space}); a deflated image model's `image` lands where `video` does.
"""

from __future__ import annotations

MODALITIES = ("video", "audio", "text")
FINEST_FIRST = ("va", "vt", "vat")  # va: fine video-audio; vt: video-text alone; vat: all three

DESIGNS: dict[str, dict[str, tuple[str, ...]]] = {
    "shared": {"vat": MODALITIES},
    "disjoint": {"va": ("video", "audio"), "vt": ("video", "text")},
    "fac": {"va": ("video", "audio"), "vat": MODALITIES},
}


def head_spaces(design: str, text_to_va: bool = False) -> dict[str, tuple[str, ...]]:
    """{space: modalities} a head of `design` embeds, finest first; `text_to_va` is FAC's option."""
    spaces = dict(DESIGNS[design])
    if text_to_va:
        if design != "fac":
            raise ValueError(f"text_to_va is an option of the fac head, not of {design!r}")
        spaces["va"] = MODALITIES
    return {space: spaces[space] for space in FINEST_FIRST if space in spaces}


def spaces_of(design: str, modality: str, text_to_va: bool = False) -> tuple[str, ...]:
    """The spaces a head of `design` embeds `modality` in, finest first."""
    return tuple(s for s, members in head_spaces(design, text_to_va).items() if modality in members)


def pair_space(design: str, a: str, b: str) -> str | None:
    """The space where `design` compares modalities `a` and `b` (None where it has none)."""
    return next((s for s, members in head_spaces(design).items() if a in members and b in members),
                None)


def pair_spaces(design: str, modalities=MODALITIES) -> dict[str, str]:
    """{"a-b": space} for every ordered pair of `modalities` that `design` compares (a model's
    `pair_spaces`)."""
    pairs = {f"{a}-{b}": pair_space(design, a, b) for a in modalities for b in modalities}
    return {pair: space for pair, space in pairs.items() if space}


def shared_spaces(metadata: dict, a: str, b: str) -> list[str]:
    """The spaces in which an exported model (its `metadata`) embeds both `a` and `b`, finest first."""
    spaces = metadata["spaces"]
    return [s for s in FINEST_FIRST if s in spaces.get(a, {}) and s in spaces.get(b, {})]


def model_pair_space(metadata: dict, a: str, b: str) -> str | None:
    """Where an exported model compares `a` and `b`: its `pair_spaces` entry ("image" read as
    "video"), or the finest space both reach for a model exported before `pair_spaces`."""
    shared = shared_spaces(metadata, a, b)
    as_video = {"image": "video"}
    named = metadata.get("pair_spaces", {}).get(f"{as_video.get(a, a)}-{as_video.get(b, b)}")
    if named in shared:
        return named
    return shared[0] if shared else None
