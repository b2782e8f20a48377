"""Telling a CUDA out-of-memory error apart from other failures, without importing torch."""

from __future__ import annotations

# torch raises torch.cuda.OutOfMemoryError (a RuntimeError) from the caching allocator; kernels that allocate their
# own workspace (cuBLAS, cuDNN) raise a plain RuntimeError naming the failed allocation instead.
_MESSAGES = ("cuda out of memory", "cublas_status_alloc_failed", "cudnn_status_alloc_failed", "hip out of memory")


def is_cuda_oom(exc: BaseException) -> bool:
    """True when `exc`, or an exception it was raised from, is the GPU running out of memory."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if type(current).__name__ == "OutOfMemoryError" and type(current).__module__.startswith("torch"):
            return True
        if isinstance(current, RuntimeError) and any(m in str(current).lower() for m in _MESSAGES):
            return True
        current = current.__cause__ or current.__context__
    return False
