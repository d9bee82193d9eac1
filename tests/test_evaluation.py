"""`mmv-tf evaluate` verbs: the metrics on known numbers, the data layouts and their refusals, and
each verb run through the CLI on small labelled data with the default model."""

import json
import wave

import numpy as np
import PIL.Image
import pytest
from typer.testing import CliRunner

from mmv_tf.cli.main import app
from mmv_tf.errors import InputError
from mmv_tf.evaluation.classification import (
    Protocol,
    class_scores,
    linear_evaluation,
    mean_average_precision,
    require_modality,
    top_k,
)
from mmv_tf.evaluation.datasets import read_captions, read_labelled
from mmv_tf.evaluation.report import cached_features, feature_key, write_evaluation
from mmv_tf.evaluation.retrieval import retrieval_metrics

runner = CliRunner()


def test_retrieval_metrics_on_a_known_similarity_matrix():
    # Captions 0 and 1 show clip 0, caption 2 clip 1, caption 3 clip 2.
    similarity = np.array([[0.9, 0.1, 0.2],
                           [0.3, 0.5, 0.1],
                           [0.3, 0.2, 0.1],
                           [0.1, 0.2, 0.8]])
    result = retrieval_metrics(similarity, np.array([0, 0, 1, 2]), ["a", "a", "b", "a"])
    text = result["text_to_video"]
    # Ranks text -> video: 1, 2, 2, 1.
    assert text["R@1"] == 0.5 and text["median_rank"] == 1.5 and text["mean_rank"] == 1.5
    assert text["chance"]["R@1"] == pytest.approx(1 / 3) and text["chance"]["median_rank"] == 2
    # Video -> text (columns): clip 0's best caption (0.9) ranks 1; clip 1's (0.2 of caption 2)
    # ranks 3 (0.5 and 0.2 of caption 3 tie: not above); clip 2's (0.8) ranks 1.
    video = result["video_to_text"]
    assert video["R@1"] == pytest.approx(2 / 3) and video["median_rank"] == 1
    assert video["chance"]["R@5"] == 1.0
    # Labels of clips: a (clip 0), b, a. Caption 0 (a) ranks a, a, b: R-precision (R=2) 1, P@10 2/3.
    # Caption 1 (a) ranks b, a, a: 1/2. Caption 2 (b) ranks a, b, a (R=1): 0. Caption 3 (a) ranks
    # a, b, a: 1/2.
    assert text["label_R_precision"] == pytest.approx((1 + 0.5 + 0 + 0.5) / 4)
    assert text["label_precision@10"] == pytest.approx((2 + 2 + 1 + 2) / 12)
    assert result["curves"]["text -> video"] == [0.5, 1.0, 1.0]


def test_cached_features_are_read_only_under_the_same_key_and_mmv_tf_version(tmp_path):
    from importlib.metadata import version

    features = {"video": np.arange(6, dtype=np.float32).reshape(3, 2)}
    key = feature_key(verb="video-classification", model="sha", files="digest")
    assert key["mmv_tf"] == version("mmv-tf")
    write_evaluation(tmp_path / "out", {}, "", {}, (features, key, {"kept": [0, 1, 2]}), (), False)

    def made_again():
        return {"video": np.zeros((3, 2), np.float32)}, {"kept": []}

    def cached(under):
        return cached_features(tmp_path / "out", under, made_again, note=lambda line: None)

    read, info = cached(key)
    assert np.array_equal(read["video"], features["video"]) and info == {"kept": [0, 1, 2]}
    for other in ({**key, "mmv_tf": "0.0.1"}, {**key, "files": "changed"}):
        assert not cached(other)[0]["video"].any()


def test_classification_figures_on_known_numbers():
    scores = np.array([[0.1, 0.7, 0.2], [0.5, 0.4, 0.1], [0.2, 0.3, 0.5]])
    labels = np.array([2, 0, 0])
    assert top_k(scores, labels, 1) == pytest.approx(1 / 3)
    assert top_k(scores, labels, 2) == pytest.approx(2 / 3)
    truth = np.array([[1, 0], [0, 1], [1, 1], [0, 0]])
    value, per_class = mean_average_precision(np.array([[0.9, 0.1], [0.2, 0.8], [0.4, 0.3], [0.5, 0.9]]),
                                              truth)
    # Class 0: positives score 0.9 and 0.4 among 0.9, 0.5, 0.4, 0.2: AP (1 + 2/3) / 2.
    # Class 1: positives 0.8 and 0.3 among 0.9, 0.8, 0.3, 0.1: AP (1/2 + 2/3) / 2.
    assert per_class == pytest.approx([(1 + 2 / 3) / 2, (1 / 2 + 2 / 3) / 2])
    assert value == pytest.approx(per_class.mean())


def test_test_scores_average_the_windows_and_a_class_unseen_in_fitting_never_wins():
    class Fitted:
        classes_ = np.array([0, 2])

        def decision_function(self, features):
            return features[:, 0]  # two fitted classes: one score, for the second

    features = np.array([[1.0], [-3.0], [2.0]])
    scores = class_scores(Fitted(), features, np.array([5, 5, 7]), np.array([5, 7]), 3)
    assert scores.tolist() == [[1.0, -np.inf, -1.0], [-2.0, -np.inf, 2.0]]


def _class_folder(root, sizes, suffix=".txt"):
    for name, count in sizes.items():
        (root / name).mkdir(parents=True)
        for i in range(count):
            (root / name / f"{i}{suffix}").write_text("x")
    return root


def test_partitions_follow_split_files_folds_or_a_stratified_share(tmp_path):
    root = _class_folder(tmp_path / "data", {"a": 3, "b": 3})
    data = read_labelled(root, (".txt",))
    (held,) = data.partitions(held_out=0.34, seed=1)
    labels = data.label_indices()
    assert sorted(labels[held.test].tolist()) == [0, 1] and len(held.fit) == 4
    (root / "train.txt").write_text("a/0.txt 1\na/1.txt 1\nb/0.txt 2\nb/1.txt 2\n")
    (root / "test.txt").write_text("a/2.txt\nb/2.txt\n")
    (split,) = read_labelled(root, (".txt",)).partitions()
    assert len(split.fit) == 4 and len(split.test) == 2
    manifest = tmp_path / "folds.jsonl"
    manifest.write_text("".join(json.dumps({"path": f"data/{c}/{i}.txt", "label": c, "fold": i})
                                + "\n" for c in "ab" for i in range(3)))
    folds = read_labelled(manifest, (".txt",)).partitions()
    assert [p.name for p in folds] == ["fold 0", "fold 1", "fold 2"]
    assert all(len(p.test) == 2 and len(p.fit) == 4 for p in folds)


@pytest.mark.parametrize("layout, message", [
    ({"a": 3}, "1 class"),
    ({"a": 3, "b": 1}, r"too few: b \(1\)"),
])
def test_unusable_labelled_data_is_refused_with_the_reason(tmp_path, layout, message):
    with pytest.raises(InputError, match=message):
        read_labelled(_class_folder(tmp_path / "data", layout), (".txt",))


def test_split_files_and_manifests_naming_missing_files_are_refused(tmp_path):
    root = _class_folder(tmp_path / "data", {"a": 2, "b": 2})
    (root / "train.txt").write_text("a/0.txt\nb/0.txt\n")
    (root / "test.txt").write_text("a/1.txt\nb/9.txt\n")
    with pytest.raises(InputError, match=r"test.txt, line 2: b/9.txt is not"):
        read_labelled(root, (".txt",))
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"video": "data/a/0.txt", "text": "x"}) + "\n"
                        + json.dumps({"video": "gone.mp4", "text": "y"}) + "\n")
    with pytest.raises(InputError, match=r"m.jsonl, line 2: gone.mp4 does not exist"):
        read_captions(manifest, None)
    manifest.write_text(json.dumps({"path": "data/a/0.txt"}) + "\n")
    with pytest.raises(InputError, match="line 1: a record needs"):
        read_labelled(manifest, (".txt",))


def test_a_model_without_the_verbs_modality_is_refused():
    class ImageModel:
        path = "image-model"
        metadata = {"signatures": ["image", "text"]}

    require_modality(ImageModel(), "image")
    with pytest.raises(InputError, match="image-model has no audio signature"):
        require_modality(ImageModel(), "audio")


def test_multi_label_linear_evaluation_gives_map():
    from mmv_tf.evaluation.datasets import Example, LabelledData, Partition

    rng = np.random.default_rng(0)
    truth = rng.integers(0, 2, size=(40, 3))
    truth[truth.sum(axis=1) == 0, 0] = 1
    examples = [Example(None, tuple("xyz"[c] for c in np.flatnonzero(row))) for row in truth]
    data = LabelledData(examples, ["x", "y", "z"], "memory")
    features = truth + 0.1 * rng.normal(size=truth.shape)  # separable: each label is a feature
    rows = np.arange(40)
    arrays = {"fit": features, "fit_of": rows, "test": features, "test_of": rows}
    outcome = linear_evaluation(data, arrays, [Partition("t", rows[:30], rows[30:])], Protocol(c=1.0))
    assert outcome["mAP"] == pytest.approx(1.0)


# ------------------------------------------------------------------ the verbs end to end

@pytest.fixture(scope="module")
def labelled_media(tmp_path_factory):
    """Videos of a bright bar moving up or down (4 each, with a tone), the same tones as WAV files,
    and pictures that are red or blue (multi-label: a picture may be both)."""
    from mmv_tf.data.media import write_mp4

    root = tmp_path_factory.mktemp("labelled")
    rng = np.random.default_rng(0)
    for name, way, pitch in (("up", -1, 0.05), ("down", 1, 0.2)):
        for folder in ("videos", "sounds"):
            (root / folder / name).mkdir(parents=True)
        for i in range(4):
            t, y, x = np.meshgrid(np.arange(30), np.arange(72), np.arange(96), indexing="ij")
            bar = (np.abs(y - (36 + way * (2 * t - 30) + rng.integers(-3, 3))) < 5) & (np.abs(x - 48) < 12)
            frames = np.where(bar[..., None], 255, 60 + 10 * i).astype(np.uint8).repeat(3, -1)
            tone = 0.3 * np.sin(np.arange(48000) * pitch + i)
            write_mp4(root / "videos" / name / f"{i}.mp4", frames, 10, tone.astype(np.float32), 16000)
            with wave.open(str(root / "sounds" / name / f"{i}.wav"), "wb") as file:
                file.setnchannels(1)
                file.setsampwidth(2)
                file.setframerate(16000)
                file.writeframes((tone[:32000] * 32767).astype(np.int16).tobytes())
    (root / "videos" / "up" / "broken.mp4").write_bytes(b"not a video")
    records = []
    (root / "pictures").mkdir()
    for i in range(16):
        red, blue = i % 2, (i // 2) % 2 or i % 4 == 0
        picture = np.full((64, 64, 3), 40, np.uint8)
        picture[:32, :, 0] = 230 * red
        picture[32:, :, 2] = 230 * blue
        PIL.Image.fromarray(picture).save(root / "pictures" / f"{i}.png")
        labels = [name for name, on in (("red", red), ("blue", blue)) if on] or ["red"]
        records.append({"path": f"pictures/{i}.png", "labels": labels,
                        "split": "test" if i >= 10 else "train"})
    (root / "pictures.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return root


def _run(*args):
    result = runner.invoke(app, ["evaluate", *map(str, args), "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output[result.output.index("{\n"):])


def test_video_classification_names_skipped_files_and_reuses_its_features(labelled_media, tmp_path,
                                                                          monkeypatch):
    small = ["--frames", 16, "--stride", 1, "--crop", 64, "--passes", 2, "--test-windows", 2,
             "--held-out", 0.5]
    out = tmp_path / "video"
    result = _run("video-classification", labelled_media / "videos", "--out", out, *small)
    assert result["top1"] == 1.0 and result["chance"]["top1"] == 0.5  # up and down, told apart
    assert result["examples"] == 8 and "broken.mp4" in result["skipped"][0]
    written = json.loads((out / "metrics.json").read_text())
    assert written["top1"] == 1.0 and written["settings"]["passes"] == 2
    # Half of the 9 files were held out before decoding; the broken one among them is dropped.
    assert np.sum(written["confusion"]) == result["partitions"][0]["test"] == 3
    assert (out / "confusion.png").stat().st_size > 1000
    assert "| top1 | 1.000 |" in (out / "report.md").read_text()

    import mmv_tf.data.media as media

    monkeypatch.setattr(media, "decode_video", lambda *a, **k: pytest.fail("features were re-embedded"))
    again = _run("video-classification", labelled_media / "videos", "--out", out, *small, "--c", 1.0)
    assert again["settings"]["c"] == 1.0 and again["examples"] == 8


def test_audio_classification_tells_the_tones_apart(labelled_media, tmp_path):
    result = _run("audio-classification", labelled_media / "sounds", "--out", tmp_path / "audio",
                  "--windows", 3, "--held-out", 0.5)
    assert result["top1"] == 1.0 and result["examples"] == 8


def test_image_classification_gives_map_for_multi_label_data(labelled_media, tmp_path):
    result = _run("image-classification", labelled_media / "pictures.jsonl", "--out", tmp_path / "images",
                  "--c", 1.0)
    assert result["classes"] == ["blue", "red"] and result["mAP"] == pytest.approx(1.0)
    assert "zero_shot_mAP" in result and result["zero_shot_space"] == "vat"
    assert not (tmp_path / "images" / "confusion.png").exists()


def test_a_refused_evaluation_writes_nothing(labelled_media, tmp_path):
    result = runner.invoke(app, ["evaluate", "audio-classification", str(labelled_media / "videos" / "up"),
                                 "--out", str(tmp_path / "out")])
    assert result.exit_code == 1 and "holds no class sub-folder" in result.output
    assert not (tmp_path / "out").exists()
