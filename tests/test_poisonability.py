"""PoisonabilityAnalyzer: the threshold tau against direct numpy computations and theory.

The reference values here are written from the paper's formulas with plain numpy:
margins ``t = y * (X w + b)`` with ``y`` in {-1, +1}, ``s = mean t * l'(t)`` from
explicit derivatives, ``q = ||w||^2`` over the penalised coordinates, and the
sum-form / mean-form thresholds of DESIGN section 3.  Nothing is taken from
``skpoison.objectives``.
"""

import copy
import math
import warnings

import numpy as np
import pytest
import torch
from scipy.optimize import brentq
from scipy.special import expit, lambertw, softmax
from sklearn.base import clone
from sklearn.exceptions import DataConversionWarning, NotFittedError
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import (
    LinearRegression,
    LogisticRegression,
    Ridge,
    RidgeClassifier,
    SGDClassifier,
)
from sklearn.svm import LinearSVC
from sklearn.tree import DecisionTreeClassifier

from skpoison import PoisonabilityAnalyzer
from skpoison.objectives import CleanGradient, as_objective
from skpoison.targets import ScaledTarget

F64 = dict(device="cpu", dtype="float64")


def lambert(x):
    return float(np.real(lambertw(x)))


# A = -inf_t t l'(t) for each loss, written out from the paper (Corollary 2)
A_CONST = {
    "logistic": lambert(1 / math.e),
    "hinge": 1.0,
    "squared_hinge": 0.5,
    "modified_huber": 0.5,
    "squared": 0.25,
}


def dloss(loss, t):
    """Explicit derivative l'(t) of each margin loss."""
    if loss == "logistic":  # log(1 + exp(-t))
        return -expit(-t)
    if loss == "hinge":  # max(0, 1 - t)
        return np.where(t < 1, -1.0, 0.0)
    if loss == "squared_hinge":  # max(0, 1 - t)^2
        return -2.0 * np.maximum(0.0, 1.0 - t)
    if loss == "modified_huber":  # -4t (t < -1), max(0, 1 - t)^2 otherwise
        return np.where(t < -1, -4.0, -2.0 * np.maximum(0.0, 1.0 - t))
    if loss == "squared":  # (1 - t)^2 / 2
        return t - 1.0
    raise AssertionError(loss)


def threshold_from(s, q, A, *, form, strength, n):
    """tau for one binary problem: s = <w, g(mu)> (no penalty), q = <w, grad R(w)>."""
    if form == "sum":
        num, den = s + strength * q / n, A
    elif form == "mean":
        num, den = s + strength * q, A - strength * q
        if num > 0 and den <= 0:
            return math.inf
    else:
        num, den = s, A
    return max(num / den, 0.0)


def ref_binary(X, y, classes, coef, intercept, loss, *, form=None, strength=0.0, wb=0.0):
    """(tau, inner product) of a binary linear margin model, from numpy only."""
    coef = np.ravel(coef)
    b = float(np.ravel(intercept)[0]) if intercept is not None else 0.0
    ypm = np.where(y == classes[1], 1.0, -1.0)
    t = ypm * (X @ coef + b)
    s = float(np.mean(t * dloss(loss, t)))
    q = float(coef @ coef + wb * b * b)
    n = len(X)
    kappa_over_n = {"sum": strength / n, "mean": strength, None: 0.0}[form]
    tau = threshold_from(s, q, A_CONST[loss], form=form, strength=strength, n=n)
    return tau, s + kappa_over_n * q


def ref_ovr(X, y, classes, coef, intercept, loss, *, form=None, strength=0.0, wb=0.0):
    """One-vs-rest: the largest binary threshold over the classes."""
    taus = []
    for j, c in enumerate(classes):
        yj = np.where(y == c, 1, 0)
        b = None if intercept is None else intercept[j]
        taus.append(
            ref_binary(X, yj, [0, 1], coef[j], b, loss, form=form, strength=strength, wb=wb)[0]
        )
    return max(taus)


def ref_multinomial(X, y, classes, coef, intercept, C):
    H = X @ coef.T + (0.0 if intercept is None else intercept)
    Y = (y[:, None] == np.asarray(classes)[None, :]).astype(float)
    s = float(np.mean(np.sum(H * (softmax(H, axis=1) - Y), axis=1)))
    q = float(np.sum(coef**2))
    num = s + q / (C * len(X))
    c = len(classes)
    return max(num / lambert((c - 1) / math.e), 0.0), max(num / lambert(1 / math.e), 0.0), num


def negated(est):
    """An adversarial target: the fitted model with all its output parameters negated."""
    new = copy.deepcopy(est)
    new.coef_ = -est.coef_
    if np.ndim(est.intercept_):
        new.intercept_ = -est.intercept_
    else:
        new.intercept_ = -float(est.intercept_)
    return new


def fit_quiet(est, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return est.fit(X, y)


def analyze(target, X, y, **kwargs):
    return PoisonabilityAnalyzer(FrozenEstimator(target), **F64, **kwargs).fit(X, y)


# --------------------------------------------------------------- binary margin


@pytest.mark.parametrize("C", [0.1, 1.0])
@pytest.mark.parametrize("fit_intercept", [True, False])
def test_binary_logistic_sum_form(gaussian, C, fit_intercept):
    X, y = gaussian
    est = negated(LogisticRegression(C=C, fit_intercept=fit_intercept).fit(X, y))
    an = analyze(est, X, y)
    tau, ip = ref_binary(
        X, y, est.classes_, est.coef_, est.intercept_ if fit_intercept else None,
        "logistic", form="sum", strength=1 / C,
    )
    assert tau > 1.0
    assert an.threshold_ == pytest.approx(tau, rel=1e-10)
    assert an.inner_product_ == pytest.approx(ip, rel=1e-10)
    assert an.threshold_binary_ == an.threshold_
    assert an.exact_ is (not fit_intercept)
    assert an.n_classes_ == 2
    assert an.n_features_in_ == X.shape[1]
    # the penalty really is part of it: without it tau would be smaller
    no_penalty = ref_binary(X, y, est.classes_, est.coef_, est.intercept_, "logistic")[0]
    if fit_intercept:
        assert an.threshold_ > no_penalty


def test_binary_logistic_no_penalty(gaussian):
    X, y = gaussian
    est = negated(LogisticRegression(C=np.inf).fit(X, y))
    an = analyze(est, X, y)
    tau, ip = ref_binary(X, y, est.classes_, est.coef_, est.intercept_, "logistic")
    assert an.threshold_ == pytest.approx(tau, rel=1e-10)
    assert an.inner_product_ == pytest.approx(ip, rel=1e-10)


def test_fitted_model_has_zero_threshold(gaussian):
    # a (near-)stationary model: <w, g(mu)> ~ 0, so tau ~ 0 (nothing to poison)
    X, y = gaussian
    est = LogisticRegression(tol=1e-10, max_iter=10_000).fit(X, y)
    an = analyze(est, X, y)
    assert abs(an.inner_product_) < 1e-8
    assert an.threshold_ < 1e-7


@pytest.mark.parametrize("loss", ["log_loss", "hinge", "modified_huber", "squared_hinge"])
def test_sgd_mean_form(gaussian, loss):
    X, y = gaussian
    margin = {"log_loss": "logistic"}.get(loss, loss)
    est = negated(fit_quiet(SGDClassifier(loss=loss, alpha=0.01, random_state=0), X, y))
    # the victim's alpha: alpha * q is a fifth of A, so the threshold is finite
    alpha = 0.2 * A_CONST[margin] / float(np.sum(est.coef_**2))
    est.set_params(alpha=alpha)
    an = analyze(est, X, y)
    tau, ip = ref_binary(
        X, y, est.classes_, est.coef_, est.intercept_, margin, form="mean", strength=alpha
    )
    assert 0 < tau < math.inf
    assert an.threshold_ == pytest.approx(tau, rel=1e-10)
    assert an.inner_product_ == pytest.approx(ip, rel=1e-10)
    # mean form: tau = (s + alpha q) / (A - alpha q), bigger than the sum-form value
    sum_form = ref_binary(
        X, y, est.classes_, est.coef_, est.intercept_, margin, form="sum", strength=alpha
    )[0]
    assert an.threshold_ > sum_form


def test_sgd_mean_form_unreachable(gaussian):
    X, y = gaussian
    est = negated(fit_quiet(SGDClassifier(loss="log_loss", alpha=0.01, random_state=0), X, y))
    q = float(np.sum(est.coef_**2))
    est.set_params(alpha=2 * A_CONST["logistic"] / q)  # A <= alpha q
    an = analyze(est, X, y)
    assert an.threshold_ == math.inf
    assert not an.is_poisonable(1e6)
    assert not np.any(an.is_poisonable([0.5, 10.0, 1e9]))
    assert np.all(an.residual_lower_bound(np.array([0.1, 1.0, 1e3])) > 0)


@pytest.mark.parametrize("loss", ["squared_hinge", "hinge"])
@pytest.mark.parametrize("scaling", [1.0, 2.0])
def test_linear_svc_sum_form_penalised_intercept(gaussian, loss, scaling):
    X, y = gaussian
    C = 0.5
    est = negated(fit_quiet(LinearSVC(loss=loss, C=C, intercept_scaling=scaling), X, y))
    an = analyze(est, X, y)
    tau, ip = ref_binary(
        X, y, est.classes_, est.coef_, est.intercept_, loss,
        form="sum", strength=1 / C, wb=1 / scaling**2,
    )
    assert tau > 0.5
    assert an.threshold_ == pytest.approx(tau, rel=1e-10)
    assert an.inner_product_ == pytest.approx(ip, rel=1e-10)


def test_ridge_classifier(gaussian):
    X, y = gaussian
    alpha = 5.0
    est = negated(RidgeClassifier(alpha=alpha).fit(X, y))
    an = analyze(est, X, y)
    tau, ip = ref_binary(
        X, y, est.classes_, est.coef_, est.intercept_, "squared", form="sum", strength=alpha
    )
    assert tau > 1.0
    assert an.threshold_ == pytest.approx(tau, rel=1e-10)
    assert an.inner_product_ == pytest.approx(ip, rel=1e-10)


# ------------------------------------------------------------------ multiclass


@pytest.mark.parametrize("fit_intercept", [True, False])
def test_multinomial_logistic(digits3, fit_intercept):
    X, y = digits3
    C = 0.5
    est = negated(fit_quiet(LogisticRegression(C=C, fit_intercept=fit_intercept), X, y))
    an = analyze(est, X, y)
    tau, tau2, ip = ref_multinomial(
        X, y, est.classes_, est.coef_, est.intercept_ if fit_intercept else None, C
    )
    assert tau > 1.0
    assert an.threshold_ == pytest.approx(tau, rel=1e-9)
    assert an.threshold_binary_ == pytest.approx(tau2, rel=1e-9)
    assert an.threshold_binary_ > an.threshold_  # W(1/e) < W(2/e)
    assert an.inner_product_ == pytest.approx(ip, rel=1e-9)
    assert an.n_classes_ == 3
    assert not an.exact_


@pytest.mark.parametrize(
    "factory, loss, form, strength, wb",
    [
        (lambda: LinearSVC(C=0.5), "squared_hinge", "sum", 2.0, 1.0),
        (lambda: SGDClassifier(loss="hinge", alpha=0.01), "hinge", "mean", 0.01, 0.0),
        (lambda: SGDClassifier(loss="log_loss", alpha=0.01), "logistic", "mean", 0.01, 0.0),
        (lambda: RidgeClassifier(alpha=2.0), "squared", "sum", 2.0, 0.0),
    ],
    ids=["linearsvc", "sgd-hinge", "sgd-log", "ridgeclassifier"],
)
def test_one_vs_rest_is_max_over_classes(blobs3, factory, loss, form, strength, wb):
    X, y = blobs3
    est = factory()
    if "random_state" in est.get_params():
        est.set_params(random_state=0)
    est = negated(fit_quiet(est, X, y))
    an = analyze(est, X, y)
    tau = ref_ovr(
        X, y, est.classes_, est.coef_, est.intercept_, loss, form=form, strength=strength, wb=wb
    )
    assert tau > 0.1
    assert an.threshold_ == pytest.approx(tau, rel=1e-10)
    assert an.threshold_binary_ == an.threshold_


# ------------------------------------------------------------------ regression


@pytest.mark.parametrize("two_d", [False, True])
@pytest.mark.parametrize("model", ["ridge", "linreg"])
def test_regression_threshold(regression, two_d, model):
    X, y, Y = regression
    target = Y if two_d else y
    alpha = 2.0
    est = Ridge(alpha=alpha) if model == "ridge" else LinearRegression()
    est = negated(est.fit(X, target))
    assert analyze(est, X, target).threshold_ == 0.0

    lo, hi = -3.0, 5.0
    an = analyze(est, X, target, label_range=(lo, hi))
    H = est.predict(X).reshape(len(X), -1)
    T = target.reshape(len(X), -1)
    s = float(np.mean(np.sum(H * (H - T), axis=1)))  # <w, g(mu)> = mean <h, h - y>
    q = float(np.sum(est.coef_**2))
    k = H.shape[1]
    A = k * max(lo**2, hi**2) / 4  # -a, a = inf_{h, y in [lo, hi]} h (h - y) per output
    strength = alpha if model == "ridge" else 0.0
    expected = (s + strength * q / len(X)) / A
    assert expected > 0.5
    assert an.threshold_ == pytest.approx(expected, rel=1e-10)
    assert an.inner_product_ == pytest.approx(s + strength * q / len(X), rel=1e-10)
    assert an.n_classes_ is None


# ------------------------------------------------------------- Theorem 2 (exact)


@pytest.fixture
def exact_case(gaussian):
    X, y = gaussian
    est = negated(LogisticRegression(C=0.1, fit_intercept=False).fit(X, y))
    an = analyze(est, X, y)
    assert an.exact_
    return X, y, est, an


W_1E = lambert(1 / math.e)
T_STAR = 1.0 + W_1E


def phi_logistic(t):
    return t * dloss("logistic", t)


def test_theorem2_just_above_threshold_cancels_the_gradient(exact_case):
    X, y, est, an = exact_case
    n = len(X)
    tau = an.threshold_
    m = math.ceil(1.05 * tau * n)
    eps = m / n
    assert an.is_poisonable(eps)
    assert an.residual_lower_bound(eps) == 0.0
    v = an.clean_gradient_
    w = est.coef_.ravel()
    ip = float(w @ v)
    assert ip == pytest.approx(an.inner_product_, rel=1e-12)
    goal = -ip / eps
    assert -W_1E < goal < 0
    t_p = brentq(lambda t: phi_logistic(t) - goal, T_STAR, 60.0, xtol=1e-15, rtol=1e-15)
    Xp = np.tile((t_p / ip) * v, (m, 1))
    yp = np.full(m, est.classes_[1])
    assert an.gradient_norm(Xp, yp) < 1e-8


def _optimal_point(v, w, eps, t=T_STAR, dl=None):
    """Poison point with margin ``t`` whose w-orthogonal gradient cancels that of ``v``.

    With all poison at this point (label +1), the mixed gradient is parallel to ``w``:
    its norm is ``|<w, v> + eps (phi(t) + penalty slope)| / ||w||``, the
    Cauchy-Schwarz bound, which is thus attained at ``t = t_star``.
    """
    if dl is None:
        dl = float(dloss("logistic", t))
    v_perp = v - (w @ v) / (w @ w) * w
    return t * w / (w @ w) - v_perp / (eps * dl)


def test_theorem2_below_threshold_no_poison_beats_the_bound(exact_case):
    X, y, est, an = exact_case
    n = len(X)
    tau = an.threshold_
    m = math.floor(0.95 * tau * n)
    eps = m / n
    assert not an.is_poisonable(eps)
    bound = an.residual_lower_bound(eps)
    assert bound > 0
    v = an.clean_gradient_
    w = est.coef_.ravel()
    ip = float(w @ v)
    label1 = np.full(m, est.classes_[1])

    # the line construction of Theorem 2 at t_star
    line = an.gradient_norm(np.tile((T_STAR / ip) * v, (m, 1)), label1)
    # the best single point (margin t_star, orthogonal part cancelled)
    best = an.gradient_norm(np.tile(_optimal_point(v, w, eps), (m, 1)), label1)
    for value in (line, best):
        assert value >= bound * (1 - 1e-9)
    assert min(line, best) <= 1.05 * bound
    assert best == pytest.approx(bound, rel=1e-6)  # the bound is tight for exact targets

    # a batch of random poison sets never beats it either
    rng = np.random.RandomState(0)
    d = X.shape[1]
    for trial in range(30):
        kind = trial % 3
        labels = rng.choice(est.classes_, size=m)
        if kind == 0:  # random points at a random scale, random labels
            Xp = rng.normal(scale=10 ** rng.uniform(-1, 1.5), size=(m, d))
        elif kind == 1:  # points on the line at various margins, random labels
            ts = rng.uniform(-5, 8, size=m)
            Xp = (ts / ip)[:, None] * v[None, :]
        else:  # near-optimal points plus noise, mixed with clean points
            Xp = _optimal_point(v, w, eps) + rng.normal(scale=0.3, size=(m, d))
            half = m // 2
            Xp[:half] = X[rng.randint(0, n, size=half)]
            labels[half:] = est.classes_[1]
        assert an.gradient_norm(Xp, labels) >= bound * (1 - 1e-9)


def _phi(loss, t):
    return t * dloss(loss, t)


T_STARS = {"logistic": T_STAR, "squared_hinge": 0.5}
T_UPPER = {"logistic": 60.0, "squared_hinge": 1.0}  # phi(upper) ~ 0 on the right branch


@pytest.mark.parametrize("loss", ["log_loss", "squared_hinge"])
def test_theorem2_mean_form_sgd(gaussian, loss):
    # exact_ for a mean-form (SGD) victim without intercept: the threshold is necessary
    # and sufficient, and the residual bound is tight
    X, y = gaussian
    n = len(X)
    margin = {"log_loss": "logistic"}.get(loss, loss)
    est = negated(
        fit_quiet(SGDClassifier(loss=loss, fit_intercept=False, random_state=0), X, y)
    )
    est.coef_ = est.coef_ / np.linalg.norm(est.coef_)  # a moderate tau (m stays small)
    w = est.coef_.ravel()
    q = float(w @ w)
    alpha = 0.2 * A_CONST[margin] / q
    est.set_params(alpha=alpha)
    an = analyze(est, X, y)
    assert an.exact_
    v = an.clean_gradient_
    ip = float(w @ v)
    assert ip == pytest.approx(an.inner_product_, rel=1e-12)
    tau = an.threshold_
    assert tau == pytest.approx((ip) / (A_CONST[margin] - alpha * q), rel=1e-12)
    label1 = np.full(1, est.classes_[1])

    # just above tau: one point (repeated m times) with margin t_p cancels the gradient
    m = math.ceil(1.05 * tau * n)
    eps = m / n
    goal = -(ip / eps + alpha * q)  # phi(t_p) needed on the w direction
    assert -A_CONST[margin] < goal < 0
    t_p = brentq(lambda t: _phi(margin, t) - goal, T_STARS[margin], T_UPPER[margin], xtol=1e-15)
    x = _optimal_point(v, w, eps, t_p, float(dloss(margin, t_p)))
    assert an.gradient_norm(np.tile(x, (m, 1)), np.repeat(label1, m)) < 1e-8

    # just below tau: the bound is positive, attained at t_star, never beaten
    m = math.floor(0.95 * tau * n)
    eps = m / n
    bound = an.residual_lower_bound(eps)
    assert bound > 0
    t_s = T_STARS[margin]
    x = _optimal_point(v, w, eps, t_s, float(dloss(margin, t_s)))
    best = an.gradient_norm(np.tile(x, (m, 1)), np.repeat(label1, m))
    assert best == pytest.approx(bound, rel=1e-6)
    rng = np.random.RandomState(1)
    for _ in range(10):
        Xp = rng.normal(scale=10 ** rng.uniform(-1, 1.5), size=(m, X.shape[1]))
        assert an.gradient_norm(Xp, rng.choice(est.classes_, size=m)) >= bound * (1 - 1e-9)


def test_residual_lower_bound_shape_and_zero_above(exact_case):
    X, y, est, an = exact_case
    tau = an.threshold_
    eps = np.array([0.1 * tau, 0.5 * tau, 0.99 * tau, tau, 1.01 * tau, 3 * tau])
    bound = an.residual_lower_bound(eps)
    assert isinstance(bound, np.ndarray) and bound.shape == eps.shape
    assert np.all(bound[:3] > 0)
    assert np.all(np.diff(bound[:3]) < 0)  # decreasing towards tau
    assert bound[3] <= 1e-12
    np.testing.assert_array_equal(bound[4:], 0.0)
    assert isinstance(an.residual_lower_bound(0.5 * tau), float)
    # the bound is <w, g(chi)> / ||w|| relative to ||g(mu)||: check it by hand
    v, w = an.clean_gradient_, est.coef_.ravel()
    e = 0.5 * tau
    expected = (float(w @ v) - e * W_1E) / np.linalg.norm(w) / ((1 + e) * np.linalg.norm(v))
    assert an.residual_lower_bound(e) == pytest.approx(expected, rel=1e-10)


def test_is_poisonable_scalars_and_arrays(exact_case):
    X, y, est, an = exact_case
    tau = an.threshold_
    assert an.is_poisonable(2 * tau) is True
    assert an.is_poisonable(0.5 * tau) is False
    result = an.is_poisonable([0.5 * tau, 0.999 * tau, 1.001 * tau, 10 * tau])
    assert isinstance(result, np.ndarray)
    np.testing.assert_array_equal(result, [False, False, True, True])
    result = an.is_poisonable(np.array([[0.1 * tau], [5 * tau]]))
    assert result.shape == (2, 1)
    np.testing.assert_array_equal(result.ravel(), [False, True])


def test_gradient_norm_of_clean_copies(exact_case):
    # poisoning with a copy of the clean data leaves g(chi) = g(mu) (sum-form penalty
    # shrinks by the sample count): independent check of the normalisation
    X, y, est, an = exact_case
    n = len(X)
    value = an.gradient_norm(X, y)
    v = an.clean_gradient_
    w = est.coef_.ravel()
    penalty = 10.0 * w  # 1/C * grad R
    loss_mean = v - penalty / n
    expected = np.linalg.norm(loss_mean + penalty / (2 * n)) / np.linalg.norm(v)
    assert value == pytest.approx(expected, rel=1e-10)


# -------------------------------------------------------------- feature_range


def test_feature_range_tightens_threshold(gaussian):
    X, y = gaussian
    est = negated(LogisticRegression(C=0.1).fit(X, y))
    free = analyze(est, X, y)
    boxed = analyze(est, X, y, feature_range=(X.min() - 0.1, X.max() + 0.1))
    assert boxed.threshold_ >= free.threshold_
    assert not boxed.exact_
    assert boxed.inner_product_ == pytest.approx(free.inner_product_)

    # a less confident target whose margins over the data's box cannot reach t_star:
    # the box threshold is strictly tighter
    box = (X.min(axis=0), X.max(axis=0))
    center, radius = (box[0] + box[1]) / 2, (box[1] - box[0]) / 2
    reach = np.abs(est.coef_.ravel()) @ radius + abs(est.coef_.ravel() @ center + est.intercept_[0])
    small = copy.deepcopy(est)
    factor = 0.5 * T_STAR / reach
    small.coef_, small.intercept_ = factor * est.coef_, factor * est.intercept_
    free = analyze(small, X, y)
    boxed = analyze(small, X, y, feature_range=box)
    assert boxed.threshold_ > 1.01 * free.threshold_
    # the reachable margins are +-[h_lo, h_hi]; tau = s0 / -a with a the grid minimum of
    # t l'(t) over them
    coef = small.coef_.ravel()
    mid = float(coef @ center + small.intercept_[0])
    spread = float(np.abs(coef) @ radius)
    grid = np.linspace(mid - spread, mid + spread, 400_001)
    a = min(phi_logistic(grid).min(), phi_logistic(-grid).min())
    assert boxed.threshold_ == pytest.approx(boxed.inner_product_ / -a, rel=1e-8)


def _softmax_term(H, labels, classes):
    Y = (labels[:, None] == np.asarray(classes)[None, :]).astype(float)
    return np.sum(H * (softmax(H, axis=1) - Y), axis=1)


@pytest.mark.parametrize("multiclass", [False, True])
def test_feature_range_bound_holds_for_points_in_the_box(gaussian, digits3, multiclass):
    # soundness of the box bound: no point of the box, with any label, goes below the
    # implied a = -inner_product_ / threshold_
    X, y = digits3 if multiclass else gaussian
    est = negated(fit_quiet(LogisticRegression(C=0.5), X, y))
    box = (X.min(axis=0), X.max(axis=0))
    free = analyze(est, X, y)
    boxed = analyze(est, X, y, feature_range=box)
    assert boxed.threshold_ >= free.threshold_
    assert boxed.threshold_binary_ >= free.threshold_binary_
    a_box = -boxed.inner_product_ / boxed.threshold_
    rng = np.random.RandomState(0)
    Z = rng.uniform(box[0], box[1], size=(5000, X.shape[1]))
    corners = np.where(rng.rand(5000, X.shape[1]) < 0.5, box[0], box[1])
    for P in (Z, corners):
        H = est.decision_function(P)
        for label in est.classes_:
            labels = np.full(len(P), label)
            if multiclass:
                values = _softmax_term(H, labels, est.classes_)
            else:
                t = np.where(labels == est.classes_[1], 1.0, -1.0) * H
                values = phi_logistic(t)
            assert values.min() >= a_box - 1e-12


def test_feature_range_is_ignored_for_nets(net_wd, or_data):
    X, y = or_data
    free = PoisonabilityAnalyzer(FrozenEstimator(net_wd), **F64).fit(X, y)
    boxed = PoisonabilityAnalyzer(
        FrozenEstimator(net_wd), feature_range=(X.min() - 1, X.max() + 1), **F64
    ).fit(X, y)
    assert boxed.threshold_ == free.threshold_


def test_feature_range_rejects_clean_data_outside(gaussian):
    X, y = gaussian
    est = negated(LogisticRegression().fit(X, y))
    with pytest.raises(ValueError, match="outside feature_range"):
        analyze(est, X, y, feature_range=(0.0, 1.0))
    with pytest.raises(ValueError, match="low <= high"):
        analyze(est, X, y, feature_range=(5.0, -5.0))
    with pytest.raises(ValueError, match="finite"):
        analyze(est, X, y, feature_range=(-np.inf, np.inf))
    with pytest.raises(ValueError, match="pair"):
        analyze(est, X, y, feature_range=(1.0, 2.0, 3.0))


# ------------------------------------------------------------------ bad input


@pytest.fixture
def target(gaussian):
    X, y = gaussian
    return negated(LogisticRegression().fit(X, y))


def test_non_finite_and_empty_input(gaussian, target):
    X, y = gaussian
    for bad in (np.nan, np.inf):
        Xb = X.copy()
        Xb[3, 1] = bad
        with pytest.raises(ValueError):
            analyze(target, Xb, y)
    with pytest.raises(ValueError):
        analyze(target, X[:0], y[:0])
    with pytest.raises(ValueError):
        analyze(target, X, y[:-1])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_non_finite_x_is_named_for_linear_targets(gaussian, bad, dtype):
    # linear targets have X checked by the clean pass, not up front: a hinge row whose
    # margin the bad entry pushes to +inf has a zero loss gradient, yet must be caught
    X, y = gaussian
    svc = LinearSVC(fit_intercept=False).fit(X, y)
    row = np.flatnonzero(y == svc.classes_[1])[0]
    Xb = X.copy()
    Xb[row, 0] = bad * (1 if np.isnan(bad) else np.sign(svc.coef_[0, 0]))
    kind = "NaN" if np.isnan(bad) else "infinity"
    for est in (svc, LogisticRegression().fit(X, y), Ridge().fit(X, X[:, 0])):
        labels = X[:, 0] if isinstance(est, Ridge) else y
        with pytest.raises(ValueError, match=f"Input X contains {kind}"):
            PoisonabilityAnalyzer(FrozenEstimator(est), dtype=dtype, device="cpu").fit(
                Xb, labels
            )
    # the clean pass names X, not the target, when the analyzer is bypassed
    objective = as_objective(svc, device="cpu", dtype=dtype)
    with pytest.raises(ValueError, match=f"Input X contains {kind}"):
        CleanGradient(objective, Xb, y, batch_size=7)


def test_column_vector_labels_for_classifier_target(gaussian, target):
    X, y = gaussian
    expected = analyze(target, X, y)
    # like scikit-learn's classifiers: a column vector is raveled, with a warning
    with pytest.warns(DataConversionWarning, match="column-vector"):
        got = analyze(target, X, y.reshape(-1, 1))
    assert got.threshold_ == pytest.approx(expected.threshold_, rel=1e-10)
    assert got.inner_product_ == pytest.approx(expected.inner_product_, rel=1e-10)
    with pytest.warns(DataConversionWarning, match="column-vector"):
        norm = got.gradient_norm(X[:3], y[:3].reshape(-1, 1))
    assert norm == pytest.approx(expected.gradient_norm(X[:3], y[:3]), rel=1e-10)


def test_epsilon_must_be_positive(exact_case):
    _, _, _, an = exact_case
    for bad in (0.0, -0.1, np.nan, np.inf, [0.1, 0.0]):
        with pytest.raises(ValueError, match="epsilon_d"):
            an.is_poisonable(bad)
        with pytest.raises(ValueError, match="epsilon_d"):
            an.residual_lower_bound(bad)


def test_feature_count_mismatch(gaussian, target):
    X, y = gaussian
    with pytest.raises(ValueError, match="features"):
        analyze(target, X[:, :3], y)
    an = analyze(target, X, y)
    with pytest.raises(ValueError, match="features"):
        an.gradient_norm(X[:4, :3], y[:4])
    with pytest.raises(ValueError, match="rows"):
        an.gradient_norm(X[:4], y[:3])
    with pytest.raises(ValueError):
        an.gradient_norm(np.full((2, X.shape[1]), np.nan), y[:2])


def test_unknown_labels(gaussian, target):
    X, y = gaussian
    y_bad = y.copy()
    y_bad[0] = 7
    with pytest.raises(ValueError, match="does not know"):
        analyze(target, X, y_bad)
    an = analyze(target, X, y)
    with pytest.raises(ValueError, match="does not know"):
        an.gradient_norm(X[:2], np.array([0, 3]))


def test_unfitted_and_unsupported_targets(gaussian):
    X, y = gaussian
    with pytest.raises(NotFittedError, match="FrozenEstimator"):
        PoisonabilityAnalyzer(LogisticRegression(), **F64).fit(X, y)
    with pytest.raises(TypeError, match="LogisticRegression"):
        analyze(DecisionTreeClassifier(random_state=0).fit(X, y), X, y)
    with pytest.raises(NotFittedError):
        PoisonabilityAnalyzer(LogisticRegression()).is_poisonable(0.1)


def test_inputs_and_target_are_not_modified(gaussian):
    X, y = gaussian
    est = negated(LogisticRegression().fit(X, y))
    coef, intercept = est.coef_.copy(), est.intercept_.copy()
    X0, y0 = X.copy(), y.copy()
    an = analyze(est, X, y)
    Xp, yp = X[:10].copy() + 1.0, y[:10].copy()
    Xp0, yp0 = Xp.copy(), yp.copy()
    an.gradient_norm(Xp, yp)
    np.testing.assert_array_equal(X, X0)
    np.testing.assert_array_equal(y, y0)
    np.testing.assert_array_equal(Xp, Xp0)
    np.testing.assert_array_equal(yp, yp0)
    np.testing.assert_array_equal(est.coef_, coef)
    np.testing.assert_array_equal(est.intercept_, intercept)
    assert an.target_ is est


def test_batch_size_gives_the_same_threshold(digits3):
    X, y = digits3
    est = negated(fit_quiet(LogisticRegression(C=0.5), X, y))
    full = analyze(est, X, y)
    batched = analyze(est, X, y, batch_size=5)
    assert batched.threshold_ == pytest.approx(full.threshold_, rel=1e-12)
    assert batched.threshold_binary_ == pytest.approx(full.threshold_binary_, rel=1e-12)
    np.testing.assert_allclose(
        batched.clean_gradient_, full.clean_gradient_, rtol=1e-10, atol=1e-14
    )
    assert batched.gradient_norm(X[:7], y[:7]) == pytest.approx(
        full.gradient_norm(X[:7], y[:7]), rel=1e-10
    )


def test_float32_default_close_to_float64(gaussian, target):
    X, y = gaussian
    an32 = PoisonabilityAnalyzer(FrozenEstimator(target), device="cpu").fit(X, y)
    an64 = analyze(target, X, y)
    assert an32.threshold_ == pytest.approx(an64.threshold_, rel=1e-4)


# ------------------------------------------------------------------ recipes


def test_recipe_target(gaussian):
    X, y = gaussian
    neg = negated(LogisticRegression(C=0.1).fit(X, y))
    recipe = ScaledTarget(FrozenEstimator(neg), scale=0.5)
    an = PoisonabilityAnalyzer(recipe, **F64).fit(X, y)
    tau, _ = ref_binary(
        X, y, neg.classes_, 0.5 * neg.coef_, 0.5 * neg.intercept_, "logistic",
        form="sum", strength=10.0,
    )
    assert an.threshold_ == pytest.approx(tau, rel=1e-10)
    np.testing.assert_allclose(an.target_.coef_, 0.5 * neg.coef_)
    assert not hasattr(recipe, "target_")  # the recipe itself is cloned, not fitted
    # survives clone (as in GridSearchCV)
    again = clone(PoisonabilityAnalyzer(recipe, **F64)).fit(X, y)
    assert again.threshold_ == pytest.approx(an.threshold_, rel=1e-12)
    # an unfitted recipe is fitted on the data the analyzer sees
    fitted_here = PoisonabilityAnalyzer(ScaledTarget(LogisticRegression()), **F64).fit(X, y)
    base = LogisticRegression().fit(X, y)
    np.testing.assert_allclose(fitted_here.target_.coef_, 0.5 * base.coef_, rtol=1e-8)


# ---------------------------------------------------------------- neural nets


def test_net_threshold_on_last_layer_logits(net_wd, or_data):
    # Theorem 4 with weight decay (mean form): s over the logits of the last linear layer,
    # q = weight_decay * ||(W, b)_last||^2, tau = (s + q) / (W(1/e) - q)
    X, y = or_data
    an = PoisonabilityAnalyzer(FrozenEstimator(net_wd), **F64).fit(X, y)
    module = net_wd.module_
    with torch.no_grad():
        H = module.out(module.drop(torch.tanh(module.hidden(torch.as_tensor(X))))).numpy()
    # negating the head makes it adversarial
    neg = copy.deepcopy(net_wd)
    with torch.no_grad():
        neg.module_.out.weight.neg_()
        neg.module_.out.bias.neg_()
    an = PoisonabilityAnalyzer(FrozenEstimator(neg), **F64).fit(X, y)
    Y = np.eye(2)[y]
    s = float(np.mean(np.sum(-H * (softmax(-H, axis=1) - Y), axis=1)))
    head = torch.cat([module.out.weight.reshape(-1), module.out.bias]).detach().numpy()
    q = 1e-2 * float(head @ head)
    expected = (s + q) / (W_1E - q)
    assert expected > 0.1
    assert an.threshold_ == pytest.approx(expected, rel=1e-8)
    assert an.threshold_binary_ == pytest.approx(expected, rel=1e-8)
    assert not an.exact_
