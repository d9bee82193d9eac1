"""Training: configs, the trainer model with its custom train step, and the training run."""
