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


def clustered_vectors(rows: int, dim: int, centres: int = 2048, topics: int = 64, spread: float = 1.0,
                      seed: int = 0) -> np.ndarray:
    """Unit vectors `[rows, dim]` float32 from a two-level Gaussian mixture, a stand-in for embeddings.

    `topics` random directions; each centre is a topic plus Gaussian noise of the same norm; a row is
    its centre plus Gaussian noise of norm `spread` times U(0.5, 1.5) (drawn per centre), normalised.
    Centre weights are log-normal (sigma 1), so cluster sizes differ tenfold. At spread 1, 256-d and
    1M rows a row's mean cosine is 0.63 to its nearest neighbour, 0.60 to its 10th and 0.00 to a
    random row (benchmarks/results/index_choice.json): clusters, not separate islands."""
    rng = np.random.default_rng(seed)

    def normalised(x):
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)

    topic = normalised(rng.normal(size=(topics, dim)))
    centre = normalised(topic[rng.integers(topics, size=centres)]
                        + rng.normal(size=(centres, dim)) / dim**0.5)
    weight = rng.lognormal(0, 1, size=centres)
    noise = (spread * rng.uniform(0.5, 1.5, size=centres) / dim**0.5).astype(np.float32)
    vectors = np.empty((rows, dim), np.float32)
    for start in range(0, rows, 100_000):
        count = min(100_000, rows - start)
        which = rng.choice(centres, size=count, p=weight / weight.sum())
        vectors[start:start + count] = normalised(
            centre[which] + noise[which, None] * rng.standard_normal((count, dim), dtype=np.float32))
    return vectors
