"""Credit prices per task type: Meshy's list (meshy-api.md §16) as defaults, overridable from settings."""

from __future__ import annotations

from collections.abc import Mapping

# Keys, most specific first: "<type>:<ai_model>:<variant>", "<type>:<variant>", "<type>:<ai_model>", "<type>".
# Variants: "textured" (image-to-3d and multi-image-to-3d with should_texture), "swift"/"prime" (text-to-motion).
DEFAULT_PRICES: dict[str, int] = {
    "text-to-3d-preview": 20,  # Meshy 6 / latest / lowpoly
    "text-to-3d-preview:meshy-5": 5,
    "text-to-3d-refine": 10,
    # Image to 3D and Multi-Image to 3D: 20 untextured / 30 textured on meshy-6 and latest, 5 / 15 otherwise.
    "image-to-3d": 20,
    "image-to-3d:textured": 30,
    "image-to-3d:meshy-5": 5,
    "image-to-3d:meshy-5:textured": 15,
    "multi-image-to-3d": 20,
    "multi-image-to-3d:textured": 30,
    "multi-image-to-3d:meshy-5": 5,
    "multi-image-to-3d:meshy-5:textured": 15,
    # 2D: per image, per model; a multi-view set is charged as one image.
    "text-to-image": 3,
    "text-to-image:nano-banana": 3,
    "text-to-image:nano-banana-2": 6,
    "text-to-image:nano-banana-pro": 9,
    "text-to-image:gpt-image-2": 9,
    "text-to-image:gpt-image-2-5-flare": 9,
    "text-to-image:gpt-image-2-5-sunburst": 9,
    "image-to-image": 3,
    "image-to-image:nano-banana": 3,
    "image-to-image:nano-banana-2": 6,
    "image-to-image:nano-banana-pro": 9,
    "image-to-image:gpt-image-2": 12,
    "remesh": 5,
    "convert": 1,
    "resize": 1,
    "retexture": 10,
    "text-to-texture": 10,
    "uv-unwrap": 5,
    "print-analyze": 0,
    "print-repair": 10,
    "print-multi-color": 10,
    "rig": 5,  # the walking and running clips included
    "animate": 3,  # per action (action_ids: 3 x their count)
    "text-to-motion": 10,  # prime (FBX)
    "text-to-motion:swift": 3,  # swift (BVH)
    "mesh-segmentation": 5,  # MeshFoundry's part resources (3DAIGC-API's features)
    "part-completion": 10,
    # Retrieve-before-generate: a preview or image-to-3d answered from an existing asset, not generated.
    "text-to-3d-preview:retrieved": 2,
    "image-to-3d:retrieved": 2,
    "asset-search": 0,  # per search request
    "talking-head": 10,  # per started 10 s of audio
}


def price_of(
    task_type: str, ai_model: str, overrides: Mapping[str, int] | None = None, *, variant: str | None = None
) -> int:
    """Credits for one task; unknown types are free (and say so in docs/billing.md)."""
    keys = [f"{task_type}:{ai_model}:{variant}", f"{task_type}:{variant}"] if variant else []
    keys += [f"{task_type}:{ai_model}", task_type]
    # An operator's override wins over every default, whatever its key's rank: {"image-to-3d:meshy-6": 0} makes
    # meshy-6 free, textured or not, although the defaults have a more specific "image-to-3d:textured".
    for table in (overrides or {}, DEFAULT_PRICES):
        for key in keys:
            if key in table:
                return table[key]
    return 0
