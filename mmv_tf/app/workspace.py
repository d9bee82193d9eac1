"""The demo's workspace: the demo corpus, its embeddings and its index, made once and then reused.

DIR/corpus/      the demo corpus (`mmv-tf data demo`), generated if it has no manifest
DIR/embeddings/  one split of it embedded with the model (`mmv-tf embed`)
DIR/index/       the search index over those embeddings (`mmv-tf index`)
Each step is skipped when its finished output exists and was made from the same input with the
same model and settings; an interrupted step resumes (corpus, embeddings) or starts again (index).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from mmv_tf.embed import INFO_FILE
from mmv_tf.files import remove_path
from mmv_tf.index import INDEX_FILE


@dataclasses.dataclass(frozen=True)
class Workspace:
    root: Path

    @property
    def corpus(self) -> Path:
        return self.root / "corpus"

    @property
    def embeddings(self) -> Path:
        return self.root / "embeddings"

    @property
    def index(self) -> Path:
        return self.root / "index"


def _read_info(info_file: Path) -> dict | None:
    return json.loads(info_file.read_text(encoding="utf-8")) if info_file.is_file() else None


def prepare_demo(root: str | Path, model_path: str | Path, videos: int = 1000, seed: int = 0,
                 split: str | None = "test", say=print) -> Workspace:
    """Make (or reuse) the corpus, embeddings and index of the workspace at `root`."""
    from mmv_tf.data.demo import generate_demo_corpus
    from mmv_tf.embed import EmbedSettings, embed_corpus
    from mmv_tf.index import build_index
    from mmv_tf.saved_model import ExportedModel

    space = Workspace(Path(root))
    if (space.corpus / "manifest.jsonl").is_file():
        say(f"corpus: reusing {space.corpus}")
    else:
        say(f"corpus: generating {videos} demo videos into {space.corpus}")
        generate_demo_corpus(space.corpus, videos, seed)

    model, settings = ExportedModel(model_path), EmbedSettings(split=split)
    wanted = {"source": str(space.corpus.resolve()), "settings": dataclasses.asdict(settings)}
    embedded = _read_info(space.embeddings / INFO_FILE)
    if embedded and embedded.get("model_identity") == model.identity and \
            {k: embedded[k] for k in wanted} == wanted:
        say(f"embeddings: reusing {space.embeddings}")
    else:
        if embedded:  # finished, but by another model or with other settings
            remove_path(space.embeddings)
        say(f"embeddings: embedding the {split or 'whole'} split with {model.path}")
        embed_corpus(space.corpus, model, space.embeddings, settings)

    indexed = _read_info(space.index / INDEX_FILE)
    if indexed and indexed["model"] == model.identity and indexed.get("embedding_settings") == wanted:
        say(f"index: reusing {space.index}")
    else:
        say(f"index: indexing into {space.index}")
        build_index(space.embeddings, space.index, overwrite=True)  # the workspace's own index
    return space
