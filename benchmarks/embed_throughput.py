"""Embedding throughput of an exported model's signatures: clips/s for video and audio, texts/s.

Usage: python benchmarks/embed_throughput.py [--model savedmodels/mmv_s3dg_tiny_demo] [--batch 16]
       [--repeats 10] [--json]

Random inputs of the model's clip shape, batched as `mmv-tf embed` batches them; the first call
of each signature (its warm-up) is not timed.
"""

import argparse
import json
import sys
import time

import numpy as np

from mmv_tf.saved_model import DEFAULT_MODEL


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(DEFAULT_MODEL))
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    sys.path.insert(0, __file__.rsplit("/", 1)[0])
    from machine import describe_machine

    from mmv_tf.saved_model import ExportedModel

    model = ExportedModel(args.model, batch_size=args.batch)
    rng = np.random.default_rng(0)
    size, samples = model.image_size, int(model.window_seconds * model.sample_rate)
    inputs = {
        "video": (model.embed_video, rng.uniform(size=(args.batch, model.num_frames, size, size, 3))),
        "audio": (model.embed_audio, rng.uniform(-1, 1, size=(args.batch, samples))),
        "text": (model.embed_text, [f"a {w} moves up to the left" for w in range(args.batch)]),
    }
    rows = {}
    for name, (embed, batch) in inputs.items():
        embed(batch)
        start = time.perf_counter()
        for _ in range(args.repeats):
            embed(batch)
        seconds = (time.perf_counter() - start) / args.repeats
        rows[name] = {"batch": args.batch, "ms_per_batch": round(seconds * 1e3, 2),
                      "per_s": round(args.batch / seconds, 1)}
        if not args.json:
            row = rows[name]
            print(f"{name:5s}: {row['per_s']:8.1f} per s ({row['ms_per_batch']:.1f} ms per batch of "
                  f"{args.batch})", flush=True)
    machine = describe_machine()
    if not args.json:
        print(f"model {args.model}; machine: {machine['cpu']}, {machine['cores']} cores")
    print(json.dumps({"benchmark": "embed_throughput", "command": " ".join(["python"] + sys.argv),
                      "model": model.metadata["name"], "clip": {"frames": model.num_frames, "size": size,
                                                                "audio_samples": samples},
                      "results": rows, "machine": machine}))


if __name__ == "__main__":
    main()
