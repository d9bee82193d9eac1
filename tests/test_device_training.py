"""Device-resident training: `mmv-tf data pack` here, `mmv-tf train --device-resident` under Keras's
JAX backend in a subprocess where TensorFlow cannot be imported, and the run it writes read back here."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import tensorflow as tf
from conftest import SMALL_SETS
from typer.testing import CliRunner

from mmv_tf.cli.main import app
from mmv_tf.data.reader import ClipReader, ReaderConfig
from mmv_tf.data.shards import parse_video, shard_files
from mmv_tf.training.config import load_train_config
from mmv_tf.training.run import RunError, build_network, clip_settings, train

SETS = SMALL_SETS + ["train.batch_size=4", "train.steps=6", "train.validate_every=3",
                     "train.checkpoint_every=3", "train.keep_checkpoints=5", "optimizer.warmup_steps=2",
                     "train.validation_steps=1", "data.num_candidates=2", "data.flip=true"]
SEEDS = np.array([[1, 2], [3, 4], [2**31 + 5, 6]], np.uint32)

JAX_RUN = r"""
import json, shutil, sys


class NoTensorFlow:  # as on the accelerator machines, where it is not installed
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "tensorflow_text"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)


sys.meta_path.insert(0, NoTensorFlow())
from pathlib import Path
import numpy as np
from mmv_tf.training.checkpoints import restore_network
from mmv_tf.training.config import load_train_config
from mmv_tf.training.device import DeviceClips
from mmv_tf.training.pack import PackError, load_pack, read_pack_metadata
from mmv_tf.training.run import build_network, clip_settings, train

pack, work = Path(sys.argv[1]), Path(sys.argv[2])
sets, seeds = json.loads(sys.argv[3]), json.loads(sys.argv[4])
config = load_train_config("configs/demo.yaml", sets + ["data.device_resident=true"])
results = {"whole": train(config, pack, work / "whole", verbose=0)}
shutil.copytree(work / "whole", work / "killed")  # as a kill between steps 3 and 6 leaves it
shutil.rmtree(work / "killed" / "checkpoints" / "ckpt-6")
results["resumed"] = train(config, pack, work / "killed", resume=True, verbose=0)
try:
    train(load_train_config("configs/demo.yaml", sets + ["data.device_resident=true",
                                                        "model.text.max_words=7"]), pack, work / "other")
except PackError as error:
    results["mismatch"] = str(error)
fps = read_pack_metadata(pack)["fps"]
clips = DeviceClips(load_pack(pack), clip_settings(config, config.model_config(), fps))
batch = clips.sample({"video_index": np.arange(len(seeds), dtype="int32"), "seed": np.array(seeds, "uint32")})
network = build_network(config)
restore_network(network, work / "whole" / "checkpoints")
outputs = network.predict_on_batch({"video": batch["video"], "audio": batch["audio"]})
np.savez(work / "jax.npz", video=batch["video"], audio=batch["audio"], text_mask=batch["text_mask"],
         token_ids=batch["text"]["token_ids"], padding_mask=batch["text"]["padding_mask"],
         audio_mask=batch["audio_mask"], embed_video=outputs["video"]["va"],
         embed_audio=outputs["audio"]["va"])
(work / "results.json").write_text(json.dumps(results))
"""


def _config(*extra):
    return load_train_config("configs/demo.yaml", SETS + list(extra))


@pytest.fixture(scope="module")
def pack(demo_shards, tmp_path_factory):
    out = tmp_path_factory.mktemp("pack") / "pack"
    result = CliRunner().invoke(app, ["data", "pack", str(demo_shards), "--out", str(out), "--config",
                                      "configs/demo.yaml", *[a for s in SETS for a in ("--set", s)]])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def jax_runs(pack, tmp_path_factory, jax_env):
    """The work folder of JAX_RUN: a 6-step run, the same run killed after step 3 and resumed, a
    mismatched pack's refusal, clips of pack videos 0-2 with SEEDS and the trained network's outputs."""
    work = tmp_path_factory.mktemp("jax")
    done = subprocess.run([sys.executable, "-c", JAX_RUN, str(pack), str(work), json.dumps(SETS),
                           json.dumps(SEEDS.tolist())], env=jax_env, capture_output=True, text=True,
                          cwd=Path(__file__).parents[1], timeout=1500)
    assert done.returncode == 0, done.stderr[-4000:]
    return work, json.loads((work / "results.json").read_text())


def _weights(folder: Path) -> dict:
    found = {}
    with h5py.File(folder / "network.weights.h5") as weights:
        weights.visititems(lambda name, item: found.__setitem__(name, item[()])
                           if isinstance(item, h5py.Dataset) else None)
    with np.load(folder / "optimizer.npz") as optimizer:
        found.update({f"optimizer/{k}": optimizer[k] for k in optimizer.files})
    return found


def test_jax_training_writes_checkpoints_and_metrics_without_tensorflow(jax_runs):
    work, results = jax_runs
    run = work / "whole"
    assert results["whole"]["step"] == 6 and np.isfinite(results["whole"]["loss"])
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["ckpt-3", "ckpt-6"]
    assert int(np.load(run / "checkpoints" / "ckpt-6" / "optimizer.npz")["iteration"]) == 6
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [3, 6]
    assert {"learning_rate", "loss", "nce_va", "mil_nce_vt", "acc_va", "acc_vt", "val_loss",
            "val_acc_vt"} <= set(rows[0])
    # The config's schedule: warm-up, then cosine decay to 0 at the last step.
    assert rows[0]["learning_rate"] > 0 and rows[1]["learning_rate"] == pytest.approx(0, abs=1e-9)
    with (run / "metrics.csv").open() as table:
        assert [float(r["loss"]) for r in csv.DictReader(table)] == [r["loss"] for r in rows]
    assert "vocabulary" in results["mismatch"] and not (work / "other" / "config.yaml").exists()


def test_a_resumed_jax_run_equals_an_unbroken_one(jax_runs):
    work, results = jax_runs
    assert results["resumed"]["resumed_from_step"] == 3 and results["resumed"]["step"] == 6
    whole, resumed = (_weights(work / run / "checkpoints" / "ckpt-6") for run in ("whole", "killed"))
    assert whole.keys() == resumed.keys()
    for name in whole:
        np.testing.assert_allclose(resumed[name], whole[name], atol=1e-5, err_msg=name)
    rows = [json.loads(line) for line in (work / "killed" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [3, 6]


def test_device_clips_equal_the_readers_for_the_same_seed(jax_runs, pack, demo_shards):
    """The JAX path's window, augmentation, audio and caption choice are the reader's (issue 15)."""
    work, _ = jax_runs
    config = _config()
    reader = ClipReader(ReaderConfig(**clip_settings(config, config.model_config(), 10.0)),
                        build_network(config).make_tokenizer())
    videos = tf.data.TFRecordDataset(shard_files(demo_shards, "train")).map(parse_video)
    device = np.load(work / "jax.npz")
    for i, (video, seed) in enumerate(zip(videos, SEEDS)):
        clip = reader.training_clip(video, tf.constant(seed))
        np.testing.assert_allclose(device["video"][i], clip["video"].numpy(), atol=2e-5)
        np.testing.assert_array_equal(device["audio"][i], clip["audio"].numpy())
        np.testing.assert_array_equal(device["token_ids"][i], clip["text"]["token_ids"].numpy())
        np.testing.assert_array_equal(device["padding_mask"][i], clip["text"]["padding_mask"].numpy())
        np.testing.assert_array_equal(device["text_mask"][i], clip["text_mask"].numpy())
        assert device["audio_mask"][i] == clip["audio_mask"].numpy()


def test_export_of_a_jax_run_embeds_as_the_jax_network(jax_runs, tmp_path):
    from mmv_tf.export import export_run
    from mmv_tf.saved_model import ExportedModel

    work, _ = jax_runs
    model = ExportedModel(export_run(work / "whole", tmp_path / "model"))
    assert model.metadata["training"]["steps"] == 6 and model.metadata["training"]["checkpoint"] == "ckpt-6"
    device = np.load(work / "jax.npz")
    np.testing.assert_allclose(model.embed_video(device["video"])["va"], device["embed_video"], atol=1e-4)
    np.testing.assert_allclose(model.embed_audio(device["audio"])["va"], device["embed_audio"], atol=1e-4)


def test_device_resident_training_is_refused_under_tensorflow(pack, tmp_path):
    with pytest.raises(RunError, match="KERAS_BACKEND=jax"):
        train(_config("data.device_resident=true"), pack, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_pack_keeps_what_training_needs(pack, demo_shards):
    metadata = json.loads((pack / "pack.json").read_text())
    counts = {split: sum(1 for _ in tf.data.TFRecordDataset(shard_files(demo_shards, split)))
              for split in ("train", "val")}
    assert metadata["splits"] == counts and metadata["sample_rate"] == 16000
    frames = np.load(pack / "frames.npy", mmap_mode="r")
    assert frames.dtype == np.uint8 and frames.shape[0] == sum(counts.values())
    assert frames.shape[2:] == (*metadata["frame_size"], 3)
