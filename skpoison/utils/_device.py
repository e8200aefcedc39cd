"""Torch device, dtype and seeding helpers."""

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


def resolve_device(device="auto"):
    """Return the torch device for ``device``.

    ``"auto"`` picks CUDA when it is available and the CPU otherwise; any other
    value is passed to :class:`torch.device`.

    Examples
    --------
    >>> from skpoison.utils import resolve_device
    >>> resolve_device("cpu")
    device(type='cpu')
    """
    if device is None or (isinstance(device, str) and device == "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_dtype(dtype="float32"):
    """Return the torch floating dtype for ``dtype`` (``"float32"`` or ``"float64"``).

    Examples
    --------
    >>> from skpoison.utils import resolve_dtype
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

    Examples
    --------
    >>> import numpy as np
    >>> from skpoison.utils import to_tensor
    >>> to_tensor(np.ones((2, 3)), device="cpu", dtype="float32").dtype
    torch.float32
    """
    if dtype is not None:
        dtype = resolve_dtype(dtype)
    if isinstance(array, torch.Tensor):
        return array.to(device=device, dtype=dtype if dtype is not None else array.dtype)
    array = np.asarray(array)
    return torch.as_tensor(array, dtype=dtype, device=device)
