"""The Gradio cross-modal search app: query by text, audio, video or (with a deflated model) an
image, and see the best clips play; with a deflated model, classify a picture too.

`SearchService` does the work (embed the query, rank the index, cut clips) and knows nothing of
Gradio; `build_app` lays out the page; `serve` starts it on this machine only, with analytics off.
Uploads, cut clips and Gradio's copies of them are deleted when the server stops.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from mmv_tf.data.synth import DIGIT_WORDS
from mmv_tf.errors import InputError
from mmv_tf.spaces import model_pair_space

# Before gradio is imported: no usage statistics, no Hugging Face telemetry, no version check.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

MAX_UPLOAD_MB = 50
# Gradio deletes the uploads and its copies of the clips every hour once a day old, and all of
# them when the server stops.
CACHE_CHECK_SECONDS = 3600
CACHE_MAX_AGE_SECONDS = 24 * 3600
TARGETS = ("video", "audio", "text")
AUTO_SPACE = "auto"


@dataclasses.dataclass(frozen=True)
class ClipHit:
    rank: int
    score: float
    video_id: str
    start: float
    end: float
    caption: str
    clip: str | None  # a playable mp4 around the hit; None where the source video is gone
    gone: str | None = None  # the source video's path, where it is gone

    @property
    def label(self) -> str:
        said = f' · "{self.caption}"' if self.caption else ""
        return f"#{self.rank} {self.score:.3f} · {self.video_id} {self.start:.1f}-{self.end:.1f} s{said}"


class SearchService:
    """An exported model and an index of the same spaces; `query` returns ranked, playable hits."""

    def __init__(self, model_path: str | Path, index_path: str | Path, clip_cache: str | Path,
                 image_model_path: str | Path | None = None, probe_path: str | Path | None = None):
        from mmv_tf.index import SearchIndex
        from mmv_tf.saved_model import ExportedModel

        self.index = SearchIndex(index_path)
        self.model = ExportedModel(model_path)
        self.index.check_model(self.model)
        self.image_model = None
        if image_model_path is not None:  # a deflated image model: images land where videos do
            self.image_model = ExportedModel(image_model_path)
            if self.image_model.metadata["spaces"].get("image") != self.model.metadata["spaces"]["video"]:
                raise InputError(f"{image_model_path} is not a deflated model of the video model's "
                                 f"spaces {self.model.metadata['spaces']['video']}")
        self.probe = None  # (LinearProbe, info) of `mmv-tf classify fit` on the image model
        if probe_path is not None:
            from mmv_tf.classify import load_probe

            if self.image_model is None:
                raise InputError("a probe classifies images: give the image model it was fitted on too")
            self.probe = load_probe(probe_path)
            fitted_on = Path(self.probe[1]["model"]).resolve()
            if fitted_on != self.image_model.path.resolve():
                raise InputError(f"{probe_path} was fitted on {fitted_on}, not on the image model "
                                 f"{self.image_model.path}")
        self.clip_cache = Path(clip_cache)
        self.sources = {item["video_id"]: item["source"] for item in self.index.items["windows"]}

    def spaces(self) -> list[str]:
        return sorted({s for spaces in self.model.metadata["spaces"].values() for s in spaces})

    def pairs(self) -> str:
        """Where the model compares each pair, e.g. "audio-video in va, text-video in vat, ..."."""
        pairs = [(a, b, model_pair_space(self.model.metadata, a, b))
                 for a, b in (("audio", "video"), ("text", "video"), ("text", "audio"))]
        return ", ".join(f"{a}-{b} in {space}" for a, b, space in pairs if space)

    def summary(self) -> dict:
        """What the model panel shows: the model's metadata and what the index holds."""
        return {"model": self.model.metadata,
                "index": {"path": str(self.index.path), "videos": len(self.sources),
                          "windows": len(self.index.items["windows"]),
                          "captions": len(self.index.items["captions"])}}

    def query(self, modality: str, value, target: str = "video", space: str | None = None,
              k: int = 10) -> tuple[str, list[ClipHit]]:
        """(space, hits) for a text or a media file path `value` of `modality`."""
        from mmv_tf.search import embed_query, search

        from .clips import cut_clip

        if value is None or (modality == "text" and not str(value).strip()):
            raise InputError(f"give a {modality} query first")
        if modality != "text":
            check_upload(Path(value))
        if modality == "image":
            modality, query = "video", self._embed_image(Path(value))  # compared as a still video
        else:
            modality, query = embed_query(self.model, **{modality: value})
        space, hits = search(self.model, self.index, modality, query, target, int(k), space)
        results = []
        for hit in hits:
            item = hit.item
            source = self.sources.get(item["video_id"])
            clip, gone = None, None
            if source and Path(source).is_file():
                clip = str(cut_clip(source, item["start"], item["end"], self.clip_cache))
            else:
                gone = str(source)
            results.append(ClipHit(hit.rank, hit.score, item["video_id"], item["start"], item["end"],
                                   item.get("caption") or item.get("text") or "", clip, gone))
        return space, results

    def _embed_image(self, path: Path) -> dict:
        from mmv_tf.export import space_embeddings

        return {s: v[0] for s, v in space_embeddings(self._image_outputs(path)).items()}

    def _image_outputs(self, path: Path) -> dict[str, np.ndarray]:
        """The image model's outputs `{name: [1, D]}` for the picture at `path`."""
        from mmv_tf.images import load_images

        if self.image_model is None:
            raise InputError("pictures need a deflated image model (mmv-tf app --image-model)")
        loaded = load_images([path], self.image_model.image_size)
        if not loaded.paths:
            raise InputError(f"{path.name}: not a readable image")
        return self.image_model.embed_images(loaded.images)


    def classify(self, path: str | Path | None, class_names: str = ", ".join(DIGIT_WORDS),
                 use_probe: bool = False, top: int = 5) -> list[tuple[str, float]]:
        """The `top` (class, score) of an image, best first: zero-shot over the comma-separated
        `class_names` (cosine similarity in the image-text space), or the probe's decision scores."""
        from mmv_tf.classify import class_columns, zero_shot_scores, zero_shot_space

        if path is None:
            raise InputError("give a picture first")
        check_upload(Path(path))
        embedded = self._image_outputs(Path(path))
        if use_probe:
            if self.probe is None:
                raise InputError("no probe: start the app with --probe (from mmv-tf classify fit)")
            probe, info = self.probe
            scores = class_columns(probe.decision_function(embedded[info["feature"]]))[0]
            names = [info["classes"][c] for c in probe.classes]
        else:
            names = [name.strip() for name in class_names.split(",") if name.strip()]
            if len(names) < 2:
                raise InputError("give two or more class names, separated by commas")
            space = zero_shot_space(self.image_model)
            scores = zero_shot_scores(self.image_model, embedded[space], names)[0]
        order = np.argsort(-scores, kind="stable")[:top]
        return [(names[i], float(scores[i])) for i in order]


def check_upload(path: Path) -> None:
    """Refuse a missing, empty or oversized upload before decoding it."""
    if not path.is_file() or path.stat().st_size == 0:
        raise InputError(f"{path.name}: the upload is missing or empty")
    if path.stat().st_size > MAX_UPLOAD_MB * 2**20:
        raise InputError(f"{path.name}: {path.stat().st_size / 2**20:.0f} MB is over the "
                         f"{MAX_UPLOAD_MB} MB limit")


def _fonts_of_this_machine():
    """A theme that names only fonts the browser has, so the page loads nothing from elsewhere."""
    import gradio as gr

    return gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                             font_mono=["ui-monospace", "monospace"])


def build_app(service: SearchService):
    """The page: query tabs (text, audio, video), target and space, a gallery of clips, a table."""
    import gradio as gr

    def run(modality: str):
        def handler(value, target, space, k):
            try:
                used, hits = service.query(modality, value, target,
                                           None if space == AUTO_SPACE else space, k)
            except InputError as error:  # bad or oversized upload, empty query, space mismatch
                raise gr.Error(str(error)) from None
            gallery = [(h.clip, h.label) for h in hits if h.clip]
            table = [[h.rank, round(h.score, 4), h.video_id, h.start, h.end, h.caption] for h in hits]
            status = f"**{len(hits)}** {target} results for the {modality} query, compared in space `{used}`."
            gone = [h.gone for h in hits if h.gone]
            if gone:
                status += (f" {len(gone)} cannot play: their source videos are gone (moved or deleted "
                           f"since `mmv-tf embed`), e.g. `{gone[0]}`.")
            return gallery, table, status
        return handler

    with gr.Blocks(title="mmv-tf search", analytics_enabled=False,
                   delete_cache=(CACHE_CHECK_SECONDS, CACHE_MAX_AGE_SECONDS)) as page:
        gr.Markdown("# mmv-tf cross-modal search\nFind the moments of the corpus that match a "
                    "sentence, a sound or a video clip. Scores are cosine similarities.")
        with gr.Row():
            with gr.Column(scale=1):
                with gr.Tab("Text"):
                    text = gr.Textbox(label="Query", placeholder="a three moving up", lines=1)
                    text_button = gr.Button("Search", variant="primary", elem_id="search-text")
                with gr.Tab("Audio"):
                    audio = gr.Audio(label="Sound (upload or record)", type="filepath",
                                     sources=["upload", "microphone"])
                    audio_button = gr.Button("Search", variant="primary", elem_id="search-audio")
                with gr.Tab("Video"):
                    video = gr.Video(label="Video clip", sources=["upload"], format=None)
                    video_button = gr.Button("Search", variant="primary", elem_id="search-video")
                with gr.Tab("Image", visible=service.image_model is not None):
                    image = gr.Image(label="Picture (deflated model)", type="filepath",
                                     sources=["upload"])
                    image_button = gr.Button("Search", variant="primary", elem_id="search-image")
                target = gr.Radio(list(TARGETS), value="video", label="Find",
                                  info="video or audio: windows of the corpus; text: its captions")
                space = gr.Radio([AUTO_SPACE, *service.spaces()], value=AUTO_SPACE, label="Space",
                                 info=f"auto: where the model compares the pair ({service.pairs()})")
                k = gr.Slider(1, 50, value=10, step=1, label="Results")
                with gr.Accordion("Model and index", open=False):
                    gr.JSON(json.loads(json.dumps(service.summary())), label="metadata")
            with gr.Column(scale=2):
                status = gr.Markdown("Type a query and press Search.", elem_id="status")
                gallery = gr.Gallery(label="Best matches", columns=4, height="auto",
                                     elem_id="results", object_fit="contain")
                table = gr.Dataframe(headers=["rank", "score", "video", "start", "end", "caption"],
                                     label="Ranked results", interactive=False)
        if service.image_model is not None:
            _classification_row(service)
        outputs = [gallery, table, status]
        options = [target, space, k]
        for modality, box, button in (("text", text, text_button), ("audio", audio, audio_button),
                                      ("video", video, video_button), ("image", image, image_button)):
            button.click(run(modality), [box, *options], outputs, api_name=f"search_{modality}")
        text.submit(run("text"), [text, *options], outputs, api_name=False)
    return page


ZERO_SHOT, PROBE = "zero-shot by class names", "linear probe"


def _classification_row(service: SearchService) -> None:
    """Classify a picture with the image model: zero-shot over typed class names, or the probe;
    the top classes as a bar chart."""
    import gradio as gr
    import pandas as pd

    def classify(picture, names, method):
        try:
            ranked = service.classify(picture, names, use_probe=method == PROBE)
        except InputError as error:
            raise gr.Error(str(error)) from None
        what = "cosine similarity" if method == ZERO_SHOT else "probe score"
        status = f"**{ranked[0][0]}** is the top class ({method}, {what} {ranked[0][1]:.3f})."
        return pd.DataFrame(ranked, columns=["class", "score"]), status

    gr.Markdown("## Classify a picture\nWith the deflated image model: zero-shot over the class "
                "names you type, or a linear probe from `mmv-tf classify fit`.")
    with gr.Row():
        with gr.Column(scale=1):
            picture = gr.Image(label="Picture", type="filepath", sources=["upload"],
                               elem_id="classify-picture")
            names = gr.Textbox(label="Class names (zero-shot), separated by commas",
                               value=", ".join(DIGIT_WORDS))
            methods = [ZERO_SHOT] + ([PROBE] if service.probe is not None else [])
            method = gr.Radio(methods, value=methods[-1], label="Classifier")
            button = gr.Button("Classify", variant="primary", elem_id="classify")
        with gr.Column(scale=2):
            verdict = gr.Markdown("Upload a picture and press Classify.", elem_id="classify-status")
            chart = gr.BarPlot(x="class", y="score", sort="-y", label="Top classes",
                               elem_id="class-scores")
    button.click(classify, [picture, names, method], [chart, verdict], api_name="classify")


def _removes_when_stopped(folder: Path):
    """A FastAPI lifespan that deletes `folder` when the server shuts down (`page.close()`, Ctrl+C)."""
    @contextlib.asynccontextmanager
    async def lifespan(_app):
        try:
            yield
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    return lifespan


def serve(model_path: str | Path, index_path: str | Path, host: str = "127.0.0.1",
          port: int | None = None, block: bool = True, image_model_path: str | Path | None = None,
          probe_path: str | Path | None = None):
    """Start the app; with `block=False` return (page, url) and leave it running in a thread
    (`page.close()` stops it). The clips it cuts, and the uploads, are deleted when it stops."""
    clip_cache = Path(tempfile.mkdtemp(prefix="mmv-tf-clips-"))
    running = False
    try:
        service = SearchService(model_path, index_path, clip_cache, image_model_path, probe_path)
        page = build_app(service)
        page.queue(default_concurrency_limit=1)  # one model: queries take turns
        _, url, _ = page.launch(server_name=host, server_port=port, share=False, inbrowser=False,
                                max_file_size=f"{MAX_UPLOAD_MB}mb", allowed_paths=[],
                                enable_monitoring=False, ssr_mode=False, footer_links=[],
                                show_error=True, prevent_thread_lock=True, quiet=not block,
                                theme=_fonts_of_this_machine(),
                                app_kwargs={"lifespan": _removes_when_stopped(clip_cache)})
        if not block:
            running = True
            return page, url
        try:
            page.block_thread()  # until Ctrl+C
        finally:
            page.close(verbose=False)  # the server's shutdown deletes the uploads and copies
        return page, url
    finally:
        if not running:
            shutil.rmtree(clip_cache, ignore_errors=True)
