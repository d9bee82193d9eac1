"""The search app and `mmv-tf demo`: the demo workspace, the running app driven by gradio_client,
and a headless Chromium that types a query and screenshots the results."""

import io
import json
import shutil
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
from gradio_client import Client, handle_file
from PIL import Image
from typer.testing import CliRunner

from mmv_tf.app import search_app
from mmv_tf.app.workspace import prepare_demo
from mmv_tf.cli.main import app
from mmv_tf.data.media import decode_clip, decode_video
from mmv_tf.errors import InputError
from mmv_tf.saved_model import DEFAULT_MODEL


@pytest.fixture(scope="module")
def workspace(demo, tmp_path_factory):
    """A demo workspace over the 20-video test corpus, embedded (all splits) with the default model,
    with its naive deflation as the image model."""
    root = tmp_path_factory.mktemp("workspace")
    (root / "corpus").symlink_to(demo, target_is_directory=True)
    said = []
    space = prepare_demo(root, DEFAULT_MODEL, split=None, deflation="naive", say=said.append)
    steps = [line for line in said if not line.startswith("sampling")]  # deflation's own notes
    assert [line.split(":")[0] for line in steps] == ["corpus", "embeddings", "index", "image model"]
    assert "reusing" in steps[0] and "embedding" in steps[1] and "indexing" in steps[2]
    assert "deflating" in steps[3]
    return space


@pytest.fixture(scope="module")
def digit_still(workspace, tmp_path_factory):
    """(picture, digit word): a still demo digit of the test split that zero-shot classification with
    the workspace's image model gets right, as the library computes it."""
    from mmv_tf.data.demo import write_digit_images

    stills = write_digit_images(tmp_path_factory.mktemp("stills") / "digits", "test", per_class=3)
    service = search_app.SearchService(DEFAULT_MODEL, workspace.index, stills.parent / "clips",
                                       workspace.image_model)
    for picture in sorted(stills.glob("*/*.png")):
        if service.classify(picture)[0][0] == picture.parent.name:
            return picture, picture.parent.name
    pytest.fail("zero-shot classification gets none of 30 still digits right")


@pytest.fixture(scope="module")
def server(workspace):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    page, url = search_app.serve(DEFAULT_MODEL, workspace.index, port=port, block=False,
                                 image_model_path=workspace.image_model)
    yield url
    page.close()


@pytest.fixture(scope="module")
def client(server):
    return Client(server, verbose=False)


def corpus_ids(demo) -> set[str]:
    return {json.loads(line)["id"] for line in (demo / "manifest.jsonl").read_text().splitlines()}


def check_ranked_clips(result, demo, k):
    gallery, table, status = result
    rows = table["data"]
    assert len(rows) == len(gallery) == k
    assert [r[0] for r in rows] == list(range(1, k + 1))
    scores = [r[1] for r in rows]
    assert scores == sorted(scores, reverse=True) and all(-1 <= s <= 1 for s in scores)
    assert {r[2] for r in rows} <= corpus_ids(demo)
    for row, item in zip(rows, gallery):
        assert item["video"].endswith(".mp4") and f"#{row[0]} " in item["caption"]
    clip = decode_video(gallery[0]["video"])  # a playable clip: 3 s around the hit, with sound
    assert clip.duration == pytest.approx(3.0, abs=0.15) and clip.has_audio
    return rows, status


def test_demo_workspace_is_reused_and_remade_for_another_model(workspace, small_savedmodel):
    index_made = (workspace.index / "index.json").stat().st_mtime_ns
    said = []
    prepare_demo(workspace.root, DEFAULT_MODEL, split=None, deflation="naive", say=said.append)
    assert all("reusing" in line for line in said) and len(said) == 4
    assert (workspace.index / "index.json").stat().st_mtime_ns == index_made

    other = workspace.root.parent / "other"
    (other / "corpus").parent.mkdir()
    (other / "corpus").symlink_to(workspace.corpus, target_is_directory=True)
    shutil.copytree(workspace.embeddings, other / "embeddings")
    said = []
    prepare_demo(other, small_savedmodel[1], split="test", deflation=None, say=said.append)
    assert "embedding the test split" in said[1] and "indexing" in said[2]
    index = json.loads((other / "index" / "index.json").read_text())
    assert index["model"]["spaces"]["video"]["vat"] == 16  # the small model's, not the default's


def test_demo_generates_a_missing_corpus(demo, tmp_path, monkeypatch):
    calls = []

    def fake_generate(out, videos, seed):
        calls.append((videos, seed))
        shutil.copytree(demo, out)

    monkeypatch.setattr("mmv_tf.data.demo.generate_demo_corpus", fake_generate)
    with pytest.raises(InputError, match="no-model"):  # the corpus is made before the model loads
        prepare_demo(tmp_path / "ws", tmp_path / "no-model", videos=40, seed=5, say=lambda _: None)
    assert calls == [(40, 5)] and (tmp_path / "ws" / "corpus" / "manifest.jsonl").is_file()


def test_cli_demo_prepare_only_and_app_refusals(workspace):
    runner = CliRunner()
    result = runner.invoke(app, ["demo", "--dir", str(workspace.root), "--split", "all",
                                 "--deflation", "naive", "--prepare-only"])
    assert result.exit_code == 0, result.output
    assert result.output.count("reusing") == 4
    result = runner.invoke(app, ["app", "--index", str(workspace.root / "no-index")])
    assert result.exit_code == 1 and "not a finished index" in result.output
    assert "127.0.0.1" in runner.invoke(app, ["app", "--help"]).output


def test_hits_whose_source_video_is_gone_say_so(workspace, tmp_path):
    service = search_app.SearchService(DEFAULT_MODEL, workspace.index, tmp_path / "clips")
    gone = tmp_path / "moved" / "video.mp4"
    service.sources = dict.fromkeys(service.sources, str(gone))
    _, hits = service.query("text", "a seven moves to the left", k=3)
    assert [(h.clip, h.gone) for h in hits] == [(None, str(gone))] * 3


def test_text_query_ranks_corpus_clips(client, demo):
    rows, status = check_ranked_clips(
        client.predict("a seven moves to the left", "video", "auto", 10, api_name="/search_text"),
        demo, 10)
    assert "space `vat`" in status
    captions = client.predict("a seven moves to the left", "text", "auto", 5,
                              api_name="/search_text")[1]["data"]
    assert len(captions) == 5 and all(r[5] for r in captions)  # captions carry their text


def test_audio_and_video_queries_rank_corpus_clips(client, demo, tmp_path):
    source = demo / "videos" / "demo_00003.mp4"
    rows, status = check_ranked_clips(
        client.predict(handle_file(str(source)), "video", "auto", 5, api_name="/search_audio"),
        demo, 5)
    assert "space `va`" in status
    query = first_window_of(source, tmp_path / "query.mp4")
    rows, status = check_ranked_clips(
        client.predict(handle_file(str(query)), "video", "va", 5, api_name="/search_video"),
        demo, 5)
    assert rows[0][2:5] == ["demo_00003", 0.0, 1.6]  # the window the query was cut from
    picture = tmp_path / "frame.png"
    Image.fromarray(decode_clip(query, 0.8, 0.9)[0][0]).save(picture)
    rows, status = check_ranked_clips(
        client.predict(handle_file(str(picture)), "video", "auto", 5, api_name="/search_image"),
        demo, 5)
    assert "image query" in status and "space `va`" in status  # a still, compared as a video


def test_pictures_are_classified_zero_shot_by_typed_names(client, digit_still):
    picture, digit = digit_still
    chart, status = client.predict(handle_file(str(picture)), "zero, one, two, three, four, five, six, "
                                   "seven, eight, nine", "zero-shot by class names", api_name="/classify")
    rows = chart["value"]["data"] if "value" in chart else chart["data"]
    assert len(rows) == 5 and rows[0][0] == digit and status.startswith(f"**{digit}** is the top class")
    scores = [row[1] for row in rows]
    assert scores == sorted(scores, reverse=True) and all(-1 <= s <= 1 for s in scores)
    _, status = client.predict(handle_file(str(picture)), "cat, dog", "zero-shot by class names",
                               api_name="/classify")
    assert status.split("**")[1] in ("cat", "dog")
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="two or more class names"):
        client.predict(handle_file(str(picture)), "seven", "zero-shot by class names", api_name="/classify")


def test_a_probe_classifies_pictures_in_the_app(workspace, digit_still, tmp_path):
    from mmv_tf.classify import fit_classifier

    picture, digit = digit_still
    fit_classifier(picture.parent.parent, workspace.image_model, tmp_path / "probe", held_out=0.34,
                   note=lambda _: None)
    service = search_app.SearchService(DEFAULT_MODEL, workspace.index, tmp_path / "clips",
                                       workspace.image_model, tmp_path / "probe")
    ranked = service.classify(picture, use_probe=True, top=10)
    assert sorted(name for name, _ in ranked) == sorted(p.name for p in picture.parent.parent.iterdir()
                                                        if p.is_dir())
    other = shutil.copytree(workspace.image_model, tmp_path / "other-image-model")
    with pytest.raises(InputError, match="was fitted on .*image-model, not on the image model"):
        search_app.SearchService(DEFAULT_MODEL, workspace.index, tmp_path / "clips", other,
                                 tmp_path / "probe")


def first_window_of(source: Path, out: Path) -> Path:
    """The first 1.6 s (one window of the default model) of a corpus video, as its own file."""
    from mmv_tf.data.media import write_mp4

    frames, waveform = decode_clip(source, 0.0, 1.6, 10.0, 96)
    write_mp4(out, frames, 10, waveform, 16000)
    return out


def test_bad_queries_get_a_message(client, tmp_path, monkeypatch):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="give a text query first"):
        client.predict("   ", "video", "auto", 10, api_name="/search_text")
    with pytest.raises(AppError, match="do not share space 'va'"):
        client.predict("a three", "video", "va", 10, api_name="/search_text")
    fake = tmp_path / "notes.wav"
    fake.write_text("not a sound")
    with pytest.raises(AppError, match="notes"):
        client.predict(handle_file(str(fake)), "video", "auto", 10, api_name="/search_audio")
    monkeypatch.setattr(search_app, "MAX_UPLOAD_MB", 0.001)
    with pytest.raises(AppError, match="over the 0.001 MB limit"):
        client.predict(handle_file(str(demo_video(tmp_path))), "video", "auto", 3,
                       api_name="/search_video")


def demo_video(tmp_path) -> Path:
    from mmv_tf.data.media import write_mp4

    path = tmp_path / "clip.mp4"
    write_mp4(path, np.full((20, 64, 64, 3), 90, np.uint8), 10)
    return path


def test_serves_only_clips_on_this_machine(server, client, demo):
    assert server.startswith("http://127.0.0.1:")
    gallery = client.predict("a three moves up", "video", "auto", 1, api_name="/search_text")[0]
    clip_url = f"{server}gradio_api/file={gallery[0]['video']}"
    assert urllib.request.urlopen(clip_url).status == 200
    for private in (DEFAULT_MODEL / "mmv_tf.json", demo / "manifest.jsonl"):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{server}gradio_api/file={private}")
        assert refused.value.code == 403


def colourful_share(png: bytes, box: dict) -> float:
    """Share of pixels in `box` (x, y, width, height) whose channels differ by over 20: the clips'
    textured frames, not the page's white and grey."""
    from PIL import Image

    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), np.int16)
    x, y, w, h = (int(box[key]) for key in ("x", "y", "width", "height"))
    region = pixels[y:y + h, x:x + w]
    return float(np.mean(region.max(axis=-1) - region.min(axis=-1) > 20))


def test_browser_text_query_shows_clips_and_a_still_digit_is_classified(server, digit_still, tmp_path):
    """Playwright driving Debian's chromium (no browser download): type a query, see ten clips;
    upload a still digit, see its class on top of the chart."""
    from playwright.sync_api import sync_playwright

    requested = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=shutil.which("chromium"),
                                             args=["--no-sandbox", "--mute-audio"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1300})
            page.on("request", lambda request: requested.append(request.url))
            page.goto(server)
            results = page.locator("#results")
            results.wait_for()
            before = colourful_share(page.screenshot(), results.bounding_box())
            page.locator("textarea").first.fill("a three moves up")
            page.locator("#search-text").click()
            page.wait_for_function("document.querySelectorAll('#results video').length > 0")
            shown = page.locator("#results video").count()
            deadline = time.monotonic() + 30
            while True:  # until the clips' first frames are painted
                png = page.screenshot()
                after = colourful_share(png, results.bounding_box())
                if after > 0.3 or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            (tmp_path / "app_screenshot.png").write_bytes(png)
            status = page.locator("#status").inner_text()
            page.locator("#classify-picture input[type=file]").set_input_files(str(digit_still[0]))
            page.locator("#classify-picture img").first.wait_for()  # uploaded
            page.locator("#classify").click()
            page.wait_for_function("document.querySelector('#classify-status').innerText"
                                   ".includes('is the top class')")
            verdict = page.locator("#classify-status").inner_text()
            page.locator("#class-scores").screenshot(path=tmp_path / "classify_screenshot.png")
        finally:
            browser.close()
    hosts = {urlsplit(url).netloc for url in requested
             if urlsplit(url).scheme in ("http", "https", "ws", "wss")}  # not data: or blob:
    assert shown == 10 and status.startswith("10 video results")
    assert verdict.startswith(f"{digit_still[1]} is the top class"), verdict
    assert before < 0.02 and after > 0.3, (before, after)
    assert hosts == {server.split("/")[2]}  # the page loads nothing from elsewhere
