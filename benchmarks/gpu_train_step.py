"""MMV train steps on an accelerator under Keras's JAX backend: clips/s, step and compile time.

Usage: KERAS_BACKEND=jax python benchmarks/gpu_train_step.py [--preset s3dg] [--batch 32]
       [--steps 10] [--precision mixed_bfloat16] [--parts infer,tower,full] [--out results.json]

Three parts, each compiled with `jax.jit` on a batch that already sits on the device:
- `infer`: the video tower's forward pass (inference mode);
- `tower`: a train step of the video tower alone, as the peer baseline measures one (tower, a
  400-way linear classifier, cross-entropy on random labels, Adam);
- `full`: `MMVTrainer.train_step`, as Keras's `fit` runs it (video, audio and two narrations per
  clip, weighted NCE + MIL-NCE, Adam).
The text table is random (65536 words x 300, the paper's word2vec size), so no word-vector file is
needed. Prints one JSON line after each part, so a run stopped early still reports what it measured.
"""

import argparse
import json
import os
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "jax")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import jax  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
from synthetic import synthetic_batch  # noqa: E402

from mmv_tf.models.presets import from_preset, preset_config  # noqa: E402
from mmv_tf.text.word_vectors import WordVectors  # noqa: E402
from mmv_tf.training.trainer import MMVTrainer  # noqa: E402


def timed(step, state, data, steps: int) -> dict:
    """Compile and run `state, out = step(state, data)` once, then time `steps` more calls."""
    start = time.perf_counter()
    state, out = step(state, data)
    jax.block_until_ready(out)
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(steps):
        state, out = step(state, data)
    jax.block_until_ready(out)
    step_s = (time.perf_counter() - start) / steps
    batch = len(jax.tree.leaves(data)[0])
    return {"step_s": round(step_s, 4), "clips_per_s": round(batch / step_s, 1),
            "compile_and_first_step_s": round(compile_s, 1)}


def values(variables) -> list:
    """Copies of the variables' values, so a step that donates them leaves the model's own intact."""
    return [jax.numpy.array(v.value) for v in variables]


def video_inference(video_encoder, video, steps: int) -> dict:
    """The video tower's forward pass in inference mode."""
    params, state = values(video_encoder.trainable_variables), values(video_encoder.non_trainable_variables)
    embed = jax.jit(lambda params, video: (params, video_encoder.stateless_call(
        params, state, video, training=False)[0]))
    return timed(embed, params, video, steps)


def video_tower_train(video_encoder, video, steps: int, classes: int = 400) -> dict:
    """A train step of the video tower alone: linear classifier, cross-entropy, Adam."""
    inputs = keras.Input(video.shape[1:])
    model = keras.Model(inputs, keras.layers.Dense(classes)(video_encoder(inputs)))
    optimizer = keras.optimizers.Adam(1e-3)
    optimizer.build(model.trainable_variables)
    labels = jax.device_put(np.random.default_rng(0).integers(0, classes, len(video)))

    def loss_fn(params, state, video):
        logits, state = model.stateless_call(params, state, video, training=True)
        loss = keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
        return loss.mean(), state

    def step(variables, video):
        params, state, optimizer_state = variables
        (loss, state), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, state, video)
        params, optimizer_state = optimizer.stateless_apply(optimizer_state, grads, params)
        return (params, state, optimizer_state), loss

    variables = (values(model.trainable_variables), values(model.non_trainable_variables),
                 values(optimizer.variables))
    return timed(jax.jit(step, donate_argnums=0), variables, video, steps)


def full_train(trainer: MMVTrainer, batch: dict, steps: int) -> dict:
    """`MMVTrainer.train_step`: all three modalities, the losses and Adam."""
    state = (values(trainer.trainable_variables), values(trainer.non_trainable_variables),
             values(trainer.optimizer.variables), values(trainer.metrics_variables))

    def step(state, data):
        logs, state = trainer.train_step(state, data)
        return state, logs

    return timed(jax.jit(step, donate_argnums=0), state, batch, steps)


def build(preset: str, batch: int, candidates: int, vocabulary: int, word_dim: int):
    """The preset's MMV model in a compiled trainer, and a random batch on the device."""
    config = preset_config(preset)
    rng = np.random.default_rng(0)
    words = WordVectors(tuple(f"w{i}" for i in range(vocabulary)),
                        rng.normal(size=(vocabulary, word_dim)).astype("float32"), "random")
    model = from_preset(preset, {"text": {"vocabulary_size": vocabulary}}, word_vectors=words)
    trainer = MMVTrainer(model)
    trainer.compile(optimizer=keras.optimizers.Adam(2e-3), jit_compile=True)
    host_batch = synthetic_batch(config, batch, candidates, vocabulary)
    trainer(jax.tree.map(lambda x: x[:1], host_batch))  # build
    trainer.optimizer.build(trainer.trainable_variables)
    return trainer, jax.device_put(host_batch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="s3dg")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--candidates", type=int, default=2)
    parser.add_argument("--vocabulary", type=int, default=65536)
    parser.add_argument("--word-dim", type=int, default=300)
    parser.add_argument("--precision", default="mixed_bfloat16")
    parser.add_argument("--parts", default="infer,tower,full", help="comma-separated: infer, tower, full")
    parser.add_argument("--out", help="also write the final JSON here")
    args = parser.parse_args()

    report = {"benchmark": "gpu_train_step", "command": " ".join(["python"] + sys.argv),
              "device": str(jax.devices()[0].device_kind), "jax": jax.__version__,
              "keras": keras.__version__, "preset": args.preset, "batch": args.batch,
              "precision": args.precision}
    keras.mixed_precision.set_global_policy(args.precision)
    trainer, batch = build(args.preset, args.batch, args.candidates, args.vocabulary, args.word_dim)
    report["input"] = {"video": list(batch["video"].shape), "candidates": args.candidates}
    parts = {"infer": lambda: video_inference(trainer.network.video_encoder, batch["video"], args.steps),
             "tower": lambda: video_tower_train(trainer.network.video_encoder, batch["video"], args.steps),
             "full": lambda: full_train(trainer, batch, args.steps)}
    for part in args.parts.split(","):
        report[part] = parts[part]()
        print(json.dumps(report), flush=True)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as out:
            json.dump(report, out, indent=1)


if __name__ == "__main__":
    main()
