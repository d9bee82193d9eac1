"""Text tower: frozen word vectors -> Dense(2048) -> ReLU -> max over the words.

`pooling="masked"` takes the max over the real words only; `pooling="all"` (DeepMind's released
models) takes it over all `max_words` positions, padding included: the padding id 0 is then an
ordinary table row whose projection competes in the max.
"""

import keras
import numpy as np
from keras import layers, ops

from mmv_tf.models.backbone import Backbone


@keras.saving.register_keras_serializable(package="mmv_tf")
class MaskedMax(layers.Layer):
    """Max over words of `[B, L, C]` where `word_mask` `[B, L]` is true; zeros for a row with no words."""

    def call(self, x, word_mask):
        mask = ops.expand_dims(ops.cast(word_mask, "bool"), -1)
        largest = ops.max(ops.where(mask, x, ops.full_like(x, -np.inf)), axis=1)
        return ops.where(ops.any(mask, axis=1), largest, ops.zeros_like(largest))

    def compute_output_shape(self, x_shape, word_mask_shape):
        return (x_shape[0], x_shape[2])


@keras.saving.register_keras_serializable(package="mmv_tf")
class MaxOverPositions(layers.Layer):
    """Max over all positions of `[B, L, C]`, padding included (`word_mask` is accepted and ignored,
    so both poolings take the same inputs)."""

    def call(self, x, word_mask):
        return ops.max(x, axis=1)

    def compute_output_shape(self, x_shape, word_mask_shape):
        return (x_shape[0], x_shape[2])


POOLINGS = {"masked": MaskedMax, "all": MaxOverPositions}


@keras.saving.register_keras_serializable(package="mmv_tf")
class TextEncoder(Backbone):
    """`{"token_ids": int [B, L], "padding_mask": bool [B, L]}` -> `[B, output_dim]`.

    Row 0 of the word table is padding, row 1 out-of-vocabulary, row i + 2 is
    `vocabulary[i]`. The table is not trainable (the paper's stop-gradient);
    load it with `set_word_vectors`.

    Args:
        vocabulary: the words in table order (kept so tokenizers can be rebuilt).
        embedding_dim: size of the word vectors (50 for GloVe 6B-50d, 300 for word2vec).
        output_dim: width of the kernel-1 projection (2048 in the paper).
        max_words: words per caption L.
        pooling: "masked" (max over the real words; zeros for a caption without any) or "all"
            (max over all `max_words` positions, padding rows included, as DeepMind released).
    """

    def __init__(self, vocabulary, embedding_dim: int = 300, output_dim: int = 2048,
                 max_words: int = 16, pooling: str = "masked", name: str = "text_encoder",
                 **kwargs):
        if pooling not in POOLINGS:
            raise ValueError(f"text pooling must be one of {sorted(POOLINGS)}, got {pooling!r}")
        vocabulary = list(vocabulary)
        token_ids = keras.Input((max_words,), dtype="int32", name="token_ids")
        padding_mask = keras.Input((max_words,), dtype="bool", name="padding_mask")
        word_table = layers.Embedding(len(vocabulary) + 2, embedding_dim, trainable=False,
                                      embeddings_initializer="zeros", name="word_vectors")
        x = layers.Dense(output_dim, name="projection")(word_table(token_ids))
        x = layers.ReLU(name="relu")(x)
        features = POOLINGS[pooling](name="max_over_words")(x, padding_mask)
        super().__init__(
            {"token_ids": token_ids, "padding_mask": padding_mask}, features,
            config=dict(vocabulary=vocabulary, embedding_dim=embedding_dim,
                        output_dim=output_dim, max_words=max_words, pooling=pooling),
            name=name, **kwargs,
        )
        self.vocabulary = vocabulary
        self.pooling = pooling

    def set_word_vectors(self, vectors: np.ndarray) -> None:
        """Fill the table from `[len(vocabulary), embedding_dim]` vectors (pad and OOV rows zero)."""
        table = self.get_layer("word_vectors")
        expected = (len(self.vocabulary), table.output_dim)
        if tuple(vectors.shape) != expected:
            raise ValueError(f"word vectors must have shape {expected}, got {tuple(vectors.shape)}")
        table.set_weights([np.concatenate([np.zeros((2, expected[1]), np.float32), vectors])])
