"""Video files through PyAV: writing H.264/AAC mp4s, and decoding to resampled frames and audio.

Decoding picks, for each output time k / fps, the last source frame shown at
that time, so variable frame rates resample correctly; audio is downmixed to
mono float32 at the target rate and aligned to the video's clock.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import av
import numpy as np
from PIL import Image

from mmv_tf.data.preprocessing import DecodedClip
from mmv_tf.errors import InputError

VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".avi", ".mov")


class MediaError(InputError):
    """A media file that cannot be decoded at all (the message names the file and the reason)."""


def write_mp4(path: str | Path, frames: np.ndarray, fps: float, waveform: np.ndarray | None = None,
              sample_rate: int = 16000, crf: int = 20) -> None:
    """Write uint8 frames `[T, H, W, 3]` (even H, W) and an optional mono float waveform `[N]`."""
    with av.open(str(path), "w", format="mp4") as container:
        video = container.add_stream("libx264", rate=int(round(fps)))
        video.width, video.height = frames.shape[2], frames.shape[1]
        video.pix_fmt = "yuv420p"
        video.options = {"crf": str(crf), "threads": "1"}
        audio = None
        if waveform is not None:
            audio = container.add_stream("aac", rate=sample_rate, layout="mono")
        for image in frames:
            # Converting here, not inside the encoder, keeps the output byte-identical across runs.
            frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p")
            container.mux(video.encode(frame))
        container.mux(video.encode())
        if audio is not None:
            samples = np.clip(waveform, -1, 1).astype(np.float32)[None, :]
            frame = av.AudioFrame.from_ndarray(samples, format="flt", layout="mono")
            frame.sample_rate = sample_rate
            frame.pts = 0  # lets the encoder mark its priming samples (negative pts)
            container.mux(audio.encode(frame))
            container.mux(audio.encode())


def _output_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    scale = short_side / min(width, height)
    return max(2, round(width * scale / 2) * 2), max(2, round(height * scale / 2) * 2)


def _rgb(frame, short_side: int) -> np.ndarray:
    width, height = _output_size(frame.width, frame.height, short_side)
    return frame.to_ndarray(width=width, height=height, format="rgb24")


def _jpeg(image: np.ndarray, quality: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def _video_stream(container, path: Path):
    """The first video stream, decoded with threads, or a MediaError."""
    if not container.streams.video:
        raise MediaError(f"{path}: no video stream")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    return stream


def _decode_frames(path: Path, fps: float, short_side: int, quality: int, notes: list[str]):
    """(JPEG frames at `fps`, width, height); truncated streams keep what decoded."""
    jpegs: list[bytes] = []
    size = None
    try:
        with av.open(str(path)) as container:
            stream = _video_stream(container, path)
            current, last_end = None, 0.0
            try:
                for frame in container.decode(stream):
                    if frame.time is None:
                        continue
                    shown_for = float(frame.duration * frame.time_base) if frame.duration else 0.0
                    last_end = frame.time + (shown_for or 1.0 / float(stream.average_rate or fps))
                    if size is None:
                        size = _output_size(frame.width, frame.height, short_side)
                    while current is not None and len(jpegs) / fps < frame.time - 1e-6:
                        jpegs.append(current)
                    current = _jpeg(frame.to_ndarray(width=size[0], height=size[1], format="rgb24"),
                                    quality)
                    if not jpegs and frame.time > 1e-6:  # stream starts late: hold its first frame
                        while len(jpegs) / fps < frame.time - 1e-6:
                            jpegs.append(current)
            except (av.FFmpegError, ValueError) as error:
                notes.append(f"{path.name}: video decoding stopped at {len(jpegs) / fps:.2f}s ({error})")
            while current is not None and len(jpegs) / fps < last_end - 1e-6:
                jpegs.append(current)
            declared = container.duration / av.time_base if container.duration else None
            if jpegs and declared and last_end < declared - 0.5:
                notes.append(f"{path.name}: video decoding stopped at {last_end:.2f}s of the "
                             f"{declared:.2f}s declared (truncated file?)")
    except av.FFmpegError as error:
        raise MediaError(f"{path}: cannot open ({error})") from None
    if not jpegs:
        raise MediaError(f"{path}: no decodable video frames")
    return jpegs, size[0], size[1]


AUDIO_PREROLL_SECONDS = 0.25


def _decode_audio(path: Path, sample_rate: int, num_samples: int | None, notes: list[str],
                  start: float = 0.0):
    """Mono float32 `[num_samples]` from `start` seconds (all of the rest if None) and whether the file
    had audio. A later `start` seeks; decoding stops once `num_samples` are covered."""
    end = start + num_samples / sample_rate if num_samples is not None else None
    chunks, first = [], None
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                notes.append(f"{path.name}: no audio stream (zeros, audio mask off)")
                return np.zeros(num_samples or 0, np.float32), False
            stream = container.streams.audio[0]
            # A decoder such as AAC rebuilds a frame from the one before, and the first frames carry
            # the encoder's priming: seek a little before `start`, and not at all near the beginning.
            if start > AUDIO_PREROLL_SECONDS:
                container.seek(int((start - AUDIO_PREROLL_SECONDS) / stream.time_base), stream=stream)
            resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
            try:
                for frame in container.decode(stream):
                    if first is None:
                        first = frame.time or 0.0
                    chunks.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(frame))
                    if end is not None and frame.time is not None and frame.time > end:
                        break
            except (av.FFmpegError, ValueError) as error:
                notes.append(f"{path.name}: audio decoding stopped early ({error})")
            chunks.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(None))
    except av.FFmpegError as error:
        notes.append(f"{path.name}: audio unreadable ({error}); zeros, audio mask off")
        return np.zeros(num_samples or 0, np.float32), False
    if not chunks:
        notes.append(f"{path.name}: audio stream without samples (zeros, audio mask off)")
        return np.zeros(num_samples or 0, np.float32), False
    waveform = np.concatenate(chunks)
    # < 0 for encoder priming or a seek before `start`, > 0 if the audio starts late
    offset = int(round((first - start) * sample_rate))
    waveform = waveform[-offset:] if offset < 0 else np.concatenate([np.zeros(offset, np.float32), waveform])
    if num_samples is not None:
        waveform = np.pad(waveform[:num_samples], (0, max(0, num_samples - len(waveform))))
    return waveform.astype(np.float32), True


def media_duration(path: str | Path) -> float:
    """The duration a file declares, in seconds (0 when it declares none)."""
    try:
        with av.open(str(path)) as container:
            return container.duration / av.time_base if container.duration else 0.0
    except av.FFmpegError as error:
        raise MediaError(f"{path}: cannot open ({error})") from None


def decode_clip(path: str | Path, start: float, end: float, fps: float = 10.0, short_side: int = 128,
                sample_rate: int = 16000) -> tuple[np.ndarray, np.ndarray | None]:
    """Frames uint8 `[T, H, W, 3]` at `fps` for the times `start + k / fps` before `end` (as
    `decode_video` samples them) and mono audio `[round((end - start) * sample_rate)]` (None without
    an audio stream). Seeks to the keyframe before `start`: the cost follows the clip, not the file."""
    path = Path(path)
    count = max(1, int(round((end - start) * fps)))
    times = start + np.arange(count) / fps
    frames: list[np.ndarray] = []
    try:
        with av.open(str(path)) as container:
            stream = _video_stream(container, path)
            container.seek(max(0, int(start / stream.time_base)), stream=stream)
            shown, picture = None, None  # the frame on screen at the next sample time, as RGB
            for frame in container.decode(stream):
                if frame.time is None:
                    continue
                if shown is None:  # a first frame after `start` is held for the times before it
                    shown = frame
                while len(frames) < count and frame.time > times[len(frames)] + 1e-6:
                    picture = picture if picture is not None else _rgb(shown, short_side)
                    frames.append(picture)
                if len(frames) == count:
                    break
                shown, picture = frame, None
            if shown is not None and len(frames) < count:  # the stream ends before `end`
                picture = picture if picture is not None else _rgb(shown, short_side)
                frames.extend([picture] * (count - len(frames)))
        if not frames:
            raise MediaError(f"{path}: no decodable video frames after {start:.2f}s")
    except av.FFmpegError as error:
        raise MediaError(f"{path}: cannot decode {start:.2f}-{end:.2f}s ({error})") from None
    waveform, has_audio = _decode_audio(path, sample_rate, int(round((end - start) * sample_rate)), [],
                                        start)
    return np.stack(frames), waveform if has_audio else None


def decode_audio(path: str | Path, sample_rate: int = 16000) -> np.ndarray:
    """The mono waveform of an audio (or video) file at `sample_rate`, float32 `[N]` in [-1, 1]."""
    path = Path(path)
    if not path.is_file() or os.path.getsize(path) == 0:
        raise MediaError(f"{path}: missing or empty file")
    notes: list[str] = []
    waveform, has_audio = _decode_audio(path, sample_rate, None, notes)
    if not has_audio or not len(waveform):
        raise MediaError(f"{path}: no decodable audio ({'; '.join(notes) or 'empty stream'})")
    return waveform


def decode_video(path: str | Path, fps: float = 10.0, short_side: int = 128,
                 sample_rate: int = 16000, jpeg_quality: int = 90) -> DecodedClip:
    """Decode `path` to JPEG frames at `fps` (shorter side `short_side`) and mono audio at `sample_rate`
    (a clip named by the file's stem, without captions).

    Raises MediaError when no frame can be decoded; everything short of that
    (missing or broken audio, truncation, odd sizes, variable frame rate) is
    repaired and described in `notes`.
    """
    path = Path(path)
    if not path.is_file() or os.path.getsize(path) == 0:
        raise MediaError(f"{path}: missing or empty file")
    notes: list[str] = []
    jpegs, width, height = _decode_frames(path, fps, short_side, jpeg_quality, notes)
    num_samples = int(round(len(jpegs) / fps * sample_rate))
    waveform, has_audio = _decode_audio(path, sample_rate, num_samples, notes)
    return DecodedClip(jpegs, waveform, has_audio, fps, sample_rate, width, height, video_id=path.stem,
                       source=str(path), notes=notes)
