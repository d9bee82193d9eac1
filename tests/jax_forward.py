"""Run under KERAS_BACKEND=jax by test_jax_backend.py: the jitted stateless forward pass's outputs
(JAX training steps are tested by test_device_training.py).

Usage: python jax_forward.py WORK_DIR   (reads inputs.npz and model.weights.h5, writes outputs.npz)
"""

import sys
from pathlib import Path

import jax
import keras
import numpy as np

from mmv_tf.models.presets import from_preset
from mmv_tf.text.word_vectors import WordVectors

assert keras.backend.backend() == "jax", keras.backend.backend()
work = Path(sys.argv[1])
data = dict(np.load(work / "inputs.npz"))
words = WordVectors(tuple(data.pop("words")), data.pop("vectors"), "test")
model = from_preset("s3dg_tiny", word_vectors=words)
model.load_weights(work / "model.weights.h5")
inputs = {"video": data["video"], "audio": data["audio"],
          "text": {"token_ids": data["token_ids"], "padding_mask": data["padding_mask"]}}
infer = jax.jit(lambda trainable, frozen: model.stateless_call(trainable, frozen, inputs,
                                                               training=False)[0])
outputs = infer([v.value for v in model.trainable_variables],
                [v.value for v in model.non_trainable_variables])
np.savez(work / "outputs.npz",
         **{f"{m}_{s}": np.asarray(v) for m, o in outputs.items() for s, v in o.items()})
