"""Every task resource MeshFoundry serves, in one place: the app mounts them, tests and docs walk them."""

from __future__ import annotations

from app.api.resources import Resource
from app.api.v1.characters import RESOURCES as CHARACTERS
from app.api.v1.image_family import RESOURCES as IMAGE_FAMILY
from app.api.v1.model_ops import RESOURCES as MODEL_OPERATIONS
from app.api.v1.parts import RESOURCES as PARTS
from app.api.v1.talking_head import RESOURCES as VIDEO
from app.api.v2.text_to_3d import TEXT_TO_3D

RESOURCES: tuple[Resource, ...] = (TEXT_TO_3D, *IMAGE_FAMILY, *MODEL_OPERATIONS, *CHARACTERS, *PARTS, *VIDEO)
