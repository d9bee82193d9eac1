"""Batch normalisation as the released MMV models configure it everywhere."""

import keras

BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5


def batch_norm(name: str, synchronized: bool = False) -> keras.layers.BatchNormalization:
    """BN with decay 0.9 and eps 1e-5; `synchronized` pools statistics across replicas (TF)."""
    return keras.layers.BatchNormalization(
        momentum=BN_MOMENTUM, epsilon=BN_EPSILON, synchronized=synchronized, name=name
    )
