"""`MMVTrainer`: a Keras model around an MMV network whose train step computes the MMV loss.

One step: forward the clip's video, audio and candidate narrations, compute
weight_va * NCE(video, audio) + weight_vt * MIL-NCE(video, text) with the
batch's masks, and update. Under a `tf.distribute` strategy each replica
scores its clips against the embeddings all-gathered from every replica, and
its loss is its share of the global loss, so the summed gradients equal those
of the whole batch on one device. Metrics: each loss term, the total, and
in-batch retrieval accuracy video->audio and video->text (top-1 among the batch).
With `device_clips` (JAX, `mmv_tf.training.device`) a step's data is a request, which the jitted
step turns into clips first.
"""

from __future__ import annotations

import keras
from keras import ops

from mmv_tf import spaces
from mmv_tf.losses import l2_normalize, mmv_loss
from mmv_tf.models.mmv import MMV
from mmv_tf.training.config import LossConfig, OptimizerConfig

LOSS_TERMS = ("loss", "nce_va", "mil_nce_vt")
METRIC_NAMES = (*LOSS_TERMS, "acc_va", "acc_vt")


def learning_rate_schedule(config: OptimizerConfig, steps: int):
    """Linear warm-up to `config.learning_rate`, then half-period cosine decay to 0 at `steps`."""
    warmup = min(config.warmup_steps, steps - 1)
    return keras.optimizers.schedules.CosineDecay(
        0.0, decay_steps=max(1, steps - warmup), warmup_target=config.learning_rate,
        warmup_steps=warmup)


def retrieval_accuracy(queries, keys, mask):
    """Share of valid clips whose nearest valid key (cosine) is one of their own.

    queries `[B, D]`; keys `[B, K, D]`, K candidates a clip (narrations for MIL-NCE, K=1 for audio);
    mask `[B, K]`. A clip counts when it has a valid key; any of its own K keys is a hit, as MIL-NCE
    asks no more than that.
    """
    batch, candidates = ops.shape(keys)[0], ops.shape(keys)[1]
    flat_keys = ops.reshape(keys, (batch * candidates, ops.shape(keys)[2]))
    similarity = ops.matmul(l2_normalize(queries), ops.transpose(l2_normalize(flat_keys)))
    mask = ops.cast(mask, "bool")
    similarity = ops.where(ops.reshape(mask, (1, -1)), similarity, -2.0)
    nearest_clip = ops.argmax(similarity, axis=1) // candidates
    hits = ops.cast(ops.equal(nearest_clip, ops.arange(batch)), "float32")
    valid = ops.cast(ops.any(mask, axis=1), "float32")
    return ops.sum(hits * valid) / ops.maximum(ops.sum(valid), 1.0)


def _replica_context():
    """The `tf.distribute` replica context when several replicas run in sync, else None."""
    if keras.backend.backend() != "tensorflow":
        return None
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    return context if context is not None and context.num_replicas_in_sync > 1 else None


class MMVTrainer(keras.Model):
    """Trains `network` (an `MMV`) on reader batches (see `mmv_tf.data.reader`), or on requests
    that `device_clips` (a `DeviceClips`) turns into them."""

    def __init__(self, network: MMV, loss: LossConfig | None = None, device_clips=None, **kwargs):
        super().__init__(**kwargs)
        self.network = network
        self.device_clips = device_clips
        self.loss_config = loss or LossConfig()
        self.design = network.head.DESIGN
        for layer in network.head.untrained_layers():
            layer.trainable = False  # no gradient reaches them: the optimizer skips them
        self.video_audio_space = spaces.pair_space(self.design, "video", "audio")
        self.video_text_space = spaces.pair_space(self.design, "video", "text")
        self.trackers = {name: keras.metrics.Mean(name=name) for name in METRIC_NAMES}

    @property
    def metrics(self):
        return list(self.trackers.values())

    def call(self, inputs, training=False):
        """The network's outputs for a reader batch (its masks and ids are ignored here)."""
        return self.network(self.model_inputs(inputs), training=training)

    @staticmethod
    def model_inputs(batch: dict) -> dict:
        """The modalities of a reader batch that the network takes."""
        return {key: batch[key] for key in ("video", "audio", "text") if key in batch}

    def compute_terms(self, batch: dict, outputs: dict, gather=None) -> dict:
        """This replica's shares of the loss terms, and its retrieval accuracies.

        The shares of all replicas sum to the loss: with `gather` (global negatives)
        each scores its clips against the whole batch; without, each replica's local
        mean counts 1/R. Summed replica gradients are then those of that loss.
        """
        config = self.loss_config
        terms = mmv_loss(
            outputs, design=self.design, weight_va=config.weight_va,
            weight_vt=config.weight_vt, audio_mask=batch["audio_mask"], text_mask=batch["text_mask"],
            temperature=config.temperature, gather=gather,
        )
        context = _replica_context()
        if gather is None and context is not None:
            terms = {name: value / context.num_replicas_in_sync for name, value in terms.items()}
        video = outputs["video"]
        if self.video_audio_space:
            terms["acc_va"] = retrieval_accuracy(video[self.video_audio_space],
                                                 outputs["audio"][self.video_audio_space][:, None],
                                                 batch["audio_mask"][:, None])
        if self.video_text_space:
            terms["acc_vt"] = retrieval_accuracy(video[self.video_text_space],
                                                 outputs["text"][self.video_text_space],
                                                 batch["text_mask"])
        return terms

    def gather(self):
        """The all-gather for global negatives in this step, or None (one replica, or turned off)."""
        context = _replica_context()
        if context is None or not self.loss_config.global_negatives:
            return None
        return lambda x: context.all_gather(x, axis=0)

    def _update_metrics(self, terms: dict) -> dict:
        context = _replica_context()
        for name, value in terms.items():
            if context is not None and name in LOSS_TERMS:  # shares of the loss: log their sum
                value = context.all_reduce("sum", value)
            self.trackers[name].update_state(value)
        return {name: tracker.result() for name, tracker in self.trackers.items()}

    def train_step(self, *args):
        """TensorFlow: `train_step(data)`; JAX: the stateless `train_step(state, data)`."""
        if keras.backend.backend() == "jax":
            return self._jax_train_step(*args)
        return self._tf_train_step(*args)

    def test_step(self, *args):
        if keras.backend.backend() == "jax":
            return self._jax_test_step(*args)
        outputs = self.network(self.model_inputs(args[0]), training=False)
        return self._update_metrics(self.compute_terms(args[0], outputs, self.gather()))

    def _tf_train_step(self, data):
        import tensorflow as tf

        with tf.GradientTape() as tape:
            outputs = self.network(self.model_inputs(data), training=True)
            terms = self.compute_terms(data, outputs, self.gather())
            scaled = self.optimizer.scale_loss(terms["loss"])
        variables = self.network.trainable_variables
        self.optimizer.apply(tape.gradient(scaled, variables), variables)
        return self._update_metrics(terms)

    def _stateless_metrics(self, metrics_variables, terms):
        """Updated metric variables and logs, for the JAX steps."""
        updated, logs, start = [], {}, 0
        for metric in self.metrics:
            own = metrics_variables[start:start + len(metric.variables)]
            start += len(metric.variables)
            if metric.name in terms:
                own = metric.stateless_update_state(own, terms[metric.name])
            updated.extend(own)
            logs[metric.name] = metric.stateless_result(own)
        return updated, logs

    def _device_batch(self, non_trainable, data):
        """`data`, or the clips of a device-resident request, read from the step's variable values."""
        if self.device_clips is None:
            return data
        with keras.StatelessScope(state_mapping=list(zip(self.non_trainable_variables, non_trainable))):
            return self.device_clips.sample(data)

    def _jax_train_step(self, state, data):
        import jax

        trainable, non_trainable, optimizer_variables, metrics_variables = state
        data = self._device_batch(non_trainable, data)

        def loss_fn(trainable, non_trainable):
            outputs, non_trainable = self.stateless_call(trainable, non_trainable,
                                                         self.model_inputs(data), training=True)
            terms = self.compute_terms(data, outputs)
            return terms["loss"], (terms, non_trainable)

        (_, (terms, non_trainable)), gradients = jax.value_and_grad(loss_fn, has_aux=True)(
            trainable, non_trainable)
        trainable, optimizer_variables = self.optimizer.stateless_apply(
            optimizer_variables, gradients, trainable)
        metrics_variables, logs = self._stateless_metrics(metrics_variables, terms)
        return logs, (trainable, non_trainable, optimizer_variables, metrics_variables)

    def _jax_test_step(self, state, data):
        trainable, non_trainable, metrics_variables = state
        data = self._device_batch(non_trainable, data)
        outputs, non_trainable = self.stateless_call(trainable, non_trainable, self.model_inputs(data),
                                                     training=False)
        metrics_variables, logs = self._stateless_metrics(metrics_variables,
                                                          self.compute_terms(data, outputs))
        return logs, (trainable, non_trainable, metrics_variables)
