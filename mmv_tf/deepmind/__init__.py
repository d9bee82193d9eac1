"""Readers for DeepMind's released MMV checkpoints (no Haiku or dill needed)."""
