"""The deflation table: image classification of still digits by naive and BN-tuned deflation of a
video model, and by the video model itself on the static video repeating each image.

Usage: python benchmarks/deflation_table.py [--model savedmodels/mmv_s3dg_tiny_demo]
       [--corpus data/demo-app/corpus] [--work data/deflation] [--frames 2000] [--per-class 30]

Unlabelled images for BN tuning: frames of the corpus's train videos. Labelled images: still
pictures of the test split's digit images (unseen in training), `--per-class` per digit; the
linear probe is fitted on 75% of them and both it and zero-shot (class names through the text
signature, in S_vat) are scored on the other 25%. Writes benchmarks/results/deflation.json.
"""

import argparse
import json
import sys
from pathlib import Path

from mmv_tf.saved_model import DEFAULT_MODEL


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(DEFAULT_MODEL))
    parser.add_argument("--corpus", default="data/demo-app/corpus")
    parser.add_argument("--work", default="data/deflation")
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument("--per-class", type=int, default=30)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).parent))
    from machine import describe_machine

    from mmv_tf.classify import evaluate_classification
    from mmv_tf.data.demo import write_digit_images
    from mmv_tf.deflation import DeflationSettings, deflate
    from mmv_tf.export import export_image_network
    from mmv_tf.images import corpus_frames, read_labelled_folder
    from mmv_tf.saved_model import ExportedModel, load_network, read_metadata

    work = Path(args.work)
    digits = work / "digits"
    if not digits.is_dir():
        write_digit_images(digits, "test", args.per_class)
    metadata = read_metadata(args.model)
    size = metadata["video"]["image_size"]
    frames = corpus_frames(args.corpus, size, args.frames)
    models, gaps = {"video model, static video": Path(args.model)}, {}
    for mode in ("naive", "bn"):
        image_network, report = deflate(load_network(args.model), frames, DeflationSettings(mode=mode))
        gaps[mode] = report["l1_tuned" if mode == "bn" else "l1_naive"]
        out = work / f"image_{mode}"
        export_image_network(image_network, out, source_metadata=metadata, deflation=report,
                             overwrite=True)
        models[f"{mode} deflation"] = out
    loaded, labels, classes = read_labelled_folder(digits, size)
    rows = {}
    for name, path in models.items():
        model = ExportedModel(path)
        result = evaluate_classification(model, loaded.images, labels, classes)
        rows[name] = {k: v for k, v in result.items() if k != "probe"}
    print("| model | L1 gap (held-out frames) | linear probe accuracy | zero-shot accuracy |")
    print("|---|---|---|---|")
    for name, row in rows.items():
        mode = name.split()[0]
        gap = f"{gaps[mode]:.4f}" if mode in gaps else "0"
        print(f"| {name} | {gap} | {row['linear_probe_accuracy']:.3f} | {row['zero_shot_accuracy']:.3f} |")
    print(f"chance {1 / 10:.3f}; {json.dumps(describe_machine())}")
    result = {"command": " ".join(sys.argv), "model": args.model, "gaps": gaps, "rows": rows,
              "machine": describe_machine()}
    out = Path(__file__).parent / "results" / "deflation.json"
    out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
