"""Keep freed heap memory for reuse (Linux glibc): autograd's buffers are not re-faulted.

A double backward pass allocates and frees many large buffers every step.  glibc serves
allocations above ``M_MMAP_THRESHOLD`` (128 KiB, growing dynamically up to 32 MiB) with
fresh ``mmap`` pages and unmaps them on ``free``, so every step pays the kernel for
mapping and zeroing them again (the CNN spent about half of a Gradient Canceling step
there).  :func:`keep_freed_memory` turns ``mmap`` off for ``malloc`` (``M_MMAP_MAX = 0``)
and raises ``M_TRIM_THRESHOLD`` to 2 GiB, so freed buffers stay in the heap and are
reused.  The peak memory does not grow; memory freed after a peak is kept by the
process (up to the trim threshold) instead of being returned to the system.

skpoison calls it when a Gradient Canceling attack starts (importing skpoison leaves
the C library's settings alone).  It does nothing
outside Linux with glibc, and nothing when the environment variable
``SKPOISON_KEEP_MALLOC`` is set to ``1`` (keep the C library's defaults).
"""

import ctypes
import ctypes.util
import os
import platform

__all__ = ["keep_freed_memory"]

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_TRIM_THRESHOLD = 2**31 - 1
_DONE = []


def keep_freed_memory():
    """Tune glibc's ``malloc`` to keep freed memory for reuse; return whether it did.

    Called once per process (later calls return the first result).

    Examples
    --------
    >>> from skpoison._utils._allocator import keep_freed_memory
    >>> isinstance(keep_freed_memory(), bool)
    True
    """
    if _DONE:
        return _DONE[0]
    done = False
    libc_name, _ = platform.libc_ver()
    if (
        platform.system() == "Linux"
        and libc_name == "glibc"
        and os.environ.get("SKPOISON_KEEP_MALLOC", "") != "1"
    ):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            done = bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(
                libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD)
            )
        except (OSError, AttributeError):
            done = False
    _DONE.append(done)
    return done
