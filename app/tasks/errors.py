"""Task-domain errors."""

from __future__ import annotations

from app.core.errors import BadRequest, NotFound


class TaskNotFound(NotFound):
    message = "Task not found"


class PreviewNotReady(BadRequest):
    message = "Task not ready: the preview task has not succeeded"


class InvalidPreviewTask(BadRequest):
    message = "Invalid preview_task_id: it must be a text-to-3d preview task"


class UnsupportedModel(BadRequest):
    message = "Unsupported ai_model"
