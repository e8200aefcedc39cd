"""Margin losses and the range of ``t * l'(t)`` that the poisonability threshold needs.

Each binary margin loss ``l(t)`` (``t = y * h`` with ``y`` in {-1, +1}) is described by
its torch implementation and the function ``phi(t) = t * l'(t)``.  Every loss here has
a quasi-convex ``phi`` (decreasing up to ``t_star`` and non-decreasing after it), so
its infimum over an interval ``[p, q]`` is ``phi(clip(t_star, p, q))`` and its
supremum is attained at an end point.  That is all the threshold needs (paper,
equations (14)-(15) and (21)).
"""

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from scipy.special import lambertw

__all__ = ["MARGIN_LOSSES", "MarginLoss", "margin_bounds", "softmax_bounds"]


def _lambert_w(x):
    return float(np.real(lambertw(x)))


def _phi_logistic(t):
    # t * l'(t) with l(t) = log(1 + exp(-t)), l'(t) = -sigmoid(-t)
    t = np.asarray(t, dtype=float)
    with np.errstate(over="ignore"):
        return -t / (1.0 + np.exp(t))


def _phi_hinge(t):
    t = np.asarray(t, dtype=float)
    # the subgradient at t = 1 reaches -1: the infimum is attained there
    return np.where(t <= 1.0, -t, 0.0)


def _phi_squared_hinge(t):
    t = np.asarray(t, dtype=float)
    return np.where(t < 1.0, -2.0 * t * (1.0 - t), 0.0)


def _phi_modified_huber(t):
    t = np.asarray(t, dtype=float)
    return np.where(t < -1.0, -4.0 * t, np.where(t < 1.0, -2.0 * t * (1.0 - t), 0.0))


def _phi_exponential(t):
    t = np.asarray(t, dtype=float)
    with np.errstate(over="ignore"):
        return -t * np.exp(-t)


def _phi_squared(t):
    # l(t) = (1 - t)^2 / 2, the squared loss of a +-1 label written as a margin loss
    t = np.asarray(t, dtype=float)
    return t * (t - 1.0)


def _loss_modified_huber(t):
    return torch.where(t < -1.0, -4.0 * t, torch.clamp(1.0 - t, min=0.0) ** 2)


@dataclass(frozen=True)
class MarginLoss:
    """A binary margin loss ``l(t)`` and the facts the threshold needs about it.

    Attributes
    ----------
    name : str
        The loss name.
    loss : callable
        Torch function mapping margins ``t`` to per-sample losses.
    phi : callable
        Numpy function ``t -> t * l'(t)`` (the infimum of the subdifferential at kinks).
    t_star : float
        Minimiser of ``phi``.
    a : float
        ``inf_t t * l'(t)`` over the real line (closed form).
    b : float
        ``sup_t t * l'(t)`` over the real line (``inf`` for all losses here).
    limit_right : float
        Limit of ``phi(t)`` as ``t -> +inf``.
    """

    name: str
    loss: Callable
    phi: Callable
    t_star: float
    a: float
    b: float = math.inf
    limit_right: float = 0.0


_W1E = _lambert_w(1.0 / math.e)

MARGIN_LOSSES = {
    "logistic": MarginLoss(
        "logistic", lambda t: F.softplus(-t), _phi_logistic, 1.0 + _W1E, -_W1E
    ),
    "hinge": MarginLoss("hinge", lambda t: torch.clamp(1.0 - t, min=0.0), _phi_hinge, 1.0, -1.0),
    "squared_hinge": MarginLoss(
        "squared_hinge",
        lambda t: torch.clamp(1.0 - t, min=0.0) ** 2,
        _phi_squared_hinge,
        0.5,
        -0.5,
    ),
    "modified_huber": MarginLoss(
        "modified_huber", _loss_modified_huber, _phi_modified_huber, 0.5, -0.5
    ),
    "exponential": MarginLoss(
        "exponential", lambda t: torch.exp(-t), _phi_exponential, 1.0, -1.0 / math.e
    ),
    "squared": MarginLoss(
        "squared", lambda t: 0.5 * (1.0 - t) ** 2, _phi_squared, 0.5, -0.25, math.inf, math.inf
    ),
}


def _margin_union_bounds(spec, intervals):
    """Infimum and supremum of a quasi-convex ``phi`` over a union of intervals."""
    lows, highs = [], []
    for low, high in intervals:
        low, high = min(low, high), max(low, high)
        lows.append(float(spec.phi(np.clip(spec.t_star, low, high))))
        # phi tends to +inf on the left for every loss here, and to limit_right on the right
        left = math.inf if low == -math.inf else float(spec.phi(low))
        right = spec.limit_right if high == math.inf else float(spec.phi(high))
        highs.append(max(left, right))
    return min(lows), max(highs)


def margin_bounds(loss, low=-math.inf, high=math.inf):
    """Return ``(a, b)``: the infimum and supremum of ``t * l'(t)`` for ``t`` in [low, high].

    Over the whole real line these are the constants of Corollary 2 in the paper:
    ``a = -W(1/e)`` for the logistic loss, ``-1`` for the hinge, ``-1/2`` for the
    squared hinge and the modified Huber loss, ``-1/e`` for the exponential loss and
    ``-1/4`` for the squared loss ``(1 - t)^2 / 2``; ``b`` is infinite for all of them.

    Parameters
    ----------
    loss : str
        One of ``"logistic"``, ``"hinge"``, ``"squared_hinge"``, ``"modified_huber"``,
        ``"exponential"``, ``"squared"``.
    low, high : float, default=-inf, inf
        The interval of margins to take the bounds over.

    Returns
    -------
    a, b : float
        Infimum and supremum of ``t * l'(t)``.

    Examples
    --------
    >>> from skpoison.objectives import margin_bounds
    >>> a, b = margin_bounds("logistic")
    >>> round(a, 4), b
    (-0.2785, inf)
    >>> margin_bounds("hinge", 2.0, 3.0)
    (0.0, 0.0)
    """
    if loss not in MARGIN_LOSSES:
        raise ValueError(
            f"Unknown margin loss {loss!r}; expected one of {sorted(MARGIN_LOSSES)}."
        )
    spec = MARGIN_LOSSES[loss]
    if low == -math.inf and high == math.inf:
        return spec.a, spec.b
    return _margin_union_bounds(spec, [(low, high)])


def softmax_bounds(n_classes, intervals=None):
    """Bounds of ``<h, softmax(h) - y>`` for ``n_classes`` classes.

    Without ``intervals`` these are ``(-W((c - 1)/e), inf)`` (paper, Example 3).  With
    ``intervals``, a list of ``(low, high)`` ranges that the logit differences
    ``h_k - h_i`` can take, the value is a convex combination of
    ``psi(d) = d e^d / (1/(c-1) + e^d)`` over those differences, so the bounds of
    ``psi`` over the union of ranges bound it.

    Examples
    --------
    >>> from skpoison.objectives import softmax_bounds
    >>> a, b = softmax_bounds(2)
    >>> round(a, 4), b
    (-0.2785, inf)
    """
    if n_classes < 2:
        raise ValueError(f"n_classes must be at least 2, got {n_classes}.")
    w = _lambert_w((n_classes - 1) / math.e)
    if intervals is None:
        return -w, math.inf
    beta = 1.0 / (n_classes - 1)

    def psi(d):
        d = np.asarray(d, dtype=float)
        with np.errstate(over="ignore", invalid="ignore"):
            # d e^d / (beta + e^d) = d / (beta e^-d + 1)
            return d / (beta * np.exp(-d) + 1.0)

    t_star = -1.0 - w
    lows, highs = [], []
    for low, high in intervals:
        low, high = min(low, high), max(low, high)
        lows.append(float(psi(np.clip(t_star, low, high))))
        highs.append(math.inf if high == math.inf else max(float(psi(low)), float(psi(high))))
    return min(lows), max(highs)


def squared_bounds(output_ranges, label_range, n_outputs):
    """Bounds of ``<h, h - y>`` for the squared loss ``0.5 * ||h - y||^2``.

    Parameters
    ----------
    output_ranges : array-like of shape (n_outputs, 2) or None
        Range of each output over the poison feature box; ``None`` for unbounded.
    label_range : (low, high)
        Range of the poison labels.
    n_outputs : int
        Number of outputs ``k``.

    Returns
    -------
    a, b : float
        Infimum and supremum over outputs and labels in their ranges; without
        ``output_ranges``, ``a = -k * max(y^2) / 4`` and ``b = inf``.

    Examples
    --------
    >>> from skpoison.objectives._margins import squared_bounds
    >>> squared_bounds(None, (-2.0, 1.0), 1)
    (-1.0, inf)
    """
    ylo, yhi = float(label_range[0]), float(label_range[1])
    if output_ranges is None:
        output_ranges = [(-math.inf, math.inf)] * n_outputs
    a = b = 0.0
    for lo, hi in output_ranges:
        a_k, b_k = math.inf, -math.inf
        for yv in (ylo, yhi):
            # h (h - y) is a convex parabola in h with its vertex at y / 2
            h_min = float(np.clip(yv / 2, lo, hi))
            a_k = min(a_k, h_min * (h_min - yv))
            for h in (lo, hi):
                b_k = max(b_k, math.inf if not np.isfinite(h) else h * (h - yv))
        a += a_k
        b += b_k
    return a, b
