"""Batch normalisation as the released MMV models configure it everywhere."""

import keras
from keras import ops

BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5


@keras.saving.register_keras_serializable(package="mmv_tf")
class BatchNorm(keras.layers.BatchNormalization):
    """Keras BN whose training statistics take one pass over the batch: the mean and the mean of
    squares are reduced together (var = E[x^2] - E[x]^2, in float32 as Keras computes BN), where
    `ops.moments` reads the activations twice. BN passes are a large share of a video tower's
    memory traffic (benchmarks/results/gpu_train_step.json)."""

    def _moments(self, inputs, mask):
        if mask is not None or self.synchronized:
            return super()._moments(inputs, mask)
        # Moments about one sample per channel, which is near the mean, keep E[x^2] - E[x]^2 exact.
        shift = ops.stop_gradient(ops.reshape(inputs, (-1, inputs.shape[-1]))[0])
        shifted = inputs - shift
        shifted_mean = ops.mean(shifted, axis=self._reduction_axes)
        variance = ops.mean(ops.square(shifted), axis=self._reduction_axes) - ops.square(shifted_mean)
        return shifted_mean + shift, ops.maximum(variance, 0.0)


def batch_norm(name: str, synchronized: bool = False) -> BatchNorm:
    """BN with decay 0.9 and eps 1e-5; `synchronized` pools statistics across replicas (TF)."""
    return BatchNorm(
        momentum=BN_MOMENTUM, epsilon=BN_EPSILON, synchronized=synchronized, name=name
    )
