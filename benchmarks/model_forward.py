"""Forward time and peak memory of a full MMV model on one batch of paper-sized clips.

Usage: python benchmarks/model_forward.py [--preset s3dg] [--batch 2] [--frames 32] [--size 200]
       [--repeats 3] [--json] [--out benchmarks/results/model_forward.json]

Video [B, frames, size, size, 3], audio of the same duration at the preset's sample rate,
and one caption per clip, through the towers and the head (inference mode).
"""

import argparse
import resource
import sys
import time

import numpy as np


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="s3dg")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--size", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print one JSON line only")
    parser.add_argument("--out", help="also write the result, as JSON, to this file")
    args = parser.parse_args()

    import tensorflow as tf
    from machine import describe_machine, report

    from mmv_tf.models.presets import from_preset

    rss_start = peak_rss_gib()
    model = from_preset(args.preset, {"video": {"num_frames": args.frames}})
    tokenizer = model.make_tokenizer()
    rng = np.random.default_rng(0)
    seconds = args.frames / model.model_config["video"]["fps"]
    inputs = {
        "video": rng.uniform(size=(args.batch, args.frames, args.size, args.size, 3)).astype("float32"),
        "audio": rng.uniform(-1, 1, size=(args.batch, int(seconds * model.sample_rate))).astype("float32"),
        "text": tokenizer(tf.constant(["now the seven slides to the left"] * args.batch)),
    }
    forward = tf.function(lambda x: model(x, training=False))
    rss_built = peak_rss_gib()
    start = time.perf_counter()
    forward(inputs)  # trace and first run
    first = time.perf_counter() - start
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        outputs = forward(inputs)
        _ = outputs["video"]["vat"].numpy()
        times.append(time.perf_counter() - start)
    result = {
        "benchmark": "model_forward",
        "command": " ".join(["python"] + sys.argv),
        "preset": args.preset,
        "head": model.model_config["head"]["design"],
        "inputs": {"video": list(inputs["video"].shape), "audio": list(inputs["audio"].shape),
                   "text": list(inputs["text"]["token_ids"].shape)},
        "first_call_s": round(first, 3),
        "forward_s_median": round(float(np.median(times)), 3),
        "forward_s_all": [round(t, 3) for t in times],
        "clips_per_s": round(args.batch / float(np.median(times)), 3),
        "peak_rss_gib": round(peak_rss_gib(), 2),
        "model_rss_gib": round(rss_built - rss_start, 2),
        "machine": describe_machine(),
    }
    if not args.json:
        print(f"{args.preset} ({result['head']}) forward on video {result['inputs']['video']}, "
              f"audio {result['inputs']['audio']}, text {result['inputs']['text']}:")
        print(f"  median {result['forward_s_median']} s over {args.repeats} runs "
              f"({result['clips_per_s']} clips/s); first call {result['first_call_s']} s")
        print(f"  peak RSS {result['peak_rss_gib']} GiB (model build {result['model_rss_gib']} GiB)")
        m = result["machine"]
        print(f"  machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, {m['platform']}, "
              f"Keras {m['keras']} on {m['backend']}")
    report(result, args.out)


if __name__ == "__main__":
    main()
