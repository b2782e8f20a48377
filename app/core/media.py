"""Audio inputs checked at the edge: what the bytes really are (not what the name says), how long, and whether
anything is audible. Decoded with PyAV (FFmpeg's libraries in a wheel)."""

from __future__ import annotations

import io
import itertools
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


def probe_audio(content: bytes, max_seconds: float = 60.0) -> AudioInfo:
    """Decode the recording, at most a little past `max_seconds` (a longer one reports that much: enough to refuse
    it, without decoding hours of a small MP3); ValueError (a caller-facing reason) when it is not WAV/MP3 audio or
    is corrupt. Loudness is measured in 50 ms windows as the samples arrive, so memory stays small."""
    import av

    kind = sniff_audio(content)
    if kind is None:
        raise ValueError("the file is not WAV or MP3 audio")
    rate, window = 16_000, 800
    limit = int((max_seconds + 1.0) * rate)
    total, peak = 0, 0.0
    pending = np.zeros(0, np.float32)
    try:
        with av.open(io.BytesIO(content)) as container:
            if not container.streams.audio:
                raise ValueError("the file has no audio track")
            declared = container.duration / 1e6 if container.duration else None
            if declared is not None and declared > max_seconds + 1.0:
                return AudioInfo(kind, _extension(kind), declared, 1.0)
            resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
            for frame in itertools.chain(container.decode(audio=0), [None]):  # None flushes the resampler
                for out in resampler.resample(frame):
                    chunk = out.to_ndarray().reshape(-1).astype(np.float32)
                    total += len(chunk)
                    pending = np.concatenate([pending, chunk])
                    usable = len(pending) // window * window
                    if usable:
                        blocks = pending[:usable].reshape(-1, window)
                        peak = max(peak, float(np.sqrt((blocks**2).mean(axis=1)).max()))
                        pending = pending[usable:]
                if total > limit:
                    break
    except av.error.FFmpegError as exc:
        raise ValueError("the audio file is corrupt") from exc
    if total == 0:
        raise ValueError("the audio file holds no sound")
    if len(pending):
        peak = max(peak, float(np.sqrt(np.mean(pending**2))))
    return AudioInfo(kind, _extension(kind), total / rate, peak)


def _extension(kind: str) -> str:
    return ".wav" if kind == "audio/wav" else ".mp3"
