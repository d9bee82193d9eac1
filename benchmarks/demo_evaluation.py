"""The default model evaluated by the `mmv-tf evaluate` verbs on folders the demo corpus exports.

Usage: python benchmarks/demo_evaluation.py --corpus data/demo [--work data/bench-eval] [--model M]
       [--out benchmarks/results/demo_evaluation.json]

Steps, each one `mmv-tf` command in its own process, timed wall-clock:
- `data clips --label digit` and `--label direction` (train and test events), then
  `evaluate video-classification` of each, at the model's clip (16 frames, stride 1, 64 px crop),
  2 random clips per training event, not mirrored, 3 windows per test event;
- `data sounds` (the narrations, train and test), then `evaluate audio-classification`;
- `data digits --split test` (30 stills per digit), then `evaluate image-classification`
  (linear probe on a held-out quarter, zero-shot by digit names), the video model on still images.
(Retrieval is in benchmarks/demo_pipeline.py.) Exports finished by an earlier run in --work are
reused. Writes one JSON file with the commands, seconds, figures and the machine.
"""

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from demo_pipeline import MMV_TF, run  # noqa: E402
from machine import describe_machine  # noqa: E402

from mmv_tf.saved_model import DEFAULT_MODEL  # noqa: E402

# The model's clip; no mirroring: a mirrored digit is another glyph, and left and right are classes.
MODEL_CLIP = ["--frames", "16", "--stride", "1", "--crop", "64", "--passes", "2", "--no-flip",
              "--test-windows", "3"]


def once(done: Path, *command) -> None:
    """Run `command` unless `done` (its finished output's marker file) exists."""
    if done.exists():
        print(f"   reused  {done.parent}", flush=True)
        return
    run(*map(str, command))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", required=True, help="a demo corpus (mmv-tf data demo)")
    parser.add_argument("--work", default="data/bench-eval")
    parser.add_argument("--model", default=str(DEFAULT_MODEL))
    parser.add_argument("--out", default=str(HERE / "results" / "demo_evaluation.json"))
    args = parser.parse_args()

    work, corpus = Path(args.work), args.corpus
    exports = {"clips_digit": ["data", "clips", corpus, "--label", "digit"],
               "clips_direction": ["data", "clips", corpus, "--label", "direction"],
               "sounds": ["data", "sounds", corpus],
               "digits": ["data", "digits", "--split", "test", "--per-class", "30"]}
    verbs = {"video_digit": ("clips_digit", ["video-classification", *MODEL_CLIP]),
             "video_direction": ("clips_direction", ["video-classification", *MODEL_CLIP]),
             "audio_digit": ("sounds", ["audio-classification", "--windows", "1"]),
             "image_digit": ("digits", ["image-classification"])}
    seconds, results, commands = {}, {}, []
    for name, command in exports.items():  # a finished export of an earlier run is reused
        once(work / name / ".mmv-tf.json", MMV_TF, *command, "--out", work / name)
        commands.append(" ".join([MMV_TF, *command, "--out", str(work / name)]))
    for name, (data, verb) in verbs.items():
        command = [MMV_TF, "evaluate", verb[0], str(work / data), *verb[1:], "--model", args.model,
                   "--out", str(work / f"eval_{name}"), "--overwrite", "--json"]
        out, seconds[f"evaluate {name}"] = run(*command)
        commands.append(" ".join(command))
        result = json.loads(out[out.index("{\n"):])
        results[name] = {k: result[k] for k in ("top1", "top5", "zero_shot_top1", "examples", "chance",
                                                "partitions") if k in result}
    record = {"benchmark": "demo_evaluation", "command": " ".join(["python"] + sys.argv),
              "model": args.model, "steps": commands, "seconds": {k: round(v, 1) for k, v in seconds.items()},
              "results": results, "machine": describe_machine()}
    Path(args.out).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
