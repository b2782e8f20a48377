"""Wire schemas for MeshFoundry's part resources: mesh segmentation and part completion (3DAIGC-API's PartField and
HoloPart features, as task resources beside Meshy's)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from app.api.v1.model_schemas import _ModelInput

MIN_PARTS, MAX_PARTS = 2, 32


class MeshSegmentationRequest(_ModelInput):
    """A model (`input_task_id`, which wins, or `model_url`) cut into parts."""

    num_parts: int | None = Field(None, ge=MIN_PARTS, le=MAX_PARTS, description="2-32; absent: chosen from the shape.")
    keep_material: bool = Field(False, description="Keep the model's own material on the parts (default: one colour "
                                "per part).")  # fmt: skip
    ai_model: str = Field("latest", max_length=40, description="latest (the CPU reference) or a local model name.")

    def params(self) -> dict[str, Any]:
        return {"num_parts": self.num_parts, "keep_material": self.keep_material, "ai_model": self.ai_model}


class PartCompletionRequest(_ModelInput):
    """A multi-part model: a SUCCEEDED mesh-segmentation task (`input_task_id`) or a GLB whose nodes are the parts."""

    ai_model: str = Field("latest", max_length=40, description="latest (the CPU reference) or a local model name.")

    def params(self) -> dict[str, Any]:
        return {"ai_model": self.ai_model}
