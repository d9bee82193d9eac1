"""The cross-modal search app (installed as `mmv_tf.app`): a Gradio UI over an exported model and
an index, and the demo workspace that `mmv-tf demo` prepares for it."""
