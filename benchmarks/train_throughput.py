"""Training throughput of MMVTrainer: clips/s, step time and peak RSS, per backend and jit setting.

Usage: python benchmarks/train_throughput.py [--preset s3dg_tiny] [--batch-sizes 4 8 16] [--steps 5]
       [--backends tensorflow jax] [--json]

Each (backend, jit) pair runs in its own process (Keras picks its backend at import) on synthetic
clips of the preset's shape, after one warm-up step that traces and compiles.
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
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    from machine import describe_machine

    results = []
    for backend in args.backends:
        for jit in (False, True):
            env = {**os.environ, "KERAS_BACKEND": backend, "JAX_PLATFORMS": "cpu",
                   "TF_CPP_MIN_LOG_LEVEL": "2"}
            run = subprocess.run([sys.executable, "-c", WORKER, os.path.dirname(os.path.abspath(__file__)),
                                  args.preset, str(int(jit)), str(args.steps),
                                  *map(str, args.batch_sizes)], env=env, capture_output=True, text=True)
            lines = [line for line in run.stdout.splitlines() if line.startswith("RESULT ")]
            if run.returncode or not lines:
                results.append({"backend": backend, "jit_compile": jit, "error": run.stderr[-500:]})
                continue
            for row in json.loads(lines[-1][7:]):
                results.append({"backend": backend, "jit_compile": jit, **row})
                if not args.json:
                    print(f"{backend:10s} jit={str(jit):5s} batch {row['batch_size']:3d}: "
                          f"{row['step_s']:.3f} s/step, {row['clips_per_s']:.1f} clips/s, "
                          f"peak RSS {row['peak_rss_gib']} GiB")
    machine = describe_machine()
    if not args.json:
        print(f"machine: {machine['cpu']}, {machine['cores']} cores, {machine['memory_gib']} GiB")
    print(json.dumps({"benchmark": "train_throughput", "command": " ".join(["python"] + sys.argv),
                      "preset": args.preset, "steps": args.steps, "results": results,
                      "machine": machine}))


if __name__ == "__main__":
    main()
