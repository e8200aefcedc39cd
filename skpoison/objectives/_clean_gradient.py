"""The clean side of the canceling problem: g(mu) and what the threshold needs of it.

Everything that looks at a fixed target on fixed clean data (the threshold, Gradient
Canceling, the attacks to come, the protocol) needs the same few numbers: the clean
loss-gradient sum, the number of clean points, the penalty and how it scales with the
poison count, and the per-group inner products ``<w, g(mu)>``.  A
:class:`CleanGradient` computes them once (one streamed pass over the clean rows) and
is passed to whoever needs them.
"""

import math

import numpy as np
import torch
from sklearn.utils import assert_all_finite

from .._utils import clean_batch_rows, with_autograd
from .._utils._distributed import all_reduce_sum, shard_slice

__all__ = ["CleanGradient", "feasible_interval"]

def feasible_interval(s0, slope_low, slope_high):
    """The ``eps_d`` for which ``0 in s0 + eps_d * [slope_low, slope_high]``.

    Returns ``(low, high)``; ``(inf, inf)`` when no ``eps_d > 0`` works.

    Examples
    --------
    >>> from skpoison.objectives._clean_gradient import feasible_interval
    >>> feasible_interval(0.5, -0.25, float("inf"))
    (2.0, inf)
    """
    if s0 > 0:
        if slope_low >= 0:
            return math.inf, math.inf
        low = s0 / -slope_low if np.isfinite(slope_low) else 0.0
        high = s0 / -slope_high if slope_high < 0 else math.inf
    elif s0 < 0:
        if slope_high <= 0:
            return math.inf, math.inf
        low = -s0 / slope_high if np.isfinite(slope_high) else 0.0
        high = -s0 / slope_low if slope_low > 0 else math.inf
    else:
        return 0.0, math.inf
    return (low, high) if low <= high else (math.inf, math.inf)


def _check_finite_features(X):
    """scikit-learn's error for a non-finite ``X`` (array or tensor)."""
    if isinstance(X, torch.Tensor):
        X = X.detach().cpu().numpy()
    assert_all_finite(X, input_name="X")


class CleanGradient:
    """The clean loss-gradient sum of a target on clean data, and what follows from it.

    With ``n`` clean points, ``S = sum_i grad_w l(z_i; w)`` and the penalty
    ``kappa(N) R(w)`` of the objective, the mixed objective over the clean data plus
    ``m`` poison points has the gradient per sample
    ``(S + P + kappa(n + m) grad R(w)) / (n + m)``, ``P`` the poison's loss-gradient sum.
    ``S`` is computed once, streamed over the clean rows in batches.  When a
    ``torch.distributed`` process group is initialised, each rank sums a block of the
    rows and the blocks are all-reduced, so every rank holds the same ``S`` (all ranks
    must construct it together).

    Parameters
    ----------
    objective : Objective
        The target's training objective.
    X, y : array-like
        Clean training data.  A non-finite ``X`` raises scikit-learn's "Input X
        contains NaN" error when it makes the clean sum non-finite (always so for
        linear models), and is otherwise the caller's to check.
    batch_size : int or None, default=None
        Rows per batch of the clean pass; ``None`` uses batches of about 2 million
        input elements (rows times features) and, for a net, at most 2**24 layer
        outputs (:meth:`Objective.activation_elements`), so that memory never grows
        with ``n``.

    Attributes
    ----------
    objective : Objective
    n_samples : int
        Number of clean points ``n``.
    loss_sum : torch.Tensor of shape (n_params,)
        ``S``: the clean loss-gradient sum at the target.
    penalty_gradient : torch.Tensor of shape (n_params,)
        ``grad R(w)``.
    inner_products : list of float
        Per threshold group, ``<w, S/n>`` plus the penalty's share at ``eps_d = 0``,
        ``kappa(n) <w, grad R> / n``.
    penalty_slopes : list of float
        Per threshold group, how the penalty's share grows per unit of ``eps_d``
        (non-zero for mean-form penalties only).
    weight_norms : list of float
        Per threshold group, ``||w||`` over the group's parameters.

    Examples
    --------
    >>> from sklearn.linear_model import LogisticRegression
    >>> from skpoison.datasets import make_or
    >>> from skpoison.objectives import CleanGradient, as_objective
    >>> X, y = make_or(random_state=0)
    >>> objective = as_objective(LogisticRegression().fit(X, y), device="cpu", dtype="float64")
    >>> clean = CleanGradient(objective, X, y)
    >>> clean.n_samples, bool(clean.norm < 1e-4)  # the fitted model is stationary
    (200, True)
    """

    @with_autograd
    def __init__(self, objective, X, y, *, batch_size=None):
        self.objective = objective
        self.n_samples = n = len(X)
        # under torch.distributed each rank sums its own block of rows, then all sum up
        # (labels are encoded whole, so a bad label fails on every rank alike)
        own = shard_slice(n)
        X_own, y = X[own], objective.encode_labels(y)[own]
        rows = clean_batch_rows(
            len(X_own), np.prod(np.shape(X)[1:], dtype=int), batch_size,
            activations=0 if batch_size is not None else objective.activation_elements(X),
        )
        # each batch is converted to a tensor on its own: no copy of all of X is made
        loss_sum = objective.loss_gradient_sum(X_own, y, batch_size=rows, encoded=True)
        self.loss_sum = all_reduce_sum(loss_sum)
        name = type(objective.estimator).__name__
        dtype = str(objective.dtype).replace("torch.", "")
        if not bool(torch.isfinite(self.loss_sum).all()):
            # a non-finite X is the data's fault, not the target's (for a linear model
            # the sum cannot be finite then: its coefficient gradient sums every entry
            # of X times a factor, so callers may leave X unchecked for linear targets)
            _check_finite_features(X)
            raise ValueError(
                f"The loss gradient of the target {name} on the clean data is not finite "
                f"in {dtype}: its parameters are too large for this data. Use "
                "dtype='float64', or a target with smaller parameters."
            )
        self.penalty_gradient = objective.penalty_gradient()
        self._full = self.loss_sum + objective.kappa(n) * self.penalty_gradient
        w = objective.flat_params()
        # the penalty's share of stationarity per clean sample: at eps_d = 0 and per unit eps_d
        base = objective.kappa(n) / n
        slope = (objective.kappa(2 * n) - objective.kappa(n)) / n
        self.inner_products, self.penalty_slopes, self.weight_norms = [], [], []
        for idx in objective.groups:
            s = float(w[idx] @ (self.loss_sum[idx] / n))
            q = float(w[idx] @ self.penalty_gradient[idx])
            self.inner_products.append(s + base * q)
            self.penalty_slopes.append(slope * q)
            self.weight_norms.append(float(w[idx].norm()))
        if not np.all(np.isfinite(self.inner_products + self.penalty_slopes)):
            raise ValueError(
                f"The inner product of the target {name}'s parameters with its clean "
                f"gradient overflows {dtype}: its parameters are too large to give a "
                "threshold. Use dtype='float64', or a target with smaller parameters."
            )

    # ---------------------------------------------------------------- gradients
    @property
    def gradient(self):
        """``g(mu)``: the full clean objective gradient per clean sample (a tensor)."""
        return self._full / self.n_samples

    @property
    def norm(self):
        """``||g(mu)||`` as a float, never below the smallest positive float."""
        return max(float(self._full.norm()) / self.n_samples, np.finfo(float).tiny)

    def canceling_base(self, n_poison):
        """``g_hat(mu)``: the clean side of the canceling residual with ``n_poison`` poison.

        ``(S + kappa(n + m) grad R(w)) / n``, so that the residual is
        ``g_hat(mu) + P / n`` (paper, Algorithm 1 with the penalty of the mixed
        objective).
        """
        penalty = self.objective.kappa(self.n_samples + n_poison) * self.penalty_gradient
        return (self.loss_sum + penalty) / self.n_samples

    def relative_norm(self, poison_sum, n_poison):
        """``||g(chi)|| / ||g(mu)||`` for poison with loss-gradient sum ``poison_sum``."""
        n_total = self.n_samples + n_poison
        mixed = (
            self.loss_sum
            + poison_sum
            + self.objective.kappa(n_total) * self.penalty_gradient
        ) / n_total
        clean = self._full / self.n_samples
        return float(mixed.norm() / torch.clamp(clean.norm(), min=torch.finfo(clean.dtype).tiny))

    # ---------------------------------------------------------------- threshold
    def feasible_budgets(self, bounds):
        """``(low, high)``: the ``eps_d`` range where every group can be stationary.

        ``bounds`` are the per-group ``(a, b)`` of
        :meth:`Objective.group_bounds <skpoison.objectives.Objective.group_bounds>`.
        """
        intervals = [
            feasible_interval(s0, a + slope, b + slope)
            for s0, slope, (a, b) in zip(self.inner_products, self.penalty_slopes, bounds)
        ]
        low = max(i[0] for i in intervals)
        high = min(i[1] for i in intervals)
        return (low, high) if low <= high else (math.inf, math.inf)

    def threshold(self, *, feature_range=None, label_range=None, n_classes=None):
        """tau: the smallest ``eps_d`` that can make the target stationary.

        Parameters are those of
        :meth:`Objective.group_bounds <skpoison.objectives.Objective.group_bounds>`.
        """
        bounds = self.objective.group_bounds(
            feature_range=feature_range, label_range=label_range, n_classes=n_classes
        )
        return float(self.feasible_budgets(bounds)[0])

    def residual_lower_bound(self, epsilon_d, bounds):
        """Smallest relative gradient norm any poison at ratio ``epsilon_d`` can reach.

        Per group, the distance ``delta`` of ``s + eps_d [a, b]`` from 0 bounds the
        mixed gradient by Cauchy-Schwarz: ``||g(chi)|| >= delta / ||w||``.

        Parameters
        ----------
        epsilon_d : ndarray of float
            Poison points per clean point.
        bounds : list of (float, float)
            Per-group ``(a, b)``.

        Returns
        -------
        bound : ndarray of float
        """
        eps = np.asarray(epsilon_d, dtype=float)
        total = np.zeros_like(eps)
        for s0, slope, (a, b), w_norm in zip(
            self.inner_products, self.penalty_slopes, bounds, self.weight_norms
        ):
            with np.errstate(invalid="ignore"):
                low = s0 + eps * (a + slope)
                high = s0 + eps * (b + slope)
            gap = np.where(low > 0, low, np.where(high < 0, -high, 0.0))
            gap = np.nan_to_num(gap, nan=0.0)
            total += (gap / w_norm) ** 2 if w_norm > 0 else 0.0
        return np.sqrt(total) / ((1.0 + eps) * self.norm)
