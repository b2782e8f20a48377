"""Alembic migrations for MeshFoundry's schema."""
