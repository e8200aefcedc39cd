"""Second-order information of a victim's objective: Hessians, Hessian-vector products, CG.

Influence functions (:class:`~skpoison.defenses.InfluenceFilter`) and the total
gradient of a Stackelberg game (:class:`~skpoison.attacks.TGDA`) both need
``H^{-1} v`` for the Hessian ``H`` of the training objective.  This module computes
``H`` exactly (:func:`exact_hessian`), or only its products with vectors
(:func:`hessian_vector_products`, forward-over-reverse with :mod:`torch.func`), and
solves systems with them by conjugate gradients (:func:`conjugate_gradient`).  Every
function takes encoded labels (:meth:`Objective.encode_labels
<skpoison.objectives.Objective.encode_labels>`) and, optionally, parameters other than
the objective's own, as one flat tensor.
"""

import warnings

import torch
from torch.func import grad, hessian, jvp, vmap

from .._utils import batch_slices, rows_within

__all__ = [
    "conjugate_gradient",
    "exact_hessian",
    "hessian_vector_products",
    "loss_hessian_products",
    "penalty_hessian_diagonal",
]

# Elements (rows x parameters, or rows x right-hand sides) per chunk of a Hessian
# computation when no batch size is given, bounding the intermediates of the
# forward-over-reverse passes.
_HESSIAN_CHUNK_ELEMENTS = 2**22


def _forward_mode_ready():
    """Load torch's forward-mode AD decompositions once, quietly.

    Their first use (any ``jvp``, hence ``torch.func.hessian``) scripts functions with
    ``torch.jit.script``, which this torch version reports as deprecated: torch's own
    business, nothing a caller can act on.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=".*torch.jit.script.* is deprecated", category=DeprecationWarning
        )
        try:
            from torch.autograd.forward_ad import _maybe_load_decompositions
        except ImportError:  # pragma: no cover - other torch versions
            return
        _maybe_load_decompositions()


def penalty_hessian_diagonal(objective, n_samples):
    """``kappa(N) * r``: the Hessian of the penalty term ``kappa(N) R(w)``, a diagonal.

    Returned as a flat tensor (the order of ``objective.params``).
    """
    weights = torch.cat([objective.penalty_weights[k].reshape(-1) for k in objective.params])
    return objective.kappa(n_samples) * weights


def _loss_sum(objective, X, y):
    """``w -> sum_i l(z_i; w)`` on encoded rows, as a function of the flat parameters."""

    def total(flat):
        return objective.sample_losses(X, y, objective.unflatten(flat), encoded=True).sum()

    return total


def _flat(objective, params):
    return objective.flat_params() if params is None else params


def exact_hessian(objective, X, y, batch_size=None, *, params=None):
    """The Hessian of the mean objective ``(sum_i l(z_i; w) + kappa(N) R(w)) / N``.

    Computed with :func:`torch.func.hessian` on chunks of rows (exact: the sum is
    additive), shape ``(n_params, n_params)``.

    Parameters
    ----------
    objective : Objective
        The victim's objective.
    X : array-like or tensor of shape (N, n_features)
        Rows of the objective.
    y : tensor
        Their labels, encoded (:meth:`Objective.encode_labels`).
    batch_size : int or None, default=None
        Rows per chunk; ``None`` bounds the chunk's elements.
    params : tensor of shape (n_params,) or None, default=None
        Flat parameters at which ``H`` is taken; ``None``: the objective's own.

    Returns
    -------
    H : tensor of shape (n_params, n_params)
    """
    _forward_mode_ready()
    n, p = len(X), objective.n_params
    flat = _flat(objective, params)
    rows = rows_within(n, p, _HESSIAN_CHUNK_ELEMENTS, batch_size)
    H = torch.zeros(p, p, device=objective.device, dtype=objective.dtype)
    for chunk in batch_slices(n, rows, even=True):
        H += hessian(_loss_sum(objective, X[chunk], y[chunk]))(flat)
    H += torch.diag(penalty_hessian_diagonal(objective, n))
    return H / n


def loss_hessian_products(objective, X, y, batch_size=None, *, params=None):
    """``V -> (sum_i grad_w^2 l(z_i; w)) V``: the loss sum's Hessian, no penalty.

    Forward-over-reverse (``torch.func.jvp`` of ``torch.func.grad``), vectorised over
    the columns of ``V`` (shape ``(n_params, k)``) and streamed over chunks of rows, so
    that the Hessian is never formed.  Sums over several row sets add up, which is
    how an objective over clean plus poison rows is assembled without concatenating
    them.  Parameters are those of :func:`exact_hessian`.

    Returns
    -------
    product : callable
        Maps a tensor ``V`` of shape ``(n_params, k)`` to one of the same shape.
    """
    _forward_mode_ready()
    n = len(X)
    flat = _flat(objective, params)

    def product(V):
        k = V.shape[1]
        rows = rows_within(n, k, _HESSIAN_CHUNK_ELEMENTS, batch_size)
        out = torch.zeros_like(V)
        for chunk in batch_slices(n, rows, even=True):
            gradient = grad(_loss_sum(objective, X[chunk], y[chunk]))

            def column(v, gradient=gradient):
                return jvp(gradient, (flat,), (v,))[1]

            out = out + vmap(column, in_dims=1, out_dims=1)(V)
        return out

    return product


def hessian_vector_products(objective, X, y, batch_size=None, *, params=None):
    """``V -> H V`` for ``V`` of shape ``(n_params, k)``, ``H`` as in :func:`exact_hessian`.

    The loss part comes from :func:`loss_hessian_products`, the penalty's diagonal is
    added, and the whole is divided by ``N``.  Parameters are those of
    :func:`exact_hessian`.

    Returns
    -------
    product : callable

    Examples
    --------
    >>> import torch
    >>> from sklearn.linear_model import LogisticRegression
    >>> from skpoison.datasets import make_gaussian
    >>> from skpoison.objectives import as_objective, exact_hessian, hessian_vector_products
    >>> X, y = make_gaussian(n_samples=50, n_features=5, random_state=0)
    >>> objective = as_objective(LogisticRegression().fit(X, y), device="cpu", dtype="float64")
    >>> labels = objective.encode_labels(y)
    >>> V = torch.eye(objective.n_params, dtype=torch.float64)
    >>> HV = hessian_vector_products(objective, X, labels)(V)
    >>> bool(torch.allclose(HV, exact_hessian(objective, X, labels)))
    True
    """
    n = len(X)
    loss_part = loss_hessian_products(objective, X, y, batch_size, params=params)
    penalty = penalty_hessian_diagonal(objective, n)

    def product(V):
        return (loss_part(V) + penalty[:, None] * V) / n

    return product


def conjugate_gradient(matmul, B, *, max_iter, tol, x0=None):
    """Solve ``A X = B`` column by column (all columns at once) by conjugate gradients.

    ``A`` (through ``matmul``) should be symmetric positive definite; a column whose
    curvature ``p^T A p`` is not positive stops there.  A column is solved when its
    residual is at most ``tol`` times the norm of its right-hand side.

    Parameters
    ----------
    matmul : callable
        ``V -> A V`` for ``V`` of shape ``(p, k)``.
    B : tensor of shape (p, k)
        Right-hand sides.
    max_iter : int
        Iterations at most (each one product with ``A``).
    tol : float
        Relative residual at which a column is solved.
    x0 : tensor of shape (p, k) or None, default=None
        Starting point (a warm start, e.g. the previous solution of a slowly changing
        system); ``None`` starts from zero.

    Returns
    -------
    X : tensor of shape (p, k)
    n_unsolved : int
        Number of columns whose relative residual did not reach ``tol``.
    """
    if x0 is None:
        X = torch.zeros_like(B)
        R = B.clone()
    else:
        X = x0.clone()
        R = B - matmul(X)
    P = R.clone()
    rs = (R * R).sum(dim=0)
    target = (tol**2) * (B * B).sum(dim=0)
    active = rs > target
    for _ in range(max_iter):
        if not bool(active.any()):
            break
        AP = matmul(P)
        curvature = (P * AP).sum(dim=0)
        active = active & (curvature > 0)
        alpha = torch.where(active, rs / torch.where(active, curvature, 1.0), 0.0)
        X = X + alpha * P
        R = R - alpha * AP
        rs_new = (R * R).sum(dim=0)
        beta = torch.where(active, rs_new / torch.where(active, rs, 1.0), 0.0)
        P = R + beta * P
        rs = torch.where(active, rs_new, rs)
        active = active & (rs > target)
    return X, int((rs > target).sum())
