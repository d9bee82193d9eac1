"""mmv-tf: Multimodal Versatile networks in Keras 3 / TensorFlow.

TensorFlow's oneDNN graph optimisations are switched off unless the user chose
otherwise (set TF_ENABLE_ONEDNN_OPTS before importing TensorFlow): with them,
TF 2.21 computes wrong gradients for S3D-G's inception blocks inside
tf.function on CPU (eager mode and oneDNN-free graphs agree with each other;
see tests/test_towers.py). This only takes effect if mmv_tf is imported
before TensorFlow.
"""

import os

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
