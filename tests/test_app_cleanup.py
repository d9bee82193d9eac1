"""The search app deletes what it keeps on disk (uploads, cut clips, Gradio's copies of them) when
it stops: `page.close()` after `serve(block=False)`, or Ctrl+C in a blocking `serve`. A stand-in
service replaces the model and index; the clips are cut with the app's own `cut_clip`."""

import _thread
import signal
import socket
import threading
import time
from pathlib import Path

import gradio
import numpy as np
import pytest
from gradio_client import Client, handle_file

from mmv_tf.app import search_app
from mmv_tf.app.clips import cut_clip
from mmv_tf.data.media import write_mp4


@pytest.fixture(scope="module")
def source_video(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "source.mp4"
    frames = np.random.default_rng(0).integers(0, 255, (30, 64, 64, 3), dtype=np.uint8)
    write_mp4(path, frames, 10, np.zeros(48000, np.float32), 16000)
    return path


@pytest.fixture
def app_files(tmp_path, monkeypatch, source_video):
    """Gradio's upload folder moved under tmp_path, and the stand-in services that serve makes."""
    uploads = tmp_path / "gradio"
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(uploads))
    made = []

    class StandInService:
        image_model = None

        def __init__(self, model_path, index_path, clip_cache, image_model_path=None, probe_path=None):
            self.clip_cache = Path(clip_cache)
            self.queries = []
            made.append(self)

        def spaces(self):
            return ["va", "vat"]

        def pairs(self):
            return "audio-video in va, text-video in vat"

        def summary(self):
            return {"model": {}, "index": {}}

        def query(self, modality, value, target="video", space=None, k=10):
            self.queries.append(value)
            clip = cut_clip(source_video, 0.5, 1.5, self.clip_cache)
            return "vat", [search_app.ClipHit(1, 0.5, "source", 0.5, 1.5, "", str(clip))]

    monkeypatch.setattr(search_app, "SearchService", StandInService)
    return uploads, made


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def use_the_app(url: str, upload: Path, service) -> list[Path]:
    """A text and a video query; the files they left: the clip, its copy and the upload."""
    client = Client(url, verbose=False, download_files=False)  # the app's paths, not copies here
    shown = client.predict("a three", "video", "auto", 1, api_name="/search_text")[0][0]["video"]
    client.predict(handle_file(str(upload)), "video", "auto", 1, api_name="/search_video")
    clip = next(service.clip_cache.glob("*.mp4"))
    kept = [clip, *(Path(p) for p in service.queries[1:]), Path(shown["path"])]
    assert all(path.is_file() for path in kept)
    return kept


def files_under(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


def test_closing_the_app_deletes_uploads_and_clips(app_files, source_video):
    uploads, made = app_files
    page, url = search_app.serve("model", "index", port=free_port(), block=False)
    try:
        kept = use_the_app(url, source_video, made[0])
        assert files_under(uploads)  # the upload and the copy of the clip shown
    finally:
        page.close()
    assert not made[0].clip_cache.exists()
    assert [p for p in kept if p.exists()] == [] and files_under(uploads) == []


def test_ctrl_c_stops_a_blocking_app_and_deletes_uploads_and_clips(app_files, source_video, monkeypatch):
    uploads, made = app_files
    port = free_port()
    kept, failed = [], []
    blocking = threading.Event()  # serve waits in block_thread, where Ctrl+C is for
    block_thread = gradio.Blocks.block_thread

    def signalled_block_thread(page):
        blocking.set()
        block_thread(page)

    monkeypatch.setattr(gradio.Blocks, "block_thread", signalled_block_thread)

    def query_then_interrupt():
        try:
            deadline = time.monotonic() + 60
            while not (made and made[0].clip_cache.exists() and port_open(port)):
                if time.monotonic() > deadline:
                    raise TimeoutError("the app did not start")
                time.sleep(0.2)
            kept.extend(use_the_app(f"http://127.0.0.1:{port}/", source_video, made[0]))
            # A Ctrl+C before block_thread (a loaded machine) would land in Gradio's start-up code.
            if not blocking.wait(60):
                raise TimeoutError("serve never waited in block_thread")
            time.sleep(0.3)
        except BaseException as error:  # reported by the test, not lost in the thread
            failed.append(error)
        finally:
            _thread.interrupt_main()  # Ctrl+C

    helper = threading.Thread(target=query_then_interrupt, daemon=True)
    # Ctrl+C raises KeyboardInterrupt, whatever handler an earlier test's library left installed.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        helper.start()
        search_app.serve("model", "index", port=port, block=True)
    finally:
        signal.signal(signal.SIGINT, previous)
    helper.join(10)
    assert not failed, failed
    assert kept and not made[0].clip_cache.exists()
    assert [p for p in kept if p.exists()] == [] and files_under(uploads) == []


def port_open(port: int) -> bool:
    with socket.socket() as connection:
        return connection.connect_ex(("127.0.0.1", port)) == 0


def test_a_failed_start_leaves_no_clip_folder(app_files, monkeypatch):
    _, made = app_files

    def refuse(*args, **kwargs):
        raise OSError("port taken")

    monkeypatch.setattr(gradio.Blocks, "launch", refuse)
    with pytest.raises(OSError, match="port taken"):
        search_app.serve("model", "index", port=free_port(), block=False)
    assert not made[0].clip_cache.exists()
