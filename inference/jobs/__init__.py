"""arq jobs, one per module."""
