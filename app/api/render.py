"""Rendering task objects: the renderer lives in the task domain (app.tasks.render); the edge's modules import it
from here as before."""

from __future__ import annotations

from app.tasks.render import AssetLinks, render_task, to_json_line

__all__ = ["AssetLinks", "render_task", "to_json_line"]
