"""The package installs: a wheel built from this checkout, installed into a fresh virtual
environment, embeds, indexes and searches a tiny corpus from another folder with the default model
it carries (issue 15, item 6). The dependencies come from the test's own environment (a path
entry), so nothing is downloaded; mmv_tf itself only from the wheel."""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(command: list, cwd: Path, env: dict | None = None) -> str:
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"{command} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def test_wheel_installs_and_searches_with_its_default_model(demo, tmp_path):
    # From a copy of the sources: a build in the checkout would leave build/ there, whose stale
    # files a later wheel could pick up.
    source = tmp_path / "source"
    left_out = {".venv", ".git", "build", "dist", "mmv_tf.egg-info", "data", "runs"}
    shutil.copytree(ROOT, source, ignore=lambda folder, names: [
        n for n in names if n == "__pycache__" or (Path(folder) == ROOT and n in left_out)])
    wheels = tmp_path / "wheels"
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
         "-q", "-w", str(wheels), str(source)], cwd=tmp_path)
    (wheel,) = wheels.glob("mmv_tf-*.whl")

    fresh = tmp_path / "fresh"
    venv.create(fresh, with_pip=True)
    python = fresh / "bin" / "python"
    run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], cwd=tmp_path)
    # This environment's packages as a path entry, after the fresh site-packages: its .pth files
    # (the checkout's editable install among them) are not read, so mmv_tf can only be the wheel's.
    site_packages = Path(run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                             cwd=tmp_path).strip())
    (site_packages / "dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": ""}
    where = json.loads(run([str(python), "-c", "import json, mmv_tf.saved_model as s; print(json.dumps("
                            "[s.__file__, str(s.DEFAULT_MODEL), s.DEFAULT_MODEL.is_dir()]))"],
                           cwd=elsewhere, env=env))
    assert where[0].startswith(str(site_packages)) and where[1].startswith(str(site_packages)) and where[2]

    mmv_tf = str(fresh / "bin" / "mmv-tf")
    run([mmv_tf, "embed", str(demo), "--out", "emb"], cwd=elsewhere, env=env)
    run([mmv_tf, "index", "emb", "--out", "idx"], cwd=elsewhere, env=env)
    hits = json.loads(run([mmv_tf, "search", "--index", "idx", "--text", "seven", "--k", "3", "--json"],
                          cwd=elsewhere, env=env))
    assert len(hits["results"]) == 3
    info = json.loads((elsewhere / "emb" / "embeddings.json").read_text())
    assert info["model_path"] == where[1]  # embedded with the wheel's default model
