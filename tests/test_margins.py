"""The margin-loss table and the bounds of ``t * l'(t)`` that the threshold uses.

Every closed form is checked against numbers computed independently: ``l'`` comes
from torch autograd of the torch loss (never from the table's ``phi``), minimised over
a fine grid and refined with :func:`scipy.optimize.minimize_scalar`.
"""

import math

import numpy as np
import pytest
import torch
from scipy.optimize import minimize, minimize_scalar
from scipy.special import lambertw

from skpoison.objectives import MARGIN_LOSSES, margin_bounds, softmax_bounds

LOSSES = sorted(MARGIN_LOSSES)
SMOOTH = {"logistic", "exponential", "squared", "squared_hinge", "modified_huber"}

# known closed forms (paper, Corollary 2 and Example 2), written out independently
W1E = float(np.real(lambertw(1.0 / math.e)))
EXPECTED_A = {
    "logistic": -W1E,
    "hinge": -1.0,
    "squared_hinge": -0.5,
    "modified_huber": -0.5,
    "exponential": -1.0 / math.e,
    "squared": -0.25,
}
EXPECTED_T_STAR = {
    "logistic": 1.0 + W1E,
    "hinge": 1.0,
    "squared_hinge": 0.5,
    "modified_huber": 0.5,
    "exponential": 1.0,
    "squared": 0.5,
}


def t_dl(loss, t):
    """``t * l'(t)`` with ``l'`` from torch autograd of the table's torch loss."""
    tt = torch.as_tensor(np.atleast_1d(np.asarray(t, dtype=float))).requires_grad_(True)
    (grad,) = torch.autograd.grad(MARGIN_LOSSES[loss].loss(tt).sum(), tt)
    out = (tt * grad).detach().numpy()
    return out if np.ndim(t) else float(out[0])


def numeric_min(loss, low=-30.0, high=30.0, n=600_001):
    """Grid minimum of ``t l'(t)`` on [low, high], refined by a bounded scalar search."""
    grid = np.linspace(low, high, n)
    values = t_dl(loss, grid)
    i = int(np.argmin(values))
    best_t, best = grid[i], values[i]
    lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, n - 1)]
    if hi > lo:
        res = minimize_scalar(
            lambda s: t_dl(loss, s), bounds=(lo, hi), method="bounded", options={"xatol": 1e-12}
        )
        if res.fun < best:
            best_t, best = float(res.x), float(res.fun)
    return best_t, best


@pytest.mark.parametrize("loss", LOSSES)
def test_closed_form_a_matches_numeric_minimum(loss):
    spec = MARGIN_LOSSES[loss]
    t_num, a_num = numeric_min(loss)
    tol = 1e-9 if loss in SMOOTH else 1e-4  # the hinge's infimum sits on its kink
    assert spec.a == pytest.approx(a_num, abs=tol)
    assert spec.a == pytest.approx(EXPECTED_A[loss], abs=1e-12)
    # a is an infimum: no margin beats it
    assert a_num >= spec.a - 1e-12
    assert spec.t_star == pytest.approx(t_num, abs=1e-4)
    assert spec.t_star == pytest.approx(EXPECTED_T_STAR[loss], abs=1e-12)
    # phi at t_star attains (or, for the hinge, reaches from the left) the infimum
    assert t_dl(loss, spec.t_star) == pytest.approx(spec.a, abs=1e-12)


@pytest.mark.parametrize("loss", LOSSES)
def test_b_is_infinite(loss):
    spec = MARGIN_LOSSES[loss]
    assert spec.b == math.inf
    assert margin_bounds(loss)[1] == math.inf
    # the supremum really is unbounded: t l'(t) grows without bound to the left
    far = t_dl(loss, np.array([-10.0, -100.0, -1000.0]))
    assert np.all(np.diff(far) > 0)
    assert far[-1] > 500


@pytest.mark.parametrize("loss", LOSSES)
def test_phi_agrees_with_autograd(loss):
    spec = MARGIN_LOSSES[loss]
    t = np.linspace(-5, 5, 2001)
    t = t[np.abs(np.abs(t) - 1.0) > 1e-9]  # the kinks of hinge losses
    np.testing.assert_allclose(spec.phi(t), t_dl(loss, t), rtol=1e-12, atol=1e-12)
    # limit on the right
    right = float(t_dl(loss, 200.0))
    if math.isinf(spec.limit_right):
        assert right > 1e3
    else:
        assert right == pytest.approx(spec.limit_right, abs=1e-12)


@pytest.mark.parametrize("loss", LOSSES)
def test_margin_bounds_over_whole_line(loss):
    assert margin_bounds(loss) == (MARGIN_LOSSES[loss].a, math.inf)
    assert margin_bounds(loss, -math.inf, math.inf) == (MARGIN_LOSSES[loss].a, math.inf)


INTERVALS = [
    (-3.0, -0.5),
    (-1.5, 0.2),
    (0.0, 0.4),
    (0.3, 0.9),
    (0.6, 1.4),
    (1.1, 3.0),
    (2.0, 7.0),
    (-2.0, 6.0),
    (0.2, 0.2),
]


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("low, high", INTERVALS)
def test_margin_bounds_on_intervals_match_dense_grid(loss, low, high):
    a, b = margin_bounds(loss, low, high)
    grid = np.linspace(low, high, 200_001)
    values = t_dl(loss, grid)
    tol = 1e-8 if loss in SMOOTH else 1e-4
    assert b == pytest.approx(values.max(), abs=1e-12)  # sup at an end point
    assert a == pytest.approx(values.min(), abs=tol)
    assert a <= values.min() + 1e-12
    # the order of the end points does not matter
    assert margin_bounds(loss, high, low) == pytest.approx((a, b))


@pytest.mark.parametrize("loss", LOSSES)
def test_margin_bounds_half_lines(loss):
    spec = MARGIN_LOSSES[loss]
    a, b = margin_bounds(loss, -math.inf, 0.0)
    assert b == math.inf
    grid = np.linspace(-50, 0, 100_001)
    assert a == pytest.approx(t_dl(loss, grid).min(), abs=1e-12)

    a, b = margin_bounds(loss, 2.0, math.inf)
    values = t_dl(loss, np.linspace(2.0, 200.0, 100_001))
    assert a == pytest.approx(min(values.min(), spec.limit_right), abs=1e-9)
    expected_sup = math.inf if math.isinf(spec.limit_right) else max(values.max(), 0.0)
    assert b == pytest.approx(expected_sup, abs=1e-12)


def test_margin_bounds_unknown_loss():
    with pytest.raises(ValueError, match="logistic"):
        margin_bounds("perceptron")


# --------------------------------------------------------------------- softmax


def softmax_value(h, label=0):
    """``<h, softmax(h) - y>`` for one-hot ``y`` (torch, independent of the package)."""
    h = torch.as_tensor(h, dtype=torch.float64)
    y = torch.zeros_like(h)
    y[..., label] = 1.0
    return (h * (torch.softmax(h, dim=-1) - y)).sum(-1).numpy()


@pytest.mark.parametrize("c", [2, 3, 10])
def test_softmax_bound_never_beaten_and_approached(c):
    a, b = softmax_bounds(c)
    assert b == math.inf
    assert a == pytest.approx(-float(np.real(lambertw((c - 1) / math.e))), abs=1e-14)
    rng = np.random.RandomState(c)
    # never beaten on random logits (of several scales) and labels
    for scale in (0.3, 1.0, 3.0, 10.0):
        H = scale * rng.normal(size=(20_000, c))
        for label in (0, c - 1):
            assert softmax_value(H, label).min() >= a - 1e-12
    # approached by numeric minimisation from random starts
    best = math.inf
    for _ in range(5):
        res = minimize(
            lambda h: float(softmax_value(h)),
            rng.normal(size=c),
            method="BFGS",
            options={"gtol": 1e-10},
        )
        best = min(best, res.fun)
    assert best >= a - 1e-12
    assert best == pytest.approx(a, abs=1e-7)
    # the bound is attained at h = (0, d*, ..., d*) (paper, proof of Example 3)
    grid = np.linspace(-8, 4, 120_001)
    H = np.zeros((len(grid), c))
    H[:, 1:] = grid[:, None]
    assert softmax_value(H).min() == pytest.approx(a, abs=1e-8)


def test_softmax_two_classes_is_logistic():
    assert softmax_bounds(2)[0] == pytest.approx(margin_bounds("logistic")[0], abs=1e-15)
    assert softmax_bounds(2)[0] == pytest.approx(-W1E, abs=1e-15)


@pytest.mark.parametrize("c", [2, 3, 10])
@pytest.mark.parametrize("interval", [(-6.0, 6.0), (-1.0, 3.0), (0.5, 2.0), (-9.0, -4.0)])
def test_softmax_bounds_on_intervals(c, interval):
    # with all differences h_k - h_0 equal to d, <h, p - y> is psi(d): a grid over d in
    # the interval gives the same infimum and supremum (sup at an end point)
    a, b = softmax_bounds(c, [interval])
    grid = np.linspace(*interval, 200_001)
    H = np.zeros((len(grid), c))
    H[:, 1:] = grid[:, None]
    values = softmax_value(H)
    assert a == pytest.approx(values.min(), abs=1e-9)
    assert b == pytest.approx(values.max(), abs=1e-9)
    # over the whole line the interval form reduces to the closed form
    whole = softmax_bounds(c, [(-math.inf, math.inf)])
    assert whole[0] == pytest.approx(softmax_bounds(c)[0], abs=1e-14)
    assert whole[1] == math.inf


def test_softmax_bounds_bad_classes():
    with pytest.raises(ValueError, match="at least 2"):
        softmax_bounds(1)
