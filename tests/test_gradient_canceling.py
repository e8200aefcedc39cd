"""Tests of GradientCanceling (Algorithm 1): what it reaches, how, and its contract.

The reference problem is the issue's exact case: binary logistic regression without
intercept on the 10-d Gaussian data, target ``-0.2 * w_clean`` (tau ~ 2.2, exact).
Above tau the attack must reach a vanishing gradient and a victim retrained on clean
plus poison must land on the target; below tau it must stop at the analyzer's bound.
"""

import copy
import functools
import re
import warnings

import numpy as np
import pytest
import torch
from scipy.special import expit
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import (
    LogisticRegression,
    Ridge,
    RidgeClassifier,
    SGDClassifier,
)
from sklearn.svm import LinearSVC
from sklearn.utils._param_validation import InvalidParameterError

from skpoison import GradientCanceling, PoisonabilityAnalyzer
from skpoison.datasets import load_digits, make_gaussian
from skpoison.objectives._base import Objective
from skpoison.targets import LabelFlipTarget, ScaledTarget
from _gradpc_old import old_gradpc

# ------------------------------------------------------------------------ fixtures


@functools.lru_cache(maxsize=None)
def _exact_problem(n_samples=1000):
    X, y = make_gaussian(n_samples=n_samples, random_state=0)
    clean = LogisticRegression(fit_intercept=False).fit(X, y)
    target = copy.deepcopy(clean)
    target.coef_ = -0.2 * clean.coef_
    return X, y, target


@pytest.fixture
def exact():
    """The issue's recipe: 1000 Gaussian points, frozen target -0.2 * w_clean."""
    X, y, target = _exact_problem()
    return X.copy(), y.copy(), FrozenEstimator(target)


@pytest.fixture
def small_exact():
    """The same construction on 200 points (for the cheaper contract checks)."""
    X, y, target = _exact_problem(200)
    return X.copy(), y.copy(), FrozenEstimator(target)


@functools.lru_cache(maxsize=None)
def _small_gaussian():
    return make_gaussian(n_samples=200, n_features=5, random_state=0)


@pytest.fixture
def gaussian5():
    X, y = _small_gaussian()
    return X.copy(), y.copy()


@functools.lru_cache(maxsize=None)
def _exact_tau():
    X, y, target = _exact_problem()
    analyzer = PoisonabilityAnalyzer(FrozenEstimator(target), dtype="float64").fit(X, y)
    return analyzer.threshold_, analyzer.exact_


def _lr_relative_norm(X, y, w, X_p, y_p, C=1.0):
    """Independent numpy reference of ||g(chi)|| / ||g(mu)|| for LR without intercept."""

    def loss_grad_sum(A, b):
        s = 2.0 * b - 1.0
        margins = s * (A @ w)
        return -(A * (s * expit(-margins))[:, None]).sum(axis=0)

    n, m = len(X), len(X_p)
    clean = loss_grad_sum(X, y) + w / C
    mixed = (clean + loss_grad_sum(X_p, y_p)) / (n + m)
    return np.linalg.norm(mixed) / np.linalg.norm(clean / n)


# ------------------------------------------------------------ the exact case


def test_exact_case_threshold():
    tau, exact_ = _exact_tau()
    assert exact_ is True
    assert tau == pytest.approx(2.2, abs=0.05)


def test_above_tau_reaches_target_and_retraining_lands_on_it(exact):
    X, y, target = exact
    tau, _ = _exact_tau()
    gc = GradientCanceling(
        target, epsilon_d=1.3 * tau, max_iter=2000, dtype="float64", random_state=0
    ).fit(X, y)
    assert gc.gradient_norm_ < 1e-5
    # tol=1e-6 is met after ~420 steps (a shorter max_iter anneals the cosine step
    # size before convergence: max_iter=500 ends near 4e-4)
    assert gc.converged_ and gc.n_iter_ < 800
    victim = LogisticRegression(fit_intercept=False, tol=1e-10, max_iter=10000)
    victim.fit(np.vstack([X, gc.X_poison_]), np.concatenate([y, gc.y_poison_]))
    w_target = target.estimator.coef_
    assert np.mean(victim.predict(X) == target.predict(X)) == 1.0
    # the target predicts the opposite of the clean labels: retraining obeyed the poison
    assert np.mean(victim.predict(X) == y) < 0.2
    rel = np.linalg.norm(victim.coef_ - w_target) / np.linalg.norm(w_target)
    assert rel < 1e-3


def test_below_tau_stops_at_the_lower_bound(exact):
    X, y, target = exact
    tau, _ = _exact_tau()
    gc = GradientCanceling(
        target, epsilon_d=0.8 * tau, max_iter=1000, dtype="float64", random_state=0
    ).fit(X, y)
    bound = gc.analyzer_.residual_lower_bound(gc.n_poison_ / len(X))
    assert bound > 0.05
    # no poison beats the bound, and GC gets to it (the bound is tight: exact_ is True)
    assert gc.gradient_norm_ >= bound * (1 - 1e-6)
    assert gc.gradient_norm_ <= bound * 1.01
    assert not gc.converged_


def test_gradient_norm_crosses_at_tau(small_exact):
    """The final norm is ~0 just above tau and bounded away from 0 just below."""
    X, y, target = small_exact
    tau = PoisonabilityAnalyzer(target, dtype="float64").fit(X, y).threshold_
    params = dict(dtype="float64", random_state=0)
    above = GradientCanceling(target, epsilon_d=1.15 * tau, max_iter=1500, **params).fit(X, y)
    below = GradientCanceling(target, epsilon_d=0.9 * tau, max_iter=200, **params).fit(X, y)
    assert above.gradient_norm_ < 1e-5
    bound = below.analyzer_.residual_lower_bound(below.n_poison_ / len(X))
    assert bound > 0.03
    assert below.gradient_norm_ >= bound * (1 - 1e-6)


# --------------------------------------------------------------- one pass, two passes


def _svc_hinge_target(X, y):
    return FrozenEstimator(LinearSVC(loss="hinge", max_iter=20000, random_state=0).fit(X, y))


def _gradpc_lr_target(X, y):
    return old_gradpc(LogisticRegression(), epsilon_w=0.5, random_state=0)


@pytest.mark.parametrize("make_target", [_gradpc_lr_target, _svc_hinge_target])
def test_batched_two_pass_equals_one_pass(gaussian5, make_target):
    X, y = gaussian5
    target = make_target(X, y)
    params = dict(epsilon_d=0.13, max_iter=40, dtype="float64", random_state=0)
    one = GradientCanceling(target, **params).fit(X, y)
    assert one.n_poison_ == 26
    # the poison moved, so the comparison is not between two initialisations
    assert one.history_[-1] < 0.9 * one.history_[0]
    for k in (1, 5, 7, 26, 100):
        two = GradientCanceling(target, batch_size=k, **params).fit(X, y)
        np.testing.assert_allclose(two.history_, one.history_, rtol=1e-7, atol=1e-10)
        np.testing.assert_allclose(two.X_poison_, one.X_poison_, rtol=1e-7, atol=1e-9)
        assert two.gradient_norm_ == pytest.approx(one.gradient_norm_, rel=1e-7)


def test_batched_two_pass_equals_one_pass_cross_entropy():
    X, y = _digits300()
    multinomial = old_gradpc(LogisticRegression(max_iter=1000), epsilon_w=0.05, max_iter=30,
                         random_state=0)
    X_net, y_net, net = _digits_net()
    for target, X_, y_ in ((multinomial, X, y), (FrozenEstimator(net), X_net, y_net)):
        params = dict(epsilon_d=0.1, max_iter=15, dtype="float64", random_state=0)
        one = GradientCanceling(target, **params).fit(X_, y_)
        assert one.gradient_norm_ < one.history_[0]
        two = GradientCanceling(target, batch_size=7, **params).fit(X_, y_)
        np.testing.assert_allclose(two.history_, one.history_, rtol=1e-7, atol=1e-10)
        np.testing.assert_allclose(two.X_poison_, one.X_poison_, rtol=1e-7, atol=1e-9)


# ---------------------------------------------------------------- projection, clipping


def test_feature_range_keeps_poison_in_the_box(gaussian5):
    X, y = gaussian5
    target = LabelFlipTarget(LogisticRegression(), flip_fraction=0.5, random_state=0)
    params = dict(epsilon_d=0.3, max_iter=150, random_state=0, lr=0.5)
    free = GradientCanceling(target, **params).fit(X, y)
    low, high = X.min(axis=0) - 0.05, X.max(axis=0) + 0.05
    # without the box the poison leaves it, so the check below is not vacuous
    assert np.any(free.X_poison_ < low) or np.any(free.X_poison_ > high)
    boxed = GradientCanceling(target, feature_range=(low, high), **params).fit(X, y)
    assert np.all(boxed.X_poison_ >= low - 1e-6)
    assert np.all(boxed.X_poison_ <= high + 1e-6)
    # the box is used by tau too: the same threshold as a boxed analyzer
    analyzer = PoisonabilityAnalyzer(target, feature_range=(low, high)).fit(X, y)
    assert boxed.threshold_ == pytest.approx(analyzer.threshold_, rel=1e-6)


def test_feature_range_scalar_box(gaussian5):
    X, y = gaussian5
    target = LabelFlipTarget(LogisticRegression(), flip_fraction=0.5, random_state=0)
    lo, hi = float(X.min()), float(X.max())
    gc = GradientCanceling(
        target, epsilon_d=0.3, max_iter=100, lr=1.0, feature_range=(lo, hi), random_state=0
    ).fit(X, y)
    assert gc.X_poison_.min() >= lo - 1e-6 and gc.X_poison_.max() <= hi + 1e-6


def test_clean_data_outside_feature_range_raises(gaussian5):
    X, y = gaussian5
    target = LabelFlipTarget(LogisticRegression(), flip_fraction=0.5, random_state=0)
    gc = GradientCanceling(target, epsilon_d=0.3, max_iter=5, feature_range=(-1.0, 1.0))
    with pytest.raises(ValueError, match="feature_range"):
        gc.fit(X, y)


def test_clip_data_keeps_poison_within_clean_range(gaussian5):
    X, y = gaussian5
    target = LabelFlipTarget(LogisticRegression(), flip_fraction=0.5, random_state=0)
    params = dict(epsilon_d=0.3, max_iter=150, random_state=0, lr=0.5)
    low, high = X.min(axis=0), X.max(axis=0)
    free = GradientCanceling(target, **params).fit(X, y)
    assert np.any(free.X_poison_ < low) or np.any(free.X_poison_ > high)
    clipped = GradientCanceling(target, clip="data", **params).fit(X, y)
    assert np.all(clipped.X_poison_ >= low - 1e-6)
    assert np.all(clipped.X_poison_ <= high + 1e-6)
    # some poison sits on the boundary: the projection was active
    on_edge = np.isclose(clipped.X_poison_, low, atol=1e-6) | np.isclose(
        clipped.X_poison_, high, atol=1e-6
    )
    assert on_edge.any()


def test_clip_data_intersects_feature_range(gaussian5):
    X, y = gaussian5
    target = LabelFlipTarget(LogisticRegression(), flip_fraction=0.5, random_state=0)
    low, high = X.min(axis=0), X.max(axis=0)
    wide = (low - 10.0, high + 0.5 * (high - low))
    gc = GradientCanceling(
        target, epsilon_d=0.3, max_iter=150, lr=0.5, clip="data", feature_range=wide,
        random_state=0,
    ).fit(X, y)
    assert np.all(gc.X_poison_ >= low - 1e-6) and np.all(gc.X_poison_ <= high + 1e-6)


# -------------------------------------------------------------- stopping, warm start


def test_tol_stops_early(small_exact):
    X, y, target = small_exact
    tau = PoisonabilityAnalyzer(target).fit(X, y).threshold_
    tol = 1e-2
    gc = GradientCanceling(
        target, epsilon_d=1.5 * tau, max_iter=2000, tol=tol, random_state=0
    ).fit(X, y)
    assert gc.converged_
    assert gc.n_iter_ < 2000
    assert gc.n_iter_ == len(gc.history_)
    assert gc.history_[-1] <= tol
    # it stopped at the first step at or below tol
    assert np.all(gc.history_[:-1] > tol)
    assert gc.gradient_norm_ == pytest.approx(gc.history_[-1])


def test_not_converged_runs_max_iter(small_exact):
    X, y, target = small_exact
    gc = GradientCanceling(target, epsilon_d=0.5, max_iter=30, random_state=0).fit(X, y)
    assert not gc.converged_
    assert gc.n_iter_ == 30 == len(gc.history_)
    assert gc.gradient_norm_ == pytest.approx(gc.history_.min())


def test_warm_start_continues_from_previous_poison(small_exact):
    X, y, target = small_exact
    gc = GradientCanceling(
        target, epsilon_d=1.0, max_iter=60, warm_start=True, dtype="float64", random_state=0
    ).fit(X, y)
    first_norm, first_poison = gc.gradient_norm_, gc.X_poison_.copy()
    first_indices = gc.init_indices_.copy()
    assert first_norm < 0.9 * gc.history_[0]
    gc.fit(X, y)
    assert gc.history_[0] == pytest.approx(first_norm, rel=1e-6)
    assert gc.gradient_norm_ <= first_norm
    np.testing.assert_array_equal(gc.init_indices_, first_indices)
    # a cold start begins again from the clean subsample, far above first_norm
    cold = GradientCanceling(
        target, epsilon_d=1.0, max_iter=60, dtype="float64", random_state=0
    ).fit(X, y)
    assert cold.history_[0] > 2 * first_norm
    assert not np.allclose(first_poison, X[first_indices])


def test_warm_start_with_new_budget_restarts(small_exact):
    X, y, target = small_exact
    gc = GradientCanceling(
        target, epsilon_d=1.0, max_iter=30, warm_start=True, random_state=0
    ).fit(X, y)
    gc.set_params(epsilon_d=0.5)
    gc.fit(X, y)
    assert gc.n_poison_ == 100
    # the old poison has the wrong size: the fit is the cold one at the new budget
    cold = GradientCanceling(target, epsilon_d=0.5, max_iter=30, random_state=0).fit(X, y)
    np.testing.assert_array_equal(gc.init_indices_, cold.init_indices_)
    np.testing.assert_allclose(gc.X_poison_, cold.X_poison_, rtol=1e-12)
    np.testing.assert_allclose(gc.history_, cold.history_, rtol=1e-12)


# ---------------------------------------------------------- initialisation, budget


def test_reproducible_under_random_state(small_exact):
    X, y, target = small_exact
    params = dict(epsilon_d=0.5, max_iter=20)
    a = GradientCanceling(target, random_state=3, **params).fit(X, y)
    b = GradientCanceling(target, random_state=3, **params).fit(X, y)
    c = GradientCanceling(target, random_state=4, **params).fit(X, y)
    np.testing.assert_array_equal(a.init_indices_, b.init_indices_)
    np.testing.assert_array_equal(a.X_poison_, b.X_poison_)
    np.testing.assert_array_equal(a.history_, b.history_)
    assert not np.array_equal(a.init_indices_, c.init_indices_)
    assert not np.allclose(a.X_poison_, c.X_poison_)


def test_init_indices_are_clean_rows_and_labels_are_kept(small_exact):
    X, y, target = small_exact
    gc = GradientCanceling(target, epsilon_d=0.4, max_iter=1, random_state=0).fit(X, y)
    assert gc.init_indices_.shape == (gc.n_poison_,)
    assert np.all((gc.init_indices_ >= 0) & (gc.init_indices_ < len(X)))
    np.testing.assert_array_equal(gc.y_poison_, y[gc.init_indices_])
    # a single step evaluates only the initial poison, which is the clean rows
    np.testing.assert_allclose(gc.X_poison_, X[gc.init_indices_], rtol=1e-6, atol=1e-6)
    # without replacement while the budget fits in the data
    assert len(np.unique(gc.init_indices_)) == gc.n_poison_
    # after optimisation the labels are still those of the initial rows
    gc.set_params(max_iter=20).fit(X, y)
    np.testing.assert_array_equal(gc.y_poison_, y[gc.init_indices_])
    assert not np.allclose(gc.X_poison_, X[gc.init_indices_])


def test_budget_above_one_samples_with_replacement(small_exact):
    X, y, target = small_exact
    gc = GradientCanceling(target, epsilon_d=2.5, max_iter=1, random_state=0).fit(X, y)
    assert gc.n_poison_ == 500
    np.testing.assert_array_equal(gc.y_poison_, y[gc.init_indices_])


@pytest.mark.parametrize("epsilon_d", [0.01, 0.123, 0.3333, 0.777, 1.0])
def test_n_poison_is_rounded_budget(small_exact, epsilon_d):
    X, y, target = small_exact
    gc = GradientCanceling(target, epsilon_d=epsilon_d, max_iter=1, random_state=0)
    gc.fit(X, y)
    assert gc.n_poison_ == round(epsilon_d * len(X))
    assert gc.X_poison_.shape == (gc.n_poison_, X.shape[1])
    assert gc.y_poison_.shape == (gc.n_poison_,)


def test_fewer_than_one_poison_point_raises(small_exact):
    X, y, target = small_exact
    with pytest.raises(ValueError, match="poison points"):
        GradientCanceling(target, epsilon_d=0.002, max_iter=5).fit(X, y)


@pytest.mark.parametrize("epsilon_d", [0.0, -0.5])
def test_non_positive_epsilon_raises(small_exact, epsilon_d):
    X, y, target = small_exact
    with pytest.raises(InvalidParameterError, match="epsilon_d"):
        GradientCanceling(target, epsilon_d=epsilon_d).fit(X, y)
    assert issubclass(InvalidParameterError, ValueError)


def _bad_inputs(X, y):
    nan_X = X.copy()
    nan_X[3, 1] = np.nan
    return {
        "unknown-label": (X, np.where(y == 1, 2, y), ValueError, "does not know"),
        "feature-count": (X[:, :-1], y, ValueError, "features"),
        "non-finite": (nan_X, y, ValueError, "NaN"),
        "length": (X, y[:-1], ValueError, "inconsistent"),
        "empty": (X[:0], y[:0], ValueError, "0 sample"),
    }


@pytest.mark.parametrize(
    "case", ["unknown-label", "feature-count", "non-finite", "length", "empty"]
)
def test_bad_input_raises_clear_errors(small_exact, case):
    X, y, target = small_exact
    X_bad, y_bad, error, message = _bad_inputs(X, y)[case]
    with pytest.raises(error, match=message):
        GradientCanceling(target, epsilon_d=0.3, max_iter=3).fit(X_bad, y_bad)


def test_unfitted_plain_target_says_what_to_pass(small_exact):
    from sklearn.exceptions import NotFittedError

    X, y, _ = small_exact
    with pytest.raises(NotFittedError, match="FrozenEstimator"):
        GradientCanceling(LogisticRegression(), epsilon_d=0.3, max_iter=3).fit(X, y)


# ----------------------------------------------------------------- non-finite steps


@pytest.mark.parametrize("optimizer", ["adam", "lbfgs"])
def test_non_finite_gradient_stops_with_best_poison(small_exact, monkeypatch, optimizer):
    X, y, target = small_exact
    original = Objective.poison_feature_gradient
    calls = {"n": 0}
    fail_at = 6

    def poisoned(self, X_p, y_p, direction, **kwargs):
        grad_x, gradient_sum = original(self, X_p, y_p, direction, **kwargs)
        calls["n"] += 1
        if calls["n"] > fail_at:
            grad_x = grad_x.clone()
            grad_x[0, 0] = float("nan")
        return grad_x, gradient_sum

    monkeypatch.setattr(Objective, "poison_feature_gradient", poisoned)
    gc = GradientCanceling(target, epsilon_d=1.0, max_iter=50, dtype="float64", random_state=0,
                           optimizer=optimizer)
    with pytest.raises(FloatingPointError, match=rf"iteration {fail_at}\b"):
        gc.fit(X, y)
    monkeypatch.undo()
    assert len(gc.history_) == fail_at
    assert gc.n_iter_ == fail_at
    assert not gc.converged_
    assert np.all(np.isfinite(gc.X_poison_))
    # X_poison_ is the best finite iterate, and the reported norm is its norm
    assert gc.gradient_norm_ == pytest.approx(gc.history_.min())
    assert gc.gradient_norm_ < gc.history_[0]
    assert gc.analyzer_.gradient_norm(gc.X_poison_, gc.y_poison_) == pytest.approx(
        gc.gradient_norm_, rel=1e-6
    )


def test_overflowing_step_raises_floating_point_error(gaussian5):
    X, y = gaussian5
    target = LabelFlipTarget(LogisticRegression(), flip_fraction=0.5, random_state=0)
    gc = GradientCanceling(target, epsilon_d=1.0, max_iter=20, lr=1e38, random_state=0)
    with pytest.raises(FloatingPointError, match=r"iteration \d+") as info:
        gc.fit(X, y)
    step = int(re.search(r"iteration (\d+)", str(info.value)).group(1))
    assert step >= 1
    assert "X_poison_" in str(info.value)
    assert np.all(np.isfinite(gc.X_poison_))
    assert len(gc.history_) == step
    assert gc.gradient_norm_ == pytest.approx(gc.history_.min())


# ------------------------------------------------------------------ units, threshold


def test_history_units_are_the_analyzers(small_exact):
    X, y, target = small_exact
    gc = GradientCanceling(
        target, epsilon_d=0.5, max_iter=40, dtype="float64", random_state=0
    ).fit(X, y)
    assert gc.analyzer_.gradient_norm(gc.X_poison_, gc.y_poison_) == pytest.approx(
        gc.gradient_norm_, rel=1e-6
    )
    assert gc.gradient_norm() == pytest.approx(gc.gradient_norm_, rel=1e-6)
    # the first entry is the norm of the initial subsample
    assert gc.history_[0] == pytest.approx(
        gc.analyzer_.gradient_norm(X[gc.init_indices_], y[gc.init_indices_]), rel=1e-6
    )
    # and both match an independent numpy computation of ||g(chi)|| / ||g(mu)||
    w = target.estimator.coef_.ravel()
    reference = _lr_relative_norm(X, y, w, gc.X_poison_, gc.y_poison_)
    assert gc.gradient_norm_ == pytest.approx(reference, rel=1e-6)
    reference0 = _lr_relative_norm(X, y, w, X[gc.init_indices_], y[gc.init_indices_])
    assert gc.history_[0] == pytest.approx(reference0, rel=1e-6)


def test_threshold_equals_analyzer(gaussian5):
    X, y = gaussian5
    target = old_gradpc(LogisticRegression(), epsilon_w=0.5, random_state=0)
    gc = GradientCanceling(target, epsilon_d=0.2, max_iter=3, random_state=0).fit(X, y)
    analyzer = PoisonabilityAnalyzer(target).fit(X, y)
    assert gc.threshold_ == analyzer.threshold_
    assert gc.threshold_ == gc.analyzer_.threshold_
    assert np.isfinite(gc.threshold_) and gc.threshold_ > 0
    np.testing.assert_allclose(gc.target_.coef_, analyzer.target_.coef_)


# --------------------------------------------------------- inputs and targets intact


def test_inputs_and_frozen_target_are_not_modified(small_exact):
    X, y, target = small_exact
    X0, y0 = X.copy(), y.copy()
    coef0 = target.estimator.coef_.copy()
    gc = GradientCanceling(target, epsilon_d=0.5, max_iter=30, random_state=0)
    gc.fit_resample(X, y)
    np.testing.assert_array_equal(X, X0)
    np.testing.assert_array_equal(y, y0)
    np.testing.assert_array_equal(target.estimator.coef_, coef0)
    assert gc.target_ is target.estimator


def test_fitted_unfrozen_target_is_not_modified(gaussian5):
    X, y = gaussian5
    model = LogisticRegression().fit(X, y)
    coef0, intercept0 = model.coef_.copy(), model.intercept_.copy()
    GradientCanceling(model, epsilon_d=0.3, max_iter=20, random_state=0).fit(X, y)
    np.testing.assert_array_equal(model.coef_, coef0)
    np.testing.assert_array_equal(model.intercept_, intercept0)


# -------------------------------------------------------------------- fit_resample


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fit_resample_clean_rows_first_and_dtype_preserved(small_exact, dtype):
    X, y, target = small_exact
    X = X.astype(dtype)
    gc = GradientCanceling(target, epsilon_d=0.25, max_iter=10, random_state=0)
    X_res, y_res = gc.fit_resample(X, y)
    n, m = len(X), gc.n_poison_
    assert X_res.dtype == dtype
    assert X_res.shape == (n + m, X.shape[1])
    assert y_res.shape == (n + m,)
    np.testing.assert_array_equal(X_res[:n], X)
    np.testing.assert_array_equal(y_res[:n], y)
    np.testing.assert_array_equal(X_res[n:], gc.X_poison_.astype(dtype))
    np.testing.assert_array_equal(y_res[n:], gc.y_poison_)


def test_fit_resample_keeps_label_type():
    X, y = _small_gaussian()
    labels = np.array(["cat", "dog"])[y]
    gc = GradientCanceling(
        LabelFlipTarget(LogisticRegression(), flip_fraction=0.5, random_state=0),
        epsilon_d=0.1, max_iter=5, random_state=0,
    )
    _, y_res = gc.fit_resample(X, labels)
    assert set(y_res) == {"cat", "dog"}
    np.testing.assert_array_equal(y_res[len(X):], labels[gc.init_indices_])


# ----------------------------------------------------------- optimizer, verbosity


def test_sgd_optimizer_lowers_the_norm(small_exact):
    X, y, target = small_exact
    sgd = GradientCanceling(
        target, epsilon_d=2.0, max_iter=300, optimizer="sgd", dtype="float64", random_state=0
    ).fit(X, y)
    assert sgd.gradient_norm_ < 0.5 * sgd.history_[0]
    adam = GradientCanceling(
        target, epsilon_d=2.0, max_iter=300, dtype="float64", random_state=0
    ).fit(X, y)
    # a different optimizer, from the same start
    assert sgd.history_[0] == pytest.approx(adam.history_[0])
    assert not np.allclose(sgd.history_[:20], adam.history_[:20])


def test_verbose_shows_progress_bar(small_exact, capfd):
    X, y, target = small_exact
    GradientCanceling(target, epsilon_d=0.5, max_iter=5, verbose=1, random_state=0).fit(X, y)
    err = capfd.readouterr().err
    assert "GradientCanceling" in err
    GradientCanceling(target, epsilon_d=0.5, max_iter=5, verbose=0, random_state=0).fit(X, y)
    assert "GradientCanceling" not in capfd.readouterr().err


# --------------------------------------------------------------- objective families


def _family(estimator):
    return LabelFlipTarget(estimator, flip_fraction=0.5, random_state=0)


@pytest.mark.parametrize(
    "estimator",
    [
        SGDClassifier(loss="hinge", alpha=1e-3, max_iter=1000, tol=None, random_state=0),
        SGDClassifier(loss="log_loss", alpha=1e-3, max_iter=1000, tol=None, random_state=0),
        LinearSVC(max_iter=10000, random_state=0),
        LinearSVC(loss="hinge", max_iter=20000, random_state=0),
        RidgeClassifier(alpha=1.0),
    ],
    ids=["sgd-hinge", "sgd-log", "linear-svc", "linear-svc-hinge", "ridge-classifier"],
)
def test_every_binary_family_is_canceled(gaussian5, estimator):
    X, y = gaussian5
    target = _family(estimator)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gc = GradientCanceling(target, epsilon_d=1.0, max_iter=300, random_state=0).fit(X, y)
    assert gc.threshold_ < 1.0
    assert gc.gradient_norm_ < 0.1 * gc.history_[0]
    assert gc.analyzer_.gradient_norm(gc.X_poison_, gc.y_poison_) == pytest.approx(
        gc.gradient_norm_, rel=1e-3, abs=1e-6
    )


@functools.lru_cache(maxsize=None)
def _digits300():
    X, y = load_digits(return_X_y=True)
    return X[:300], y[:300]


def test_multinomial_logistic_regression_on_digits():
    X, y = _digits300()
    target = old_gradpc(LogisticRegression(max_iter=1000), epsilon_w=0.05, max_iter=30, random_state=0)
    gc = GradientCanceling(target, epsilon_d=1.0, max_iter=200, random_state=0).fit(X, y)
    assert gc.objective_.kind == "cross_entropy"
    assert gc.threshold_ < 1.0
    assert gc.history_[0] / gc.gradient_norm_ >= 10


@pytest.fixture
def regression():
    rng = np.random.RandomState(1)
    X = rng.normal(size=(200, 4))
    y = X @ np.array([1.0, -2.0, 0.5, 0.0]) + 0.3 + 0.5 * rng.normal(size=200)
    return X, y


def test_ridge_regression_is_poisonable_at_small_budget(regression):
    X, y = regression
    # a shrunk model: same ranking of predictions, reachable at any eps_d > 0
    target = ScaledTarget(Ridge(alpha=1.0), scale=0.5)
    gc = GradientCanceling(
        target, epsilon_d=0.05, max_iter=1000, lr=1.0, dtype="float64", random_state=0
    ).fit(X, y)
    assert gc.threshold_ == 0.0
    assert gc.n_poison_ == 10
    assert gc.gradient_norm_ < 1e-5
    victim = Ridge(alpha=1.0).fit(np.vstack([X, gc.X_poison_]), np.concatenate([y, gc.y_poison_]))
    np.testing.assert_allclose(victim.coef_, gc.target_.coef_, rtol=1e-3, atol=1e-4)
    assert victim.intercept_ == pytest.approx(gc.target_.intercept_, rel=1e-3, abs=1e-4)


def test_ridge_with_kept_labels_respects_the_label_range_bound(regression):
    """GC keeps labels, so its threshold uses label_range = the clean label range."""
    X, y = regression
    clean = Ridge(alpha=1.0).fit(X, y)
    flipped = copy.deepcopy(clean)
    flipped.coef_ = -clean.coef_
    target = FrozenEstimator(flipped)
    gc = GradientCanceling(
        target, epsilon_d=0.05, max_iter=300, dtype="float64", random_state=0
    ).fit(X, y)
    labelled = PoisonabilityAnalyzer(
        target, label_range=(y.min(), y.max()), dtype="float64"
    ).fit(X, y)
    bound = labelled.residual_lower_bound(gc.n_poison_ / len(X))
    assert gc.threshold_ == pytest.approx(labelled.threshold_, rel=1e-12)
    assert PoisonabilityAnalyzer(target, dtype="float64").fit(X, y).threshold_ == 0.0
    assert labelled.threshold_ > 0.05
    assert bound > 0.5
    assert gc.gradient_norm_ >= bound * (1 - 1e-9)


class _MLP(torch.nn.Module):
    def __init__(self, n_in=64, n_hidden=32, n_out=10):
        super().__init__()
        self.hidden = torch.nn.Linear(n_in, n_hidden)
        self.out = torch.nn.Linear(n_hidden, n_out)

    def forward(self, X):
        return self.out(torch.tanh(self.hidden(X)))


@functools.lru_cache(maxsize=None)
def _digits_net():
    from skorch import NeuralNetClassifier

    X, y = _digits300()
    X = X.astype(np.float32)
    torch.manual_seed(0)
    net = NeuralNetClassifier(
        _MLP,
        criterion=torch.nn.CrossEntropyLoss,
        optimizer=torch.optim.SGD,
        optimizer__momentum=0.9,
        lr=0.1,
        max_epochs=30,
        batch_size=64,
        train_split=None,
        verbose=0,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net.fit(X, y)
    return X, y, net


def test_skorch_mlp_on_digits():
    X, y, net = _digits_net()
    assert net.score(X, y) > 0.95
    before = {k: v.detach().clone() for k, v in net.module_.state_dict().items()}
    target = old_gradpc(FrozenEstimator(net), epsilon_w=0.05, max_iter=20, random_state=0)
    gc = GradientCanceling(
        target, epsilon_d=1.0, max_iter=200, lr=0.3, schedule="constant", random_state=0
    ).fit(X, y)
    assert gc.objective_.kind == "cross_entropy"
    assert gc.target_ is not net
    assert gc.history_[0] / gc.gradient_norm_ >= 10
    assert gc.analyzer_.gradient_norm(gc.X_poison_, gc.y_poison_) == pytest.approx(
        gc.gradient_norm_, rel=1e-3
    )
    # the source net was not touched by GradPC or GC
    for name, value in net.module_.state_dict().items():
        assert torch.equal(value, before[name])


def test_skorch_strong_target_respects_lower_bound():
    """With epsilon_w=0.5 the net's tau is far above 1: no tenfold drop is possible."""
    X, y, net = _digits_net()
    target = old_gradpc(FrozenEstimator(net), epsilon_w=0.5, max_iter=20, random_state=0)
    gc = GradientCanceling(target, epsilon_d=1.0, max_iter=100, random_state=0).fit(X, y)
    bound = gc.analyzer_.residual_lower_bound(1.0)
    assert gc.threshold_ > 1.0
    assert bound > 0.1 * gc.history_[0]
    assert gc.gradient_norm_ >= bound * (1 - 1e-4)
    assert gc.gradient_norm_ < gc.history_[0]
