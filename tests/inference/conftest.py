"""Fixtures shared by the inference tests."""

from tests.inference.gltf_validator import validate  # noqa: F401  (the Khronos glTF validator fixture)
