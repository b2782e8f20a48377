"""GPU scheduling, pure Python: VRAM accounting for one GPU (`budget`), which queued job a GPU worker starts next
(`policy`), and telling a CUDA out-of-memory error apart (`oom`). The arq worker (`inference.scheduled_worker`) and
the trace simulator (`bench/gpu_trace.py`) call the same functions."""
