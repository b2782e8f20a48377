"""`talking-head` on the CPU: a portrait speaking a recording, animated by audio-driven warps (a reference path;
see inference/video/talking_head.py for what it does and does not do)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from inference.runners.base import InputRejected, ProgressCallback, RunnerArtifacts
from inference.video import talking_head as th
from inference.video.media import decode_audio, write_mp4

MAX_AUDIO_S = 60.0  # the longest recording a task takes (also checked when the task is created)
VIDEO = "talking_head.mp4"
POSTER = "preview.png"


class TalkingHeadRunner:
    name = "talking-head"

    def run(
        self, inputs: Mapping[str, Any], params: Mapping[str, Any], out_dir: Path, progress: ProgressCallback
    ) -> RunnerArtifacts:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        progress(0.0)
        try:
            with Image.open(inputs["image"]) as img:
                rgb = np.asarray(ImageOps.exif_transpose(img).convert("RGB"))
        except Exception as exc:  # noqa: BLE001 (whatever PIL trips on is a bad picture)
            raise InputRejected("image_url: the file is not a readable image") from exc
        try:
            audio = decode_audio(Path(inputs["audio"]), max_seconds=MAX_AUDIO_S)
        except ValueError as exc:
            raise InputRejected(f"audio_url: {exc}") from exc
        if audio.duration_s > MAX_AUDIO_S + 0.05:
            raise InputRejected(f"audio_url: the recording is longer than {MAX_AUDIO_S:g} s")
        try:
            face = th.detect_face(rgb)
        except th.NoFace as exc:
            raise InputRejected(f"image_url: {exc}") from exc
        frame, face = th.prepare_portrait(rgb, face, bool(params.get("crop")))
        n = th.frame_count(audio.duration_s)
        try:
            opening, brightness = th.audio_tracks(audio, n)
        except th.SilentAudio as exc:
            raise InputRejected(f"audio_url: {exc}") from exc
        progress(0.05)
        poster_at = int(np.argmax(opening))
        poster: list[np.ndarray] = []

        def frames():  # type: ignore[no-untyped-def]
            for i, image in enumerate(th.animate(
                frame, face, opening, brightness, emotion=str(params.get("emotion", "neutral")),
                ref_scale=float(params.get("ref_scale", 3.0)), emo_scale=float(params.get("emo_scale", 6.0)),
                seed=int(params.get("seed", 0)),
            )):  # fmt: skip
                if i == poster_at:
                    poster.append(image)
                if i % 10 == 0:
                    progress(0.05 + 0.9 * i / n)
                yield image

        h, w = frame.shape[:2]
        write_mp4(out_dir / VIDEO, frames(), width=w, height=h, fps=th.FPS, audio=audio)
        Image.fromarray(poster[0] if poster else frame).save(out_dir / POSTER)
        progress(1.0)
        result = {"video_url": VIDEO, "thumbnail_url": POSTER, "duration_ms": round(audio.duration_s * 1000),
                  "fps": th.FPS, "width": w, "height": h, "face_detected": True,
                  "eyes_detected": face.eyes_found}  # fmt: skip
        return RunnerArtifacts(metadata={"result": result, "files": [VIDEO, POSTER]})
