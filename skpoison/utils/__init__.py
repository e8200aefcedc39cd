"""Device, dtype and validation helpers shared by every skpoison module."""

from ._device import resolve_device, resolve_dtype, seed_torch, to_tensor

__all__ = ["resolve_device", "resolve_dtype", "seed_torch", "to_tensor"]
