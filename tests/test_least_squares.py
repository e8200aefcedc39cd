"""Second-order Gradient Canceling (Gauss-Newton, L-BFGS), the streamed clean pass and
the attack's memory.

The exact case is binary logistic regression without intercept on Gaussian data with
target ``-0.2 * w_clean`` (tau ~ 1.03 on 400 points): above tau the residual can vanish, below tau the
analyzer's lower bound is tight.
"""

import copy
import functools

import numpy as np
import pytest
import torch
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression

from skpoison import GradientCanceling
from skpoison.attacks._gradient_canceling import _mean_feature_std
from skpoison.attacks._least_squares import (
    ResidualMap,
    _free,
    _two_loop,
    lbfgs,
    levenberg_marquardt,
)
from skpoison.datasets import load_digits, make_gaussian
from skpoison.objectives import CleanGradient, as_objective
from skpoison._utils import _batches as _clean_gradient


@functools.lru_cache(maxsize=None)
def _exact(n_samples=400):
    X, y = make_gaussian(n_samples=n_samples, random_state=0)
    clean = LogisticRegression(fit_intercept=False).fit(X, y)
    target = copy.deepcopy(clean)
    target.coef_ = -0.2 * clean.coef_
    return X, y, target


@pytest.fixture
def exact():
    X, y, target = _exact()
    return X.copy(), y.copy(), FrozenEstimator(target)


def _residual_map(X, y, target, n_poison=40, batch_size=None, seed=0):
    objective = as_objective(target, device="cpu", dtype="float64")
    clean = CleanGradient(objective, X, y)
    rows = np.random.default_rng(seed).choice(len(X), n_poison, replace=False)
    base = clean.canceling_base(n_poison)
    rmap = ResidualMap(objective, objective.encode_labels(y[rows]), base, len(X), batch_size)
    to_relative = len(X) / ((len(X) + n_poison) * clean.norm)
    return rmap, objective.as_features(X[rows]).clone(), to_relative


def test_jacobian_products_match_finite_differences_and_each_other(exact):
    X, y, target = exact
    rmap, X_p, _ = _residual_map(X, y, target)
    gen = torch.Generator().manual_seed(0)
    V = torch.randn(X_p.shape, generator=gen, dtype=X_p.dtype)
    u = torch.randn(rmap.base.shape, generator=gen, dtype=X_p.dtype)
    h = 1e-6
    finite = (rmap.residual(X_p + h * V) - rmap.residual(X_p - h * V)) / (2 * h)
    Jv = rmap.jvp(X_p, V)
    np.testing.assert_allclose(Jv.numpy(), finite.numpy(), rtol=1e-6, atol=1e-10)
    # adjoint: <u, J v> = <J^T u, v>
    assert float(u @ Jv) == pytest.approx(float((rmap.vjp(X_p, u) * V).sum()), rel=1e-10)
    # J^T r is the gradient of 0.5 ||r||^2, and J J^T u streamed equals the two products
    r, g = rmap.residual_and_gradient(X_p)
    np.testing.assert_allclose(g.numpy(), rmap.vjp(X_p, r).numpy(), rtol=1e-10)
    np.testing.assert_allclose(
        rmap.normal_product(X_p, u).numpy(), rmap.jvp(X_p, rmap.vjp(X_p, u)).numpy(), rtol=1e-9
    )


def test_batched_products_equal_one_batch(exact):
    X, y, target = exact
    one, X_p, _ = _residual_map(X, y, target)
    batched, _, _ = _residual_map(X, y, target, batch_size=7)
    u = torch.linspace(-1, 1, one.base.numel(), dtype=X_p.dtype)
    np.testing.assert_allclose(batched.vjp(X_p, u).numpy(), one.vjp(X_p, u).numpy(), rtol=1e-10)
    np.testing.assert_allclose(
        batched.normal_product(X_p, u).numpy(), one.normal_product(X_p, u).numpy(), rtol=1e-9
    )
    for a, b in zip(batched.residual_and_gradient(X_p), one.residual_and_gradient(X_p)):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-9, atol=1e-14)


def test_residual_keeps_the_base_and_its_wider_type(exact):
    # r = base + sum / n, added into the scaled sum where the types agree; a
    # float64 base over a float32 objective still gives a float64 residual
    X, y, target = exact
    rmap, X_p, _ = _residual_map(X, y, target)
    base = rmap.base.clone()
    total = rmap.objective.loss_gradient_sum(X_p, rmap.y, encoded=True)
    np.testing.assert_array_equal(rmap.residual(X_p).numpy(), (base + total / len(X)).numpy())
    np.testing.assert_array_equal(rmap.base.numpy(), base.numpy())
    single = as_objective(target, device="cpu", dtype="float32")
    wide = ResidualMap(single, rmap.y, base, len(X))
    r = wide.residual(X_p.float())
    assert r.dtype == torch.float64
    total = single.loss_gradient_sum(X_p.float(), rmap.y, encoded=True)
    np.testing.assert_array_equal(r.numpy(), (base + total / len(X)).numpy())


@pytest.mark.parametrize("solver", [levenberg_marquardt, lbfgs])
def test_steps_reduce_the_objective_on_a_tiny_problem(exact, solver):
    X, y, target = exact
    rmap, X_p, to_relative = _residual_map(X, y, target, n_poison=400)
    start = float(rmap.residual(X_p).norm()) * to_relative
    steps = 5 if solver is levenberg_marquardt else 20  # L-BFGS counts evaluations
    result = solver(rmap, X_p, max_iter=steps, tol=0.0, to_relative=to_relative)
    assert result.best < 0.8 * start
    # the reported norm is the residual of the returned poison
    assert result.best == pytest.approx(float(rmap.residual(result.X).norm()) * to_relative)
    if solver is levenberg_marquardt:  # accepted steps only: never up
        assert np.all(np.diff(result.history) <= 0)


def test_two_loop_applies_the_bfgs_inverse_hessian_from_a_diagonal():
    """The recursion equals the explicit BFGS updates
    ``H <- (I - rho s y') H (I - rho y s') + rho s s'`` started at ``H0 = diag(d)``,
    and the result satisfies the secant equation ``H y = s`` of the newest pair."""
    rng = np.random.default_rng(0)
    n, k = 7, 4
    A = rng.normal(size=(n, n))
    hessian = A @ A.T + n * np.eye(n)  # pairs from a convex quadratic: <s, y> > 0
    steps = rng.normal(size=(k, n))
    pairs = [(torch.from_numpy(s), torch.from_numpy(hessian @ s), 1.0 / float(s @ hessian @ s))
             for s in steps]
    diagonal = rng.uniform(0.5, 2.0, size=n)
    H = np.diag(diagonal)
    for s, y, rho in pairs:
        s, y = s.numpy(), y.numpy()
        V = np.eye(n) - rho * np.outer(y, s)
        H = V.T @ H @ V + rho * np.outer(s, s)
    g = rng.normal(size=n)

    def inner(a, b):
        return float(a @ b)

    got = _two_loop(torch.from_numpy(g), pairs, torch.from_numpy(diagonal), inner)
    np.testing.assert_allclose(got.numpy(), H @ g, rtol=1e-10)
    s, y, _ = pairs[-1]
    np.testing.assert_allclose(
        _two_loop(y, pairs, torch.from_numpy(diagonal), inner).numpy(), s.numpy(), rtol=1e-10
    )


def test_lbfgs_reaches_a_stationary_point_of_the_boxed_problem(exact):
    """Projected L-BFGS: features held at the box move off it when the gradient
    points inwards, and the gradient over the free features vanishes (first-order
    optimality of the boxed least-squares problem, here below tau)."""
    X, y, target = exact
    rmap, X_p, to_relative = _residual_map(X, y, target, n_poison=40)
    low = torch.full((X.shape[1],), -0.5, dtype=X_p.dtype)
    high = -low
    start = torch.clamp(X_p, low, high)
    at_bound = (start <= low) | (start >= high)
    assert int(at_bound.sum()) > 100
    _, g = rmap.residual_and_gradient(start)
    start_norm = float((g * _free(start, g, low, high)).norm())
    result = lbfgs(rmap, start, max_iter=100, tol=0.0, to_relative=to_relative,
                   low=low, high=high)
    assert bool(((result.X >= low) & (result.X <= high)).all())
    r, g = rmap.residual_and_gradient(result.X)
    assert float((g * _free(result.X, g, low, high)).norm()) < 1e-4 * start_norm
    assert int((at_bound & (result.X > low) & (result.X < high)).sum()) > 50
    assert result.best == pytest.approx(float(r.norm()) * to_relative)
    assert np.all(np.diff(np.minimum.accumulate(result.history)) <= 0)


@pytest.mark.parametrize("epsilon_d", [0.1, 0.5])
def test_boxed_lbfgs_beats_adam_with_ten_times_the_steps(epsilon_d):
    """Digits pixels divided by 16 once more (values in [0, 1/16]) in the box [0, 1]:
    the many zero pixels sit at the lower bound. Below and above tau (0.19)."""
    X, y = load_digits(return_X_y=True)
    X, y = X[:300] / 16.0, y[:300]
    target = LogisticRegression(max_iter=200).fit(X, y)
    target.coef_ = -0.5 * target.coef_
    params = dict(epsilon_d=epsilon_d, feature_range=(0, 1), dtype="float64", random_state=0)
    adam = GradientCanceling(FrozenEstimator(target), max_iter=1000, **params).fit(X, y)
    fast = GradientCanceling(FrozenEstimator(target), max_iter=100, optimizer="lbfgs",
                             **params).fit(X, y)
    assert (adam.threshold_ > epsilon_d) == (epsilon_d == 0.1)
    assert fast.gradient_norm_ <= adam.gradient_norm_
    assert fast.X_poison_.min() >= 0 and fast.X_poison_.max() <= 1


@pytest.mark.parametrize("optimizer", ["gauss-newton", "lbfgs"])
def test_converged_result_cancels_the_gradient_above_tau(exact, optimizer):
    X, y, target = exact
    gc = GradientCanceling(
        target, epsilon_d=3.0, max_iter=60 if optimizer == "gauss-newton" else 400,
        optimizer=optimizer, dtype="float64", random_state=0, tol=1e-7,
    ).fit(X, y)
    assert gc.threshold_ < 3.0
    assert gc.converged_ and gc.gradient_norm_ <= 1e-7
    # recomputed from the stored poison by the analyzer, independently of the solver
    assert gc.gradient_norm() <= 1e-6


@pytest.mark.parametrize("optimizer", ["gauss-newton", "lbfgs"])
def test_below_tau_stops_at_the_lower_bound(exact, optimizer):
    X, y, target = exact
    gc = GradientCanceling(
        target, epsilon_d=0.5, max_iter=40 if optimizer == "gauss-newton" else 300,
        optimizer=optimizer, dtype="float64", random_state=0,
    ).fit(X, y)
    bound = gc.analyzer_.residual_lower_bound(0.5)
    assert bound > 0.1
    assert gc.gradient_norm_ >= bound * (1 - 1e-9)
    assert gc.gradient_norm_ <= 1.02 * bound  # tight for the exact case


@pytest.mark.parametrize("optimizer", ["gauss-newton", "lbfgs"])
def test_second_order_poison_stays_in_the_box(optimizer):
    X, y = load_digits(return_X_y=True)
    X = X[:300] / 16.0
    target = LogisticRegression(max_iter=200).fit(X, y[:300])
    target.coef_ = -0.5 * target.coef_
    gc = GradientCanceling(
        FrozenEstimator(target), epsilon_d=0.2, max_iter=5, optimizer=optimizer,
        feature_range=(0, 1), random_state=0,
    ).fit(X, y[:300])
    assert gc.X_poison_.min() >= 0 and gc.X_poison_.max() <= 1
    assert gc.gradient_norm_ < gc.history_[0]
    assert gc.gradient_norm() == pytest.approx(gc.gradient_norm_, rel=1e-3)


def test_streamed_clean_gradient_gives_the_same_tau(monkeypatch):
    X, y = load_digits(return_X_y=True)
    model = LogisticRegression(max_iter=300).fit(X, y)
    objective = as_objective(model, device="cpu", dtype="float64")
    whole = CleanGradient(objective, X, y, batch_size=len(X))
    monkeypatch.setattr(_clean_gradient, "_CLEAN_BATCH_ELEMENTS", 64 * 100)  # 100 rows
    assert _clean_gradient.clean_batch_rows(len(X), X.shape[1]) == 100
    for streamed in (CleanGradient(objective, X, y), CleanGradient(objective, X, y, batch_size=7)):
        np.testing.assert_allclose(streamed.loss_sum.numpy(), whole.loss_sum.numpy(), rtol=1e-10, atol=1e-12)
        assert streamed.threshold() == pytest.approx(whole.threshold(), rel=1e-10)


def test_default_clean_batches_are_bounded():
    assert _clean_gradient.clean_batch_rows(60000, 784) < 60000
    assert _clean_gradient.clean_batch_rows(100, 784) == 100
    assert _clean_gradient.clean_batch_rows(60000, 784, batch_size=32) == 32


def test_streamed_feature_scale_equals_numpy():
    X = np.random.default_rng(0).normal(size=(1001, 7)) * np.arange(1, 8) + 5
    assert _mean_feature_std(X, rows=64) == pytest.approx(float(np.mean(np.std(X, axis=0))))


def _added_peak_kib(fn):
    def field(name):
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith(name))

    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")
    before = field("VmRSS:")
    fn()
    return field("VmHWM:") - before


def test_attack_peak_memory_does_not_grow_with_the_clean_size(monkeypatch):
    try:
        _added_peak_kib(lambda: None)
    except (OSError, StopIteration):
        pytest.skip("needs Linux /proc/self/clear_refs to measure peak memory")
    monkeypatch.setattr(_clean_gradient, "_CLEAN_BATCH_ELEMENTS", 2**15)
    rng = np.random.default_rng(0)
    d, n_poison = 100, 64
    X_fit = rng.normal(size=(300, d))
    target = FrozenEstimator(LogisticRegression(max_iter=20).fit(X_fit, rng.integers(0, 3, 300)))
    peaks = {}
    for n in (2000, 32000):
        X = rng.normal(size=(n, d))  # float64: the attack runs in float32
        y = rng.integers(0, 3, n)
        for batch_size in (None, 16):
            gc = GradientCanceling(target, epsilon_d=n_poison / n, max_iter=3,
                                   batch_size=batch_size, random_state=0, device="cpu")
            gc.fit(X, y)  # warm up allocator pools and lazy imports
            peaks[n, batch_size] = _added_peak_kib(lambda: gc.fit(X, y))
        data_kib = X.nbytes / 1024
    for batch_size in (None, 16):
        growth = peaks[32000, batch_size] - peaks[2000, batch_size]
        # a copy of X (or of X as float32) would add at least half the data
        assert growth < 0.2 * data_kib, (peaks, data_kib)
