"""The demo's workspace: the demo corpus, its embeddings and its index, made once and then reused.

DIR/corpus/      the demo corpus (`mmv-tf data demo`), generated if it has no manifest
DIR/embeddings/  one split of it embedded with the model (`mmv-tf embed`)
DIR/index/       the search index over those embeddings (`mmv-tf index`)
DIR/image-model/ the model deflated into an image model (`mmv-tf deflate`), for the app's image
                 queries and classification (unless `deflation` is None)
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

    @property
    def image_model(self) -> Path:
        return self.root / "image-model"


def _read_info(info_file: Path) -> dict | None:
    return json.loads(info_file.read_text(encoding="utf-8")) if info_file.is_file() else None


def prepare_demo(root: str | Path, model_path: str | Path, videos: int = 1000, seed: int = 0,
                 split: str | None = "test", deflation: str | None = "bn", say=print) -> Workspace:
    """Make (or reuse) the corpus, embeddings, index and (`deflation` mode naive or bn; None: none)
    image model of the workspace at `root`."""
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
    if deflation is not None:
        _prepare_image_model(space, model, deflation, say)
    return space


def _prepare_image_model(space: Workspace, model, mode: str, say) -> None:
    """The workspace's deflated image model of `model`, reused when made from its weights in `mode`."""
    from mmv_tf.deflation import DeflationSettings, deflate_model
    from mmv_tf.export import METADATA_FILE

    made = _read_info(space.image_model / METADATA_FILE) or {}
    report = made.get("deflation", {})
    if report.get("source_weights_sha256") == model.identity["weights_sha256"] and report.get("mode") == mode:
        say(f"image model: reusing {space.image_model}")
        return
    say(f"image model: deflating {model.path} ({mode}) into {space.image_model}")
    deflate_model(model.path, space.image_model, space.corpus, DeflationSettings(mode=mode),
                  overwrite=True, note=say)  # the workspace's own image model
