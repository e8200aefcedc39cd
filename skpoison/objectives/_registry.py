"""Which adapter turns which fitted estimator into its :class:`Objective`.

Adapters are registered by estimator type (``functools.singledispatch``, so a
subclass uses its parent's adapter unless it registers its own).  Adding a victim is
one adapter module that calls :func:`register_adapter`; nothing else changes.
"""

from functools import singledispatch

import torch
from sklearn.exceptions import NotFittedError
from sklearn.frozen import FrozenEstimator

from .._utils import is_fitted

__all__ = ["as_objective", "register_adapter", "supported_estimators"]

_DESCRIPTIONS = {}


@singledispatch
def _adapter(estimator, *, device, dtype):
    raise TypeError(
        f"{type(estimator).__name__} is not a supported victim. Supported: "
        + "; ".join(supported_estimators())
        + "."
    )


def register_adapter(estimator_type, description=None):
    """Register ``adapter(estimator, *, device, dtype) -> Objective`` for a type.

    Parameters
    ----------
    estimator_type : type
        The estimator class (subclasses dispatch to it too).
    description : str or None
        How the supported configurations are listed in error messages and
        :func:`supported_estimators`; ``None`` keeps the type out of that list (for
        types registered only to reject them with a better message).

    Returns
    -------
    decorator : callable

    Examples
    --------
    >>> from skpoison.objectives import supported_estimators
    >>> "LinearSVC (hinge, squared_hinge)" in supported_estimators()
    True
    """

    def decorator(adapter):
        _adapter.register(estimator_type)(adapter)
        if description is not None:
            _DESCRIPTIONS[estimator_type] = description
        return adapter

    return decorator


def supported_estimators():
    """Descriptions of the supported victims, in the order they were registered."""
    return tuple(_DESCRIPTIONS.values())


def as_objective(estimator, *, device="auto", dtype="float32"):
    """Return the training :class:`~skpoison.objectives.Objective` of a fitted estimator.

    Parameters
    ----------
    estimator : estimator
        A fitted supported estimator, or a :class:`sklearn.frozen.FrozenEstimator`
        wrapping one.
    device : str, default="auto"
        Torch device; ``"auto"`` picks CUDA when available.
    dtype : {"float32", "float64"}, default="float32"
        Floating precision of the parameters and computations.

    Returns
    -------
    objective : Objective

    Raises
    ------
    TypeError
        If the estimator (or its configuration) is not supported.
    sklearn.exceptions.NotFittedError
        If the estimator is not fitted.
    ValueError
        If the estimator's parameters are NaN or infinite (in ``dtype``).

    Examples
    --------
    >>> from sklearn.linear_model import LogisticRegression
    >>> from skpoison.datasets import make_or
    >>> from skpoison.objectives import as_objective
    >>> X, y = make_or(random_state=0)
    >>> clf = LogisticRegression(tol=1e-10).fit(X, y)
    >>> obj = as_objective(clf, device="cpu", dtype="float64")
    >>> obj.kind, obj.n_params
    ('binary_margin', 3)
    >>> bool(obj.objective_gradient(X, y).norm() < 1e-6)  # stationary at the fit
    True
    """
    if isinstance(estimator, FrozenEstimator):
        estimator = estimator.estimator
    if _adapter.dispatch(type(estimator)) is not _adapter.dispatch(object) and not is_fitted(
        estimator
    ):
        raise NotFittedError(
            f"This {type(estimator).__name__} instance is not fitted yet; fit it before "
            "using it as a target."
        )
    objective = _adapter(estimator, device=device, dtype=dtype)
    _check_finite_params(objective)
    return objective


def _check_finite_params(objective):
    """Raise ``ValueError`` naming the parameters of the model that are NaN or infinite.

    A model with such parameters has no meaningful gradient: the threshold would read
    0 ("poisonable at any budget") and a corruption budget would be infinite.
    """
    bad = []
    for name, value in objective.params.items():
        n_bad = int((~torch.isfinite(value)).sum())
        if n_bad:
            bad.append(f"{name} ({n_bad} of {value.numel()} entries)")
    if bad:
        precision = str(objective.dtype).replace("torch.", "")
        hint = " or use dtype='float64'" if objective.dtype == torch.float32 else ""
        raise ValueError(
            f"The fitted {type(objective.estimator).__name__} has non-finite parameters: "
            f"{', '.join(bad)} are NaN or infinite (as {precision}). Refit it (scale the "
            f"data or regularise more if its training diverged){hint}, or pass a model "
            "with finite parameters."
        )
