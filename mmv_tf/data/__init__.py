"""Media: the demo corpus, ingestion of videos into shards, the preprocessing every path shares
(`preprocessing`), and the tf.data reader.

Modules that run in worker processes (media, preprocessing, subtitles, speech, synth, demo)
do not import TensorFlow.
"""
