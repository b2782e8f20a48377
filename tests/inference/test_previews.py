"""The animation library's preview GIFs: rendered on the rigged reference character, read back with PIL."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
from PIL import Image, ImageSequence

from app.tasks.animations import preview_path
from inference.jobs.previews import FRAMES, SIZE, render_missing_previews


def test_previews_render_once_and_move(tmp_path: Path) -> None:
    assert render_missing_previews(tmp_path, only=[28, 987654]) == 1  # an unknown id is not rendered
    path = preview_path(tmp_path, 28)
    with Image.open(path) as gif:
        frames = [np.asarray(frame.convert("RGB"), dtype=np.int16) for frame in ImageSequence.Iterator(gif)]
        assert gif.size == (SIZE, SIZE) and gif.info.get("loop") == 0
    assert len(frames) == FRAMES
    assert np.abs(frames[0] - frames[len(frames) // 2]).mean() > 1.0, "the wave moves"
    assert render_missing_previews(tmp_path, only=[28]) == 0  # already there
    stop = threading.Event()
    stop.set()
    assert render_missing_previews(tmp_path, stop) == 0
    assert not list(path.parent.glob(".*")), "no temporary file left behind"
