"""mmv_tf.data.preprocessing: window arithmetic, augmentation, captions, and one clip through every path."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from mmv_tf import embed, search
from mmv_tf.data.ingest import ingest
from mmv_tf.data.media import write_mp4
from mmv_tf.data.preprocessing import (
    augment_frames,
    caption_candidates,
    centred_window_start,
    decode_jpeg,
    evaluation_window_starts,
    last_window_start,
    random_uniforms,
    random_window_start,
    sliding_window_starts,
    spaced_window_starts,
    window_audio,
    window_captions,
    window_frames,
)
from mmv_tf.data.reader import ClipReader, ReaderConfig, read_clips
from mmv_tf.data.shards import parse_video, shard_files
from mmv_tf.data.sources import DecodeSettings
from mmv_tf.data.subtitles import Caption
from mmv_tf.text.tokenizer import TextTokenizer

FPS, RATE, SIZE, FRAMES = 10, 16000, 32, 8
CAPTIONS = [Caption(0.5, 1.5, "seven slides left"), Caption(2.0, 2.9, "three moves up")]


# ---------------------------------------------------------------- windows

def test_window_starts():
    assert int(last_window_start(100, 16)) == 84 and int(last_window_start(100, 16, 2)) == 69
    assert int(last_window_start(10, 16)) == 0  # too short: one window, padded
    assert sliding_window_starts(20, 8, 4) == [0, 4, 8, 12]
    assert sliding_window_starts(5, 8, 4) == [0] and sliding_window_starts(10, 8, 0) == [0, 1, 2]
    assert spaced_window_starts(30, 3).numpy().tolist() == [0, 15, 30]
    assert spaced_window_starts(10, 4).numpy().tolist() == [0, 3, 7, 10]
    assert spaced_window_starts(30, 1).numpy().tolist() == [0]
    assert evaluation_window_starts(30, 3).tolist() == [0, 15, 30]  # evaluation: the same spread,
    assert evaluation_window_starts(31, 1).tolist() == [15]  # but one window is the centred one
    assert centred_window_start(5.0, 1.6, 10, 100) == 42  # frames 42..57 around 5 s
    assert centred_window_start(0.2, 1.6, 10, 100) == 0 and centred_window_start(50.0, 1.6, 10, 84) == 84


def test_random_window_starts_cover_the_range_and_follow_the_seed():
    starts = [int(random_window_start(tf.constant([seed, 7]), 9)) for seed in range(200)]
    assert set(starts) == set(range(10))
    assert int(random_window_start([3, 7], 9)) == int(random_window_start([3, 7], 9))
    assert int(random_window_start([3, 7], 0)) == 0
    uniforms = random_uniforms([1, 2], 5000).numpy()
    assert uniforms.min() >= 0 and uniforms.max() < 1 and abs(uniforms.mean() - 0.5) < 0.02
    assert not np.array_equal(random_uniforms([1, 2], 7), random_uniforms([1, 2], 7, stream=1))


def test_window_contents_repeat_the_last_frame_and_pad_audio_with_zeros():
    frames = np.arange(10)
    assert window_frames(frames, 7, 5).numpy().tolist() == [7, 8, 9, 9, 9]
    assert window_frames(frames, 1, 3, stride=3).numpy().tolist() == [1, 4, 7]
    assert window_frames(frames, 4, 4, total_frames=6).numpy().tolist() == [4, 5, 5, 5]  # 6.. padding
    assert window_frames(frames, np.array([0, 8]), 3).numpy().tolist() == [[0, 1, 2], [8, 9, 9]]
    waveform = np.arange(1, 11, dtype=np.float32)  # 10 samples at 10 Hz
    np.testing.assert_array_equal(window_audio(waveform, 0.8, 4, 10), [9, 10, 0, 0])
    np.testing.assert_array_equal(window_audio(waveform, np.array([0.0, 0.5]), 2, 10), [[1, 2], [6, 7]])


def test_caption_candidates_pick_the_overlapping_caption_and_its_neighbours():
    starts = tf.constant([0.0, 3.0, 6.0, 9.0])
    ends = tf.constant([2.0, 5.0, 8.0, 11.0])
    indices, valid = caption_candidates(starts, ends, 5.5, 7.5, 4)
    assert indices.numpy().tolist() == [2, 1, 3, 0] and valid.numpy().all()
    indices, valid = caption_candidates(starts, ends, 0.0, 1.0, 3)  # at the start: one neighbour
    assert indices.numpy()[valid.numpy()].tolist() == [0, 1]
    indices, valid = caption_candidates(starts, ends, 20.0, 21.0, 2)  # no overlap: the nearest
    assert indices.numpy()[0] == 3
    _, valid = caption_candidates(tf.zeros([0]), tf.zeros([0]), 0.0, 1.0, 3)
    assert not valid.numpy().any()
    # Padded arrays (as on a device) with their count give the same candidates.
    padded_starts, padded_ends = tf.concat([starts, [0.0, 0.0]], 0), tf.concat([ends, [30.0, 30.0]], 0)
    for window in ((5.5, 7.5), (0.0, 1.0), (20.0, 21.0)):
        got = caption_candidates(padded_starts, padded_ends, *window, 4, num_captions=4)
        expected = caption_candidates(starts, ends, *window, 4)
        assert [g.numpy().tolist() for g in got] == [e.numpy().tolist() for e in expected]


def test_window_captions_are_the_most_overlapping_or_none():
    captions = [Caption(0.0, 2.0, "a"), Caption(1.5, 4.0, "b")]
    assert window_captions(captions, [0.0, 1.6, 5.0], [1.6, 3.2, 6.0]) == ["a", "b", None]
    assert window_captions([], [0.0], [1.0]) == [None]


# ---------------------------------------------------------------- augmentation

def frames_of(seed: int, shape=(4, 40, 56, 3)) -> np.ndarray:
    return np.random.default_rng(seed).uniform(size=shape).astype(np.float32)


def test_augmentation_is_reproducible_for_a_seed_and_stays_in_range():
    frames = frames_of(0)
    first, again = (augment_frames(frames, [5, 1], 24).numpy() for _ in range(2))
    other = augment_frames(frames, [6, 1], 24).numpy()
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)
    assert first.shape == (4, 24, 24, 3) and first.min() >= 0.0 and first.max() <= 1.0
    # In a tf.data graph, where the frame size is unknown, it is the same.
    graph = tf.function(lambda x: augment_frames(x, tf.constant([5, 1]), 24),
                        input_signature=[tf.TensorSpec([4, None, None, 3], tf.float32)])
    np.testing.assert_allclose(graph(frames).numpy(), first, atol=1e-5)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_augmentation_is_tf_image_crop_flip_and_colour_jitter(seed):
    """The drawn crop, flip and colour factors applied as tf.image does."""
    frames, jitter, size = frames_of(seed), 0.3, 24
    u = random_uniforms([seed, 0], 7, stream=1).numpy()
    side = 40 * (0.7 + 0.3 * u[0])
    top, left = u[1] * (40 - side), u[2] * (56 - side)
    box = [top / 39, left / 55, (top + side - 1) / 39, (left + side - 1) / 55]
    expected = tf.image.crop_and_resize(frames, [box] * 4, tf.range(4), [size, size])
    if u[3] < 0.5:
        expected = tf.reverse(expected, axis=[2])
    expected = tf.image.adjust_brightness(expected, (-jitter + 2 * jitter * u[4]) / 2)
    expected = tf.image.adjust_contrast(expected, 1 - jitter + 2 * jitter * u[5])
    expected = tf.clip_by_value(tf.image.adjust_saturation(expected, 1 - jitter + 2 * jitter * u[6]), 0, 1)
    got = augment_frames(frames, [seed, 0], size, color_jitter=jitter)
    np.testing.assert_allclose(got.numpy(), expected.numpy(), atol=1e-4)


# ---------------------------------------------------------------- one clip through every path

def textured_clip(path: Path, seconds: float = 4.0) -> None:
    """A moving coloured pattern, 64x80 (not square: the centre crop matters), with a chirp."""
    y, x = np.mgrid[0:64, 0:80]
    frames = np.stack([np.stack([128 + 100 * np.sin((x + 3 * t) / 7) * np.cos((y - 2 * t) / 9),
                                 128 + 90 * np.cos((x - y + 5 * t) / 11), np.full(x.shape, 40.0 + 5 * t)], -1)
                       for t in range(int(seconds * FPS))]).astype(np.uint8)
    t = np.arange(int(seconds * RATE)) / RATE
    write_mp4(path, frames, FPS, (0.4 * np.sin(2 * np.pi * (200 + 150 * t) * t)).astype(np.float32), RATE)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """(media folder with one captioned video, its shards decoded at the model's size and rate)."""
    folder = tmp_path_factory.mktemp("media")
    textured_clip(folder / "clip.mp4")
    (folder / "clip.srt").write_text("".join(
        f"{i}\n00:00:0{c.start:.3f} --> 00:00:0{c.end:.3f}\n{c.text}\n\n".replace(".", ",")
        for i, c in enumerate(CAPTIONS, 1)))
    shards = tmp_path_factory.mktemp("shards") / "clip"
    ingest(folder, shards, DecodeSettings(fps=FPS, short_side=SIZE, sample_rate=RATE), progress=False)
    return folder, shards


@pytest.fixture(scope="module")
def tokenizer():
    return TextTokenizer(["seven", "slides", "left", "three", "moves", "up"])


class RecordingModel:
    """Stands in for an `ExportedModel`: records the clips it is given."""

    fps, image_size, num_frames, sample_rate, has_text = float(FPS), SIZE, FRAMES, RATE, True
    window_seconds = FRAMES / FPS

    def __init__(self):
        self.video, self.audio = [], []

    def embed_video(self, frames):
        self.video.append(np.asarray(frames))
        return {"va": np.zeros((len(frames), 2))}

    def embed_audio(self, audio):
        self.audio.append(np.asarray(audio))
        return {"va": np.zeros((len(audio), 2))}

    def embed_text(self, texts):
        return {"vat": np.zeros((len(texts), 2))}


def test_a_window_is_the_same_through_the_reader_embed_and_search(corpus, tokenizer):
    folder, shards = corpus
    # Reader, evaluation mode: windows at frames 0, 8, 16, 24, 32 of the 40.
    config = ReaderConfig(num_frames=FRAMES, fps=FPS, sample_rate=RATE, crop_size=SIZE, num_candidates=2,
                          eval_windows=5)
    read = next(iter(read_clips(shards, tokenizer, config, training=False, batch_size=5)))
    assert read["window_start"].numpy().tolist() == pytest.approx([0.0, 0.8, 1.6, 2.4, 3.2])
    # embed (from the shards and from the media folder) and search: windows every 4 frames.
    embedded = []
    for source in (shards, folder):
        model = RecordingModel()
        _, clip = next(embed.read_media_file(embed.list_media(source)[0], embed.model_decoding(model)))
        rows = embed.embed_media(model, clip, stride_frames=4)
        assert [w["start"] for w in rows["windows"]] == pytest.approx(np.arange(9) * 0.4)
        captions = [w["caption"] for w in rows["windows"]]
        embedded.append((model.video[0][::2], model.audio[0][::2], captions[::2]))
    model = RecordingModel()
    search.embed_video_file(model, folder / "clip.mp4")
    search.embed_audio_file(model, folder / "clip.mp4")
    searched = (model.video[0][::2], model.audio[0][::2])

    assert read["video"].shape == (5, FRAMES, SIZE, SIZE, 3) and read["video"].numpy().std() > 0.1
    for video, audio in [*((v, a) for v, a, _ in embedded), searched]:
        np.testing.assert_array_equal(video[:5], read["video"].numpy())
        np.testing.assert_array_equal(audio[:5], read["audio"].numpy())
    for _, _, captions in embedded:
        assert captions[:5] == ["seven slides left", "seven slides left", "three moves up", "three moves up",
                                None]
        for index, caption in enumerate(captions[:4]):
            np.testing.assert_array_equal(read["text"]["token_ids"][index, 0],
                                          tokenizer(tf.constant([caption]))["token_ids"][0])
            assert read["text_mask"][index, 0]


def test_jax_training_clips_equal_the_readers_for_the_same_seeds(corpus, tokenizer, tmp_path, jax_env):
    pytest.importorskip("jax")
    _, shards = corpus
    video = parse_video(next(iter(tf.data.TFRecordDataset(shard_files(shards)))))
    config = ReaderConfig(num_frames=FRAMES, frame_stride=2, fps=FPS, sample_rate=RATE, crop_size=24,
                          num_candidates=3)
    seeds = np.array([[s, 11] for s in range(6)], np.uint32)
    reader = ClipReader(config, tokenizer)
    expected = [reader.training_clip(video, tf.constant(seed)) for seed in seeds]

    # The device's copy: decoded frames padded to a longer video, captions padded to more slots.
    frames = tf.map_fn(decode_jpeg, video["frames"], fn_output_signature=tf.uint8).numpy()
    count = len(frames)
    captions = np.stack([video["caption/start"].numpy(), video["caption/end"].numpy()], axis=1)
    np.savez(tmp_path / "inputs.npz", seeds=seeds, frame_count=count,
             frames=np.concatenate([frames, np.zeros_like(frames[:5])]),
             waveform=np.pad(video["waveform"].numpy(), (0, 8000)),
             caption_times=np.concatenate([captions, [[40.0, 41.0]] * 2]).astype(np.float32),
             caption_count=len(captions), num_frames=FRAMES, stride=2, fps=float(FPS),
             num_samples=config.audio_samples, sample_rate=RATE, size=24, candidates=3)
    script = Path(__file__).with_name("jax_preprocessing.py")
    run = subprocess.run([sys.executable, str(script), str(tmp_path)], env=jax_env, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    got = np.load(tmp_path / "outputs.npz")

    np.testing.assert_array_equal(got["uniforms"], np.stack([random_uniforms(s, 7, stream=1) for s in seeds]))
    starts = np.array([float(clip["window_start"]) for clip in expected])
    np.testing.assert_allclose(got["start"] / FPS, starts, atol=1e-6)
    assert len(set(starts)) > 2
    np.testing.assert_allclose(got["video"], np.stack([c["video"] for c in expected]), atol=1e-4)
    np.testing.assert_array_equal(got["audio"], np.stack([c["audio"] for c in expected]))
    np.testing.assert_array_equal(got["valid"], np.stack([c["text_mask"] for c in expected]))
    strings = video["caption/string"].numpy()
    for slots, valid, clip in zip(got["slots"], got["valid"], expected):
        texts = [strings[s].decode() if v else "" for s, v in zip(slots, valid)]
        np.testing.assert_array_equal(tokenizer(tf.constant(texts))["token_ids"], clip["text"]["token_ids"])
