"""Random reader-shaped batches for the training benchmarks."""

import numpy as np


def synthetic_batch(config, batch: int, candidates: int, vocabulary: int, seed: int = 0) -> dict:
    """A reader-shaped batch of random clips: video `[B,T,H,W,3]`, audio `[B,N]`, text `[B,K,L]`."""
    rng = np.random.default_rng(seed)
    frames, size = config.video.num_frames, config.video.image_size
    samples = int(frames / config.video.fps * config.audio.sample_rate)
    ids = rng.integers(2, vocabulary, size=(batch, candidates, config.text.max_words)).astype("int32")
    return {"video": rng.uniform(size=(batch, frames, size, size, 3)).astype("float32"),
            "audio": rng.uniform(-1, 1, size=(batch, samples)).astype("float32"),
            "text": {"token_ids": ids, "padding_mask": ids != 0},
            "audio_mask": np.ones(batch, bool), "text_mask": np.ones((batch, candidates), bool)}
