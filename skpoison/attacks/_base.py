"""Shared pieces of the poisoning samplers: the sampler contract and the residual.

Every attack in :mod:`skpoison.attacks` is an imbalanced-learn sampler whose
``fit_resample`` returns the clean data followed by the poison; this module holds that
contract once, with the budget, the projection box and the canceling residual in the
units of :meth:`skpoison.PoisonabilityAnalyzer.gradient_norm`.
"""

import numpy as np
import torch
from imblearn.base import BaseSampler
from sklearn.base import is_regressor
from sklearn.frozen import FrozenEstimator
from sklearn.utils.validation import validate_data

from .._poisonability import PoisonabilityAnalyzer, check_range

__all__ = []


def n_poison_points(epsilon_d, n_samples):
    """``round(epsilon_d * n_samples)``, or a ``ValueError`` saying what to raise."""
    n_poison = int(round(epsilon_d * n_samples))
    if n_poison < 1:
        raise ValueError(
            f"epsilon_d={epsilon_d} with n_samples={n_samples} gives "
            f"round(epsilon_d * n_samples) = {n_poison} poison points; raise epsilon_d."
        )
    return n_poison


def projection_box(feature_range, clip, X):
    """The box ``(low, high)`` per feature from ``feature_range`` and ``clip="data"``."""
    box = check_range(feature_range, "feature_range")
    if box is not None:
        low = np.broadcast_to(box[0], (X.shape[1],)).astype(float)
        high = np.broadcast_to(box[1], (X.shape[1],)).astype(float)
    if clip == "data":
        data_low, data_high = X.min(axis=0), X.max(axis=0)
        if box is None:
            return data_low.astype(float), data_high.astype(float)
        return np.maximum(low, data_low), np.minimum(high, data_high)
    return None if box is None else (low, high)


def is_regressor_target(target):
    """Whether a ``target=`` argument describes a regressor."""
    return is_regressor(target.estimator if isinstance(target, FrozenEstimator) else target)


def fit_analyzer(target, X, y, box, *, batch_size=None, device="auto", dtype="float32"):
    """The analyzer of ``target`` on the clean data, for poison within ``box``."""
    return PoisonabilityAnalyzer(
        target,
        feature_range=box,
        label_range=(y.min(), y.max()) if is_regressor_target(target) else None,
        batch_size=batch_size,
        device=device,
        dtype=dtype,
    ).fit(X, y)


class CancelingResidual:
    """``r = g_hat(mu) + (1/n) sum_j grad_w l(z_j; w)`` for a fixed poison budget.

    ``g_hat(mu)`` is the clean loss gradient per clean sample plus the penalty of the
    mixed objective over ``n + n_poison`` points (DESIGN section 2), computed once with
    the objective's public methods.  :meth:`relative` turns ``||r||`` into the units of
    :meth:`PoisonabilityAnalyzer.gradient_norm`.
    """

    def __init__(self, analyzer, X, y, n_poison, *, batch_size=None):
        objective = analyzer.objective_
        n = len(X)
        self.objective = objective
        self.n, self.n_poison = n, n_poison
        penalty = objective.kappa(n + n_poison) * objective.penalty_gradient()
        self.base = (objective.loss_gradient_sum(X, y, batch_size=batch_size) + penalty) / n
        clean = float(np.linalg.norm(analyzer.clean_gradient_))
        self._to_relative = n / ((n + n_poison) * max(clean, np.finfo(float).tiny))

    def relative(self, residual):
        """``||r||`` in the units of ``gradient_norm``."""
        return float(torch.linalg.vector_norm(residual)) * self._to_relative


class PoisonSampler(BaseSampler):
    """Base of the attacks: fit builds ``X_poison_``, ``y_poison_``; no transform."""

    # imbalanced-learn's sampling_strategy machinery is not used: fit and
    # fit_resample are defined here; the base class gives the sampler tags
    _sampling_type = "bypass"

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        tags.input_tags.sparse = False
        tags.input_tags.dataframe = False
        return tags

    def _set_poison(self, X_poison, y_poison):
        self.X_poison_ = np.asarray(X_poison, dtype=np.float64)
        self.y_poison_ = np.asarray(y_poison)
        labels, counts = np.unique(self.y_poison_, return_counts=True)
        self.sampling_strategy_ = dict(zip(labels.tolist(), counts.tolist()))
        self.n_poison_ = len(self.y_poison_)

    def fit_resample(self, X, y):
        """Build the poison and return the clean data followed by it.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Clean training data.
        y : array-like of shape (n_samples,)
            Clean labels.

        Returns
        -------
        X_resampled : ndarray of shape (n_samples + n_poison, n_features)
        y_resampled : ndarray of shape (n_samples + n_poison,)
        """
        self.fit(X, y)
        as_lists = isinstance(X, list)
        X, y = validate_data(self, X, y, reset=False, dtype=[np.float64, np.float32])
        X_resampled, y_resampled = self._fit_resample(X, y)
        if as_lists:  # imbalanced-learn returns the container it was given
            return X_resampled.tolist(), y_resampled.tolist()
        return X_resampled, y_resampled

    def _fit_resample(self, X, y):
        """The validated clean data followed by the fitted poison."""
        X_poison = self.X_poison_.astype(X.dtype, copy=False)
        return np.vstack([X, X_poison]), np.concatenate([y, self.y_poison_])
