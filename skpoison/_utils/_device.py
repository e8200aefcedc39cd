"""Torch device, dtype and seeding helpers."""

import re

import numpy as np
import torch

_DTYPES = {
    "float32": torch.float32,
    "float64": torch.float64,
    torch.float32: torch.float32,
    torch.float64: torch.float64,
    np.float32: torch.float32,
    np.float64: torch.float64,
}

_DEVICE_CHOICES = "'auto', 'cpu', 'cuda', 'cuda:N' or a torch.device of those types"


def resolve_device(device="auto"):
    """Return the torch device for ``device``.

    ``"auto"`` (or ``None``) picks CUDA when it is available and the CPU otherwise;
    ``"cpu"``, ``"cuda"`` and ``"cuda:N"`` (or a :class:`torch.device` of those types)
    name a device explicitly.  Anything else, or a CUDA device this machine does not
    have, raises ``ValueError``.

    Parameters
    ----------
    device : str, torch.device or None, default="auto"
        The requested device.

    Returns
    -------
    device : torch.device

    Raises
    ------
    ValueError
        If ``device`` is not one of the choices above, or names a CUDA device that
        is not available.

    Examples
    --------
    >>> from skpoison._utils import resolve_device
    >>> resolve_device("cpu")
    device(type='cpu')
    >>> resolve_device("bogus")
    Traceback (most recent call last):
    ...
    ValueError: device must be 'auto', 'cpu', 'cuda', 'cuda:N' or a torch.device of those types, got 'bogus'.
    """
    if device is None or (isinstance(device, str) and device == "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if isinstance(device, torch.device):
        resolved = device
    elif isinstance(device, str) and re.fullmatch(r"cpu|cuda(:\d+)?", device.strip()):
        resolved = torch.device(device.strip())
    else:
        raise ValueError(f"device must be {_DEVICE_CHOICES}, got {device!r}.")
    if resolved.type == "cpu":
        return resolved
    if resolved.type != "cuda":
        raise ValueError(f"device must be {_DEVICE_CHOICES}, got {device!r}.")
    if not torch.cuda.is_available():
        raise ValueError(
            f"device={str(device)!r} asks for CUDA, but this torch build or machine has no "
            "CUDA device; use device='cpu' or device='auto'."
        )
    count = torch.cuda.device_count()
    if resolved.index is not None and resolved.index >= count:
        raise ValueError(
            f"device={str(device)!r} names CUDA device {resolved.index}, but this machine "
            f"has {count} (cuda:0 to cuda:{count - 1}); pick one of those or 'auto'."
        )
    return resolved


def resolve_dtype(dtype="float32"):
    """Return the torch floating dtype for ``dtype`` (``"float32"`` or ``"float64"``).

    Examples
    --------
    >>> from skpoison._utils import resolve_dtype
    >>> resolve_dtype("float64")
    torch.float64
    """
    try:
        return _DTYPES[dtype]
    except (KeyError, TypeError):
        raise ValueError(
            f"dtype must be 'float32' or 'float64', got {dtype!r}."
        ) from None


def to_tensor(array, *, device, dtype=None):
    """Copy a numpy array (or tensor) to ``device`` as a torch tensor.

    Arrays torch cannot share memory with (negative strides, e.g. ``X[::-1]``, or
    read-only buffers such as pandas' copy-on-write views) are copied first, so the
    caller's array is never written through the tensor.

    Examples
    --------
    >>> import numpy as np
    >>> from skpoison._utils import to_tensor
    >>> to_tensor(np.ones((2, 3)), device="cpu", dtype="float32").dtype
    torch.float32
    >>> to_tensor(np.arange(3.0)[::-1], device="cpu").tolist()
    [2.0, 1.0, 0.0]
    """
    if dtype is not None:
        dtype = resolve_dtype(dtype)
    if isinstance(array, torch.Tensor):
        return array.to(device=device, dtype=dtype if dtype is not None else array.dtype)
    array = np.asarray(array)
    if not array.flags.writeable or any(stride < 0 for stride in array.strides):
        array = np.array(array, copy=True)
    return torch.as_tensor(array, dtype=dtype, device=device)
