"""`python -m bench.video`: a 10 s talking-head clip at 512x512 on the CPU, against encoding the same number of
still frames with the same audio (the encoder's irreducible share); and the turntable's added seconds per model task.

Each figure is the median of 3 runs in this process (the second and later warm: OpenCV's cascades loaded).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import wave
from pathlib import Path
from typing import Any

import numpy as np

PORTRAIT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "portrait.jpg"
SECONDS = 10.0


def speech_wav(path: Path, seconds: float, rate: int = 16_000) -> None:
    """A speech-like recording: a voiced buzz in syllables (~4/s) with pauses, and some hiss."""
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * rate)) / rate
    phase = 2 * np.pi * np.cumsum(130 + 25 * np.sin(2 * np.pi * 0.7 * t)) / rate
    voice = sum(np.sin(k * phase) / k for k in range(1, 30)) / 3
    envelope = np.clip(np.sin(2 * np.pi * 4.0 * t), 0, None) ** 0.6 * (np.sin(2 * np.pi * 0.6 * t) > -0.6)
    signal = (0.5 * voice + rng.normal(0, 0.05, len(t))) * envelope
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes((0.6 * signal / np.abs(signal).max() * 32767).astype("<i2").tobytes())


def talking_head_once(work: Path) -> dict[str, float]:
    from PIL import Image

    from inference.video import talking_head as th
    from inference.video.media import decode_audio, write_mp4

    stages: dict[str, float] = {}
    t0 = time.perf_counter()
    audio = decode_audio(work / "speech.wav")
    stages["decode_audio"] = time.perf_counter() - t0
    t = time.perf_counter()
    rgb = np.asarray(Image.open(PORTRAIT).convert("RGB"))
    face = th.detect_face(rgb)
    frame, face = th.prepare_portrait(rgb, face, crop=True)
    stages["detect_face"] = time.perf_counter() - t
    t = time.perf_counter()
    opening, brightness = th.audio_tracks(audio, th.frame_count(audio.duration_s))
    stages["audio_features"] = time.perf_counter() - t
    t = time.perf_counter()
    frames = list(th.animate(frame, face, opening, brightness, emotion="happy"))
    stages["animate"] = time.perf_counter() - t
    t = time.perf_counter()
    write_mp4(work / "ours.mp4", frames, width=frame.shape[1], height=frame.shape[0], fps=th.FPS, audio=audio)
    stages["encode"] = time.perf_counter() - t
    stages["total"] = time.perf_counter() - t0
    # Baseline: the same number of still frames and the same audio through the same encoder.
    t = time.perf_counter()
    write_mp4(work / "still.mp4", (frame for _ in frames), width=frame.shape[1], height=frame.shape[0], fps=th.FPS,
              audio=audio)  # fmt: skip
    stages["baseline_encode_stills"] = time.perf_counter() - t
    stages["frames"] = len(frames)
    return stages


def turntable_once(work: Path, raw: Path, with_video: bool) -> float:
    """One preview's deliverables (every default format, 30k faces) with or without the turntable; seconds."""
    from inference.pipeline.deliverables import build_deliverables

    out = work / f"out-{with_video}-{time.perf_counter_ns()}"
    params = {"mode": "preview", "target_polycount": 30_000, "_turntable": with_video}
    t = time.perf_counter()
    built = build_deliverables(raw, params, out, lambda _f: None)
    seconds = time.perf_counter() - t
    assert (built.video is not None) == with_video
    return seconds


def preview_mesh(work: Path) -> Path:
    """What a text-to-3d preview's runner hands the pipeline: the procedural runner's raw mesh for a prompt."""
    from inference.runners.procedural import ProceduralRunner

    artifacts = ProceduralRunner().run({}, {"prompt": "a wooden chair", "seed": 1}, work / "raw", lambda _f: None)
    assert artifacts.mesh is not None
    return artifacts.mesh


def measure(repeat: int = 3, seconds: float = SECONDS) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        raw = preview_mesh(work)
        turntable_once(work, raw, False)  # warm-up: imports, the first USD and assimp calls
        timings: dict[bool, list[float]] = {False: [], True: []}
        for i in range(repeat):
            print(f"[bench] (v) preview deliverables with and without the turntable, run {i + 1}/{repeat}",
                  file=sys.stderr, flush=True)  # fmt: skip
            for flag in (False, True) if i % 2 == 0 else (True, False):  # alternated, so drift hits both
                timings[flag].append(turntable_once(work, raw, flag))
        speech_wav(work / "speech.wav", seconds)
        runs = []
        for i in range(repeat):
            print(f"[bench] (v) talking head {seconds:g} s at 512x512, run {i + 1}/{repeat}", file=sys.stderr,
                  flush=True)  # fmt: skip
            runs.append(talking_head_once(work))
        size_kb = (work / "ours.mp4").stat().st_size / 1024
    result = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
    turn = {"without_s": statistics.median(timings[False]), "with_s": statistics.median(timings[True])}
    return {"talking_head": result | {"seconds": seconds, "size_kb": round(size_kb, 1)}, "turntable": turn}


def table(results: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    th = results["talking_head"]
    label = f"(v) talking head, {th['seconds']:g} s at 512x512, 25 fps, s"
    rows = [(label, f"{th['total']:.2f} ({th['size_kb']:.0f} KB)",
             f"{th['baseline_encode_stills']:.2f} (encoding {th['frames']:.0f} stills + audio)",
             f"{th['total'] / th['baseline_encode_stills']:.1f}x")]  # fmt: skip
    for stage in ("decode_audio", "detect_face", "audio_features", "animate", "encode"):
        rows.append((f"    talking head stage: {stage}, s", f"{th[stage]:.3f}", "", ""))
    turn = results.get("turntable")
    if turn:
        rows.append(("(v) preview deliverables + turntable video, s", f"{turn['with_s']:.2f}",
                     f"{turn['without_s']:.2f} (without the video)",
                     f"+{turn['with_s'] - turn['without_s']:.2f} s"))  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.video")
    parser.add_argument("--seconds", type=float, default=SECONDS)
    args = parser.parse_args(argv)
    for row in table(measure(seconds=args.seconds)):
        print(f"{row[0]:<58} {row[1]:<34} {row[2]:<44} {row[3]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
