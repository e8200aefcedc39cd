"""What the data filters share: validation, the removal rounds, the sampler interface.

A filter is fitted on (possibly poisoned) training data, scores every row with the
gradients of the victim's own training objective (:mod:`skpoison.objectives`) and
removes the highest-scoring fraction.  It is an outlier detector (``fit_predict``
gives +1 keep / -1 remove) and an imbalanced-learn sampler (``fit_resample`` returns
the kept rows), so ``imblearn.pipeline.Pipeline([..., ("filter", SeverFilter(...)),
("model", LogisticRegression())])`` removes rows at fit time only.  Filters define no
``transform`` (imbalanced-learn's Pipeline rejects steps that have both).
"""

from numbers import Integral, Real

import numpy as np
import torch
from imblearn.utils import check_target_type
from sklearn.base import OutlierMixin, _fit_context, clone, is_regressor
from sklearn.utils import _safe_indexing, check_random_state
from sklearn.utils._param_validation import HasMethods
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import validate_data

from .._sampler import RowSampler
from ..objectives import as_objective
from .._utils import NumberInterval, batch_slices, is_torch_net, rows_within, with_autograd

__all__ = ["BaseGradientFilter", "rows_per_chunk"]

# Elements (rows x parameters) per chunk when per-sample gradients are computed, so
# that the intermediate tensors of ``torch.func.vmap`` stay bounded.
_CHUNK_ELEMENTS = 2**24


def rows_per_chunk(batch_size, n_rows, n_params):
    """Rows per chunk: ``batch_size``, or a size that bounds the chunk's memory."""
    return rows_within(n_rows, n_params, _CHUNK_ELEMENTS, batch_size)


def removal_schedule(n_remove, n_rounds):
    """Rows removed in each of ``n_rounds`` rounds, as even as possible, summing to ``n_remove``."""
    bounds = [int(round(r * n_remove / n_rounds)) for r in range(n_rounds + 1)]
    return [b - a for a, b in zip(bounds[:-1], bounds[1:])]


class BaseGradientFilter(OutlierMixin, RowSampler):
    """Base class of the gradient-based data filters (not public).

    Subclasses define :meth:`_n_rounds` and :meth:`_score_round`, which fits the
    estimator (a clone) on the rows still kept and returns one score per kept row;
    higher means more suspicious.  ``fit`` runs the rounds, removing in total
    ``round(removal_fraction * n_samples)`` rows, spread as evenly as possible over
    the rounds.
    """

    _parameter_constraints = {
        "estimator": [HasMethods(["fit"])],
        "removal_fraction": [NumberInterval(Real, 0, 1, closed="left")],
        "batch_size": [NumberInterval(Integral, 1, None, closed="left"), None],
        "random_state": ["random_state"],
        "device": [str, torch.device],
    }

    _sample_indices = True

    # ------------------------------------------------------------------ helpers
    def _validate_filter_data(self, X, y):
        """Validated ``(X, y)``: y as a 1-d label vector (one-vs-all columns decoded)."""
        if y is None:
            # scikit-learn's message: "... requires y to be passed, but the target y is None"
            validate_data(self, X, y)
        if is_regressor(self.estimator):
            return validate_data(
                self, X, y, dtype=[np.float64, np.float32], y_numeric=True, multi_output=True
            )
        y = check_target_type(np.asarray(y))
        check_classification_targets(y)
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32])
        if len(np.unique(y)) < 2:
            raise ValueError(
                f"{type(self).__name__} needs samples of at least 2 classes in y; the data "
                "contains only one class."
            )
        return X, y

    def _objective(self, fitted):
        """Objective of a fitted estimator: float64 on the CPU for linear models,
        float32 on ``device`` for nets."""
        if is_torch_net(fitted):
            return as_objective(fitted, device=self.device, dtype="float32")
        return as_objective(fitted, device="cpu", dtype="float64")

    def _fit_estimator(self, X, y):
        return clone(self.estimator).fit(X, y)

    def _per_sample_gradients(self, objective, X, y):
        """``(m, n_params)`` per-sample loss gradients, computed in chunks."""
        rows = rows_per_chunk(self.batch_size, len(X), objective.n_params)
        parts = [
            objective.per_sample_gradients(X[rows_slice], y[rows_slice])
            for rows_slice in batch_slices(len(X), rows, even=True)
        ]
        grads = torch.cat(parts) if parts else torch.zeros(0, objective.n_params)
        if not bool(torch.isfinite(grads).all()):
            raise FloatingPointError(
                f"{type(self).__name__}: the per-sample gradients of the fitted "
                f"{type(objective.estimator).__name__} are not finite; check the data scale "
                "and that the estimator converged."
            )
        return grads

    def _n_rounds(self):
        return 1

    def _score_round(self, X, y, rng):  # pragma: no cover - abstract
        raise NotImplementedError

    # ---------------------------------------------------------------------- fit
    @with_autograd
    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y):
        """Score the rows of ``(X, y)`` and choose those to remove.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data (possibly poisoned).
        y : array-like of shape (n_samples,)
            Labels (targets for a regressor).

        Returns
        -------
        self : object
            The fitted filter.
        """
        X, y = self._validate_filter_data(X, y)
        n = X.shape[0]
        rng = check_random_state(self.random_state)
        n_remove = int(round(self.removal_fraction * n))
        if n - n_remove < 2:
            raise ValueError(
                f"removal_fraction={self.removal_fraction} removes {n_remove} of {n} samples "
                "and leaves fewer than 2 to fit on; lower removal_fraction."
            )
        keep = np.ones(n, dtype=bool)
        scores = np.full(n, np.nan)
        rounds = 0
        for count in removal_schedule(n_remove, self._n_rounds()):
            if count == 0 and rounds > 0:
                continue
            kept = np.flatnonzero(keep)
            round_scores = np.asarray(self._score_round(X[kept], y[kept], rng), dtype=float)
            if not np.all(np.isfinite(round_scores)):
                raise FloatingPointError(
                    f"{type(self).__name__} computed non-finite scores in round {rounds + 1}."
                )
            scores[kept] = round_scores
            rounds += 1
            if count:
                # highest first; ties broken by the lower row index (stable sort)
                worst = np.argsort(-round_scores, kind="stable")[:count]
                keep[kept[worst]] = False
        self.scores_ = scores
        self.sample_indices_ = np.flatnonzero(keep)
        self.removed_indices_ = np.flatnonzero(~keep)
        self.n_removed_ = int(n_remove)
        self.n_rounds_ = rounds
        # imbalanced-learn's attribute: rows removed per class (empty for regressors)
        removed = y[~keep]
        self.sampling_strategy_ = {} if is_regressor(self.estimator) else {
            (c.item() if isinstance(c, np.generic) else c): int(np.sum(removed == c))
            for c in np.unique(y)
        }
        return self

    def fit_predict(self, X, y=None):
        """Fit the filter and label each row: +1 kept, -1 removed.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data.
        y : array-like of shape (n_samples,)
            Labels.  Required: the scores are gradients of a supervised loss (the
            ``None`` default only keeps the signature of
            :meth:`sklearn.base.OutlierMixin.fit_predict`; passing no ``y`` raises).

        Returns
        -------
        labels : ndarray of shape (n_samples,)
            ``1`` for kept rows, ``-1`` for removed ones.
        """
        self.fit(X, y)
        labels = -np.ones(len(self.scores_), dtype=np.int64)
        labels[self.sample_indices_] = 1
        return labels

    def _resample(self, X, y):
        """The kept rows, in the container and dtype ``X`` and ``y`` came in."""
        return (
            _safe_indexing(X, self.sample_indices_),
            _safe_indexing(y, self.sample_indices_),
        )
