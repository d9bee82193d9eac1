"""The paper's design study on the demo corpus: FAC, Shared and Disjoint heads trained on video + audio
+ text, and FAC on video + audio and on video + text alone, all with one recipe, each evaluated by
the `mmv-tf evaluate` verbs; the table, and whether the paper's orderings hold.

Usage: python benchmarks/design_study.py --corpus data/demo [--work data/design-study]
       [--config configs/design_study_cpu.yaml] [--device-resident] [--exports DIR]
       [--phase all|train|evaluate] [--out benchmarks/results/design_study_cpu.json]

Steps, each an `mmv-tf` command: `data ingest` of the corpus (or `data pack` too, with
--device-resident: the GPU recipe, configs/design_study_gpu.yaml under KERAS_BACKEND=jax), then for
each variant `train --config CONFIG --set ...` and `export`; the evaluation folders (`data captions`,
`data clips --label digit`, `data sounds`; or those of benchmarks/demo_evaluation.py with
--exports), then per model `evaluate retrieval` (test narrations -> test event clips),
`evaluate video-classification` (digit of each event clip, linear probe at the model's clip,
one clip per event) and
`evaluate audio-classification` (spoken digit of each narration). A finished step is not redone.
`--phase train` stops after the exports of the models (a machine without TensorFlow for the
evaluation can train, then this machine evaluates with `--phase evaluate`).
The paper (Alayrac et al. 2020, Tables 1-2): FAC beats Shared and Disjoint, and video + audio + text
beats video + audio and video + text.
"""

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from demo_evaluation import once  # noqa: E402
from demo_pipeline import MMV_TF  # noqa: E402
from machine import describe_machine  # noqa: E402

# The video probe at the model's clip, one random clip per training event and the centred window of
# each test event: five models' evaluations in about the time of one of demo_evaluation.py's.
VIDEO_PROBE = ["--frames", "16", "--stride", "1", "--crop", "64", "--passes", "1", "--no-flip",
               "--test-windows", "1"]
VARIANTS = {  # name: (folder, --set overrides)
    "FAC, V+A+T": ("fac_vat", []),
    "Shared, V+A+T": ("shared_vat", ["model.head.design=shared"]),
    "Disjoint, V+A+T": ("disjoint_vat", ["model.head.design=disjoint"]),
    "FAC, V+A": ("fac_va", ["loss.weight_vt=0"]),
    "FAC, V+T": ("fac_vt", ["loss.weight_va=0"]),
}
COLUMNS = {  # column: (verb folder, path into its metrics.json)
    "text->video R@10": ("retrieval", ("text_to_video", "R@10")),
    "text->video label R-precision": ("retrieval", ("text_to_video", "label_R_precision")),
    "video probe, digit": ("video", ("top1",)),
    "audio probe, spoken digit": ("audio", ("top1",)),
}
# The paper's claims, as (better, worse, column) comparisons.
CLAIMS = {
    "FAC beats Shared": [("FAC, V+A+T", "Shared, V+A+T", c) for c in COLUMNS],
    "FAC beats Disjoint": [("FAC, V+A+T", "Disjoint, V+A+T", c) for c in COLUMNS],
    "V+A+T beats V+A": [("FAC, V+A+T", "FAC, V+A", "video probe, digit")],
    "V+A+T beats V+T": [("FAC, V+A+T", "FAC, V+T", "video probe, digit")],
}


def train_variants(corpus: str, work: Path, config: str, device_resident: bool) -> None:
    once(work / "shards" / "dataset.json", MMV_TF, "data", "ingest", corpus, "--out", work / "shards",
         "--size", "72")
    data = work / "shards"
    if device_resident:
        once(work / "pack" / "pack.json", MMV_TF, "data", "pack", data, "--config", config,
             "--out", work / "pack")
        data = work / "pack"
    for folder, sets in VARIANTS.values():
        run_dir, model = work / "runs" / folder, work / "models" / folder
        flags = [arg for value in sets for arg in ("--set", value)]
        flags += ["--device-resident"] if device_resident else []
        flags += ["--resume"] if (run_dir / "config.yaml").exists() else []  # an interrupted run
        once(model / "mmv_tf.json", MMV_TF, "train", "--config", config, "--data", data,
             "--out", run_dir, *flags)
        once(model / "mmv_tf.json", MMV_TF, "export", run_dir, "--out", model)


def evaluate_variants(corpus: str, work: Path, exports: Path) -> dict:
    """{variant: {column: figure}} of every trained variant."""
    for name, command in (("captions", ["data", "captions", corpus]),
                          ("clips_digit", ["data", "clips", corpus, "--label", "digit"]),
                          ("sounds", ["data", "sounds", corpus])):
        once(exports / name / ".mmv-tf.json", MMV_TF, *command, "--out", exports / name)
    verbs = {"retrieval": ["retrieval", exports / "captions"],
             "video": ["video-classification", exports / "clips_digit", *VIDEO_PROBE],
             "audio": ["audio-classification", exports / "sounds", "--windows", "1"]}
    table = {}
    for variant, (folder, _) in VARIANTS.items():
        model, row = work / "models" / folder, {}
        for verb, args in verbs.items():
            out = work / "evaluations" / folder / verb
            once(out / "metrics.json", MMV_TF, "evaluate", *args, "--model", model, "--out", out)
        for column, (verb, path) in COLUMNS.items():
            value = json.loads((work / "evaluations" / folder / verb / "metrics.json").read_text())
            for key in path:
                value = value[key]
            row[column] = round(value, 3)
        table[variant] = row
    return table


def claims_hold(table: dict) -> dict:
    """{claim: {"holds": all comparisons hold, "comparisons": [...]}}."""
    result = {}
    for claim, comparisons in CLAIMS.items():
        rows = [{"column": c, "better": b, "worse": w, "holds": table[b][c] > table[w][c]}
                for b, w, c in comparisons]
        result[claim] = {"holds": all(r["holds"] for r in rows), "comparisons": rows}
    return result


def markdown(table: dict, claims: dict, config: str) -> str:
    lines = [f"| variant (`{config}`) | " + " | ".join(COLUMNS) + " |",
             "|---" * (len(COLUMNS) + 1) + "|"]
    lines += [f"| {variant} | " + " | ".join(f"{row[c]:.3f}" for c in COLUMNS) + " |"
              for variant, row in table.items()]
    lines.append("")
    for claim, verdict in claims.items():
        shown = ", ".join(f"{r['column']} {'yes' if r['holds'] else 'no'}" for r in verdict["comparisons"])
        lines.append(f"- {claim}: {'holds' if verdict['holds'] else 'does not hold'} ({shown})")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", required=True, help="a demo corpus (mmv-tf data demo)")
    parser.add_argument("--work", default="data/design-study")
    parser.add_argument("--config", default="configs/design_study_cpu.yaml")
    parser.add_argument("--device-resident", action="store_true", help="train from a pack (JAX)")
    parser.add_argument("--exports", help="evaluation folders to reuse (demo_evaluation.py's --work)")
    parser.add_argument("--phase", choices=("all", "train", "evaluate"), default="all")
    parser.add_argument("--out", default=str(HERE / "results" / "design_study_cpu.json"))
    args = parser.parse_args()

    work = Path(args.work)
    if args.phase in ("all", "train"):
        train_variants(args.corpus, work, args.config, args.device_resident)
    if args.phase == "train":
        return
    table = evaluate_variants(args.corpus, work, Path(args.exports) if args.exports else work / "exports")
    claims = claims_hold(table)
    record = {"benchmark": "design_study", "command": " ".join(["python"] + sys.argv), "config": args.config,
              "variants": {v: {"sets": sets} for v, (_, sets) in VARIANTS.items()}, "table": table,
              "claims": claims, "machine": describe_machine()}
    Path(args.out).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    Path(args.out).with_suffix(".md").write_text(markdown(table, claims, args.config), encoding="utf-8")
    print(markdown(table, claims, args.config))


if __name__ == "__main__":
    main()
