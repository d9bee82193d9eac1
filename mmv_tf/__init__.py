"""mmv-tf: Multimodal Versatile networks in Keras 3 / TensorFlow."""
