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


class InvalidInputTask(BadRequest):
    message = "Invalid input_task_id"


class InputTaskNotReady(BadRequest):
    message = "Task not ready: the input task has not succeeded"


class InvalidInput(BadRequest):
    message = "Invalid input"
