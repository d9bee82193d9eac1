"""Labelled folders cut from the demo corpus (`mmv_tf.data.exports`, `mmv-tf data clips/captions/sounds`)."""

import json
import wave
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from mmv_tf.cli.main import app
from mmv_tf.data.exports import write_captioned_clips, write_labelled_clips, write_labelled_sounds
from mmv_tf.data.media import decode_audio, decode_clip, media_duration
from mmv_tf.data.synth import DIGIT_WORDS
from mmv_tf.errors import InputError
from mmv_tf.files import OutputError

FPS, SIZE, RATE = 10, 96, 16000  # DemoSettings' defaults


def manifest(corpus: Path) -> list[dict]:
    return [json.loads(line) for line in (corpus / "manifest.jsonl").read_text().splitlines()]


def events(corpus: Path, split: str, narrated: bool = False) -> dict[str, tuple[dict, dict]]:
    """{"<id>_e<k>": (record, event)} of the split's events (narrated ones only if `narrated`)."""
    return {f"{r['id']}_e{k}": (r, e) for r in manifest(corpus) if r["split"] == split
            for k, e in enumerate(r["events"]) if e["narration"] or not narrated}


def listed(out: Path, split: str) -> list[str]:
    return (out / f"{split}.txt").read_text().splitlines()


@pytest.fixture(scope="module")
def test_clips(demo, tmp_path_factory):
    out = tmp_path_factory.mktemp("exports") / "clips"
    return out, write_labelled_clips(demo, out, splits=("test",), progress=False)


@pytest.fixture(scope="module")
def sounds(demo, tmp_path_factory):
    out = tmp_path_factory.mktemp("exports") / "sounds"
    return out, write_labelled_sounds(demo, out, progress=False)


def test_one_clip_per_test_event_in_its_digit_folder_listed_in_test_txt(demo, test_clips):
    out, summary = test_clips
    wanted = events(demo, "test")
    assert len(wanted) >= 6  # 3 test videos, 2-4 events each
    lines = listed(out, "test")
    assert summary == {"clips": {"test": len(wanted)}, "out": str(out),
                       "classes": sorted({DIGIT_WORDS[e["digit"]] for _, e in wanted.values()})}
    assert sorted(Path(line).stem for line in lines) == sorted(wanted)
    for line in lines:
        _, event = wanted[Path(line).stem]
        assert line == f"{DIGIT_WORDS[event['digit']]}/{Path(line).name}" and (out / line).is_file()
    assert not (out / "train.txt").exists()
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == summary["classes"]


def test_a_clip_spans_its_event_plus_margins_and_shows_the_corpus_frames_of_that_time(demo, test_clips):
    out, _ = test_clips
    wanted = events(demo, "test")
    for line in listed(out, "test"):
        record, event = wanted[Path(line).stem]
        start, end = max(0, event["start"] - 0.25), min(record["duration"], event["end"] + 0.25)
        assert media_duration(out / line) == pytest.approx(end - start, abs=1 / FPS)
        frames, audio = decode_clip(out / line, 0, end - start, FPS, SIZE, RATE)
        assert frames.shape == (round((end - start) * FPS), SIZE, SIZE, 3) and audio is not None
        middle = len(frames) // 2
        same, _ = decode_clip(demo / record["video"], start + middle / FPS, start + (middle + 1) / FPS,
                              FPS, SIZE, RATE)
        later, _ = decode_clip(demo / record["video"], start + (middle + 4) / FPS,
                               start + (middle + 5) / FPS, FPS, SIZE, RATE)
        difference = np.abs(frames[middle].astype(float) - same[0]).mean()
        assert difference < 4  # two H.264 encodings (about 2 measured)
        assert difference < 0.5 * np.abs(frames[middle].astype(float) - later[0]).mean()  # the digit moved


def test_sounds_are_the_narrations_cut_from_the_corpus_audio_as_16_bit_wav(demo, sounds):
    out, summary = sounds
    per_split = {split: events(demo, split, narrated=True) for split in ("train", "test")}
    assert summary["sounds"] == {split: len(wanted) for split, wanted in per_split.items()}
    assert summary["sounds"]["train"] > 10 and summary["sounds"]["test"] > 2
    assert not (out / "val.txt").exists()
    audio = {}
    for split, wanted in per_split.items():
        lines = listed(out, split)
        assert sorted(Path(line).stem for line in lines) == sorted(wanted)
        for line in lines:
            record, event = wanted[Path(line).stem]
            assert Path(line).parent.name == DIGIT_WORDS[event["digit"]]
            if split != "test":
                continue
            with wave.open(str(out / line)) as sound:
                assert (sound.getnchannels(), sound.getsampwidth(), sound.getframerate()) == (1, 2, RATE)
                samples = np.frombuffer(sound.readframes(sound.getnframes()), "<i2") / 32767
            if record["id"] not in audio:
                audio[record["id"]] = decode_audio(demo / record["video"], RATE)
            said = event["narration"]
            expected = audio[record["id"]][round(said["start"] * RATE):round(said["end"] * RATE)]
            assert len(samples) == len(expected) and np.abs(samples - expected).max() < 1e-3
            assert np.abs(expected).max() > 0.3  # speech, not the background hiss
    assert summary["classes"] == sorted({DIGIT_WORDS[e["digit"]] for wanted in per_split.values()
                                         for _, e in wanted.values()})


def test_captions_hold_one_record_per_narrated_event_with_the_event_times_and_label(demo, tmp_path):
    out = tmp_path / "captions"
    summary = write_captioned_clips(demo, out, progress=False)
    videos = [r for r in manifest(demo) if r["split"] == "test"]
    wanted = [(r, e) for r in videos for e in r["events"] if e["narration"]]
    assert summary == {"captions": len(wanted), "videos": len(videos), "out": str(out)}
    records = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert records == [{"video": f"videos/{r['id']}.mp4", "text": e["narration"]["text"], "start": e["start"],
                        "end": e["end"], "label": f"{DIGIT_WORDS[e['digit']]} {e['direction']}",
                        "split": "test"} for r, e in wanted]
    assert any(e["narration"]["start"] != e["start"] for _, e in wanted)  # event times, not the narration's
    for r in videos:
        assert (out / r["video"]).read_bytes() == (demo / r["video"]).read_bytes()
        assert (out / f"videos/{r['id']}.srt").is_file() == bool(r["captions"])


def _corpus_of(records: list[dict], folder: Path) -> Path:
    """A corpus folder whose manifest holds only `records` (no videos: for refusals before decoding)."""
    folder.mkdir()
    (folder / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return folder


@pytest.mark.parametrize("export", [write_labelled_clips, write_captioned_clips, write_labelled_sounds])
def test_refusals_name_the_problem_and_write_nothing(demo, tmp_path, export):
    out = tmp_path / "out"
    with pytest.raises(InputError, match=r"manifest\.jsonl not found.*run `mmv-tf data demo`"):
        export(tmp_path / "nothing", out, progress=False)
    split = {"split": "tset"} if export is write_captioned_clips else {"splits": ("test", "tset")}
    with pytest.raises(InputError, match="train, val, test; got .*'tset'"):
        export(demo, out, progress=False, **split)
    with pytest.raises(OutputError, match="overlaps the input"):
        export(demo, demo / "exported", progress=False)
    assert not (demo / "exported").exists() and not (demo / ".exported.lock").exists()
    unnarrated = [r for r in manifest(demo) if not r["narrated"]]
    assert unnarrated, "seed 3's corpus has videos without narration"
    quiet = _corpus_of([{**r, "split": "test"} for r in unnarrated], tmp_path / "quiet")
    if export is write_labelled_clips:
        with pytest.raises(InputError, match="label must be one of digit, direction, event; got 'colour'"):
            export(demo, out, label="colour", progress=False)
        with pytest.raises(InputError, match="no events in split val"):
            export(quiet, out, splits=("val",), progress=False)
    else:
        with pytest.raises(InputError, match="no narrated events in split (train or )?test$"):
            export(quiet, out, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["quiet"]


def test_a_folder_mmv_tf_did_not_write_is_replaced_only_with_overwrite(demo, tmp_path):
    out = tmp_path / "captions"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    with pytest.raises(OutputError, match="did not write it as captioned clips"):
        write_captioned_clips(demo, out, progress=False)
    assert [p.name for p in out.iterdir()] == ["mine.txt"]
    write_captioned_clips(demo, out, overwrite=True, progress=False)
    assert not (out / "mine.txt").exists() and (out / "manifest.jsonl").is_file()
    write_captioned_clips(demo, out, progress=False)  # its own earlier output: replaced without asking


def test_cli_clips_by_event_with_margins_clamped_to_the_video(demo, tmp_path):
    out = tmp_path / "clips"
    runner = CliRunner()
    result = runner.invoke(app, ["data", "clips", str(demo), "--out", str(out), "--split", "test",
                                 "--label", "event", "--margin", "1"])
    assert result.exit_code == 0, result.output
    wanted = events(demo, "test")
    classes = {f"{DIGIT_WORDS[e['digit']]}_{e['direction']}" for _, e in wanted.values()}
    assert f"wrote {len(wanted)} clips ({len(wanted)} test) in {len(classes)} event classes" in result.output
    clamped = 0
    for line in listed(out, "test"):
        record, event = wanted[Path(line).stem]
        assert line.split("/")[0] == f"{DIGIT_WORDS[event['digit']]}_{event['direction']}"
        start, end = max(0, event["start"] - 1), min(record["duration"], event["end"] + 1)
        clamped += start == 0 or end == record["duration"]
        assert media_duration(out / line) == pytest.approx(end - start, abs=1 / FPS)
    assert clamped >= 1
    result = runner.invoke(app, ["data", "sounds", str(demo), "--out", str(tmp_path / "sounds"),
                                 "--split", "tset"])
    assert result.exit_code == 1 and "error: splits must be among train, val, test" in result.output
    assert not (tmp_path / "sounds").exists()
