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
    memory traffic (benchmarks/results/gpu_train_step.json). Synchronised, it pools them over the
    replicas in two passes (`_global_moments`)."""

    def _moments(self, inputs, mask):
        if mask is not None:
            return super()._moments(inputs, mask)
        if self.synchronized:
            return _global_moments(inputs, self._reduction_axes)
        # Moments about one sample per channel, which is near the mean, keep E[x^2] - E[x]^2 exact.
        shift = ops.stop_gradient(ops.reshape(inputs, (-1, inputs.shape[-1]))[0])
        shifted = inputs - shift
        shifted_mean = ops.mean(shifted, axis=self._reduction_axes)
        variance = ops.mean(ops.square(shifted), axis=self._reduction_axes) - ops.square(shifted_mean)
        return shifted_mean + shift, ops.maximum(variance, 0.0)


def _global_moments(inputs, axes):
    """Per-channel mean and variance `[C]` of `inputs` `[..., C]` over the batches of all replicas in
    sync (TensorFlow; one outside a strategy): the mean, then squared deviations from it. Keras's
    synchronised BN takes E[x^2] - E[x]^2, which cancels on near-constant channels, and the rounding
    then differs with the number of replicas."""
    import tensorflow as tf

    context = tf.distribute.get_replica_context()

    def over_replicas(value):
        return context.all_reduce("sum", value) if context is not None else value

    count = ops.cast(ops.size(inputs) // inputs.shape[-1], inputs.dtype)
    sums = over_replicas(ops.concatenate([ops.sum(inputs, axis=axes), count[None]], axis=0))
    mean = ops.divide_no_nan(sums[:-1], sums[-1])
    squares = over_replicas(ops.sum(ops.square(inputs - mean), axis=axes))
    return mean, ops.divide_no_nan(squares, sums[-1])


def batch_norm(name: str, synchronized: bool = False) -> BatchNorm:
    """BN with decay 0.9 and eps 1e-5; `synchronized` pools statistics across replicas (TF)."""
    return BatchNorm(
        momentum=BN_MOMENTUM, epsilon=BN_EPSILON, synchronized=synchronized, name=name
    )
