"""In-graph text tokenizer (TensorFlow only): strings -> padded word ids and a mask.

Steps: NFKC normalisation, case folding, splitting on anything that is not a
letter or digit, stop-word removal, truncation to `max_words`, then lookup.
Id 0 is padding, id 1 is out-of-vocabulary, word i of the vocabulary is i + 2,
matching the rows of `TextEncoder`'s embedding table.
"""

import keras
import tensorflow as tf
import tensorflow_text as tf_text

# Function words dropped before lookup. Words of place and direction ("up",
# "down", "left", "over") are kept on purpose: narrations of motion need them.
DEFAULT_STOP_WORDS = (
    "a", "an", "the", "and", "or", "but", "nor", "so", "if", "then", "than", "that", "this",
    "these", "those", "there", "here", "is", "are", "was", "were", "be", "been", "being", "am",
    "do", "does", "did", "doing", "have", "has", "had", "having", "will", "would", "shall",
    "should", "can", "could", "may", "might", "must", "i", "me", "my", "myself", "we", "us",
    "our", "ours", "you", "your", "yours", "he", "him", "his", "she", "her", "hers", "it", "its",
    "itself", "they", "them", "their", "theirs", "what", "which", "who", "whom", "whose", "of",
    "at", "by", "for", "with", "as", "to", "just", "very", "too", "also", "s", "t", "now",
)
PAD_ID = 0
OOV_ID = 1


@keras.saving.register_keras_serializable(package="mmv_tf")
class TextTokenizer(keras.layers.Layer):
    """Strings `[...]` -> `{"token_ids": int32 [..., max_words], "padding_mask": bool [..., max_words]}`."""

    def __init__(self, vocabulary, max_words: int = 16, stop_words=DEFAULT_STOP_WORDS, **kwargs):
        kwargs["trainable"] = False
        super().__init__(**kwargs)
        self.vocabulary = list(vocabulary)
        self.max_words = max_words
        self.stop_words = list(stop_words)
        self._word_ids = keras.layers.StringLookup(
            vocabulary=self.vocabulary, mask_token="", num_oov_indices=1, output_mode="int",
            name="word_ids",
        )
        # Stop words map to 1..n and every other word to the OOV index 0.
        self._stop_word_ids = keras.layers.StringLookup(
            vocabulary=self.stop_words, mask_token=None, num_oov_indices=1, name="stop_word_ids",
        )

    def words(self, strings) -> tf.RaggedTensor:
        """Normalised, stop-word-free words, `[N, (words)]` for a flat `[N]` string tensor."""
        text = tf_text.case_fold_utf8(tf_text.normalize_utf8(strings, "NFKC"))
        text = tf.strings.regex_replace(text, r"[^\p{L}\p{N}]+", " ")
        words = tf_text.WhitespaceTokenizer().tokenize(text)
        return tf.ragged.boolean_mask(words, tf.equal(self._stop_word_ids(words), 0))

    def call(self, strings):
        strings = tf.convert_to_tensor(strings, dtype=tf.string)
        outer_shape = tf.shape(strings)
        words = self.words(tf.reshape(strings, [-1]))[:, : self.max_words]
        ids = tf.cast(self._word_ids(words), tf.int32)
        ids = ids.to_tensor(default_value=PAD_ID, shape=[None, self.max_words])
        ids = tf.reshape(ids, tf.concat([outer_shape, [self.max_words]], axis=0))
        return {"token_ids": ids, "padding_mask": tf.not_equal(ids, PAD_ID)}

    def get_config(self):
        return {**super().get_config(), "vocabulary": self.vocabulary,
                "max_words": self.max_words, "stop_words": self.stop_words}
