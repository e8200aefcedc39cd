"""What the poisoning samplers share: the budget, and clean data followed by poison."""

import numpy as np
from sklearn.base import is_regressor
from sklearn.frozen import FrozenEstimator
from sklearn.utils.validation import validate_data

from .._sampler import RowSampler, as_given

__all__ = ["PoisonSampler", "is_regressor_target", "n_poison_points"]


def n_poison_points(epsilon_d, n_samples):
    """``round(epsilon_d * n_samples)``, or a ``ValueError`` saying what to raise."""
    n_poison = int(round(epsilon_d * n_samples))
    if n_poison < 1:
        raise ValueError(
            f"epsilon_d={epsilon_d} with n_samples={n_samples} gives "
            f"round(epsilon_d * n_samples) = {n_poison} poison points; raise epsilon_d."
        )
    return n_poison


def is_regressor_target(target):
    """Whether a ``target=`` argument describes a regressor."""
    return is_regressor(target.estimator if isinstance(target, FrozenEstimator) else target)


class PoisonSampler(RowSampler):
    """Base of the attacks (not public): ``fit`` sets ``X_poison_`` and ``y_poison_``;
    ``fit_resample`` returns the clean data followed by the poison."""

    def _set_poison(self, X_poison, y_poison):
        self.X_poison_ = np.asarray(X_poison, dtype=np.float64)
        self.y_poison_ = np.asarray(y_poison)
        labels, counts = np.unique(self.y_poison_, return_counts=True)
        self.sampling_strategy_ = dict(zip(labels.tolist(), counts.tolist()))
        self.n_poison_ = len(self.y_poison_)

    def _resample(self, X, y):
        X_valid, y_valid = validate_data(self, X, y, reset=False, dtype=[np.float64, np.float32])
        X_out = np.vstack([X_valid, self.X_poison_.astype(X_valid.dtype, copy=False)])
        y_out = np.concatenate([y_valid, self.y_poison_.astype(y_valid.dtype, copy=False)])
        return as_given(X, y, X_out, y_out)
