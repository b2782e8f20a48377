"""Mesh pipeline: raw runner output to Meshy's deliverables (GLB, OBJ+MTL, FBX, STL, USDZ, 3MF, thumbnails)."""
