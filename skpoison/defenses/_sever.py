"""Sever (Diakonikolas et al. 2019): remove the rows whose loss gradients are outliers."""

from numbers import Integral

import numpy as np
import torch

from .._utils import NumberInterval, batch_slices
from ._filter_base import BaseGradientFilter, rows_per_chunk

__all__ = ["SeverFilter"]

# Above this many rows *and* parameters the top singular vector comes from a power
# iteration instead of a full SVD.
_MAX_SVD = 4096
_POWER_MAX_ITER = 300
_BLOCK = 8
# With batch_size=None the gradient matrix is held in memory up to this many entries
# (1 GiB in float64), and streamed above.
_MAX_HELD = 2**27


def _subspace_iteration(matmat, n_params, rng, *, device, dtype):
    """Top eigenvector of the PSD operator ``matmat`` (``V -> G_c^T G_c V``).

    Block power iteration with a Rayleigh-Ritz step, from a seeded random block: the
    top Ritz vector converges at the rate ``lambda_{b+1} / lambda_1`` (``b`` the block
    size), much faster than a single-vector power iteration when the top eigenvalues
    are close.
    """
    block = min(_BLOCK, n_params)
    start = torch.as_tensor(rng.standard_normal((n_params, block)), device=device, dtype=dtype)
    V = torch.linalg.qr(start).Q
    top = V[:, 0]
    # stop when successive top Ritz vectors agree to rounding (1 - |cos| ~ 10 eps)
    tol = 10 * torch.finfo(dtype).eps
    for _ in range(_POWER_MAX_ITER):
        W = matmat(V)
        ritz = V.T @ W
        _, vectors = torch.linalg.eigh((ritz + ritz.T) / 2)
        new_top = V @ vectors[:, -1]
        new_top = new_top / new_top.norm()
        converged = 1.0 - abs(float(new_top @ top)) <= tol
        top = new_top
        if converged or not bool(W.abs().max() > 0):
            break
        V = torch.linalg.qr(W).Q
    return top


def top_singular_vector(centred, rng):
    """Top right singular vector of the centred gradient matrix ``(m, n_params)``."""
    m, p = centred.shape
    if min(m, p) <= _MAX_SVD:
        _, _, vh = torch.linalg.svd(centred, full_matrices=False)
        return vh[0]
    return _subspace_iteration(
        lambda V: centred.T @ (centred @ V), p, rng, device=centred.device, dtype=centred.dtype
    )


class SeverFilter(BaseGradientFilter):
    """Sever: remove the rows whose loss gradients stick out along the top direction.

    Sever (Diakonikolas, Kamath, Kane, Li, Steinhardt and Stewart 2019) fits the
    victim on the data, takes the per-sample gradients ``g_i = grad_w l(z_i; w)`` of its
    training loss at the fitted parameters (from :func:`skpoison.objectives.as_objective`,
    so it works for every supported victim, skorch nets included), centres them,
    finds the top right singular vector ``v`` of the centred gradient matrix and scores
    each row by ``((g_i - mean_j g_j) . v) ** 2``; the highest-scoring rows are removed.
    Poison that drags the model along one direction has gradients aligned with it,
    which is what the score picks up.  This is the defense of section 5.4 of Lu, Kamath
    and Yu (2023), which removes as many rows as there are poisoned points.

    With ``n_iter > 1`` it runs that many rounds: each round refits a clone of the
    estimator on the rows still kept, rescores them and removes its share, so that in
    total ``round(removal_fraction * n_samples)`` rows are removed, spread as evenly as
    possible over the rounds (``removal_fraction / n_iter`` of the original rows each).

    The filter is an outlier detector and an imbalanced-learn sampler:
    :meth:`fit_predict` labels rows +1 (kept) / -1 (removed) and :meth:`fit_resample`
    returns the kept rows, so inside :class:`imblearn.pipeline.Pipeline` it cleans the
    training data at fit time only.  It defines no ``transform``.

    Parameters
    ----------
    estimator : estimator
        The unfitted victim whose objective defines the gradients: one supported by
        :func:`skpoison.objectives.as_objective` (cloned before every fit).
    removal_fraction : float, default=0.1
        Fraction of the rows to remove, in ``[0, 1)``; ``round(removal_fraction *
        n_samples)`` rows are removed.  With ``0`` nothing is removed (the scores are
        still computed).
    n_iter : int, default=1
        Number of rounds (refit, rescore, remove).
    batch_size : int or None, default=None
        ``None``: the per-sample gradients are held in memory (computed in chunks of
        bounded size) and the top singular vector comes from an SVD, unless the
        gradient matrix has more than ``2**27`` entries, when it is streamed in chunks
        of bounded size.  An integer: rows per chunk, and the gradients are never held
        all at once: the mean gradient, a block power iteration for the top direction
        and the scores are each streamed over the data (more passes, memory bounded
        by the chunk).
    random_state : int, RandomState instance or None, default=None
        Seed of the block power iteration's start (used only for large problems or
        with ``batch_size``).
    device : str, default="auto"
        Torch device for skorch nets (``"auto"``: CUDA when available).  Linear models
        are always scored on the CPU in float64.

    Attributes
    ----------
    scores_ : ndarray of shape (n_samples,)
        Outlier score of each row in the last round it took part in (rows removed in
        a round keep that round's score).  Higher is more suspicious.
    sample_indices_ : ndarray of shape (n_kept,)
        Indices of the kept rows, ascending.
    removed_indices_ : ndarray of shape (n_removed,)
        Indices of the removed rows, ascending.
    n_removed_ : int
        Number of rows removed, ``round(removal_fraction * n_samples)``.
    n_rounds_ : int
        Rounds run (fewer than ``n_iter`` when some would remove nothing).
    sampling_strategy_ : dict
        Rows removed per class label (imbalanced-learn's attribute; empty for a
        regressor).
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of the features seen during fit, when ``X`` has string column names.

    See Also
    --------
    InfluenceFilter : Remove the rows of highest influence.

    Notes
    -----
    ``fit_predict`` requires ``y`` even though its signature (that of
    :class:`sklearn.base.OutlierMixin`) gives it a default: the scores are gradients of
    a supervised loss.  There is no ``predict``: which rows to remove is decided
    jointly on the training data, as for
    :class:`~sklearn.neighbors.LocalOutlierFactor` without novelty.

    References
    ----------
    I. Diakonikolas, G. Kamath, D. Kane, J. Li, J. Steinhardt and A. Stewart (2019).
    Sever: A Robust Meta-Algorithm for Stochastic Optimization. ICML.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> from skpoison.datasets import make_gaussian
    >>> from skpoison.defenses import SeverFilter
    >>> X, y = make_gaussian(n_samples=200, n_features=5, random_state=0)
    >>> far = np.tile([0.0, 0.0, -3.0, -3.0, 3.0], (10, 1))  # deep in class 1 ...
    >>> X_bad = np.vstack([X, far])
    >>> y_bad = np.concatenate([y, np.zeros(10, dtype=y.dtype)])  # ... labelled 0
    >>> sever = SeverFilter(LogisticRegression(), removal_fraction=0.05)
    >>> X_kept, y_kept = sever.fit_resample(X_bad, y_bad)
    >>> X_kept.shape
    (200, 5)
    >>> int(np.sum(sever.removed_indices_ >= 200))
    10
    """

    _parameter_constraints = {
        **BaseGradientFilter._parameter_constraints,
        "n_iter": [NumberInterval(Integral, 1, None, closed="left")],
    }

    def __init__(
        self,
        estimator,
        *,
        removal_fraction=0.1,
        n_iter=1,
        batch_size=None,
        random_state=None,
        device="auto",
    ):
        self.estimator = estimator
        self.removal_fraction = removal_fraction
        self.n_iter = n_iter
        self.batch_size = batch_size
        self.random_state = random_state
        self.device = device

    def _n_rounds(self):
        return self.n_iter

    def _score_round(self, X, y, rng):
        objective = self._objective(self._fit_estimator(X, y))
        if self.batch_size is None and len(X) * objective.n_params <= _MAX_HELD:
            grads = self._per_sample_gradients(objective, X, y)
            centred = grads - grads.mean(dim=0)
            direction = top_singular_vector(centred, rng)
            return ((centred @ direction) ** 2).cpu().numpy()
        return self._streamed_scores(objective, X, y, rng)

    def _streamed_scores(self, objective, X, y, rng):
        """The same scores without holding the gradient matrix: three kinds of passes."""
        rows = rows_per_chunk(self.batch_size, len(X), objective.n_params)
        chunks = list(batch_slices(len(X), rows, even=True))
        mean = objective.loss_gradient_sum(X, y, batch_size=rows) / len(X)

        def centred(chunk):
            return self._per_sample_gradients(objective, X[chunk], y[chunk]) - mean

        def matmat(V):
            out = torch.zeros_like(V)
            for chunk in chunks:
                g = centred(chunk)
                out += g.T @ (g @ V)
            return out

        direction = _subspace_iteration(
            matmat, objective.n_params, rng, device=objective.device, dtype=objective.dtype
        )
        scores = [((centred(chunk) @ direction) ** 2).cpu().numpy() for chunk in chunks]
        return np.concatenate(scores)
