"""Pictures and sounds of the demo corpus: handwritten digits moving over textures, tones.

Digits are scikit-learn's 8x8 handwritten digits (real scans, shipped with the
package), upscaled and coloured. Everything here is a pure function of its
arguments and a numpy Generator, so a seed fixes the corpus.
"""

from __future__ import annotations

import functools

import numpy as np
from scipy.ndimage import zoom

DIRECTIONS = ("left", "right", "up", "down")
DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
SPRITE_SCALE = 6  # 8x8 digits -> 48x48 sprites, half the 96-px frame


@functools.lru_cache(maxsize=1)
def digit_images() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's handwritten digits: images `[1797, 8, 8]` in [0, 1] and labels `[1797]`."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    return (digits.images / 16.0).astype(np.float32), digits.target.astype(np.int64)


def split_digit_pools(seed: int, fractions=(0.6, 0.2, 0.2)) -> dict[str, np.ndarray]:
    """Disjoint image indices for train / val / test."""
    count = len(digit_images()[1])
    order = np.random.default_rng([seed, 7]).permutation(count)
    cut1 = int(fractions[0] * count)
    cut2 = cut1 + int(fractions[1] * count)
    return {"train": order[:cut1], "val": order[cut1:cut2], "test": order[cut2:]}


def background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A smooth coloured texture `[size, size, 3]` in [0.1, 0.55]."""
    coarse = rng.uniform(size=(6, 6, 3))
    texture = zoom(coarse, (size / 6, size / 6, 1), order=3)[:size, :size]
    texture = (texture - texture.min()) / (np.ptp(texture) + 1e-6)
    tint = rng.uniform(0.4, 1.0, size=3)
    return (0.1 + 0.45 * texture * tint).astype(np.float32)


def sprite(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A coloured, upscaled digit: RGB `[48, 48, 3]` and alpha `[48, 48]`."""
    alpha = np.clip(zoom(image, SPRITE_SCALE, order=1), 0, 1)
    colour = rng.uniform(0.75, 1.0, size=3)
    colour[rng.integers(3)] = rng.uniform(0.2, 1.0)
    return np.broadcast_to(colour, alpha.shape + (3,)).astype(np.float32), alpha.astype(np.float32)


def sprite_path(direction: str, frame_size: int, sprite_size: int, steps: int,
                rng: np.random.Generator) -> np.ndarray:
    """Top-left corners `[steps, 2]` (y, x) crossing the frame in `direction`."""
    far = frame_size - sprite_size
    across = np.linspace(0, far, steps)
    other = np.full(steps, rng.uniform(0.15, 0.85) * far)
    if direction == "left":
        return np.stack([other, far - across], axis=1)
    if direction == "right":
        return np.stack([other, across], axis=1)
    if direction == "up":
        return np.stack([far - across, other], axis=1)
    return np.stack([across, other], axis=1)


def paste(frame: np.ndarray, rgb: np.ndarray, alpha: np.ndarray, y: float, x: float) -> None:
    """Alpha-blend a sprite into `frame` in place at integer position (y, x)."""
    y, x = int(round(y)), int(round(x))
    h, w = alpha.shape
    region = frame[y:y + h, x:x + w]
    a = alpha[: region.shape[0], : region.shape[1], None]
    region[:] = (1 - a) * region + a * rgb[: region.shape[0], : region.shape[1]]


def event_tone(digit: int, direction: str, seconds: float, sample_rate: int) -> np.ndarray:
    """A non-speech sound for an un-narrated event: pitch from the digit, shape from the direction.

    up / down: rising / falling sweep; left / right: fast / slow pulses.
    """
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    base = 200.0 * 2 ** (digit / 6)
    if direction in ("up", "down"):
        end = base * (1.5 if direction == "up" else 1 / 1.5)
        frequency = base + (end - base) * t / max(seconds, 1e-6)
        envelope = np.ones_like(t)
    else:
        frequency = np.full_like(t, base)
        rate = 8.0 if direction == "left" else 3.0
        envelope = (np.sin(2 * np.pi * rate * t) > 0).astype(np.float64)
    phase = 2 * np.pi * np.cumsum(frequency) / sample_rate
    fade = np.minimum(1.0, np.minimum(t, t[-1] - t) / 0.02) if t.size else t
    return (0.3 * envelope * fade * np.sin(phase)).astype(np.float32)
