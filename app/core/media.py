"""Audio inputs checked at the edge: what the bytes really are (not what the name says), how long, and whether
anything is audible. Decoded with PyAV (FFmpeg's libraries in a wheel)."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

AUDIO_TYPES = ("audio/wav", "audio/mpeg")


@dataclass(frozen=True)
class AudioInfo:
    media_type: str
    extension: str
    duration_s: float
    peak_rms: float  # loudest 50 ms window, 0..1 (about -60 dBFS is 0.001)


def sniff_audio(content: bytes) -> str | None:
    """audio/wav or audio/mpeg by the file's own bytes, else None."""
    head = content[:16]
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "audio/wav"
    if head[:3] == b"ID3" or (len(head) > 1 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0 and (head[1] & 0x06)):
        return "audio/mpeg"  # an ID3 tag, or an MPEG audio frame header (layer bits set)
    return None


def probe_audio(content: bytes) -> AudioInfo:
    """Decode the whole recording; ValueError (a caller-facing reason) when it is not WAV/MP3 audio or is corrupt."""
    import av

    kind = sniff_audio(content)
    if kind is None:
        raise ValueError("the file is not WAV or MP3 audio")
    try:
        with av.open(io.BytesIO(content)) as container:
            if not container.streams.audio:
                raise ValueError("the file has no audio track")
            resampler = av.AudioResampler(format="flt", layout="mono", rate=16_000)
            chunks = [out.to_ndarray().reshape(-1) for frame in container.decode(audio=0)
                      for out in resampler.resample(frame)]  # fmt: skip
    except av.error.FFmpegError as exc:
        raise ValueError("the audio file is corrupt") from exc
    samples = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
    if not len(samples):
        raise ValueError("the audio file holds no sound")
    window = 800  # 50 ms
    usable = len(samples) // window * window
    rms = np.sqrt(np.mean(samples[:usable].reshape(-1, window) ** 2, axis=1)) if usable else np.array([0.0])
    return AudioInfo(kind, ".wav" if kind == "audio/wav" else ".mp3", len(samples) / 16_000, float(rms.max()))
