"""The animation library's preview GIFs: every action played on the reference character, rendered by this server.

Meshy links each catalogue entry to a GIF on its CDN; MeshFoundry renders its own, once, into `<assets>/.previews/`
(served by the API at `/web/public/animations/previews/<id>.gif`). The reference character (the textured A-pose
figure of `inference.motion.reference_character`) goes through the real auto-rigger first, so the previews also show
what rigging does. A worker of the default pool renders the missing ones in a background thread at start-up
(`Settings.animation_previews`); `meshfoundry previews` does the same from the command line.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import threading
from pathlib import Path
from typing import Any

from app.tasks.animations import ACTIONS, preview_path

log = logging.getLogger(__name__)
FRAMES = 24
SIZE = 192


@functools.lru_cache(maxsize=1)
def reference_character() -> Any:
    """The reference figure, rigged by the auto-rigger (about a second; once per process)."""
    from inference.motion.export import SkinnedCharacter
    from inference.motion.reference_character import build_character
    from inference.motion.rigging import rig_character
    from inference.motion.skeleton import bone_names

    mesh, _ = build_character(pose="A", style="textured")
    rigged = rig_character(mesh, height_meters=1.75)
    return SkinnedCharacter(rigged.mesh, rigged.skeleton, rigged.joints, rigged.weights, bone_names("mixamo"))


def render_preview(action_id: int, path: Path) -> Path:
    """One action's GIF at `path` (written to a temporary name, then renamed: never half a file)."""
    from inference.motion import library
    from inference.motion.export import Motion
    from inference.motion.preview import render_frames, write_gif

    character = reference_character()
    clip = library.get_clip(action_id)
    motion = Motion.from_clip(clip, character.skeleton)
    frames = render_frames(character, motion, FRAMES, size=SIZE, view="three_quarter")
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.stem}.{os.getpid()}.{threading.get_ident()}.gif")
    write_gif(frames, partial, fps=FRAMES / max(clip.duration, 1e-3))
    partial.replace(path)
    return path


def _lower_priority() -> None:
    """Nice this thread (Linux lets one thread be niced alone), so previews yield the CPU to real tasks; only a
    background thread: the command line's main thread keeps its priority."""
    if threading.current_thread() is threading.main_thread():
        return
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)


def render_missing_previews(
    assets_root: Path, stop: threading.Event | None = None, only: list[int] | None = None
) -> int:
    """Render every action (or those in `only`) whose preview is missing, until done or `stop` is set; how many were
    rendered."""
    done = 0
    _lower_priority()
    wanted = [a for a in sorted(ACTIONS if not only else set(only) & set(ACTIONS))
              if not preview_path(Path(assets_root), a).is_file()]  # fmt: skip
    if not wanted:
        return 0
    try:
        reference_character()
    except Exception:  # noqa: BLE001 (say it once, not once per action)
        log.exception("the reference character could not be rigged; no animation previews rendered")
        return 0
    for action_id in wanted:
        if stop is not None and stop.is_set():
            break
        path = preview_path(Path(assets_root), action_id)
        try:
            render_preview(action_id, path)
            done += 1
        except Exception:  # noqa: BLE001 (a preview is a nicety: log it and go on with the next)
            log.exception("rendering the preview of action %s failed", action_id)
    if done:
        log.info("rendered %d animation previews", done)
    return done
