"""MeshFoundry: a self-hosted, Meshy-compatible 3D generation API."""

__version__ = "0.1.0"
