"""Search precision: the 40 queries "a DIGIT moving DIRECTION" against an index of demo windows.

Usage: python benchmarks/query_precision.py --index data/index --corpus data/demo [--model M] [--k 10]

A hit is correct when the corpus event that overlaps its window most shows the query's digit moving
the query's way; a window over no event is wrong. Prints precision@k of the label, of the digit
alone and of the direction alone, averaged over the queries, and writes
benchmarks/results/query_precision.json.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmv_tf.data.synth import DIGIT_WORDS, DIRECTIONS  # noqa: E402
from mmv_tf.saved_model import DEFAULT_MODEL  # noqa: E402


def window_label(record: dict, start: float, end: float) -> tuple[str, str] | None:
    """(digit word, direction) of the event overlapping [start, end] most, or None."""
    overlaps = [(min(end, e["end"]) - max(start, e["start"]), e) for e in record["events"]]
    overlaps = [(amount, e) for amount, e in overlaps if amount > 0]
    if not overlaps:
        return None
    event = max(overlaps, key=lambda pair: pair[0])[1]
    return DIGIT_WORDS[event["digit"]], event["direction"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", required=True)
    parser.add_argument("--corpus", required=True, help="the demo corpus the index was built from")
    parser.add_argument("--model", default=str(DEFAULT_MODEL))
    parser.add_argument("--k", type=int, default=10)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).parent))
    from machine import describe_machine

    from mmv_tf.index import SearchIndex
    from mmv_tf.saved_model import ExportedModel
    from mmv_tf.search import embed_query, search

    lines = (Path(args.corpus) / "manifest.jsonl").read_text(encoding="utf-8").splitlines()
    records = {r["id"]: r for r in map(json.loads, lines)}
    model, index = ExportedModel(args.model), SearchIndex(args.index)
    scores = {"label": [], "digit": [], "direction": []}
    for digit in DIGIT_WORDS:
        for direction in DIRECTIONS:
            modality, query = embed_query(model, text=f"a {digit} moving {direction}")
            _, hits = search(model, index, modality, query, k=args.k)
            labels = [window_label(records[h.item["video_id"]], h.item["start"], h.item["end"])
                      for h in hits]
            scores["label"].append(np.mean([label == (digit, direction) for label in labels]))
            scores["digit"].append(np.mean([label is not None and label[0] == digit for label in labels]))
            scores["direction"].append(np.mean([label is not None and label[1] == direction
                                                for label in labels]))
    report = {"command": " ".join(["python"] + sys.argv), "model": args.model, "index": args.index,
              "windows": len(index.items["windows"]), "queries": len(scores["label"]), "k": args.k,
              **{f"{name}_precision@{args.k}": round(float(np.mean(v)), 4) for name, v in scores.items()},
              "machine": describe_machine()}
    out = Path(__file__).parent / "results" / "query_precision.json"
    out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
