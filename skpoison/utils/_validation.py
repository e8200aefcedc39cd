"""Checks every skpoison module shares: fitted estimators, skorch nets, value ranges."""

import numpy as np
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted

__all__ = ["check_range", "is_fitted", "is_torch_net"]


def is_torch_net(estimator):
    """Whether ``estimator`` is a skorch net (``skorch.NeuralNet`` or a subclass)."""
    try:
        from skorch import NeuralNet
    except ImportError:  # pragma: no cover - skorch is a dependency
        return False
    return isinstance(estimator, NeuralNet)


def is_fitted(estimator):
    """Whether ``estimator`` is fitted (skorch nets: initialized)."""
    if is_torch_net(estimator):
        return bool(getattr(estimator, "initialized_", False))
    try:
        check_is_fitted(estimator)
    except NotFittedError:
        return False
    return True


def check_range(value, name):
    """Validate a ``(low, high)`` range; scalars or per-feature arrays; low <= high.

    Returns ``None`` for ``None``, else ``(low, high)`` as float arrays.

    Examples
    --------
    >>> from skpoison.utils import check_range
    >>> check_range((0, 1), "feature_range")
    (array(0.), array(1.))
    """
    if value is None:
        return None
    try:
        low, high = value
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a (low, high) pair, got {value!r}.") from None
    low, high = np.asarray(low, dtype=float), np.asarray(high, dtype=float)
    if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
        raise ValueError(f"{name} must be finite, got {value!r}.")
    if np.any(low > high):
        raise ValueError(f"{name} must have low <= high, got {value!r}.")
    return low, high
