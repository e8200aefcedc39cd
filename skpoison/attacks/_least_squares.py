"""Gauss-Newton steps for the canceling residual: Levenberg-Marquardt with matrix-free CG.

Gradient Canceling minimises ``0.5 * ||r(X)||^2`` over the poison features ``X``, with
the residual ``r(X) = g_hat(mu) + (1/n) sum_j grad_w l(x_j, y_j; w)`` in parameter
space (``n_params`` entries).  That is a nonlinear least-squares problem, so second-order
information comes for free from the residual's Jacobian ``J = dr/dX``:

* ``J^T u`` (a vector-Jacobian product) is the poison-feature gradient of
  ``<u, r(X)>``, a double backward pass over the poison rows;
* ``J v`` (a Jacobian-vector product) is a forward-mode derivative of the gradient map,
  ``torch.func.jvp`` over ``torch.func.grad``.

L-BFGS (``torch.optim.LBFGS`` with a strong-Wolfe line search) needs only
``J^T r``; it runs on ``f(clamp(X))`` so that the box needs no projection step.

Both products are sums (or concatenations) over poison rows, so they stream in batches and the
memory stays bounded by the batch.  The damped Gauss-Newton system
``(J M J^T + lam I) z = r`` is solved in parameter space by conjugate gradients and the
step is ``delta = -M J^T z`` (``M`` masks features held at the projection box), the
minimum-norm step of the linearised problem; ``lam`` follows Nielsen's
Levenberg-Marquardt rule from the ratio of actual to predicted reduction.
"""

import math
from dataclasses import dataclass, field

import torch
from torch.func import functional_call, grad, jvp

from .._utils import batch_slices

__all__ = ["ResidualMap", "lbfgs", "levenberg_marquardt"]

# conjugate-gradient iterations per Gauss-Newton step, and their relative tolerance
_CG_MAX_ITER = 10
_CG_RTOL = 0.1
# initial damping, relative to the Rayleigh quotient r'(J J')r / r'r of the system
_INITIAL_DAMPING = 1e-3


class ResidualMap:
    """The canceling residual ``r(X)`` of fixed poison labels, and its Jacobian products.

    Parameters
    ----------
    objective : Objective
        The target's training objective.
    y : tensor
        Poison labels, encoded by :meth:`Objective.encode_labels`.
    base : tensor of shape (n_params,)
        ``g_hat(mu)``: the clean side of the residual.
    n_samples : int
        Number of clean points ``n`` (the poison sum is divided by it).
    batch_size : int or None
        Poison rows per batch of every pass (``None``: one batch).
    """

    def __init__(self, objective, y, base, n_samples, batch_size=None):
        self.objective = objective
        self.y = y
        self.base = base
        self.n_samples = n_samples
        self.batch_size = batch_size
        self._names = list(objective.params)
        self._params = dict(objective.params)

    def _slices(self, m):
        return list(batch_slices(m, self.batch_size))

    def residual(self, X):
        """``r(X)`` (no graph kept)."""
        total = self.objective.loss_gradient_sum(
            X, self.y, batch_size=self.batch_size, encoded=True
        )
        return self.base + total / self.n_samples

    def residual_and_gradient(self, X):
        """``r(X)`` and ``J^T r(X)``, the gradient of ``0.5 ||r||^2`` in ``X``."""
        n = self.n_samples
        grad_x, total = self.objective.poison_feature_gradient(
            X, self.y, lambda s: self.base + s / n, encoded=True, batch_size=self.batch_size
        )
        return self.base + total / n, grad_x.div_(n)

    def vjp(self, X, u):
        """``J^T u``: the feature gradient of ``<u, r(X)>``, shaped like ``X``."""
        grad_x, _ = self.objective.poison_feature_gradient(
            X, self.y, u, encoded=True, batch_size=self.batch_size
        )
        return grad_x.div_(self.n_samples)

    def _gradient_sum_map(self, y):
        """``X_b -> sum_j grad_w l(x_j, y_j; w)`` as a flat vector, for ``torch.func``."""
        objective, names = self.objective, self._names

        def total_loss(params, X):
            outputs = functional_call(objective.module, params, (X,))
            return objective.loss.per_sample(outputs, y).sum()

        gradient = grad(total_loss)

        def flat(X):
            g = gradient(self._params, X)
            return torch.cat([g[k].reshape(-1) for k in names])

        return flat

    def jvp(self, X, V):
        """``J V``: the directional derivative of ``r`` at ``X`` along ``V``."""
        total = torch.zeros_like(self.base)
        for b in self._slices(len(X)):
            _, tangent = jvp(self._gradient_sum_map(self.y[b]), (X[b],), (V[b],))
            total += tangent
        return total.div_(self.n_samples)

    def normal_product(self, X, u, mask=None):
        """``J M J^T u`` streamed per batch (``M``: a 0/1 mask shaped like ``X``)."""
        total = torch.zeros_like(self.base)
        for b in self._slices(len(X)):
            v = self.objective.poison_feature_gradient(X[b], self.y[b], u, encoded=True)[0]
            if mask is not None:
                v = v.mul_(mask[b])
            _, tangent = jvp(self._gradient_sum_map(self.y[b]), (X[b],), (v,))
            total += tangent
        return total.div_(self.n_samples**2)


def _conjugate_gradient(operator, b, *, max_iter, rtol):
    """Approximate solution of ``A z = b`` (``A`` symmetric positive definite) and its
    residual ``b - A z``."""
    z = torch.zeros_like(b)
    s = b.clone()
    p = s.clone()
    rs = float(s @ s)
    stop = (rtol**2) * rs
    for _ in range(max_iter):
        Ap = operator(p)
        curvature = float(p @ Ap)
        if not curvature > 0:
            break
        alpha = rs / curvature
        z.add_(p, alpha=alpha)
        s.sub_(Ap, alpha=alpha)
        rs_new = float(s @ s)
        if rs_new <= stop:
            rs = rs_new
            break
        p.mul_(rs_new / rs).add_(s)
        rs = rs_new
    return z, s


@dataclass
class LeastSquaresResult:
    """What :func:`levenberg_marquardt` returns."""

    X: torch.Tensor
    history: list = field(default_factory=list)
    best: float = math.inf
    n_iter: int = 0
    converged: bool = False
    non_finite: bool = False


def _free_mask(X, gradient, low, high):
    """1 where a feature may move, 0 where it sits at the box and descent points out."""
    if low is None:
        return None
    blocked = ((X <= low) & (gradient > 0)) | ((X >= high) & (gradient < 0))
    return (~blocked).to(X.dtype)


def levenberg_marquardt(
    residual_map, X, *, max_iter, tol, to_relative, low=None, high=None, callback=None
):
    """Minimise ``0.5 ||r(X)||^2`` by Levenberg-Marquardt with CG on Jacobian products.

    Parameters
    ----------
    residual_map : ResidualMap
    X : tensor
        Initial poison features (inside the box; not modified).
    max_iter : int
        Gauss-Newton steps (rejected steps count).
    tol : float
        Stop when the relative gradient norm ``||r|| * to_relative`` is at most ``tol``.
    to_relative : float
        Factor from ``||r||`` to the relative gradient norm.
    low, high : tensor or None
        The projection box; steps are clamped into it and features held at it by the
        gradient are frozen for the step.
    callback : callable or None
        Called with the relative gradient norm of each step's iterate.

    Returns
    -------
    result : LeastSquaresResult
        The best (last accepted) iterate and its relative norm, the relative norm at
        the start of each step, and whether ``tol`` was reached or the initial residual
        was not finite.
    """
    X = X.detach().clone()
    r, g = residual_map.residual_and_gradient(X)
    value = float(r.norm()) * to_relative
    result = LeastSquaresResult(X=X, best=value)
    if not math.isfinite(value):
        result.non_finite = True
        return result
    damping, growth = None, 2.0
    for _ in range(max_iter):
        result.history.append(value)
        if callback is not None:
            callback(value)
        if value <= tol:
            result.converged = True
            break
        mask = _free_mask(X, g, low, high)
        r_sq = float(r @ r)
        if damping is None:  # a small fraction of the system's scale along r
            masked = g if mask is None else g * mask
            damping = _INITIAL_DAMPING * float(masked.pow(2).sum()) / max(r_sq, 1e-300)
            damping = max(damping, 1e-30)

        def operator(u, X=X, mask=mask, damping=damping):
            return residual_map.normal_product(X, u, mask).add_(u, alpha=damping)

        z, cg_residual = _conjugate_gradient(operator, r, max_iter=_CG_MAX_ITER, rtol=_CG_RTOL)
        delta = residual_map.vjp(X, z).neg_()
        if mask is not None:
            delta.mul_(mask)
        X_new = delta.add_(X)
        if low is not None:
            torch.clamp(X_new, low, high, out=X_new)
        # the linear model predicts r + J delta = damping * z + (CG residual)
        predicted = r_sq - float((z * damping + cg_residual).pow(2).sum())
        r_new, g_new = residual_map.residual_and_gradient(X_new)
        new_sq = float(r_new @ r_new)
        ratio = (r_sq - new_sq) / predicted if predicted > 0 else -1.0
        if math.isfinite(new_sq) and new_sq < r_sq and ratio > 0:
            X, r, g = X_new, r_new, g_new
            value = math.sqrt(new_sq) * to_relative
            damping *= max(1.0 / 3.0, 1.0 - (2.0 * ratio - 1.0) ** 3)
            growth = 2.0
        else:  # rejected: more damping, a shorter and more gradient-like step
            damping *= growth
            growth *= 2.0
    # every accepted step lowers ||r||: the last iterate is the best
    result.X, result.best = X, value
    result.converged = result.converged or value <= tol
    result.n_iter = len(result.history)
    return result


class _Converged(Exception):
    """Raised inside the L-BFGS closure once ``tol`` is reached."""


def lbfgs(
    residual_map, X, *, max_iter, tol, to_relative, low=None, high=None, callback=None,
    history_size=10,
):
    """Minimise ``0.5 ||r(X)||^2`` by L-BFGS with a strong-Wolfe line search.

    ``max_iter`` counts evaluations of ``r`` and ``J^T r`` (each costs one first-order
    step), line-search trials included.  With a box, the function minimised is
    ``0.5 ||r(clamp(X))||^2``, whose gradient is ``J^T r`` masked to the features
    inside the box; the returned poison is clamped.  Parameters and result are those
    of :func:`levenberg_marquardt`; ``history`` holds the relative norm of every
    evaluation.

    ``history_size`` pairs are kept: torch's two-loop recursion costs about four
    passes over a poison-sized vector per pair and iteration, which dominates an
    evaluation of affine models (20 pairs made an MNIST LR evaluation cost about 5
    Adam steps, 10 pairs about 3, for slightly less progress per evaluation).
    """
    X_p = X.detach().clone().requires_grad_(True)
    result = LeastSquaresResult(X=X_p.detach().clone())
    r0 = residual_map.residual(X_p.detach())
    scale = 1.0 / max(float(r0 @ r0), 1e-300)  # the objective relative to its start

    def clamped():
        Z = X_p.detach()
        if low is None:
            return Z, None
        inside = ((Z >= low) & (Z <= high)).to(Z.dtype)
        return torch.clamp(Z, low, high), inside

    def closure():
        Z, inside = clamped()
        r, g = residual_map.residual_and_gradient(Z)
        r_sq = float(r @ r)
        value = math.sqrt(r_sq) * to_relative if math.isfinite(r_sq) else math.inf
        result.history.append(value)
        if callback is not None:
            callback(value)
        if value < result.best:
            result.best, result.X = value, Z.clone()
        if value <= tol:
            raise _Converged
        g = g.mul_(scale)
        X_p.grad = g if inside is None else g.mul_(inside)
        return 0.5 * r_sq * scale if math.isfinite(r_sq) else math.inf

    optimizer = torch.optim.LBFGS(
        [X_p], lr=1, max_iter=max_iter, max_eval=max_iter, history_size=history_size,
        line_search_fn="strong_wolfe", tolerance_grad=0.0, tolerance_change=0.0,
    )
    try:
        optimizer.step(closure)
    except _Converged:
        result.converged = True
    if not math.isfinite(result.best):
        result.non_finite = True
    result.n_iter = len(result.history)
    return result
