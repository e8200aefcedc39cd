"""One base for every step that adds or removes training rows at fit time.

Attacks add poison rows (``fit_resample`` returns the clean data followed by the
poison); filters remove suspicious rows (``fit_resample`` returns the rows kept).  Both
are imbalanced-learn samplers, built on its public :class:`imblearn.base.BaseSampler`:
inside :class:`imblearn.pipeline.Pipeline` they act at fit time only, and they define
no ``transform``.  ``fit`` does the work; ``fit_resample`` fits and then hands back the
rows in the container the caller passed (a DataFrame stays a DataFrame, a list a list).
"""

from abc import abstractmethod

import numpy as np
from imblearn.base import BaseSampler

__all__ = ["RowSampler", "as_given"]


def _is_dataframe(X):
    return hasattr(X, "columns") and hasattr(X, "iloc")


def as_given(X_given, y_given, X_out, y_out):
    """``(X_out, y_out)`` in the containers of ``(X_given, y_given)``.

    A list stays a list; a DataFrame keeps its column names (with a fresh index); a
    Series keeps its name (and dtype where the values allow); anything else is an
    ndarray.
    """
    if isinstance(X_given, list):
        return np.asarray(X_out).tolist(), np.asarray(y_out).tolist()
    if _is_dataframe(X_given):
        import pandas as pd

        X_out = pd.DataFrame(np.asarray(X_out), columns=X_given.columns)
    if hasattr(y_given, "iloc"):
        import pandas as pd

        values = np.asarray(y_out)
        if _is_dataframe(y_given):
            y_out = pd.DataFrame(values.reshape(len(values), -1), columns=y_given.columns)
        else:
            try:
                values = values.astype(y_given.dtype)
            except (TypeError, ValueError):
                pass
            y_out = pd.Series(values, name=y_given.name)
    return X_out, y_out


class RowSampler(BaseSampler):
    """Base class of the samplers that add or remove rows (not public).

    Subclasses implement ``fit(X, y, **fit_params)`` and :meth:`_resample`, which
    returns the resampled rows from the data as the caller passed it, after ``fit``;
    they set ``_sample_indices = True`` when they expose ``sample_indices_`` (the rows
    they keep).
    """

    # imbalanced-learn's sampling_strategy machinery does not apply: a poisoning or
    # filtering step decides its rows itself, so it "bypasses" the strategy
    _sampling_type = "bypass"
    _sample_indices = False

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        tags.input_tags.sparse = False
        tags.sampler_tags.sample_indices = self._sample_indices
        return tags

    @abstractmethod
    def _resample(self, X, y):
        """The resampled ``(X, y)``, in the containers given, after ``fit(X, y)``."""

    def _fit_resample(self, X, y, **fit_params):
        self.fit(X, y, **fit_params)
        return self._resample(X, y)

    def fit_resample(self, X, y, **fit_params):
        """Fit, then return the resampled rows in the containers ``X`` and ``y`` came in.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data.
        y : array-like of shape (n_samples,)
            Labels (targets for regressors).
        **fit_params : dict
            Passed to ``fit``.

        Returns
        -------
        X_resampled : array-like of shape (n_samples_new, n_features)
        y_resampled : array-like of shape (n_samples_new,)
        """
        return self._fit_resample(X, y, **fit_params)
