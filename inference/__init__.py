"""GPU side: the arq worker, its jobs, model runners and the mesh pipeline."""
