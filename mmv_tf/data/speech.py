"""Spoken narrations from espeak-ng (Debian package `espeak-ng`)."""

from __future__ import annotations

import io
import shutil
import subprocess
import wave

import numpy as np
from scipy.signal import resample_poly

from mmv_tf.errors import InputError

INSTALL_HINT = ("espeak-ng is needed to speak the demo narrations: install it with "
                "`sudo apt-get install espeak-ng` (Debian/Ubuntu), or run `bash scripts/setup.sh` as root")


class SpeechError(InputError):
    """espeak-ng is missing or failed."""


def require_espeak() -> str:
    """Path of the espeak-ng program, or a SpeechError that says how to install it."""
    program = shutil.which("espeak-ng")
    if program is None:
        raise SpeechError(INSTALL_HINT)
    return program


def speak(text: str, voice: str, words_per_minute: int, pitch: int, sample_rate: int) -> np.ndarray:
    """`text` spoken by espeak-ng `voice` (e.g. "en-us+f2"), mono float32 in [-1, 1] at `sample_rate`."""
    result = subprocess.run(
        [require_espeak(), "-v", voice, "-s", str(words_per_minute), "-p", str(pitch), "--stdout", text],
        capture_output=True, check=False,
    )
    if result.returncode != 0 or not result.stdout:
        raise SpeechError(f"espeak-ng failed for voice {voice!r}: {result.stderr.decode(errors='replace')}")
    with wave.open(io.BytesIO(result.stdout)) as wav:
        rate = wav.getframerate()
        samples = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").astype(np.float32) / 32768
    if rate != sample_rate:
        divisor = np.gcd(rate, sample_rate)
        samples = resample_poly(samples, sample_rate // divisor, rate // divisor).astype(np.float32)
    return trim_silence(samples)


def trim_silence(samples: np.ndarray, threshold: float = 0.01) -> np.ndarray:
    """Drop leading and trailing samples quieter than `threshold`."""
    loud = np.flatnonzero(np.abs(samples) > threshold)
    return samples[loud[0]: loud[-1] + 1] if loud.size else samples[:0]
