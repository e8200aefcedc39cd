"""Device and dtype helpers and atomic file writes, shared by every skpoison module."""

from ._device import resolve_device, resolve_dtype, to_tensor
from ._io import atomic_write

__all__ = ["atomic_write", "resolve_device", "resolve_dtype", "to_tensor"]
