"""The demo pipeline README describes, run and timed with `mmv-tf` commands: corpus, embed, index,
zero-shot retrieval (`mmv-tf data captions` + `mmv-tf evaluate retrieval`), the example search and
the 40 templated queries.

Usage: python benchmarks/demo_pipeline.py [--work data/bench-demo] [--videos 1000]
       [--model M] [--earlier-model M2] [--out benchmarks/results/demo_pipeline.json]

Steps, each one `mmv-tf` command in its own process, timed wall-clock:
`data demo --videos N` (skipped, and not timed, when WORK/demo already holds a finished corpus),
`embed WORK/demo --split test`, `index`, `data captions --split test` and `evaluate retrieval` of
those captions (each narration against the clips centred on the test events), and
`search --text "a three moving up" --json`, whose hits are labelled with the event each window
overlaps most (as benchmarks/query_precision.py labels them). Then benchmarks/query_precision.py
runs on the index (it writes benchmarks/results/query_precision.json). `--earlier-model` evaluates a
second model on the same corpus (README's earlier default, from git history:
`git archive d403100 savedmodels/mmv_s3dg_tiny_demo | tar -x -C /tmp/earlier`, then
`--earlier-model /tmp/earlier/savedmodels/mmv_s3dg_tiny_demo`). Writes one JSON file with the
commands, seconds, figures, the model folder's size and the machine.
"""

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from machine import describe_machine  # noqa: E402
from query_precision import window_label  # noqa: E402

from mmv_tf.saved_model import DEFAULT_MODEL  # noqa: E402

MMV_TF = str(Path(sys.executable).parent / "mmv-tf")
QUERY = "a three moving up"


def run(*args: str) -> tuple[str, float]:
    """(stdout, seconds) of one command; fails loudly with its output."""
    start = time.perf_counter()
    done = subprocess.run(list(args), capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"{' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    print(f"{seconds:7.1f} s  {' '.join(args)}", flush=True)
    return done.stdout, seconds


def retrieval(model: str, captions: Path, out: Path) -> tuple[dict, float]:
    """(text -> video figures with their chance levels, seconds) of `evaluate retrieval`."""
    out_text, seconds = run(MMV_TF, "evaluate", "retrieval", str(captions), "--model", model,
                            "--out", str(out), "--overwrite", "--json")
    result = json.loads(out_text)
    return {"queries": result["captions"], "space": result["space"], **result["text_to_video"]}, seconds


def folder_mib(path: Path) -> float:
    return round(sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default="data/bench-demo")
    parser.add_argument("--videos", type=int, default=1000)
    parser.add_argument("--model", default=str(DEFAULT_MODEL))
    parser.add_argument("--earlier-model", help="a second model to evaluate on the same corpus")
    parser.add_argument("--out", default=str(HERE / "results" / "demo_pipeline.json"))
    args = parser.parse_args()

    work = Path(args.work)
    corpus, emb, index = work / "demo", work / "emb", work / "index"
    captions, evaluation_out = work / "captions", work / "retrieval"
    steps, seconds = {}, {}
    if (corpus / "manifest.jsonl").is_file():
        steps["data demo"] = "reused an existing corpus (not timed)"
    else:
        _, seconds["data demo"] = run(MMV_TF, "data", "demo", "--out", str(corpus),
                                      "--videos", str(args.videos))
    shutil.rmtree(emb, ignore_errors=True)  # embed resumes a finished folder: time a fresh one
    records = {r["id"]: r for r in map(json.loads, (corpus / "manifest.jsonl").read_text().splitlines())}
    out, seconds["embed"] = run(MMV_TF, "embed", str(corpus), "--split", "test", "--model", args.model,
                                "--out", str(emb))
    steps["embed"] = out.strip().splitlines()[-1]
    out, seconds["index"] = run(MMV_TF, "index", str(emb), "--out", str(index), "--overwrite")
    steps["index"] = out.strip().splitlines()[-1]
    _, seconds["data captions"] = run(MMV_TF, "data", "captions", str(corpus), "--split", "test",
                                      "--out", str(captions), "--overwrite")
    evaluation, seconds["evaluate"] = retrieval(args.model, captions, evaluation_out)
    out, seconds["search"] = run(MMV_TF, "search", "--index", str(index), "--model", args.model,
                                 "--text", QUERY, "--json")
    hits = []
    for hit in json.loads(out)["results"]:
        label = window_label(records[hit["video_id"]], hit["start"], hit["end"])
        hits.append({"rank": hit["rank"], "video_id": hit["video_id"], "start": hit["start"],
                     "end": hit["end"], "label": " ".join(label) if label else None})
    _, seconds["query_precision"] = run(sys.executable, str(HERE / "query_precision.py"), "--index",
                                        str(index), "--corpus", str(corpus), "--model", args.model)
    result = {
        "benchmark": "demo_pipeline",
        "command": " ".join(["python"] + sys.argv),
        "model": args.model, "model_mib": folder_mib(Path(args.model)),
        "videos": len(records), "steps": steps, "seconds": {k: round(v, 1) for k, v in seconds.items()},
        "evaluate_test": evaluation,
        "search": {"query": QUERY, "hits": hits,
                   "hits_with_label": sum(h["label"] == "three up" for h in hits)},
        "query_precision": json.loads((HERE / "results" / "query_precision.json").read_text()),
    }
    if args.earlier_model:
        evaluation, _ = retrieval(args.earlier_model, captions, work / "retrieval-earlier")
        result["earlier_model"] = {"model": args.earlier_model, "evaluate_test": evaluation}
    result["machine"] = describe_machine()
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
