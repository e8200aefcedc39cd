"""``as_objective``: the one entry point from a fitted estimator to its objective."""

import torch
from sklearn.frozen import FrozenEstimator

from ._sklearn import sklearn_objective
from ._torch import skorch_objective

__all__ = ["as_objective", "SUPPORTED_ESTIMATORS"]

SUPPORTED_ESTIMATORS = (
    "LogisticRegression (binary and multinomial, L2 or no penalty)",
    "SGDClassifier (log_loss, hinge, modified_huber, squared_hinge; L2)",
    "LinearSVC (hinge, squared_hinge)",
    "RidgeClassifier",
    "Ridge",
    "LinearRegression",
    "skorch NeuralNet / NeuralNetClassifier (CrossEntropyLoss or NLLLoss)",
)


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
    ValueError
        If the estimator's parameters contain NaN or infinity.
    sklearn.exceptions.NotFittedError
        If the estimator is not fitted.

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
    for adapter in (sklearn_objective, skorch_objective):
        objective = adapter(estimator, device=device, dtype=dtype)
        if objective is not None:
            _check_finite_params(objective)
            return objective
    raise TypeError(
        f"{type(estimator).__name__} is not a supported victim. Supported: "
        + "; ".join(SUPPORTED_ESTIMATORS)
        + "."
    )


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
