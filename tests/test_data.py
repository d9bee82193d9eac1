"""Demo corpus, ingestion into shards, the tf.data reader and `mmv-tf data`."""

import io
import json
import shutil
from pathlib import Path

import av
import media_files
import numpy as np
import pytest
import tensorflow as tf
from conftest import DEMO_VIDEOS
from PIL import Image
from typer.testing import CliRunner

from mmv_tf.cli.main import app
from mmv_tf.data.demo import TEST_ONLY_PHRASING, generate_demo_corpus
from mmv_tf.data.ingest import IngestError, ingest
from mmv_tf.data.media import decode_clip, decode_video, media_duration
from mmv_tf.data.reader import ReaderConfig, read_clips
from mmv_tf.data.shards import parse_video, shard_files
from mmv_tf.data.sources import DecodeSettings, SourceError, list_sources
from mmv_tf.data.stats import shard_stats
from mmv_tf.data.subtitles import read_captions
from mmv_tf.files import OWNER_FILE
from mmv_tf.text.tokenizer import TextTokenizer


@pytest.fixture(scope="session")
def tokenizer():
    words = ["now", "seven", "slides", "left", "right", "up", "down", "digit", "moves"]
    return TextTokenizer(words)


def manifest(folder):
    return [json.loads(line) for line in (folder / "manifest.jsonl").read_text().splitlines()]


def test_demo_videos_decode_at_their_declared_duration_fps_audio_and_subtitles(demo):
    records = manifest(demo)
    assert len(records) == DEMO_VIDEOS
    assert {r["split"] for r in records} == {"train", "val", "test"}
    assert 0 < sum(not r["narrated"] for r in records) < DEMO_VIDEOS / 2
    for record in records[:6]:
        with av.open(str(demo / record["video"])) as container:
            video, audio = container.streams.video[0], container.streams.audio[0]
            assert video.average_rate == 10 and (video.width, video.height) == (96, 96)
            assert audio.rate == 16000 and audio.codec_context.name == "aac"
            assert video.codec_context.name == "h264"
        decoded = decode_video(demo / record["video"], fps=10, short_side=96)
        assert len(decoded.jpeg_frames) == round(record["duration"] * 10)
        assert decoded.has_audio and np.abs(decoded.waveform).max() > 0.1
        assert 8 <= record["duration"] <= 15 and 2 <= len(record["events"]) <= 4
        if record["narrated"]:
            captions, _ = read_captions(demo / record["captions"], record["duration"])
            narrations = [e["narration"] for e in record["events"] if e["narration"]]
            assert [c.text for c in captions] == [n["text"] for n in narrations]
            for caption, event in zip(captions, [e for e in record["events"] if e["narration"]]):
                assert abs(caption.start - event["start"]) <= 1.0 + 1e-6 or caption.start > event["start"]
        else:
            assert record["captions"] is None and not (demo / record["video"]).with_suffix(".srt").exists()


def test_decode_clip_equals_the_same_span_of_the_whole_decoded_video(demo, tmp_path):
    path = demo / manifest(demo)[0]["video"]
    whole = decode_video(path, fps=10, short_side=96)
    assert media_duration(path) == pytest.approx(whole.duration, abs=0.1)
    for start in (0.0, 0.1, 1.6, 4.3, whole.duration - 1.0):  # seeks between keyframes, a clip past the end
        frames, audio = decode_clip(path, start, start + 3.0, fps=10, short_side=96)
        first = round(start * 10)
        jpegs = whole.jpeg_frames[first:first + 30]
        expected = np.stack([np.asarray(Image.open(io.BytesIO(j))) for j in jpegs])
        assert frames.shape == (30, 96, 96, 3)
        assert np.abs(frames[: len(expected)].astype(int) - expected).mean() < 3  # JPEG q90 noise
        assert np.array_equal(frames[len(expected):], np.repeat(frames[len(expected) - 1:len(expected)],
                                                                30 - len(expected), axis=0))
        reference = whole.waveform[round(start * 16000):round(start * 16000) + 48000]
        assert audio.shape == (48000,)
        np.testing.assert_allclose(audio[: len(reference)], reference, atol=1e-4)
    media_files.silent_clip(tmp_path / "silent.mp4", 2.0)
    assert decode_clip(tmp_path / "silent.mp4", 0.5, 1.5)[1] is None


def test_demo_test_split_holds_unseen_digit_images_and_phrasings(demo):
    records = manifest(demo)
    images = {split: {e["image_index"] for r in records if r["split"] == split for e in r["events"]}
              for split in ("train", "val", "test")}
    assert not images["train"] & images["test"] and not images["train"] & images["val"]
    train_text = " ".join(e["narration"]["text"] for r in records if r["split"] == "train"
                          for e in r["events"] if e["narration"])
    assert not any(verb in train_text.split() for verb in TEST_ONLY_PHRASING.verbs)


def pixels(decoded):
    return np.stack([np.asarray(Image.open(io.BytesIO(j))) for j in decoded.jpeg_frames]).astype(float)


def test_demo_is_deterministic_for_a_seed(tmp_path, demo):
    """Same content for a seed: manifests and audio exactly, frames up to H.264 coding noise."""
    generate_demo_corpus(tmp_path, 3, seed=3, progress=False)
    assert manifest(tmp_path) == manifest(demo)[:3]
    for record in manifest(tmp_path):
        again = decode_video(tmp_path / record["video"], 10, 96)
        first = decode_video(demo / record["video"], 10, 96)
        assert np.abs(pixels(again) - pixels(first)).mean() < 3
        np.testing.assert_allclose(again.waveform, first.waveform, atol=1e-4)
        assert (tmp_path / record["video"]).with_suffix(".srt").exists() == bool(record["captions"])
    other = decode_video(demo / manifest(demo)[4]["video"], 10, 96)
    assert np.abs(pixels(other)[:50] - pixels(again)[:50]).mean() > 10  # other videos differ a lot


def test_ingest_then_read_gives_batches_of_the_declared_shapes(demo_shards, tokenizer):
    config = ReaderConfig(num_frames=8, frame_stride=2, crop_size=48, num_candidates=3)
    batch = next(iter(read_clips(demo_shards, tokenizer, config, training=True, batch_size=4)))
    assert batch["video"].shape == (4, 8, 48, 48, 3) and batch["video"].dtype == tf.float32
    assert float(tf.reduce_min(batch["video"])) >= 0.0 and float(tf.reduce_max(batch["video"])) <= 1.0
    assert batch["audio"].shape == (4, config.audio_samples) == (4, 25600)
    assert batch["text"]["token_ids"].shape == (4, 3, 16) and batch["text"]["token_ids"].dtype == tf.int32
    assert batch["text_mask"].shape == (4, 3) and batch["audio_mask"].dtype == tf.bool
    evaluation = list(read_clips(demo_shards, tokenizer, config, training=False, batch_size=5,
                                 split="test"))
    clips = sum(b["video"].shape[0] for b in evaluation)
    test_videos = sum(1 for _ in tf.data.TFRecordDataset(shard_files(demo_shards, "test")))
    assert clips == test_videos * config.eval_windows
    again = list(read_clips(demo_shards, tokenizer, config, training=False, batch_size=5, split="test"))
    np.testing.assert_array_equal(evaluation[0]["video"], again[0]["video"])


def test_training_clips_are_reproducible_for_a_seed(demo_shards, tokenizer):
    config = ReaderConfig(num_frames=4, crop_size=32)
    first, second, other = (next(iter(read_clips(demo_shards, tokenizer, config, training=True,
                                                 batch_size=2, seed=s))) for s in (5, 5, 6))
    np.testing.assert_array_equal(first["video"], second["video"])
    assert not np.array_equal(first["video"], other["video"])


def test_clips_without_narration_get_empty_text_masks(demo, demo_shards, tokenizer):
    silent_ids = {r["id"] for r in manifest(demo) if not r["narrated"]}
    config = ReaderConfig(num_frames=4, crop_size=32, num_candidates=2, eval_windows=1)
    seen = 0
    for batch in read_clips(demo_shards, tokenizer, config, training=False, batch_size=8):
        for video_id, mask, ids in zip(batch["video_id"].numpy(), batch["text_mask"].numpy(),
                                       batch["text"]["token_ids"].numpy()):
            if video_id.decode() in silent_ids:
                assert not mask.any() and not ids.any()
                seen += 1
            else:
                assert mask[0]
    assert seen == len(silent_ids)


def test_frames_and_audio_stay_in_sync(tmp_path, tokenizer):
    """A white frame and a beep at the same instant land on the same frame of the clip."""
    source = tmp_path / "src"
    source.mkdir()
    for name, flash in (("a", 4), ("b", 33), ("c", 17)):
        media_files.beeping_clip(source / f"{name}.mp4", 4.0, flash)
    shards = tmp_path / "shards"
    ingest(source, shards, DecodeSettings(short_side=32), progress=False)
    config = ReaderConfig(num_frames=10, crop_size=32, eval_windows=3)  # windows at frames 0, 15, 30
    flashes = 0
    for batch in read_clips(shards, tokenizer, config, training=False, batch_size=3):
        for video, audio in zip(batch["video"].numpy(), batch["audio"].numpy()):
            bright = video.mean(axis=(1, 2, 3)) > 0.5
            loud = (audio.reshape(10, -1) ** 2).mean(axis=1) > 0.01
            np.testing.assert_array_equal(bright, loud)
            flashes += int(bright.sum())
    assert flashes == 3  # frames 4, 33 and 17 (in the windows at 0, 30 and 15)
    train = next(iter(read_clips(shards, tokenizer, config, training=True, batch_size=8)))
    for video, audio in zip(train["video"].numpy(), train["audio"].numpy()):
        bright = video.mean(axis=(1, 2, 3)) > 0.5
        np.testing.assert_array_equal(bright, (audio.reshape(10, -1) ** 2).mean(axis=1) > 0.01)


def test_bad_files_are_decoded_or_skipped_with_a_reason(tmp_path, tokenizer):
    src = tmp_path / "mixed"
    src.mkdir()
    media_files.beeping_clip(src / "good.mp4", 2.0, 5)
    (src / "good.srt").write_bytes("1\n00:00:00,500 --> 00:00:01,500\nun caf\xe9 noir\n".encode("latin-1"))
    media_files.silent_clip(src / "no_audio.mp4", 1.5)
    (src / "no_audio.vtt").write_text("this is not a subtitle file at all", encoding="utf-8")
    media_files.odd_size_stereo_mkv(src / "odd_stereo.mkv", 1.0)
    media_files.variable_rate_clip(src / "vfr.mkv", [0.0, 0.05, 0.35, 0.4, 0.9])
    (src / "empty.avi").write_bytes(b"")
    (src / "corrupt.mov").write_bytes(np.random.default_rng(0).bytes(5000))
    whole = (src / "good.mp4").read_bytes()
    (src / "truncated.mp4").write_bytes(whole[: len(whole) // 2])
    media_files.odd_size_stereo_mkv(src / "cut.mkv", 2.0)
    cut = (src / "cut.mkv").read_bytes()
    (src / "cut.mkv").write_bytes(cut[: int(len(cut) * 0.6)])

    out = tmp_path / "shards"
    summary = ingest(src, out, DecodeSettings(short_side=32), videos_per_shard=3, progress=False)
    assert summary["complete"] and summary["videos"] == 5 and summary["skipped"] == 3
    report = {line["id"]: line for line in map(json.loads, (out / "report.jsonl").read_text().splitlines())}
    for skipped in ("empty", "corrupt", "truncated"):
        assert report[skipped]["status"] == "skipped", report[skipped]
    assert "empty" in report["empty"]["reason"]
    assert any("not UTF-8" in note for note in report["good"]["notes"])
    assert any("no audio stream" in note for note in report["no_audio"]["notes"])
    assert any("captions skipped" in note for note in report["no_audio"]["notes"])
    assert any("decoding stopped" in note for note in report["cut"]["notes"])  # kept what decoded
    assert [p.name for p in out.glob(".*")] == [OWNER_FILE]  # no partial files left
    videos = {}
    for serialized in tf.data.TFRecordDataset(shard_files(out)):
        parsed = parse_video(serialized)
        videos[parsed["video/id"].numpy().decode()] = parsed
    assert set(videos) == {"good", "no_audio", "odd_stereo", "vfr", "cut"}
    assert 0 < videos["cut"]["frames"].shape[0] < 20
    assert [c.decode() for c in videos["good"]["caption/string"].numpy()] == ["un café noir"]
    assert int(videos["no_audio"]["WAVEFORM/present"]) == 0
    assert not videos["no_audio"]["waveform"].numpy().any()
    assert int(videos["odd_stereo"]["image/height"]) == 32 and int(videos["odd_stereo"]["image/width"]) == 50
    assert int(videos["odd_stereo"]["WAVEFORM/present"]) == 1
    assert videos["vfr"]["frames"].shape[0] == 10
    brightness = [int(np.asarray(Image.open(io.BytesIO(j))).mean()) // 10
                  for j in videos["vfr"]["frames"].numpy()]
    assert brightness[1:4] == [brightness[1]] * 3 and brightness[4] > brightness[3]
    batch = next(iter(read_clips(out, tokenizer, ReaderConfig(num_frames=4, crop_size=16),
                                 training=False, batch_size=64)))
    masks = dict(zip([v.decode() for v in batch["video_id"].numpy()], batch["audio_mask"].numpy()))
    assert masks["no_audio"] == False and masks["good"] == True  # noqa: E712


def test_ingest_resumes_after_an_interruption(demo, tmp_path):
    out = tmp_path / "shards"
    shutil.copytree(demo, tmp_path / "demo")
    ingest(tmp_path / "demo", out, DecodeSettings(short_side=32), videos_per_shard=5, progress=False)
    shards = shard_files(out)
    first_bytes = {s: Path(s).read_bytes() for s in shards}
    mtimes = {s: (out / s).stat().st_mtime_ns for s in shards}
    lost = shards[1]
    (out / lost).unlink()  # as if the run died before writing it
    (out / ".train-00009.tfrecord.partial").write_bytes(b"half")
    ingest(tmp_path / "demo", out, DecodeSettings(short_side=32), videos_per_shard=5, progress=False)
    assert shard_files(out) == shards and [p.name for p in out.glob(".*")] == [OWNER_FILE]
    assert Path(lost).read_bytes() == first_bytes[lost]
    assert all((out / s).stat().st_mtime_ns == mtimes[s] for s in shards if s != lost)
    with pytest.raises(IngestError, match="other settings"):
        ingest(tmp_path / "demo", out, DecodeSettings(short_side=48), videos_per_shard=5, progress=False)


def test_sources_from_folders_and_manifests(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "test").mkdir()
    media_files.silent_clip(tmp_path / "train" / "a.mp4", 0.5)
    media_files.silent_clip(tmp_path / "test" / "b.webm.mp4", 0.5)
    (tmp_path / "train" / "a.txt").write_text("a whole-video caption")
    sources = list_sources(tmp_path)
    assert [(s.video_id, s.split) for s in sources] == [("train__a", "train"), ("test__b.webm", "test")]
    assert sources[0].captions == tmp_path / "train" / "a.txt"
    manifest_file = tmp_path / "list.jsonl"
    manifest_file.write_text('{"video": "train/a.mp4", "split": "val", "labels": [3]}\n')
    (source,) = list_sources(manifest_file)
    assert source.split == "val" and source.labels_json == "[3]"
    manifest_file.write_text('{"path": "oops.mp4"}\n')
    with pytest.raises(SourceError, match=r"list\.jsonl:1: not a manifest record"):
        list_sources(manifest_file)
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="no videos found"):
        list_sources(tmp_path / "empty")


def test_stats_count_videos_hours_audio_and_text_per_split(demo, demo_shards):
    stats = shard_stats(demo_shards)
    records = manifest(demo)
    for split, row in stats["splits"].items():
        mine = [r for r in records if r["split"] == split]
        assert row["videos"] == len(mine)
        assert row["with_text"] == sum(r["narrated"] for r in mine)
        assert row["without_text"] == sum(not r["narrated"] for r in mine)
        assert row["with_audio"] == len(mine)
        assert row["hours"] == pytest.approx(sum(r["duration"] for r in mine) / 3600, abs=2e-3)
    assert stats["sample_captions"]


def test_data_commands_run_end_to_end(tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["data", "demo", "--out", str(tmp_path / "demo"), "--videos", "4",
                                 "--seed", "1"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["data", "ingest", str(tmp_path / "demo"), "--out", str(tmp_path / "s"),
                                 "--size", "32"])
    assert result.exit_code == 0, result.output
    assert "4 videos in" in result.output
    result = runner.invoke(app, ["data", "stats", str(tmp_path / "s"), "--json"])
    assert result.exit_code == 0
    assert sum(row["videos"] for row in json.loads(result.output)["splits"].values()) == 4
    result = runner.invoke(app, ["data", "ingest", str(tmp_path / "missing"), "--out", str(tmp_path / "x")])
    assert result.exit_code == 1 and "neither a folder nor a manifest" in result.output
