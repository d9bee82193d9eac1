"""Training throughput of MMVTrainer: clips/s, step time and peak RSS, per backend and jit setting.

Usage: python benchmarks/train_throughput.py [--preset s3dg_tiny] [--batch-sizes 4 8 16] [--steps 5]
       [--backends tensorflow jax] [--jit off on] [--onednn on] [--timeout S] [--json] [--out FILE]

Each (backend, jit, oneDNN) setting runs in its own process (Keras picks its backend at import) on
synthetic clips of the preset's shape, after one warm-up step that traces and compiles. `--onednn
off` sets TF_ENABLE_ONEDNN_OPTS=0 (TensorFlow's CPU kernels without oneDNN; TensorFlow only).
A setting that runs past `--timeout` seconds is stopped and reported as such.
"""

import argparse
import json
import os
import subprocess
import sys

WORKER = r"""
import json, resource, sys, time
import keras
sys.path.insert(0, sys.argv.pop(1))  # benchmarks/, for synthetic.py
from synthetic import synthetic_batch
from mmv_tf.models.presets import from_preset, preset_config
from mmv_tf.training.trainer import MMVTrainer

preset, jit, steps, batch_sizes = sys.argv[1], sys.argv[2] == "1", int(sys.argv[3]), sys.argv[4:]
config = preset_config(preset)
model = from_preset(preset)
rows = []
for batch in map(int, batch_sizes):
    trainer = MMVTrainer(model)
    trainer.compile(optimizer=keras.optimizers.Adam(1e-4), jit_compile=jit)
    data = synthetic_batch(config, batch, candidates=2, vocabulary=1000)
    trainer.fit(data, batch_size=batch, epochs=1, verbose=0, shuffle=False)  # trace and compile
    start = time.perf_counter()
    trainer.fit(data, batch_size=batch, epochs=steps, verbose=0, shuffle=False)
    step = (time.perf_counter() - start) / steps
    rows.append({"batch_size": batch, "step_s": round(step, 3), "clips_per_s": round(batch / step, 2),
                 "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)})
print("RESULT " + json.dumps(rows))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="s3dg_tiny")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[4, 8, 16])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--backends", nargs="+", default=["tensorflow", "jax"])
    parser.add_argument("--jit", nargs="+", choices=["off", "on"], default=["off", "on"])
    parser.add_argument("--onednn", nargs="+", choices=["on", "off"], default=["on"])
    parser.add_argument("--timeout", type=float, default=None, help="seconds per setting")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--out", help="also write the result, as JSON, to this file")
    args = parser.parse_args()
    from machine import describe_machine, report

    results = []
    settings = [(backend, jit == "on", onednn) for backend in args.backends for jit in args.jit
                for onednn in (args.onednn if backend == "tensorflow" else ["on"])]
    for backend, jit, onednn in settings:
        env = {**os.environ, "KERAS_BACKEND": backend, "JAX_PLATFORMS": "cpu",
               "TF_CPP_MIN_LOG_LEVEL": "2", "TF_ENABLE_ONEDNN_OPTS": "1" if onednn == "on" else "0"}
        setting = {"backend": backend, "jit_compile": jit}
        if backend == "tensorflow":
            setting["onednn"] = onednn
        try:
            run = subprocess.run([sys.executable, "-c", WORKER, os.path.dirname(os.path.abspath(__file__)),
                                  args.preset, str(int(jit)), str(args.steps),
                                  *map(str, args.batch_sizes)], env=env, capture_output=True, text=True,
                                 timeout=args.timeout)
        except subprocess.TimeoutExpired:
            results.append({**setting, "error": f"did not finish within {args.timeout:.0f} s"})
            if not args.json:
                print(f"{backend:10s} jit={str(jit):5s}: did not finish within {args.timeout:.0f} s")
            continue
        lines = [line for line in run.stdout.splitlines() if line.startswith("RESULT ")]
        if run.returncode or not lines:
            results.append({**setting, "error": run.stderr[-500:]})
            continue
        for row in json.loads(lines[-1][7:]):
            results.append({**setting, **row})
            if not args.json:
                print(f"{backend:10s} jit={str(jit):5s} oneDNN={setting.get('onednn', '-'):3s} "
                      f"batch {row['batch_size']:3d}: {row['step_s']:.3f} s/step, "
                      f"{row['clips_per_s']:.1f} clips/s, peak RSS {row['peak_rss_gib']} GiB", flush=True)
    machine = describe_machine()
    if not args.json:
        print(f"machine: {machine['cpu']}, {machine['cores']} cores, {machine['memory_gib']} GiB")
    result = {"benchmark": "train_throughput", "command": " ".join(["python"] + sys.argv),
              "preset": args.preset, "steps": args.steps, "results": results, "machine": machine}
    if os.environ.get("PYTHONPATH"):  # e.g. the library of another commit, unpacked with git archive
        result["library"] = {"cwd": os.getcwd(), "pythonpath": os.environ["PYTHONPATH"]}
    report(result, args.out)


if __name__ == "__main__":
    main()
