"""Checks every skpoison module shares: numeric parameters, feature names, fitted
estimators, skorch nets, label positions and value ranges."""

import math

import numpy as np
import torch
from sklearn.exceptions import NotFittedError
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import _check_feature_names, check_is_fitted

__all__ = [
    "NumberInterval",
    "all_finite",
    "check_feature_names",
    "check_range",
    "class_indices",
    "is_fitted",
    "is_torch_net",
    "projection_box",
]


class NumberInterval(Interval):
    """scikit-learn's parameter constraint ``Interval``, without booleans.

    ``True`` is an ``int`` in Python, so scikit-learn's ``Interval(Real, 0, None)``
    accepts ``epsilon_d=True`` as 1.0; a boolean where a number is expected is almost
    always a mistake, so this interval rejects it with the usual parameter error.

    Examples
    --------
    >>> from numbers import Real
    >>> from skpoison._utils import NumberInterval
    >>> interval = NumberInterval(Real, 0, None, closed="neither")
    >>> interval.is_satisfied_by(0.5), interval.is_satisfied_by(True)
    (True, False)
    """

    def is_satisfied_by(self, val):
        if isinstance(val, bool) or type(val).__name__ == "bool_":
            return False
        return super().is_satisfied_by(val)

    def __str__(self):
        return f"{super().__str__()} (not a bool)"


def check_feature_names(estimator, X):
    """Check the column names of ``X`` against those ``estimator`` was fitted with.

    Follows scikit-learn: names that differ, or come in another order, raise
    ``ValueError``; names on one side only give a ``UserWarning``.  Estimators that
    never record names (skorch nets) are not checked.

    Parameters
    ----------
    estimator : fitted estimator
    X : array-like or pandas DataFrame
        The data as the caller passed it (before validation drops its names).

    Examples
    --------
    >>> import pandas as pd
    >>> from sklearn.linear_model import LogisticRegression
    >>> from skpoison._utils import check_feature_names
    >>> X = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0], "b": [1.0, 0.0, 1.0, 0.0]})
    >>> clf = LogisticRegression().fit(X, [0, 0, 1, 1])
    >>> check_feature_names(clf, X[["a", "b"]])
    >>> check_feature_names(clf, X[["b", "a"]])
    Traceback (most recent call last):
    ...
    ValueError: The feature names should match those that were passed during fit.
    Feature names must be in the same order as they were in fit.
    <BLANKLINE>
    """
    if is_torch_net(estimator) or not hasattr(estimator, "n_features_in_"):
        return
    _check_feature_names(estimator, X, reset=False)


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


def check_range(value, name, n_features=None):
    """Validate a ``(low, high)`` range; scalars or per-feature arrays; low <= high.

    With ``n_features``, per-feature bounds must have exactly that many entries.
    Returns ``None`` for ``None``, else ``(low, high)`` as float arrays.

    Examples
    --------
    >>> from skpoison._utils import check_range
    >>> check_range((0, 1), "feature_range")
    (array(0.), array(1.))
    """
    if value is None:
        return None
    try:
        low, high = value
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a (low, high) pair, got {value!r}.") from None
    if any(np.asarray(bound).dtype == bool for bound in (low, high)):
        raise ValueError(f"{name} bounds must be numbers, not booleans, got {value!r}.")
    low, high = np.asarray(low, dtype=float), np.asarray(high, dtype=float)
    if n_features is not None:
        for side, bound in (("low", low), ("high", high)):
            if bound.ndim > 1 or (bound.ndim == 1 and bound.shape[0] != n_features):
                raise ValueError(
                    f"{name}: the {side} bound has shape {bound.shape}, but X has "
                    f"{n_features} features; give a scalar or one bound per feature "
                    f"(shape ({n_features},))."
                )
    if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
        raise ValueError(f"{name} must be finite, got {value!r}.")
    if np.any(low > high):
        raise ValueError(f"{name} must have low <= high, got {value!r}.")
    return low, high

def class_indices(classes, y, *, owner="the model"):
    """Position of each label of ``y`` in ``classes`` (which need not be sorted).

    Raises ``ValueError`` naming the labels ``classes`` does not hold.

    Examples
    --------
    >>> import numpy as np
    >>> from skpoison._utils import class_indices
    >>> class_indices(np.array([7, 1]), np.array([1, 1, 7]))
    array([1, 1, 0])
    """
    classes = np.asarray(classes)
    y = np.asarray(y)
    sorter = np.argsort(classes, kind="stable")
    position = np.searchsorted(classes, y, sorter=sorter)
    index = sorter[np.clip(position, 0, len(classes) - 1)]
    unknown = classes[index] != y
    if np.any(unknown):
        raise ValueError(
            f"y contains labels {np.unique(y[unknown]).tolist()} that {owner} does not "
            f"know; its classes are {classes.tolist()}."
        )
    return index


def projection_box(X, feature_range=None, clip=None):
    """The box poison is projected on: ``feature_range``, the clean data's range, or both.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Clean data (validated).
    feature_range : (low, high) or None
        A box of scalars or per-feature arrays.
    clip : {"data"} or None
        ``"data"`` intersects with the clean data's per-feature range (GC-c).

    Returns
    -------
    box : (ndarray, ndarray) or None
        Per-feature ``(low, high)``, ``None`` when nothing constrains the poison.

    Examples
    --------
    >>> import numpy as np
    >>> from skpoison._utils import projection_box
    >>> projection_box(np.array([[0.2, 0.5], [0.4, 0.9]]), (0, 0.8), clip="data")
    (array([0.2, 0.5]), array([0.4, 0.8]))
    """
    box = check_range(feature_range, "feature_range", X.shape[1])
    # clean data outside the box is rejected by the analyzer fitted on it
    if box is not None:
        low = np.broadcast_to(box[0], (X.shape[1],)).astype(float)
        high = np.broadcast_to(box[1], (X.shape[1],)).astype(float)
    if clip == "data":
        data_low, data_high = X.min(axis=0), X.max(axis=0)
        if box is None:
            low, high = data_low, data_high
        else:
            low, high = np.maximum(low, data_low), np.minimum(high, data_high)
    elif box is None:
        return None
    return low, high


def all_finite(tensor):
    """Whether every entry of a tensor is finite: one sum, an exact check only if not.

    The sum is finite whenever every entry is, unless it overflows; the exact check
    then decides, so an overflowing sum is never mistaken for a non-finite entry.
    """
    return math.isfinite(float(tensor.sum())) or bool(torch.isfinite(tensor).all())

