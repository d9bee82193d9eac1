"""Small media files written by tests: clean clips, and the broken kinds users bring."""

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from mmv_tf.data.media import write_mp4

FPS, RATE = 10, 16000


def beeping_clip(path: Path, seconds: float, flash_frame: int) -> None:
    """A dark clip whose frame `flash_frame` is white while its audio beeps (1 kHz) during that frame."""
    frames = np.full((int(seconds * FPS), 64, 80, 3), 20, np.uint8)
    frames[flash_frame] = 235
    audio = np.zeros(int(seconds * RATE), np.float32)
    first = int(flash_frame / FPS * RATE)
    audio[first:first + RATE // FPS] = 0.5 * np.sin(2 * np.pi * 1000 * np.arange(RATE // FPS) / RATE)
    write_mp4(path, frames, FPS, audio, RATE)


def silent_clip(path: Path, seconds: float) -> None:
    """An mp4 with no audio stream."""
    write_mp4(path, np.full((int(seconds * FPS), 48, 48, 3), 128, np.uint8), FPS)


def odd_size_stereo_mkv(path: Path, seconds: float, size=(61, 97)) -> None:
    """Lossless (FFV1) frames of an odd size in Matroska, with stereo audio (left beeps, right silent)."""
    with av.open(str(path), "w") as container:
        video = container.add_stream("ffv1", rate=FPS)
        video.width, video.height, video.pix_fmt = size[1], size[0], "yuv444p"
        audio = container.add_stream("aac", rate=RATE, layout="stereo")
        for index in range(int(seconds * FPS)):
            image = np.full(size + (3,), index * 5 % 255, np.uint8)
            container.mux(video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(video.encode())
        samples = np.zeros((2, int(seconds * RATE)), np.float32)
        samples[0] = 0.3 * np.sin(2 * np.pi * 440 * np.arange(samples.shape[1]) / RATE)
        frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="stereo")
        frame.sample_rate, frame.pts = RATE, 0
        container.mux(audio.encode(frame))
        container.mux(audio.encode())


def variable_rate_clip(path: Path, times: list[float]) -> None:
    """Frames shown at irregular `times` (seconds); frame i has brightness 20 * i."""
    with av.open(str(path), "w", format="matroska") as container:
        video = container.add_stream("mpeg4", rate=1000)
        video.width, video.height, video.pix_fmt = 48, 48, "yuv420p"
        video.codec_context.time_base = video.time_base = Fraction(1, 1000)
        for index, t in enumerate(times):
            frame = av.VideoFrame.from_ndarray(np.full((48, 48, 3), 20 * index, np.uint8), format="rgb24")
            frame.pts = int(t * 1000)
            frame.time_base = video.time_base
            container.mux(video.encode(frame))
        container.mux(video.encode())
