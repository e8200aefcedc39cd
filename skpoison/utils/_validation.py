"""Validation helpers shared by the estimators: numeric parameters and feature names."""

from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import _check_feature_names

__all__ = ["NumberInterval", "check_feature_names"]


class NumberInterval(Interval):
    """scikit-learn's parameter constraint ``Interval``, without booleans.

    ``True`` is an ``int`` in Python, so scikit-learn's ``Interval(Real, 0, None)``
    accepts ``epsilon_d=True`` as 1.0; a boolean where a number is expected is almost
    always a mistake, so this interval rejects it with the usual parameter error.

    Examples
    --------
    >>> from numbers import Real
    >>> from skpoison.utils import NumberInterval
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
    >>> from skpoison.utils import check_feature_names
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
    try:
        from skorch import NeuralNet
    except ImportError:  # pragma: no cover - skorch is a dependency
        NeuralNet = ()
    if isinstance(estimator, NeuralNet) or not hasattr(estimator, "n_features_in_"):
        return
    _check_feature_names(estimator, X, reset=False)
