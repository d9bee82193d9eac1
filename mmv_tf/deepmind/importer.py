"""`mmv-tf import deepmind`: a released MMV checkpoint -> an mmv-tf SavedModel.

The checkpoint is read without running code (`checkpoint.read_checkpoint`), its backbone detected,
every leaf assigned to the paper preset's network by name (`mapping.assign_released_weights`), and
the network exported with the usual signatures. The released word list is not public: with a
`vocabulary` file (one word per line, in table-row order, 65536 lines) the model gets its text
signature; without one it is left out, since no string could be mapped to the table's rows.
"""

from __future__ import annotations

from pathlib import Path

from mmv_tf.deepmind.checkpoint import CheckpointError, read_checkpoint
from mmv_tf.deepmind.mapping import (
    RELEASED_VOCABULARY,
    TABLE_ROWS,
    assign_released_weights,
    build_released_network,
    detect_backbone,
)
from mmv_tf.export import export_network

LICENCE = "CC BY-NC 4.0"
# Compared with DeepMind's own outputs on seeded weights (tests/test_deepmind_import.py).
VERIFIED = ("video", "audio_spectrogram", "text token ids")
NO_VOCABULARY = ("the released word list is not public, so no text can be mapped to the table's rows; "
                 "pass --vocabulary (one word per line in table-row order) to add the text signature")


def read_vocabulary(path: str | Path) -> tuple[str, ...]:
    """The words of table rows 2..65535 from a file of 65536 lines (rows 0 and 1, padding and
    mmv-tf's out-of-vocabulary id, are not reached by words)."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise CheckpointError(f"cannot read the vocabulary {path}: {error}") from None
    if len(lines) != TABLE_ROWS:
        raise CheckpointError(f"{path} has {len(lines)} lines; the released word table has {TABLE_ROWS} "
                              "rows, one word per line in row order")
    seen: dict[str, int] = {}
    for number, word in enumerate(lines[2:], start=3):
        if not word.strip() or word != word.strip():
            raise CheckpointError(f"{path}:{number}: a word must be non-empty without spaces around it")
        if word in seen:
            raise CheckpointError(f"{path}:{number}: {word!r} repeats line {seen[word]}")
        seen[word] = number
    return tuple(lines[2:])


def import_released(checkpoint: str | Path, out: str | Path, *, vocabulary: str | Path | None = None,
                    backbone: str = "auto", num_frames: int = 32, num_mel_bins: int = 80,
                    overwrite: bool = False) -> dict:
    """Import `checkpoint` (a released `.pkl`) into the SavedModel folder `out`; returns the report.

    `num_frames` (the video signature's clip length) and `num_mel_bins` (the spectrogram's height,
    the paper's 80) change no weight."""
    words = read_vocabulary(vocabulary) if vocabulary is not None else RELEASED_VOCABULARY
    released = read_checkpoint(checkpoint)
    detected = detect_backbone(released.params)
    if backbone not in ("auto", detected):
        raise CheckpointError(f"{checkpoint} holds a {detected} network, not {backbone}")
    network = build_released_network(
        detected, {"video": {"num_frames": num_frames}, "audio": {"num_mel_bins": num_mel_bins}}, words)
    report = assign_released_weights(released, network)
    source = {"checkpoint": str(Path(checkpoint).resolve()), "sha256": released.sha256,
              "licence": LICENCE, "backbone": detected, "verified": list(VERIFIED),
              "dropped": report["dropped"], "not_filled": report["not_filled"],
              "vocabulary": str(Path(vocabulary).resolve()) if vocabulary is not None else None}
    export_network(network, out, name=Path(out).name, training={"preset": detected},
                   overwrite=overwrite, inputs=(checkpoint,), text=vocabulary is not None, source=source)
    return {**report, "out": str(out), "text": vocabulary is not None}
