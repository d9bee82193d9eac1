"""The `mmv-tf` command line (installed as the package `mmv_tf.cli`)."""
