"""The one rule for "this cell ran out of memory" (the ``oom`` status), engine and worker alike.

No torch import here: the worker asks it about any exception, stand-in cells included.
"""

from __future__ import annotations

import resource

# oneDNN's message when it cannot build a convolution or matmul kernel. Under an address-space
# cap it is how a refused allocation surfaces on CPU (seen on an AMX Xeon: the capped cell of
# the fault suite read "could not create a primitive", not MemoryError); without a cap it can
# mean other things, so it counts only under one.
_ONEDNN_ALLOC = "could not create a primitive"


def _address_space_capped() -> bool:
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    return soft != resource.RLIM_INFINITY


def is_oom(exc: BaseException) -> bool:
    """CUDA out of memory, a host allocation refused (``MemoryError``, the allocator's
    message), or oneDNN failing to build a kernel while this process has a memory cap."""
    if type(exc).__name__ == "OutOfMemoryError" or isinstance(exc, MemoryError):
        return True
    text = str(exc).lower()
    if "out of memory" in text or "can't allocate memory" in text:
        return True
    return _ONEDNN_ALLOC in text and _address_space_capped()
