"""Device and dtype helpers, validation helpers and atomic file writes, shared by every
skpoison module."""

from ._device import resolve_device, resolve_dtype, to_tensor
from ._io import atomic_write
from ._validation import NumberInterval, check_feature_names

__all__ = [
    "NumberInterval",
    "atomic_write",
    "check_feature_names",
    "resolve_device",
    "resolve_dtype",
    "to_tensor",
]
