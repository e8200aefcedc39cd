"""Second-order steps for the canceling residual: Levenberg-Marquardt and projected L-BFGS.

Gradient Canceling minimises ``0.5 * ||r(X)||^2`` over the poison features ``X``, with
the residual ``r(X) = g_hat(mu) + (1/n) sum_j grad_w l(x_j, y_j; w)`` in parameter
space (``n_params`` entries).  That is a nonlinear least-squares problem, so second-order
information comes for free from the residual's Jacobian ``J = dr/dX``:

* ``J^T u`` (a vector-Jacobian product) is the poison-feature gradient of
  ``<u, r(X)>``, a double backward pass over the poison rows;
* ``J v`` (a Jacobian-vector product) is a forward-mode derivative of the gradient map,
  ``torch.func.jvp`` over ``torch.func.grad``.

L-BFGS needs only ``J^T r``; it is projected onto the box (the quasi-Newton direction
on the features the box does not hold, then a weak-Wolfe line search along the
projected path), so features held at a bound are released when the gradient turns.

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

from .._utils import all_finite, batch_slices
from .._utils._distributed import all_reduce_sum, any_rank

__all__ = ["ResidualMap", "lbfgs", "levenberg_marquardt"]

# conjugate-gradient iterations per Gauss-Newton step, and their relative tolerance
_CG_MAX_ITER = 10
_CG_RTOL = 0.1
# L-BFGS line search: trials per iteration, and the weak Wolfe constants
_MAX_LINE_SEARCH = 30
_ARMIJO = 1e-4
_CURVATURE = 0.9
# L-BFGS's initial inverse Hessian: Adam's per-feature scaling, from a running mean of
# the squared gradient with this decay, floored at this fraction of its largest root
_SECOND_MOMENT_DECAY = 0.99
_DIAGONAL_FLOOR = 1e-8
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
    mask : tensor of shape (n_params,) or None
        0/1 over the flat parameters: the residual keeps the chosen blocks only
        (``GradientCanceling(parameters=...)``); ``None`` keeps all.
    lagged : bool, default=False
        With ``batch_size``, :meth:`residual_and_gradient` computes ``J^T r`` with
        the residual of its previous call (the first call is exact): one pass
        instead of two for models that are not affine, whatever the number of
        batches or ranks, while the residual itself stays exact.  For first-order
        steps only.

    Under ``torch.distributed`` the poison rows given are this rank's block: the
    residual sums every rank's rows, Jacobian products cover this rank's
    (:meth:`jvp` and :meth:`normal_product` run in one process only).
    """

    def __init__(self, objective, y, base, n_samples, batch_size=None, mask=None,
                 lagged=False):
        self.objective = objective
        self.lagged = lagged and batch_size is not None  # one batch: exact in one pass
        self._previous = None  # the last residual, for ``lagged``
        self.y = y
        self.base = base if mask is None else base * mask
        self.n_samples = n_samples
        self.batch_size = batch_size
        self.mask = mask
        self._names = list(objective.params)
        self._params = dict(objective.params)

    def _slices(self, m):
        return list(batch_slices(m, self.batch_size, even=True))

    def _cut(self, v):
        """``v`` restricted to the chosen parameter blocks (``mask``), in place."""
        return v if self.mask is None else v.mul_(self.mask)

    def _residual_from(self, gradient_sum):
        # the poison sum over every rank's rows (this rank's alone in one process);
        # the base is added in place, into the scaled sum, unless it is the wider type
        scaled = self._cut(all_reduce_sum(gradient_sum) / self.n_samples)
        if torch.result_type(scaled, self.base) != scaled.dtype:
            return self.base + scaled
        return scaled.add_(self.base)

    def residual(self, X):
        """``r(X)`` (no graph kept)."""
        return self._residual_from(self.objective.loss_gradient_sum(
            X, self.y, batch_size=self.batch_size, encoded=True
        ))

    def residual_and_gradient(self, X):
        """``r(X)`` and ``J^T r(X)``, the gradient of ``0.5 ||r||^2`` in ``X``.

        Under ``torch.distributed``, ``X`` is this rank's block of poison rows: ``r``
        covers every rank's rows (one all-reduce) and ``J^T r`` this rank's.  With
        ``lagged``, ``J^T`` multiplies the previous call's residual where that saves
        a pass; ``r`` is always that of ``X``.
        """
        found = {}

        def direction(gradient_sum):
            found["r"] = self._residual_from(gradient_sum)
            return found["r"]

        grad_x, _ = self.objective.poison_feature_gradient(
            X, self.y, direction, encoded=True, batch_size=self.batch_size,
            lagged=self._previous,
        )
        if self.lagged:
            self._previous = found["r"]
        return found["r"], grad_x.div_(self.n_samples)

    def vjp(self, X, u):
        """``J^T u``: the feature gradient of ``<u, r(X)>``, shaped like ``X``."""
        u = u if self.mask is None else u * self.mask
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
        return self._cut(total.div_(self.n_samples))

    def normal_product(self, X, u, mask=None):
        """``J M J^T u`` streamed per batch (``M``: a 0/1 mask shaped like ``X``)."""
        total = torch.zeros_like(self.base)
        u = u if self.mask is None else u * self.mask
        for b in self._slices(len(X)):
            v = self.objective.poison_feature_gradient(X[b], self.y[b], u, encoded=True)[0]
            if mask is not None:
                v = v.mul_(mask[b])
            _, tangent = jvp(self._gradient_sum_map(self.y[b]), (X[b],), (v,))
            total += tangent
        return self._cut(total.div_(self.n_samples**2))


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


def _free(X, gradient, low, high):
    """False where a feature sits at the box and descent points out (``None``: no box).

    Boolean and/or and a multiplication are an order of magnitude faster on CPU than
    ``torch.where`` or ``masked_fill`` over the same tensor.
    """
    if low is None:
        return None
    return ~(((X <= low) & (gradient > 0)) | ((X >= high) & (gradient < 0)))


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
        mask = _free(X, g, low, high)
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


def _two_loop(gradient, pairs, scale, inner):
    """``H g``: the L-BFGS inverse-Hessian estimate applied to ``gradient``.

    ``pairs`` holds ``(s, y, 1 / <s, y>)`` from oldest to newest; ``scale`` is the
    initial estimate ``H0``, a tensor shaped like ``gradient`` (a diagonal);
    ``inner`` is the (global) inner product.
    """
    q = gradient.clone()
    alphas = []
    for s, y, rho in reversed(pairs):
        alpha = rho * inner(s, q)
        q.sub_(y, alpha=alpha)
        alphas.append(alpha)
    q.mul_(scale)
    for (s, y, rho), alpha in zip(pairs, reversed(alphas)):
        beta = rho * inner(y, q)
        q.add_(s, alpha=alpha - beta)
    return q


def lbfgs(
    residual_map, X, *, max_iter, tol, to_relative, low=None, high=None, callback=None,
    history_size=10, inner=None,
):
    """Minimise ``0.5 ||r(X)||^2`` over the box by projected L-BFGS.

    Each iteration takes the L-BFGS direction on the *free* features (those not held
    at the box by the gradient), projects the trial point onto the box and searches
    the step length for the weak Wolfe conditions along the projected step
    (sufficient decrease and a flattened slope, by bisection and doubling).
    Features at a bound therefore stay movable: the next gradient that points
    inwards frees them.  Without a box this is L-BFGS with a weak-Wolfe line search.

    The recursion starts from a diagonal inverse Hessian: Adam's per-feature scaling
    ``1 / sqrt(v)`` (``v`` a running mean of the squared gradient) times the usual
    scalar ``<s, y> / <y, D y>``; the problem is badly scaled across features, and
    the scalar alone converged far slower on MNIST and on nearly separable data.
    The first step, without curvature pairs, goes along ``-D g`` as far as the
    Polyak step ``f / <g, D g>``, where the residual would vanish if it were
    linear (the least-squares optimum is at least 0).

    ``max_iter`` counts evaluations of ``r`` and ``J^T r`` (each costs one first-order
    step), line-search trials included.  Parameters and result are those of
    :func:`levenberg_marquardt`; ``history`` holds the relative norm of every
    evaluation.

    ``history_size`` pairs are kept (memory: ``2 * history_size`` poison-sized
    tensors).  ``inner(a, b)`` is the inner product of two poison-shaped tensors as
    a float; under ``torch.distributed`` it sums over ranks, so that every rank
    takes the same decisions while holding only its own rows.
    """
    if inner is None:
        def inner(a, b):
            return float(torch.vdot(a.reshape(-1), b.reshape(-1)))

    X = X.detach().clone()
    result = LeastSquaresResult(X=X, best=math.inf)
    scale = None

    def evaluate(Z):
        """Objective relative to its start, its gradient, and the relative norm."""
        nonlocal scale
        r, g = residual_map.residual_and_gradient(Z)
        r_sq = float(r @ r)
        if not math.isfinite(r_sq) or any_rank(not all_finite(g)):
            raise _NonFinite
        value = math.sqrt(r_sq) * to_relative
        result.history.append(value)
        if callback is not None:
            callback(value)
        if value < result.best:
            result.best, result.X = value, Z
        if scale is None:
            scale = 1.0 / max(r_sq, 1e-300)
        return 0.5 * r_sq * scale, g.mul_(scale), value

    try:
        _lbfgs_iterations(
            evaluate, X, result, max_iter=max_iter, tol=tol, low=low, high=high,
            history_size=history_size, inner=inner,
        )
    except _NonFinite:  # stop at the first non-finite evaluation; keep the best
        result.non_finite = True
    result.converged = result.best <= tol
    result.X = result.X.clone()
    result.n_iter = len(result.history)
    return result


class _NonFinite(Exception):
    """Raised by an L-BFGS evaluation whose residual or gradient is not finite."""


def _diagonal(second, inner):
    """``1 / sqrt(second)``, Adam's per-feature scaling, as a new tensor.

    The root is floored at a fraction of its (global) norm, so features whose
    gradient has always been zero get a large finite scale; their directions are
    zero anyway.
    """
    root = second.sqrt()
    floor = _DIAGONAL_FLOOR * math.sqrt(max(inner(root, root), 0.0)) + 1e-300
    return root.add_(floor).reciprocal_()


def _lbfgs_iterations(evaluate, X, result, *, max_iter, tol, low, high, history_size, inner):
    """The L-BFGS iterations of :func:`lbfgs` from ``X`` (``evaluate`` records them)."""
    f, g, value = evaluate(X)
    pairs, gamma = [], 1.0
    second = g * g  # running mean of the squared gradient, per feature
    while value > tol and len(result.history) < max_iter:
        free = _free(X, g, low, high)
        g_free = g if free is None else g * free
        diagonal = _diagonal(second, inner)
        if pairs:
            d = _two_loop(g_free, pairs, diagonal * gamma, inner).neg_()
            if free is not None:
                d.mul_(free)
            slope = inner(g, d)
        if not pairs or not slope < 0:  # no curvature yet, or not a descent direction
            pairs.clear()
            d = g_free.mul(diagonal).neg_()
            slope = inner(g, d)
            if not slope < 0:  # a stationary point of the boxed problem
                break
            t = f / -slope  # Polyak: zero if the residual were linear along d
        else:
            t = 1.0
        # weak Wolfe conditions by bracketing: shrink while the decrease is too
        # small, grow while the slope is still steep (Lewis and Overton's bisection)
        found, lower, upper, previous = None, 0.0, math.inf, None
        for _ in range(_MAX_LINE_SEARCH):
            if len(result.history) >= max_iter:
                break
            X_new = torch.add(X, d, alpha=t)
            if low is not None:
                torch.clamp(X_new, low, high, out=X_new)
            step = X_new - X
            decrease = inner(g, step)  # the linear model's change along the projected step
            f_new, g_new, value_new = evaluate(X_new)
            if not (decrease < 0 and f_new <= f + _ARMIJO * decrease):
                upper = t
            else:  # sufficient decrease: usable even if the budget ends here
                found = (X_new, f_new, g_new, value_new, step)
                # a longer step that the box clips to the same point stops the growth
                if inner(g_new, step) >= _CURVATURE * decrease or decrease == previous:
                    break
                lower, previous = t, decrease
            if found is not None and upper < math.inf and upper - lower < 1e-3 * upper:
                break
            t = 0.5 * (lower + upper) if upper < math.inf else 2.0 * lower
        if found is None:
            if pairs:  # the curvature model misled: restart from steepest descent
                pairs.clear()
                continue
            break
        X_new, f_new, g_new, value_new, step = found
        y = g_new - g
        sy = inner(step, y)
        if sy > 1e-10 * inner(y, y):  # curvature condition: keep the pair
            pairs.append((step, y, 1.0 / sy))
            if len(pairs) > history_size:
                pairs.pop(0)
            gamma = sy / inner(y, y * diagonal)
        X, f, g, value = X_new, f_new, g_new, value_new
        second.mul_(_SECOND_MOMENT_DECAY).addcmul_(g, g, value=1 - _SECOND_MOMENT_DECAY)
