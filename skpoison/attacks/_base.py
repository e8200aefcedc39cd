"""What the poisoning samplers share: the budget, the analyzer of the target on the
clean data, the canceling residual's units, and clean data followed by poison."""

from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import is_regressor
from sklearn.frozen import FrozenEstimator
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import validate_data

from .._poisonability import PoisonabilityAnalyzer
from .._sampler import RowSampler, as_given
from .._utils import NumberInterval, projection_box

__all__ = [
    "BATCH_CONSTRAINT",
    "BOX_CONSTRAINTS",
    "COMMON_CONSTRAINTS",
    "CancelingResidual",
    "PoisonSampler",
    "clean_in_box",
    "fit_analyzer",
    "is_regressor_target",
    "n_poison_points",
]


#: Constraints of the parameters every attack has.
COMMON_CONSTRAINTS = {
    "epsilon_d": [NumberInterval(Real, 0, None, closed="neither")],
    "random_state": ["random_state"],
    "device": [str, torch.device],
    "dtype": [StrOptions({"float32", "float64"})],
}
#: Constraints of the poison box, shared by the attacks that move poison features.
BOX_CONSTRAINTS = {
    "feature_range": [tuple, list, None],
    "clip": [StrOptions({"data"}), None],
}
#: Constraint of ``batch_size`` (rows per batch, or ``None`` for one batch).
BATCH_CONSTRAINT = {"batch_size": [NumberInterval(Integral, 1, None, closed="left"), None]}


def n_poison_points(epsilon_d, n_samples):
    """``round(epsilon_d * n_samples)``, or a ``ValueError`` saying what to raise."""
    n_poison = int(round(epsilon_d * n_samples))
    if n_poison < 1:
        raise ValueError(
            f"epsilon_d={epsilon_d} with n_samples={n_samples} gives "
            f"round(epsilon_d * n_samples) = {n_poison} poison points; raise epsilon_d."
        )
    return n_poison


def clean_in_box(X, feature_range, clip):
    """``projection_box(X, feature_range, clip)``, after checking the clean data lies in it."""
    box = projection_box(X, feature_range, clip)
    if feature_range is not None and (np.any(X < box[0]) or np.any(X > box[1])):
        raise ValueError(
            "The clean data lies outside feature_range, so poison starting from clean "
            "rows would too; widen the range or pass feature_range=None."
        )
    return box


def is_regressor_target(target):
    """Whether a ``target=`` argument describes a regressor."""
    return is_regressor(target.estimator if isinstance(target, FrozenEstimator) else target)


def fit_analyzer(
    target, X, y, box, *, batch_size=None, device="auto", dtype="float32", clean_gradient=None
):
    """The analyzer of ``target`` on the clean data, for poison within ``box``.

    Poison keeps clean labels, so for regression targets the labels' range is the
    clean data's.
    """
    return PoisonabilityAnalyzer(
        target,
        feature_range=box,
        label_range=(y.min(), y.max()) if is_regressor_target(target) else None,
        batch_size=batch_size,
        device=device,
        dtype=dtype,
    ).fit(X, y, clean_gradient=clean_gradient)


class CancelingResidual:
    """The clean side ``g_hat(mu)`` of the canceling residual for a fixed poison count.

    ``r = g_hat(mu) + (1/n) sum_j grad_w l(z_j; w)``; :meth:`relative` turns ``||r||``
    into the units of :meth:`PoisonabilityAnalyzer.gradient_norm
    <skpoison.PoisonabilityAnalyzer.gradient_norm>`.

    Parameters
    ----------
    clean : CleanGradient
        The clean side of the target on the clean data (``analyzer.clean_``).
    n_poison : int
        Number of poison points.
    """

    def __init__(self, clean, n_poison):
        n = clean.n_samples
        self.n, self.n_poison = n, n_poison
        self.base = clean.canceling_base(n_poison)
        self._to_relative = n / ((n + n_poison) * clean.norm)

    def relative(self, residual):
        """``||r||`` in the units of ``gradient_norm``."""
        return float(torch.linalg.vector_norm(residual)) * self._to_relative


class PoisonSampler(RowSampler):
    """Base of the attacks (not public): ``fit`` sets ``X_poison_`` and ``y_poison_``;
    ``fit_resample`` returns the clean data followed by the poison."""

    def _set_poison(self, X_poison, y_poison):
        self.X_poison_ = np.asarray(X_poison, dtype=np.float64)
        self.y_poison_ = np.asarray(y_poison)
        labels, counts = np.unique(self.y_poison_, return_counts=True)
        self.sampling_strategy_ = dict(zip(labels.tolist(), counts.tolist()))
        self.n_poison_ = len(self.y_poison_)

    def _validate_classifier_data(self, X, y, *, regressor_error=None, bounded=False):
        """Validated clean ``(X, y)`` of an attack on a classifier target, its poison
        count and its box.

        ``regressor_error`` is raised when the target is a regressor; with ``bounded``,
        no box means the clean data's range (attacks that search a bounded set).
        """
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32])
        if regressor_error is not None and is_regressor_target(self.target):
            raise regressor_error
        check_classification_targets(y)
        n_poison = n_poison_points(self.epsilon_d, len(X))
        box = projection_box(X, self.feature_range, self.clip)
        if box is None and bounded:
            box = projection_box(X, None, "data")
        return X, y, n_poison, box

    def _resample(self, X, y):
        X_valid, y_valid = validate_data(self, X, y, reset=False, dtype=[np.float64, np.float32])
        X_out = np.vstack([X_valid, self.X_poison_.astype(X_valid.dtype, copy=False)])
        y_out = np.concatenate([y_valid, self.y_poison_.astype(y_valid.dtype, copy=False)])
        return as_given(X, y, X_out, y_out)
