"""Media: the demo corpus, ingestion of videos into shards, and the tf.data reader.

Modules that run in worker processes (media, subtitles, speech, synth, demo)
do not import TensorFlow.
"""
