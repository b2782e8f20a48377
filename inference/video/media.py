"""Audio in, MP4 out, through PyAV (FFmpeg's libraries in a wheel; no system ffmpeg needed)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

SAMPLE_RATE = 48_000  # what the MP4's AAC track is written at


@dataclass(frozen=True)
class Audio:
    samples: np.ndarray  # mono float32 in -1..1
    sample_rate: int

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sample_rate


def decode_audio(path: Path, *, sample_rate: int = SAMPLE_RATE, max_seconds: float | None = None) -> Audio:
    """Any audio FFmpeg reads (WAV, MP3, ...) as mono float32 at `sample_rate`; ValueError when there is none."""
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError) as exc:
        raise ValueError("the audio file cannot be read") from exc
    with container:
        if not container.streams.audio:
            raise ValueError("the file has no audio")
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        chunks: list[np.ndarray] = []
        total = 0
        limit = int(max_seconds * sample_rate) + sample_rate if max_seconds else None
        try:
            for frame in container.decode(audio=0):
                for out in resampler.resample(frame):
                    chunk = out.to_ndarray().reshape(-1).astype(np.float32)
                    chunks.append(chunk)
                    total += len(chunk)
                if limit is not None and total > limit:
                    break
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1).astype(np.float32))
        except av.error.FFmpegError as exc:
            raise ValueError("the audio file is corrupt") from exc
    samples = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)
    if not len(samples):
        raise ValueError("the audio file holds no sound")
    return Audio(np.clip(samples, -1.0, 1.0), sample_rate)


def write_mp4(
    path: Path, frames: Iterable[np.ndarray], *, width: int, height: int, fps: int, audio: Audio | None = None,
    crf: int = 23,
) -> None:  # fmt: skip
    """Encode RGB uint8 frames (height, width, 3) as H.264 (yuv420p) with the audio as AAC, `+faststart`."""
    with av.open(str(path), "w", options={"movflags": "+faststart"}) as container:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.options = {"crf": str(crf), "preset": "veryfast"}
        sound = None
        if audio is not None:
            sound = container.add_stream("aac", rate=audio.sample_rate)
            sound.layout = "mono"
        for image in frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            for packet in video.encode(frame):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        if sound is not None and audio is not None:
            block = 1024
            pts = 0
            for start in range(0, len(audio.samples), block):
                chunk = audio.samples[start : start + block].reshape(1, -1)
                frame = av.AudioFrame.from_ndarray(chunk, format="flt", layout="mono")
                frame.sample_rate, frame.pts = audio.sample_rate, pts
                pts += chunk.shape[1]
                for packet in sound.encode(frame):
                    container.mux(packet)
            for packet in sound.encode():
                container.mux(packet)
