"""The same model runs under KERAS_BACKEND=jax and agrees with TensorFlow."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mmv_tf.models.presets import from_preset


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed")
def test_tiny_model_gives_the_same_outputs_under_jax(tmp_path, small_word_vectors, jax_env):
    model = from_preset("s3dg_tiny", word_vectors=small_word_vectors)
    rng = np.random.default_rng(0)
    text = model.make_tokenizer()(np.array(["seven slides left", "three moves up"]))
    inputs = {"video": rng.uniform(size=(2, 16, 32, 32, 3)).astype("float32"),
              "audio": rng.uniform(-1, 1, size=(2, 8000)).astype("float32"),
              "token_ids": text["token_ids"].numpy(), "padding_mask": text["padding_mask"].numpy()}
    np.savez(tmp_path / "inputs.npz", words=np.array(small_word_vectors.words),
             vectors=small_word_vectors.vectors, **inputs)
    model.save_weights(tmp_path / "model.weights.h5")
    expected = model({"video": inputs["video"], "audio": inputs["audio"],
                      "text": {"token_ids": inputs["token_ids"],
                               "padding_mask": inputs["padding_mask"]}}, training=False)

    script = Path(__file__).with_name("jax_forward.py")
    run = subprocess.run([sys.executable, str(script), str(tmp_path)], env=jax_env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    got = np.load(tmp_path / "outputs.npz")
    for modality, values in expected.items():
        for space, value in values.items():
            np.testing.assert_allclose(got[f"{modality}_{space}"], value, rtol=1e-3, atol=1e-4)
