"""HTTP edge: Meshy's routes, auth, errors, SSE and signed asset downloads."""
