"""One MMV train step on an accelerator under Keras's JAX backend: clips/s, step and compile time.

Usage: KERAS_BACKEND=jax python benchmarks/gpu_train_step.py [--preset s3dg] [--batch 32]
       [--steps 10] [--precision mixed_bfloat16] [--out results.json]

The step is `MMVTrainer.train_step` (forward of video, audio and two narrations per clip, weighted
NCE + MIL-NCE, Adam update) compiled with `jax.jit` on a batch that already sits on the device, as
Keras's `fit` runs it. The text table is random (65536 words x 300, the paper's word2vec size), so
no word-vector file is needed. Prints one JSON line after each phase, so a run stopped early still
reports what it measured. Inference (the video tower alone) is timed first, because training
donates the weights' buffers.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="s3dg")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--candidates", type=int, default=2)
    parser.add_argument("--vocabulary", type=int, default=65536)
    parser.add_argument("--word-dim", type=int, default=300)
    parser.add_argument("--precision", default="mixed_bfloat16")
    parser.add_argument("--out", help="also write the final JSON here")
    args = parser.parse_args()

    report = {"benchmark": "gpu_train_step", "command": " ".join(["python"] + sys.argv),
              "device": str(jax.devices()[0].device_kind), "jax": jax.__version__,
              "keras": keras.__version__, "preset": args.preset, "batch": args.batch,
              "precision": args.precision}

    def emit():
        print(json.dumps(report), flush=True)
        if args.out:
            with open(args.out, "w", encoding="utf-8") as out:
                json.dump(report, out, indent=1)

    keras.mixed_precision.set_global_policy(args.precision)
    config = preset_config(args.preset)
    rng = np.random.default_rng(0)
    words = WordVectors(tuple(f"w{i}" for i in range(args.vocabulary)),
                        rng.normal(size=(args.vocabulary, args.word_dim)).astype("float32"), "random")
    model = from_preset(args.preset, {"text": {"vocabulary_size": args.vocabulary}}, word_vectors=words)
    report["input"] = {"video": [args.batch, config.video.num_frames, config.video.image_size,
                                 config.video.image_size, 3], "candidates": args.candidates}
    trainer = MMVTrainer(model)
    trainer.compile(optimizer=keras.optimizers.Adam(2e-3), jit_compile=True)
    host_batch = synthetic_batch(config, args.batch, args.candidates, args.vocabulary)
    trainer(jax.tree.map(lambda x: x[:1], host_batch))  # build
    trainer.optimizer.build(trainer.trainable_variables)
    batch = jax.device_put(host_batch)
    video_params = [v.value for v in model.video_encoder.trainable_variables]
    video_state = [v.value for v in model.video_encoder.non_trainable_variables]
    embed = jax.jit(lambda params, video: model.video_encoder.stateless_call(
        params, video_state, video, training=False)[0])
    start = time.perf_counter()
    jax.block_until_ready(embed(video_params, batch["video"]))
    report["infer_compile_s"] = round(time.perf_counter() - start, 1)
    start = time.perf_counter()
    for _ in range(args.steps):
        features = embed(video_params, batch["video"])
    jax.block_until_ready(features)
    step_s = (time.perf_counter() - start) / args.steps
    report["infer_video"] = {"step_s": round(step_s, 4), "clips_per_s": round(args.batch / step_s, 1)}
    emit()

    state = ([v.value for v in trainer.trainable_variables],
             [v.value for v in trainer.non_trainable_variables],
             [v.value for v in trainer.optimizer.variables],
             [v.value for v in trainer.metrics_variables])

    def step(state, data):
        logs, state = trainer.train_step(state, data)
        return state, logs

    train_step = jax.jit(step, donate_argnums=0)
    start = time.perf_counter()
    state, logs = train_step(state, batch)
    jax.block_until_ready(logs)
    report["train_compile_and_first_step_s"] = round(time.perf_counter() - start, 1)
    emit()
    start = time.perf_counter()
    for _ in range(args.steps):
        state, logs = train_step(state, batch)
    jax.block_until_ready(logs)
    step_s = (time.perf_counter() - start) / args.steps
    report["train"] = {"step_s": round(step_s, 4), "clips_per_s": round(args.batch / step_s, 1),
                       "loss": float(logs["loss"]), "steps": args.steps}
    emit()


if __name__ == "__main__":
    main()
