"""Train the demo model on one accelerator under Keras's JAX backend, the corpus in device memory.

`mmv-tf train configs/demo.yaml` trains the demo model with TensorFlow and tf.data on a CPU; this
script trains the same network, loss and optimizer far longer on a GPU machine that has JAX but no
TensorFlow, espeak-ng or FFmpeg. Four steps:

  pack    (here) speak the corpus's training narrations with espeak-ng (8-bit mu-law, lzma), tokenise
          its captions and keep the word vectors they use: PACK/pack.npz + PACK/manifest.jsonl.
  render  (accelerator machine) re-render the pictures and sounds of the train and val videos from
          the corpus seed (`mmv_tf.data.demo.render_video`, narrations from PACK) into ARRAYS/*.npy;
          fails if a rendered video's events differ from the manifest's.
  train   (accelerator machine, KERAS_BACKEND=jax) every frame sits on the device; each jitted step
          samples its clips there (window, crop scale, colour jitter and caption choice as
          `mmv_tf.data.reader` does; saturation jitter blends with grey instead of scaling HSV),
          then runs `MMVTrainer.train_step`. The cosine schedule's length is set from the step
          time measured during warm-up so that training fills --minutes (at most train.steps).
          Every --eval-every steps it prints the training metrics (means since the start) and the
          text->video retrieval of the val split's narrated events, scored as `mmv-tf evaluate`
          does. Writes RUN/network_weights.npz, RUN/config.yaml and RUN/metrics.jsonl.
  convert (here) RUN/network_weights.npz -> RUN/checkpoints (TensorFlow), word table refilled from
          the real vectors, so that `mmv-tf export RUN --out ...` exports it.

The exact commands that made the committed default model are in README.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import lzma
import multiprocessing
import os
import sys
import time
from pathlib import Path

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmv_tf import config as config_lib  # noqa: E402
from mmv_tf.data import demo, synth  # noqa: E402
from mmv_tf.files import atomic_path  # noqa: E402
from mmv_tf.training.config import TrainConfig, load_train_config  # noqa: E402

MU = 255.0
SPLITS = ("train", "val")
WEIGHTS = "network_weights.npz"  # `network.weights` in order; the word table is zeros but the
# rows that captions use, so it compresses to almost nothing


def mu_law_encode(x: np.ndarray) -> np.ndarray:
    """float [-1, 1] -> int8 mu-law codes."""
    y = np.sign(x) * np.log1p(MU * np.abs(np.clip(x, -1, 1))) / np.log1p(MU)
    return np.round(y * 127).astype(np.int8)


def mu_law_decode(codes: np.ndarray) -> np.ndarray:
    y = codes.astype(np.float32) / 127
    return (np.sign(y) * np.expm1(np.abs(y) * np.log1p(MU)) / MU).astype(np.float32)


def speech_key(text: str, voice: str, words_per_minute: int, pitch: int) -> str:
    return f"{text}|{voice}|{words_per_minute}|{pitch}"


def manifest_records(folder: Path) -> list[dict]:
    lines = (folder / "manifest.jsonl").read_text(encoding="utf-8").splitlines()
    return [record for record in map(json.loads, lines) if record["split"] in SPLITS]


def video_index(record: dict) -> int:
    return int(record["id"].rsplit("_", 1)[1])


# ---------------------------------------------------------------- pack (espeak-ng, TensorFlow)

def _recorded_speech(job) -> dict:
    """Every narration waveform that rendering video `index` speaks, by speech_key."""
    index, seed, pools = job
    spoken = {}

    def speak_and_keep(text, voice, words_per_minute, pitch, sample_rate):
        speech = demo.speak(text, voice, words_per_minute, pitch, sample_rate)
        spoken[speech_key(text, voice, words_per_minute, pitch)] = speech
        return speech

    demo.render_video(index, seed, demo.DemoSettings(), pools, speak_and_keep)
    return spoken


def pack(args) -> None:
    import tensorflow as tf
    from tqdm import tqdm

    from mmv_tf.text.tokenizer import TextTokenizer
    from mmv_tf.text.word_vectors import load_word_vectors

    config = load_train_config(args.config).model_config()
    records = manifest_records(Path(args.corpus))
    pools = synth.split_digit_pools(args.seed)
    jobs = [(video_index(r), args.seed, pools) for r in records if r["split"] == "train"]
    speech = {}
    with multiprocessing.get_context("spawn").Pool(args.workers) as pool:
        for spoken in tqdm(pool.imap(_recorded_speech, jobs), total=len(jobs), desc="speaking"):
            speech.update(spoken)
    keys = sorted(speech)
    lengths = np.array([len(speech[k]) for k in keys])

    words = load_word_vectors(config.text.word_vectors, config.text.vocabulary_size)
    vocabulary = words.words[: config.text.vocabulary_size]
    texts = sorted({e["narration"]["text"] for r in records for e in r["events"] if e["narration"]})
    tokens = TextTokenizer(vocabulary, max_words=config.text.max_words)(tf.constant(texts))
    token_ids = tokens["token_ids"].numpy()
    used = np.unique(token_ids[token_ids > 1])  # table rows: word i is row i + 2
    coded = mu_law_encode(np.concatenate([speech[k] for k in keys]))
    with atomic_path(args.out) as out:
        out.mkdir(parents=True)
        np.savez(out / "pack.npz", speech_keys=np.array(keys), speech_lengths=lengths,
                 speech=np.frombuffer(lzma.compress(coded.tobytes()), np.uint8),
                 texts=np.array(texts), token_ids=token_ids,
                 vocabulary=np.frombuffer("\n".join(vocabulary).encode(), np.uint8),
                 used_rows=used, used_vectors=np.asarray(words.vectors)[used - 2],
                 word_vectors_source=np.array(words.source), seed=np.array(args.seed))
        (out / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records),
                                            encoding="utf-8")
    print(f"packed {len(keys)} narrations ({lengths.sum() / demo.DemoSettings().sample_rate:.0f} s), "
          f"{len(texts)} captions into {args.out}")


# ---------------------------------------------------------------- render (no TensorFlow)

_SPEECH: dict = {}


def _render(job):
    index, seed, pools, split = job

    def carried_speech(text, voice, words_per_minute, pitch, sample_rate):
        key = speech_key(text, voice, words_per_minute, pitch)
        if split == "train":
            return _SPEECH[key]
        return np.zeros(sample_rate, np.float32)  # val: only the pictures are scored

    return demo.render_video(index, seed, demo.DemoSettings(), pools, carried_speech)


def render(args) -> None:
    packed = np.load(Path(args.pack) / "pack.npz")
    speech = mu_law_decode(np.frombuffer(lzma.decompress(packed["speech"].tobytes()), np.int8))
    offsets = np.concatenate([[0], np.cumsum(packed["speech_lengths"])])
    _SPEECH.update({str(k): speech[a:b] for k, a, b in zip(packed["speech_keys"], offsets[:-1],
                                                             offsets[1:])})
    records = manifest_records(Path(args.pack))
    seed = int(packed["seed"])
    pools = synth.split_digit_pools(seed)
    jobs = [(video_index(r), seed, pools, r["split"]) for r in records]
    with multiprocessing.get_context("fork").Pool(args.workers) as pool:
        videos = pool.map(_render, jobs, chunksize=8)
    for record, video in zip(records, videos):
        same = [(e["digit"], e["direction"], e["start"]) for e in record["events"]]
        rendered = [(e["digit"], e["direction"], e["start"]) for e in video.record["events"]]
        if same != rendered:
            raise SystemExit(f"{record['id']}: rendering does not reproduce the manifest's events "
                             f"(was the corpus made with seed {seed}?)")

    settings = demo.DemoSettings()
    count = len(videos)
    most_frames = max(len(v.frames) for v in videos)
    most_captions = max(1, max(len(v.captions) for v in videos))
    frames = np.zeros((count, most_frames, settings.frame_size, settings.frame_size, 3), np.uint8)
    audio = np.zeros((count, max(len(v.audio) for v in videos)), np.float32)
    caption_times = np.zeros((count, most_captions, 2), np.float32)
    caption_rows = np.zeros((count, most_captions), np.int32)  # rows of pack's texts / token_ids
    row_of = {str(t): i for i, t in enumerate(packed["texts"])}
    for i, video in enumerate(videos):
        frames[i, : len(video.frames)] = video.frames
        audio[i, : len(video.audio)] = video.audio
        for j, caption in enumerate(video.captions):
            caption_times[i, j] = caption.start, caption.end
            caption_rows[i, j] = row_of[caption.text]
    arrays = dict(frames=frames, frame_counts=np.array([len(v.frames) for v in videos]),
                  audio=audio, caption_times=caption_times, caption_rows=caption_rows,
                  caption_counts=np.array([len(v.captions) for v in videos]),
                  is_train=np.array([r["split"] == "train" for r in records]))
    with atomic_path(args.out) as out:
        out.mkdir(parents=True)
        for name, array in arrays.items():
            np.save(out / f"{name}.npy", array)
    print(f"rendered {count} videos: frames {frames.shape} ({frames.nbytes / 2**30:.1f} GiB)")


# ---------------------------------------------------------------- train (JAX)

def _caption_choice(jnp, times, count, window_start, window_end, candidates: int):
    """`mmv_tf.data.reader.caption_candidates` for one clip: caption slots `[K]` and validity."""
    slots = jnp.arange(times.shape[0])
    real = slots < count
    overlap = jnp.where(real, jnp.maximum(0.0, jnp.minimum(times[:, 1], window_end)
                                          - jnp.maximum(times[:, 0], window_start)), 0.0)
    distance = jnp.where(real, jnp.abs(times.mean(axis=1) - (window_start + window_end) / 2),
                         jnp.inf)
    centre = jnp.where(overlap.max() > 0, jnp.argmax(overlap), jnp.argmin(distance))
    steps = jnp.arange(candidates)
    indices = centre + jnp.where(steps % 2 == 1, -(steps + 1) // 2, steps // 2)
    valid = (indices >= 0) & (indices < count)
    return jnp.clip(indices, 0, jnp.maximum(count - 1, 0)), valid


def _crop(jnp, clip, top, left, side, size: int):
    """`tf.image.crop_and_resize` of the square box (top, left, side) on every frame: bilinear."""
    height, width = clip.shape[1:3]
    grid = jnp.arange(size) * (side - 1) / (size - 1)
    ys, xs = top + grid, left + grid
    y0 = jnp.clip(jnp.floor(ys).astype("int32"), 0, height - 1)
    x0 = jnp.clip(jnp.floor(xs).astype("int32"), 0, width - 1)
    y1, x1 = jnp.minimum(y0 + 1, height - 1), jnp.minimum(x0 + 1, width - 1)
    wy, wx = (ys - y0)[None, :, None, None], (xs - x0)[None, None, :, None]
    rows0, rows1 = clip[:, y0], clip[:, y1]
    top_row = rows0[:, :, x0] * (1 - wx) + rows0[:, :, x1] * wx
    bottom_row = rows1[:, :, x0] * (1 - wx) + rows1[:, :, x1] * wx
    return top_row * (1 - wy) + bottom_row * wy


class DeviceCorpus:
    """The rendered corpus on the device and the clip samplers over it."""

    def __init__(self, arrays: Path, pack: Path, config: TrainConfig, model_config):
        import jax.numpy as jnp

        load = {name: np.load(arrays / f"{name}.npy") for name in (
            "frames", "frame_counts", "audio", "caption_times", "caption_rows", "caption_counts",
            "is_train")}
        packed = np.load(pack / "pack.npz")
        self.window = model_config.video.num_frames
        self.stride = config.data.frame_stride
        self.fps = float(model_config.video.fps)
        self.sample_rate = model_config.audio.sample_rate
        self.audio_samples = int(round(self.window * self.stride / self.fps * self.sample_rate))
        # Passed to the jitted step as an argument: a closed-over array would be baked into it.
        self.arrays = {
            "train_videos": jnp.asarray(np.flatnonzero(load["is_train"])),
            "frames": jnp.asarray(load["frames"]),  # [V, F, S, S, 3] uint8
            "frame_counts": jnp.asarray(load["frame_counts"]),
            "audio": jnp.asarray(np.pad(load["audio"], ((0, 0), (0, self.audio_samples)))),
            "caption_times": jnp.asarray(load["caption_times"]),  # [V, C, 2] start, end
            "caption_counts": jnp.asarray(load["caption_counts"]),
            "caption_tokens": jnp.asarray(packed["token_ids"][load["caption_rows"]]),  # [V, C, L]
        }
        self.size = model_config.video.image_size
        self.data = config.data
        self.records = manifest_records(pack)
        self.row_of_text = {str(t): i for i, t in enumerate(packed["texts"])}
        self.token_ids = packed["token_ids"]

    def _last_start(self, arrays, video):
        import jax.numpy as jnp

        return jnp.maximum(arrays["frame_counts"][video] - (self.window - 1) * self.stride - 1, 0)

    def _window(self, arrays, video, start):
        import jax.numpy as jnp

        indices = jnp.minimum(start + jnp.arange(self.window) * self.stride,
                              arrays["frame_counts"][video] - 1)
        return arrays["frames"][video, indices].astype("float32") / 255.0

    def training_clip(self, arrays, key, video):
        """One augmented clip of `video` as the reader's training mode makes it."""
        import jax
        import jax.numpy as jnp

        keys = jax.random.split(key, 8)
        start = jax.random.randint(keys[0], (), 0, self._last_start(arrays, video) + 1)
        clip = self._window(arrays, video, start)
        short = float(min(clip.shape[1:3]))
        side = short * jax.random.uniform(keys[1], (), minval=self.data.min_crop_scale, maxval=1.0)
        top = jax.random.uniform(keys[2]) * (clip.shape[1] - side)
        left = jax.random.uniform(keys[3]) * (clip.shape[2] - side)
        clip = _crop(jnp, clip, top, left, side, self.size)
        if self.data.flip:
            clip = jnp.where(jax.random.uniform(keys[4]) < 0.5, clip[:, :, ::-1], clip)
        jitter = self.data.color_jitter
        if jitter > 0:
            clip = clip + jax.random.uniform(keys[5], minval=-jitter, maxval=jitter) / 2
            mean = clip.mean(axis=(1, 2), keepdims=True)
            clip = (clip - mean) * jax.random.uniform(keys[6], minval=1 - jitter,
                                                      maxval=1 + jitter) + mean
            grey = clip @ jnp.array([0.299, 0.587, 0.114])
            factor = jax.random.uniform(keys[7], minval=1 - jitter, maxval=1 + jitter)
            clip = grey[..., None] + (clip - grey[..., None]) * factor
        window_start = start.astype("float32") / self.fps
        first = jnp.round(window_start * self.sample_rate).astype("int32")
        audio = jax.lax.dynamic_slice(arrays["audio"][video], (first,), (self.audio_samples,))
        slots, valid = _caption_choice(
            jnp, arrays["caption_times"][video], arrays["caption_counts"][video], window_start,
            window_start + self.window * self.stride / self.fps, self.data.num_candidates)
        ids = jnp.where(valid[:, None], arrays["caption_tokens"][video, slots], 0)
        return {"video": jnp.clip(clip, 0.0, 1.0), "audio": audio,
                "text": {"token_ids": ids, "padding_mask": ids != 0},
                "audio_mask": jnp.array(True), "text_mask": valid}

    def training_batch(self, arrays, key, batch_size: int) -> dict:
        import jax

        pick, clips = jax.random.split(key)
        videos = jax.random.choice(pick, arrays["train_videos"], (batch_size,))
        return jax.vmap(lambda k, v: self.training_clip(arrays, k, v))(
            jax.random.split(clips, batch_size), videos)

    def val_events(self):
        """The val split's narrated events, as `mmv_tf.evaluate` takes them: clips `[E, T, S, S, 3]`
        (window centred on the event, frame resized to the crop size), token ids `[E, L]`, labels."""
        import jax
        import jax.numpy as jnp

        from mmv_tf.evaluate import centred_window_start

        arrays = self.arrays
        starts, videos, rows, labels = [], [], [], []
        for video, record in enumerate(self.records):
            if record["split"] != "val":
                continue
            for event in record["events"]:
                if event["narration"]:
                    starts.append(centred_window_start(event, self.window * self.stride / self.fps,
                                                       self.fps, int(self._last_start(arrays, video))))
                    videos.append(video)
                    rows.append(self.row_of_text[event["narration"]["text"]])
                    labels.append(f"{event['digit']} {event['direction']}")
        clips = jnp.stack([self._window(arrays, v, s) for v, s in zip(videos, starts)])
        clips = jax.image.resize(clips, clips.shape[:2] + (self.size, self.size, 3), "linear",
                                 antialias=True)
        return jnp.clip(clips, 0.0, 1.0), self.token_ids[rows], labels


def _split_labels(labels, part: int) -> list[str]:
    return [label.split()[part] for label in labels]


def train(args) -> None:
    import jax
    import keras

    from mmv_tf.evaluate import retrieval_metrics
    from mmv_tf.index import l2_normalized
    from mmv_tf.models.presets import build_model
    from mmv_tf.text.word_vectors import WordVectors
    from mmv_tf.training.trainer import MMVTrainer, learning_rate_schedule

    began = time.perf_counter()
    config = load_train_config(args.config, args.set)
    model_config = config.model_config()
    keras.utils.set_random_seed(config.seed)
    packed = np.load(Path(args.pack) / "pack.npz")
    vocabulary = tuple(packed["vocabulary"].tobytes().decode().split("\n"))
    table = np.zeros((len(vocabulary), packed["used_vectors"].shape[1]), np.float32)
    table[packed["used_rows"] - 2] = packed["used_vectors"]  # the only rows a caption reaches
    words = WordVectors(vocabulary, table, str(packed["word_vectors_source"]))
    network = build_model(model_config, word_vectors=words)
    trainer = MMVTrainer(network, config.loss)
    optimizer = keras.optimizers.Adam(config.optimizer.learning_rate,
                                      global_clipnorm=config.optimizer.clip_norm)
    trainer.compile(optimizer=optimizer)
    corpus = DeviceCorpus(Path(args.arrays), Path(args.pack), config, model_config)
    batch_size = config.train.batch_size
    trainer(corpus.training_batch(corpus.arrays, jax.random.key(0), 1))  # build
    optimizer.build(trainer.trainable_variables)
    rate_slot = [v.path for v in optimizer.variables].index(optimizer.learning_rate.path)
    state = ([v.value for v in trainer.trainable_variables],
             [v.value for v in trainer.non_trainable_variables],
             [v.value for v in optimizer.variables],
             [v.value for v in trainer.metrics_variables])

    def step(state, arrays, key, learning_rate):
        trainable, non_trainable, optimizer_variables, metrics_variables = state
        optimizer_variables = list(optimizer_variables)
        optimizer_variables[rate_slot] = learning_rate.astype(optimizer_variables[rate_slot].dtype)
        batch = corpus.training_batch(arrays, key, batch_size)
        return trainer.train_step((trainable, non_trainable, optimizer_variables, metrics_variables),
                                  batch)

    train_step = jax.jit(step, donate_argnums=0)
    forward = jax.jit(lambda trainable, non_trainable, inputs: trainer.network.stateless_call(
        trainable[: len(network.trainable_variables)], non_trainable, inputs, training=False)[0])
    val_clips, val_ids, val_labels = corpus.val_events()
    space = type(network.head).space_for("video", "text")
    history = []

    def evaluate(state, step_number: int, logs: dict) -> None:
        trainable, non_trainable = state[0], state[1][: len(network.non_trainable_variables)]
        video, text = [], []
        for first in range(0, len(val_ids), 128):
            ids = val_ids[first:first + 128]
            outputs = forward(trainable, non_trainable, {
                "video": val_clips[first:first + 128],
                "text": {"token_ids": ids, "padding_mask": ids != 0}})
            video.append(np.asarray(outputs["video"][space]))
            text.append(np.asarray(outputs["text"][space]))
        similarity = l2_normalized(np.concatenate(text)) @ l2_normalized(np.concatenate(video)).T
        metrics = retrieval_metrics(similarity, val_labels)
        for name, part in (("digit", 0), ("direction", 1)):
            metrics[f"{name}_precision@10"] = retrieval_metrics(
                similarity, _split_labels(val_labels, part))["label_precision@10"]
        line = {"step": step_number, "minutes": round((time.perf_counter() - began) / 60, 2),
                **{k: round(float(v), 4) for k, v in logs.items()},
                **{f"val_{k}": v for k, v in metrics.items() if k != "chance"}}
        history.append(line)
        print(json.dumps(line), flush=True)

    # The config's schedule, shortened at step 120 if the budget allows fewer steps (the warm-up,
    # which the steps before that lie in when warmup_steps >= 120, does not depend on the length).
    schedule = learning_rate_schedule(config.optimizer, config.train.steps)
    key = jax.random.key(config.seed)
    number, logs = 0, {}
    deadline = began + args.minutes * 60
    timed_from, steps = None, config.train.steps
    while number < steps:
        key, step_key = jax.random.split(key)
        logs, state = train_step(state, corpus.arrays, step_key, np.float32(schedule(number)))
        number += 1
        if number == 20:
            jax.block_until_ready(logs)
            timed_from = (time.perf_counter(), number)
        if number == 120:
            jax.block_until_ready(logs)
            per_step = (time.perf_counter() - timed_from[0]) / (number - timed_from[1])
            room = deadline - time.perf_counter() - args.reserve_seconds
            steps = max(number + 1, min(config.train.steps, number + int(room / per_step)))
            schedule = learning_rate_schedule(config.optimizer, steps)
            print(json.dumps({"step_seconds": round(per_step, 4), "steps": steps}), flush=True)
        if number % args.eval_every == 0 or number == steps:
            evaluate(state, number, {k: float(v) for k, v in logs.items()})
    for variable, value in zip(trainer.trainable_variables, state[0]):
        variable.assign(value)
    for variable, value in zip(trainer.non_trainable_variables, state[1]):
        variable.assign(value)
    final = dataclasses.replace(config, train=dataclasses.replace(config.train, steps=number))
    with atomic_path(args.out) as out:
        out.mkdir(parents=True)
        np.savez_compressed(out / WEIGHTS, **{f"{i:04d}": np.asarray(v.value)
                                              for i, v in enumerate(network.weights)})
        (out / "config.yaml").write_text(yaml.safe_dump(config_lib.to_dict(final), sort_keys=False))
        (out / "metrics.jsonl").write_text("".join(json.dumps(h) + "\n" for h in history))
    print(f"saved {args.out} after {number} steps, {(time.perf_counter() - began) / 60:.1f} min", flush=True)


# ---------------------------------------------------------------- convert (TensorFlow)

def convert(args) -> None:
    from mmv_tf.text.word_vectors import load_word_vectors
    from mmv_tf.training.run import build_training

    run = Path(args.run)
    config = load_train_config(run / "config.yaml")
    network, _, optimizer, checkpoint, manager = build_training(config, run)
    with np.load(run / WEIGHTS) as saved:
        values = [saved[f"{i:04d}"] for i in range(len(saved.files))]
    if [tuple(v.shape) for v in network.weights] != [v.shape for v in values]:
        raise SystemExit(f"{run / WEIGHTS} does not fit the network of {run / 'config.yaml'}")
    for variable, value in zip(network.weights, values):
        variable.assign(value)
    text = config.model_config().text
    network.text_encoder.set_word_vectors(
        load_word_vectors(text.word_vectors, text.vocabulary_size).vectors[: text.vocabulary_size])
    optimizer.iterations.assign(config.train.steps)
    print(f"wrote {manager.save(checkpoint_number=config.train.steps)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("pack", help="speak and tokenise the corpus (needs espeak-ng, TensorFlow)")
    p.add_argument("--corpus", required=True, help="demo corpus folder (manifest.jsonl)")
    p.add_argument("--config", default="configs/demo.yaml")
    p.add_argument("--seed", type=int, default=0, help="the seed the corpus was made with")
    p.add_argument("--workers", type=int, default=os.cpu_count())
    p.add_argument("--out", required=True)
    p = commands.add_parser("render", help="re-render the train and val videos into ARRAYS/*.npy")
    p.add_argument("--pack", required=True)
    p.add_argument("--workers", type=int, default=os.cpu_count())
    p.add_argument("--out", required=True)
    p = commands.add_parser("train", help="train under KERAS_BACKEND=jax with the corpus on device")
    p.add_argument("--pack", required=True)
    p.add_argument("--arrays", required=True)
    p.add_argument("--config", default="configs/demo.yaml")
    p.add_argument("--set", action="append", default=[], help="config override key.path=value")
    p.add_argument("--minutes", type=float, default=10.0, help="wall-clock budget, set-up included")
    p.add_argument("--reserve-seconds", type=float, default=30.0,
                   help="kept back from training for the last evaluation and saving")
    p.add_argument("--eval-every", type=int, default=1000)
    p.add_argument("--out", required=True)
    p = commands.add_parser("convert", help="RUN/network_weights.npz -> a TensorFlow checkpoint")
    p.add_argument("run")
    args = parser.parse_args()
    {"pack": pack, "render": render, "train": train, "convert": convert}[args.command](args)


if __name__ == "__main__":
    main()
