"""Objective adapters: each one is the objective its victim actually minimises.

The central test (DESIGN section 2): fit an estimator tightly on (X, y); at the fitted
parameters the adapter's full objective gradient on (X, y) vanishes, relative to the
gradient at a perturbed point built by ``objective.to_estimator``.  Non-smooth hinge
objectives are checked through their subdifferential (KKT) instead.
"""

import copy
import warnings

import numpy as np
import pytest
import torch
from scipy.optimize import lsq_linear
from sklearn.exceptions import DataConversionWarning, NotFittedError
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import (
    LinearRegression,
    LogisticRegression,
    LogisticRegressionCV,
    Ridge,
    RidgeClassifier,
    SGDClassifier,
)
from sklearn.metrics import log_loss
from sklearn.svm import LinearSVC
from sklearn.tree import DecisionTreeClassifier

from skpoison.objectives import BinaryMarginLoss, Objective, as_objective, supported_estimators

F64 = dict(device="cpu", dtype="float64")


def fit_quiet(est, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return est.fit(X, y)


def perturbed_gradient_norm(objective, X, y, *, rel_noise=0.3, n_dirs=3):
    """Smallest objective-gradient norm over a few random relative perturbations of w."""
    flat = objective.flat_params()
    norms = []
    for seed in range(n_dirs):
        d = torch.as_tensor(np.random.RandomState(seed).normal(size=flat.numel()))
        d = d / d.norm() * rel_noise * flat.norm()
        moved = as_objective(objective.to_estimator(flat + d), **F64)
        norms.append(float(moved.objective_gradient(X, y).norm()))
    return min(norms)


def stationarity_ratio(est, X, y):
    objective = as_objective(est, **F64)
    g = float(objective.objective_gradient(X, y).norm())
    return g / perturbed_gradient_norm(objective, X, y)


# ------------------------------------------------------------ smooth sklearn models

TIGHT = dict(tol=1e-10, max_iter=10_000)
SGD_TIGHT = dict(
    alpha=1e-2,
    average=4000,  # average the iterates after a burn-in of 20 epochs
    learning_rate="constant",
    max_iter=3000,
    tol=None,
    random_state=0,
)

SMOOTH_CASES = {
    # id: (estimator factory, data fixture, max ratio)
    "logreg-binary": (lambda: LogisticRegression(**TIGHT), "gaussian", 1e-4),
    "logreg-binary-C0.1": (lambda: LogisticRegression(C=0.1, **TIGHT), "gaussian", 1e-4),
    "logreg-binary-nointercept": (
        lambda: LogisticRegression(fit_intercept=False, **TIGHT),
        "gaussian",
        1e-4,
    ),
    "logreg-binary-Cinf": (lambda: LogisticRegression(C=np.inf, **TIGHT), "gaussian", 1e-4),
    "logreg-binary-Cinf-nointercept": (
        lambda: LogisticRegression(C=np.inf, fit_intercept=False, **TIGHT),
        "gaussian",
        1e-4,
    ),
    "logreg-liblinear": (
        lambda: LogisticRegression(solver="liblinear", **TIGHT),
        "gaussian",
        1e-4,
    ),
    "logreg-liblinear-scaling2": (
        lambda: LogisticRegression(solver="liblinear", intercept_scaling=2.0, **TIGHT),
        "gaussian",
        1e-4,
    ),
    "logreg-multinomial": (lambda: LogisticRegression(**TIGHT), "digits3", 1e-4),
    "logreg-multinomial-nointercept": (
        lambda: LogisticRegression(fit_intercept=False, **TIGHT),
        "digits3",
        1e-4,
    ),
    "logreg-multinomial-Cinf": (lambda: LogisticRegression(C=np.inf, **TIGHT), "blobs3", 1e-4),
    "sgd-log_loss": (
        lambda: SGDClassifier(loss="log_loss", eta0=1e-2, **SGD_TIGHT),
        "gaussian",
        0.05,
    ),
    "sgd-modified_huber": (
        lambda: SGDClassifier(loss="modified_huber", eta0=1e-3, **SGD_TIGHT),
        "gaussian",
        0.05,
    ),
    "sgd-squared_hinge": (
        lambda: SGDClassifier(loss="squared_hinge", eta0=1e-3, **SGD_TIGHT),
        "gaussian",
        0.05,
    ),
    "sgd-log_loss-ovr": (
        lambda: SGDClassifier(loss="log_loss", eta0=1e-2, **SGD_TIGHT),
        "blobs3",
        0.05,
    ),
    "sgd-modified_huber-ovr": (
        lambda: SGDClassifier(loss="modified_huber", eta0=1e-3, **SGD_TIGHT),
        "blobs3",
        0.05,
    ),
    "linearsvc-squared_hinge": (lambda: LinearSVC(**TIGHT), "gaussian", 1e-6),
    "linearsvc-squared_hinge-scaling2": (
        lambda: LinearSVC(intercept_scaling=2.0, **TIGHT),
        "gaussian",
        1e-6,
    ),
    "linearsvc-squared_hinge-nointercept": (
        lambda: LinearSVC(fit_intercept=False, **TIGHT),
        "gaussian",
        1e-6,
    ),
    "linearsvc-squared_hinge-ovr": (lambda: LinearSVC(**TIGHT), "digits3", 1e-6),
    "ridgeclassifier-binary": (lambda: RidgeClassifier(alpha=1.0), "gaussian", 1e-10),
    "ridgeclassifier-ovr": (lambda: RidgeClassifier(alpha=1.0), "digits3", 1e-10),
}


@pytest.mark.parametrize("case", sorted(SMOOTH_CASES))
def test_gradient_vanishes_at_fitted_parameters(case, request):
    factory, data, max_ratio = SMOOTH_CASES[case]
    X, y = request.getfixturevalue(data)
    est = fit_quiet(factory(), X, y)
    assert stationarity_ratio(est, X, y) < max_ratio


REGRESSION_CASES = {
    "ridge-1d": (lambda: Ridge(alpha=1.0), False),
    "ridge-2d": (lambda: Ridge(alpha=1.0), True),
    "ridge-nointercept": (lambda: Ridge(alpha=3.0, fit_intercept=False), False),
    "linearregression-1d": (LinearRegression, False),
    "linearregression-2d": (LinearRegression, True),
}


@pytest.mark.parametrize("case", sorted(REGRESSION_CASES))
def test_gradient_vanishes_regression(case, regression):
    X, y, Y = regression
    factory, two_d = REGRESSION_CASES[case]
    target = Y if two_d else y
    est = factory().fit(X, target)
    assert stationarity_ratio(est, X, target) < 1e-10


def test_sgd_mean_form_is_what_makes_the_gradient_vanish(gaussian):
    # control for the SGD tests: with the penalty in sum form (kappa = alpha instead of
    # alpha * N) the fitted SGD model is far from stationary
    X, y = gaussian
    est = fit_quiet(SGDClassifier(loss="log_loss", eta0=1e-2, **SGD_TIGHT), X, y)
    obj = as_objective(est, **F64)
    right = obj.objective_gradient(X, y).norm()
    wrong = obj.loss_gradient_sum(X, y) + est.alpha * obj.penalty_gradient()
    assert float(wrong.norm()) > 20 * float(right)


# --------------------------------------------------------------------- hinge (KKT)


def hinge_kkt_residual(est, X, y, delta, objective=None):
    """Norm of the smallest element of the subdifferential of the hinge objective.

    ``objective_gradient`` picks one subgradient at each kink; points whose margin is
    within ``delta`` of 1 may move their weight anywhere in [0, 1] (KKT).  Returns the
    residual after the best such move, and the norm of the perturbed-point gradient.
    """
    obj = as_objective(est, **F64) if objective is None else objective
    g = obj.objective_gradient(X, y).numpy()
    h = obj.outputs(X).numpy()
    Y = obj.encode_labels(y).numpy().reshape(len(X), -1)
    T = Y * h
    n, d = X.shape
    k = h.shape[1]
    cols, low, high = [], [], []
    for j in range(k):
        for i in np.flatnonzero(np.abs(T[:, j] - 1.0) <= delta):
            D = np.zeros(obj.n_params)
            D[j * d : (j + 1) * d] = -Y[i, j] * X[i]
            if obj.fit_intercept:
                D[k * d + j] = -Y[i, j]
            used = 1.0 if T[i, j] <= 1.0 else 0.0  # what autograd chose at the kink
            cols.append(D)
            low.append(-used)
            high.append(1.0 - used + 1e-15)
    if cols:
        A = np.array(cols).T
        beta = lsq_linear(A, -g, bounds=(np.array(low), np.array(high))).x
        g = g + A @ beta
    return float(np.linalg.norm(g)), perturbed_gradient_norm(as_objective(est, **F64), X, y)


@pytest.mark.parametrize(
    "factory, data, delta",
    [
        (lambda: LinearSVC(loss="hinge", **TIGHT), "gaussian", 1e-6),
        (lambda: LinearSVC(loss="hinge", intercept_scaling=2.0, **TIGHT), "gaussian", 1e-6),
        (lambda: LinearSVC(loss="hinge", **TIGHT), "digits3", 1e-6),
        (lambda: SGDClassifier(loss="hinge", eta0=1e-3, **SGD_TIGHT), "gaussian", 0.05),
        (lambda: SGDClassifier(loss="hinge", eta0=1e-3, **SGD_TIGHT), "blobs3", 0.05),
    ],
    ids=["linearsvc", "linearsvc-scaling2", "linearsvc-ovr", "sgd", "sgd-ovr"],
)
def test_hinge_subgradient_vanishes(factory, data, delta, request):
    X, y = request.getfixturevalue(data)
    est = fit_quiet(factory(), X, y)
    residual, perturbed = hinge_kkt_residual(est, X, y, delta)
    assert residual < 1e-3 * perturbed


def test_hinge_kkt_control_fails_with_wrong_intercept_penalty(gaussian):
    # control: the KKT residual is not small when the intercept is treated as unpenalised,
    # which liblinear does not do (so the KKT test above does detect such mistakes)
    X, y = gaussian
    est = fit_quiet(LinearSVC(loss="hinge", intercept_scaling=0.5, **TIGHT), X, y)
    obj = as_objective(est, **F64)
    assert obj.penalty_weights["intercept"].item() == pytest.approx(4.0)  # 1 / scaling^2
    residual, perturbed = hinge_kkt_residual(est, X, y, 1e-6, objective=obj)
    assert residual < 1e-3 * perturbed
    obj.penalty_weights["intercept"].zero_()
    residual, perturbed = hinge_kkt_residual(est, X, y, 1e-6, objective=obj)
    assert residual > 1e-2 * perturbed


# --------------------------------------------------------------------- skorch nets


def test_gradient_vanishes_skorch_cross_entropy(net_ce, or_data):
    X, y = or_data
    obj = as_objective(net_ce, **F64)
    assert obj.kind == "cross_entropy" and not obj.log_probabilities
    assert obj.penalty_form is None
    assert stationarity_ratio(net_ce, X, y) < 1e-4


def test_gradient_vanishes_skorch_nll_log_softmax(net_nll, or_data):
    X, y = or_data
    obj = as_objective(net_nll, **F64)
    assert obj.log_probabilities
    # the per-sample losses are the negative log-likelihoods of the net
    logp = net_nll.module_(torch.as_tensor(X)).detach()
    expected = -logp[np.arange(len(y)), y]
    np.testing.assert_allclose(obj.sample_losses(X, y).numpy(), expected.numpy(), rtol=1e-12)
    assert stationarity_ratio(net_nll, X, y) < 1e-4


def test_weight_decay_enters_as_mean_form_penalty(net_wd, or_data):
    X, y = or_data
    n = len(X)
    obj = as_objective(net_wd, **F64)
    assert obj.penalty_form == "mean"
    assert obj.kappa(n) == pytest.approx(n * obj.penalty_strength)
    for name, weight in obj.penalty_weights.items():
        np.testing.assert_allclose((weight * obj.penalty_strength).numpy(), 1e-2, err_msg=name)
    full = float(obj.objective_gradient(X, y).norm())
    perturbed = perturbed_gradient_norm(obj, X, y)
    assert full < 1e-2 * perturbed
    # without the penalty term the gradient is not small
    loss_only = float(obj.loss_gradient_sum(X, y).norm())
    assert loss_only > 100 * full
    # the penalty gradient is weight_decay * w, per sample (torch's SGD)
    flat = obj.flat_params()
    np.testing.assert_allclose(
        (obj.kappa(n) * obj.penalty_gradient() / n).numpy(), (1e-2 * flat).numpy(), rtol=1e-12
    )


def test_skorch_classifier_default_nllloss_on_probabilities(or_data, mlp_class):
    from skorch import NeuralNetClassifier

    X, y = or_data
    torch.manual_seed(0)
    net = NeuralNetClassifier(  # skorch's default criterion: NLLLoss on probabilities
        mlp_class,
        module__output="softmax",
        optimizer=torch.optim.LBFGS,
        lr=1.0,
        optimizer__line_search_fn="strong_wolfe",
        optimizer__tolerance_grad=1e-12,
        optimizer__tolerance_change=0.0,
        optimizer__max_iter=50,
        max_epochs=20,
        batch_size=-1,
        train_split=None,
        callbacks="disable",
    )
    fit_quiet(net, X, y)
    obj = as_objective(net, **F64)
    proba = net.predict_proba(X)
    expected = -np.log(proba[np.arange(len(y)), y] + np.finfo(np.float64).eps)
    np.testing.assert_allclose(obj.sample_losses(X, y).numpy(), expected, rtol=1e-6)


def test_dropout_is_evaluated_in_eval_mode(or_data, mlp_class):
    from skorch import NeuralNetClassifier

    X, y = or_data
    torch.manual_seed(0)
    net = NeuralNetClassifier(
        mlp_class,
        module__dropout=0.5,
        module__n_hidden=16,
        criterion=torch.nn.CrossEntropyLoss,
        max_epochs=2,
        batch_size=-1,
        train_split=None,
        callbacks="disable",
    )
    fit_quiet(net, X, y)
    obj = as_objective(net, **F64)
    first, second = obj.outputs(X), obj.outputs(X)
    assert torch.equal(first, second)
    net.module_.eval()
    np.testing.assert_allclose(
        first.numpy(), net.module_(torch.as_tensor(X)).detach().numpy(), rtol=1e-12
    )
    # dropout is really active in train mode, so the check above means something
    net.module_.train()
    assert not torch.allclose(net.module_(torch.as_tensor(X)), first)
    g1, g2 = obj.loss_gradient_sum(X, y), obj.loss_gradient_sum(X, y)
    assert torch.equal(g1, g2)


def test_skorch_frozen_net_is_unwrapped(net_ce, or_data):
    X, y = or_data
    a = as_objective(net_ce, **F64)
    b = as_objective(FrozenEstimator(net_ce), **F64)
    assert b.estimator is net_ce
    assert torch.equal(a.loss_gradient_sum(X, y), b.loss_gradient_sum(X, y))
    assert b.head == ["out.weight", "out.bias"]


def test_skorch_to_estimator(net_ce, or_data):
    X, _ = or_data
    obj = as_objective(net_ce, **F64)
    before = {k: v.detach().clone() for k, v in net_ce.module_.named_parameters()}
    flat = obj.flat_params()
    new = obj.to_estimator(2.0 * flat)
    for name, value in net_ce.module_.named_parameters():
        assert torch.equal(value, before[name])
    for name, value in new.module_.named_parameters():
        assert torch.allclose(value, 2.0 * before[name])
    np.testing.assert_allclose(
        new.forward(X).numpy(), obj.outputs(X, obj.unflatten(2.0 * flat)).numpy(), rtol=1e-12
    )


# ------------------------------------------------------------- gradient bookkeeping


def _fitted(kind, data):
    X, y = data
    if kind == "binary":
        return LogisticRegression(C=2.0).fit(X, y)
    if kind == "multinomial":
        return fit_quiet(LogisticRegression(), X, y)
    if kind == "ovr":
        return fit_quiet(LinearSVC(), X, y)
    raise AssertionError(kind)


@pytest.mark.parametrize(
    "kind, data",
    [("binary", "gaussian"), ("multinomial", "digits3"), ("ovr", "blobs3")],
)
def test_per_sample_gradients_sum_and_batching(kind, data, request):
    X, y = request.getfixturevalue(data)
    obj = as_objective(_fitted(kind, (X, y)), **F64)
    per_sample = obj.per_sample_gradients(X, y)
    assert per_sample.shape == (len(X), obj.n_params)
    total = obj.loss_gradient_sum(X, y)
    np.testing.assert_allclose(per_sample.sum(0).numpy(), total.numpy(), rtol=1e-10, atol=1e-10)
    batched = obj.loss_gradient_sum(X, y, batch_size=7)
    np.testing.assert_allclose(batched.numpy(), total.numpy(), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(
        obj.objective_gradient(X, y, batch_size=7).numpy(),
        obj.objective_gradient(X, y).numpy(),
        rtol=1e-10,
        atol=1e-10,
    )
    np.testing.assert_allclose(
        obj.mean_gradient(X, y).numpy(), (obj.objective_gradient(X, y) / len(X)).numpy()
    )


def test_per_sample_gradients_regression_and_net(regression, net_ce, or_data):
    X, _, Y = regression
    obj = as_objective(Ridge(alpha=1.0).fit(X, Y), **F64)
    per_sample = obj.per_sample_gradients(X, Y)
    np.testing.assert_allclose(
        per_sample.sum(0).numpy(),
        obj.loss_gradient_sum(X, Y, batch_size=7).numpy(),
        rtol=1e-10,
        atol=1e-12,
    )
    # squared loss: grad_coef = (h - y) x^T, grad_intercept = h - y (independent formula)
    est = obj.estimator
    resid = est.predict(X[:1]) - Y[:1]
    expected = np.concatenate([np.outer(resid[0], X[0]).ravel(), resid[0]])
    np.testing.assert_allclose(per_sample[0].numpy(), expected, rtol=1e-10)

    Xo, yo = or_data
    obj = as_objective(net_ce, **F64)
    np.testing.assert_allclose(
        obj.per_sample_gradients(Xo, yo).sum(0).numpy(),
        obj.loss_gradient_sum(Xo, yo, batch_size=7).numpy(),
        rtol=1e-9,
        atol=1e-12,
    )


# ------------------------------------------- per-sample gradients, row by row
#
# Each row of ``per_sample_gradients`` is checked against a closed-form numpy
# gradient (linear models) or a per-row torch.autograd loop (nets), not only
# through the sum of the rows.  The rows are evaluated on jittered features so
# no margin sits on a kink of the hinge losses.


def _dl_margin(loss, t):
    """l'(t) of the binary margin losses in closed form (away from kinks)."""
    if loss == "logistic":
        return -1.0 / (1.0 + np.exp(t))
    if loss == "hinge":
        return -(t < 1.0).astype(float)
    if loss == "squared_hinge":
        return -2.0 * np.maximum(0.0, 1.0 - t)
    if loss == "modified_huber":
        return np.where(t < -1.0, -4.0, -2.0 * np.maximum(0.0, 1.0 - t))
    if loss == "squared":  # (1 - t)^2 / 2
        return t - 1.0
    raise AssertionError(loss)


def _linear_rows(coef, intercept, X, dh):
    """Rows ``[vec(dh_i x_i^T), dh_i]`` for h = X coef^T + intercept, dl/dh = dh."""
    rows = np.einsum("ik,id->ikd", dh, X).reshape(len(X), -1)
    return rows if intercept is None else np.hstack([rows, dh])


def _expected_linear_rows(est, kind, X, y, loss=None):
    coef = np.atleast_2d(est.coef_)
    intercept = None
    if getattr(est, "fit_intercept", True):
        intercept = np.broadcast_to(np.asarray(est.intercept_, dtype=float), (coef.shape[0],))
    h = X @ coef.T + (0.0 if intercept is None else intercept)
    if kind == "squared":
        Y = y.reshape(len(X), -1)
        return _linear_rows(coef, intercept, X, h - Y)  # l = (h - y)^2 / 2
    classes = est.classes_
    if kind == "binary_margin":
        s = np.where(y == classes[1], 1.0, -1.0)[:, None]
    elif kind == "ovr_margin":  # one sign per class: +1 for the row's class
        s = np.where(y[:, None] == classes[None, :], 1.0, -1.0)
    else:  # multinomial cross-entropy: dl/dh = softmax(h) - onehot
        p = np.exp(h - h.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        return _linear_rows(coef, intercept, X, p - (y[:, None] == classes[None, :]))
    return _linear_rows(coef, intercept, X, s * _dl_margin(loss, s * h))


LINEAR_ROW_CASES = {
    # id: (estimator factory, data fixture, objective kind, margin loss)
    "logreg-binary": (lambda: LogisticRegression(C=2.0), "gaussian", "binary_margin", "logistic"),
    "logreg-binary-nointercept": (
        lambda: LogisticRegression(fit_intercept=False), "gaussian", "binary_margin", "logistic"),
    "logreg-liblinear": (
        lambda: LogisticRegression(solver="liblinear", intercept_scaling=2.0), "gaussian",
        "binary_margin", "logistic"),
    "logreg-multinomial": (lambda: LogisticRegression(), "digits3", "cross_entropy", None),
    "sgd-hinge": (
        lambda: SGDClassifier(loss="hinge", random_state=0), "gaussian", "binary_margin", "hinge"),
    "sgd-log_loss": (
        lambda: SGDClassifier(loss="log_loss", random_state=0), "gaussian", "binary_margin",
        "logistic"),
    "sgd-modified_huber": (
        lambda: SGDClassifier(loss="modified_huber", random_state=0), "gaussian",
        "binary_margin", "modified_huber"),
    "sgd-log_loss-ovr": (
        lambda: SGDClassifier(loss="log_loss", random_state=0), "blobs3", "ovr_margin",
        "logistic"),
    "sgd-squared_hinge-ovr": (
        lambda: SGDClassifier(loss="squared_hinge", random_state=0), "blobs3", "ovr_margin",
        "squared_hinge"),
    "svc-hinge": (lambda: LinearSVC(loss="hinge"), "gaussian", "binary_margin", "hinge"),
    "svc-squared_hinge-ovr": (lambda: LinearSVC(), "blobs3", "ovr_margin", "squared_hinge"),
    "ridge-classifier-binary": (
        lambda: RidgeClassifier(alpha=2.0), "gaussian", "binary_margin", "squared"),
    "ridge-classifier-ovr": (lambda: RidgeClassifier(), "blobs3", "ovr_margin", "squared"),
}


@pytest.mark.parametrize("case", list(LINEAR_ROW_CASES))
def test_per_sample_gradients_rows_match_closed_form(case, request):
    factory, data, kind, loss = LINEAR_ROW_CASES[case]
    X, y = request.getfixturevalue(data)
    est = fit_quiet(factory(), X, y)
    obj = as_objective(est, **F64)
    assert obj.kind == kind
    # jittered rows, and labels that disagree with the model on a third of them, so
    # every branch of every loss (both signs, both sides of each kink) is exercised
    rng = np.random.RandomState(0)
    Xj = X + 0.05 * rng.normal(size=X.shape)
    yj = y.copy()
    flip = rng.rand(len(y)) < 1 / 3
    yj[flip] = est.classes_[(np.searchsorted(est.classes_, y[flip]) + 1) % len(est.classes_)]
    got = obj.per_sample_gradients(Xj, yj).numpy()
    expected = _expected_linear_rows(est, kind, Xj, yj, loss)
    assert got.shape == expected.shape
    # rtol 1e-8: torch's softplus turns linear past margins of -20 (an error of e^-20)
    np.testing.assert_allclose(got, expected, rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("target", ["Y", "y"])
def test_per_sample_gradients_rows_regression(target, regression):
    X, y, Y = regression
    labels = Y if target == "Y" else y
    for est in (Ridge(alpha=3.0).fit(X, labels), LinearRegression().fit(X, labels)):
        obj = as_objective(est, **F64)
        rng = np.random.RandomState(1)
        Xj, yj = X + 0.1 * rng.normal(size=X.shape), labels + rng.normal(size=labels.shape)
        np.testing.assert_allclose(
            obj.per_sample_gradients(Xj, yj).numpy(),
            _expected_linear_rows(est, "squared", Xj, yj),
            rtol=1e-9, atol=1e-12,
        )


def _autograd_rows(module, X, y, loss_of_output):
    """One torch.autograd.grad call per row, on a float64 eval-mode copy of the module."""
    module = copy.deepcopy(module).double().eval()
    params = list(module.parameters())
    rows = []
    for x, t in zip(torch.as_tensor(X, dtype=torch.float64), torch.as_tensor(y)):
        loss = loss_of_output(module(x.unsqueeze(0)), t.unsqueeze(0))
        rows.append(torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, params)]))
    return torch.stack(rows).numpy()


def _nll_on_probabilities(p, t):
    return -torch.log(p[0, t[0]])


@pytest.mark.parametrize(
    "net_name, loss_of_output",
    [
        ("net_ce", lambda h, t: torch.nn.functional.cross_entropy(h, t)),
        ("net_nll", lambda h, t: torch.nn.functional.nll_loss(h, t)),
        ("net_wd", lambda h, t: torch.nn.functional.cross_entropy(h, t)),
        ("net_proba", _nll_on_probabilities),
    ],
)
def test_per_sample_gradients_rows_match_autograd_for_nets(
    net_name, loss_of_output, or_data, mlp_class, request
):
    X, y = or_data
    if net_name == "net_proba":  # skorch's default: NLLLoss on probabilities
        from skorch import NeuralNetClassifier

        torch.manual_seed(0)
        net = fit_quiet(NeuralNetClassifier(
            mlp_class, module__output="softmax", max_epochs=3, lr=0.5, batch_size=-1,
            train_split=None, callbacks="disable"), X, y)
    else:
        net = request.getfixturevalue(net_name)
    obj = as_objective(net, **F64)
    rng = np.random.RandomState(0)
    Xj = X[:25] + 0.1 * rng.normal(size=(25, X.shape[1]))
    yj = rng.randint(2, size=25)  # both labels at every kind of point
    got = obj.per_sample_gradients(Xj, yj).numpy()
    # the objective's parameters are the module's, in named_parameters order
    assert list(obj.params) == [k for k, _ in net.module_.named_parameters()]
    expected = _autograd_rows(net.module_, Xj, yj, loss_of_output)
    np.testing.assert_allclose(got, expected, rtol=1e-7, atol=1e-10)


def test_logistic_gradient_matches_closed_form(gaussian):
    # binary logistic loss: grad = -y sigmoid(-t) [x, 1] with t = y h, y in {-1, +1}
    X, y = gaussian
    est = LogisticRegression(C=2.0).fit(X, y)
    obj = as_objective(est, **F64)
    ypm = 2.0 * y - 1.0
    t = ypm * est.decision_function(X)
    coef_factor = -ypm / (1.0 + np.exp(t))
    expected = np.concatenate([X.T @ coef_factor, [coef_factor.sum()]])
    np.testing.assert_allclose(obj.loss_gradient_sum(X, y).numpy(), expected, rtol=1e-10)
    # and the per-sample losses are sklearn's log-loss
    assert float(obj.sample_losses(X, y).mean()) == pytest.approx(
        log_loss(y, est.predict_proba(X)), rel=1e-10
    )


def test_multinomial_losses_match_log_loss(digits3):
    X, y = digits3
    est = fit_quiet(LogisticRegression(), X, y)
    obj = as_objective(est, **F64)
    assert obj.kind == "cross_entropy"
    assert float(obj.sample_losses(X, y).mean()) == pytest.approx(
        log_loss(y, est.predict_proba(X)), rel=1e-9
    )


@pytest.mark.parametrize(
    "factory, data",
    [
        (lambda: LogisticRegression(), "gaussian"),
        (lambda: LogisticRegression(), "digits3"),
        (lambda: LinearSVC(), "blobs3"),
        (lambda: RidgeClassifier(), "gaussian"),
        (lambda: SGDClassifier(random_state=0), "blobs3"),
    ],
)
def test_outputs_are_decision_function(factory, data, request):
    X, y = request.getfixturevalue(data)
    est = fit_quiet(factory(), X, y)
    obj = as_objective(est, **F64)
    out = obj.outputs(X).numpy()
    expected = est.decision_function(X)
    np.testing.assert_allclose(out.reshape(expected.shape), expected)


def test_poison_feature_gradient_matches_closed_form(gaussian):
    # binary logistic: <d, grad_w l> = l'(t) y (d_w . x + d_b), so its gradient in x is
    # l''(t) (d_w . x + d_b) w + l'(t) y d_w   (y^2 = 1; l' = -sigmoid(-t), l'' = s(1-s))
    X, y = gaussian
    est = LogisticRegression(C=2.0).fit(X, y)
    obj = as_objective(est, **F64)
    rng = np.random.RandomState(0)
    direction = torch.as_tensor(rng.normal(size=obj.n_params))
    Xp, yp = X[:9] + rng.normal(size=(9, X.shape[1])), y[:9]
    got, gradient_sum = obj.poison_feature_gradient(Xp, yp, direction)
    got = got.numpy()
    np.testing.assert_allclose(gradient_sum.numpy(), obj.loss_gradient_sum(Xp, yp).numpy())
    w, b = est.coef_.ravel(), est.intercept_[0]
    d_w, d_b = direction.numpy()[:-1], direction.numpy()[-1]
    ypm = 2.0 * yp - 1.0
    t = ypm * (Xp @ w + b)
    sig = 1.0 / (1.0 + np.exp(t))  # sigmoid(-t)
    inner = Xp @ d_w + d_b
    expected = (sig * (1 - sig) * inner)[:, None] * w[None, :]
    expected += (-sig * ypm)[:, None] * d_w[None, :]
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kind", ["linear", "perceptron", "cnn"])
def test_binary_margin_reads_the_first_of_several_outputs_in_every_closed_form(kind):
    # BinaryMarginLoss scores the first output only; the closed forms (affine,
    # perceptron, CNN) must give the other outputs zero derivatives, as autograd does
    from skpoison.models import CNN

    torch.manual_seed(0)
    module = {
        "linear": lambda: torch.nn.Linear(64, 2),
        "perceptron": lambda: torch.nn.Sequential(torch.nn.Linear(64, 5), torch.nn.ReLU(),
                                                  torch.nn.Linear(5, 2)),
        "cnn": lambda: CNN(image_shape=(1, 8, 8), n_classes=2, hidden_size=5,
                           channels=(3, 4)),
    }[kind]().double().eval()
    params = {k: v.detach() for k, v in module.named_parameters()}
    objective = Objective(module, params, loss=BinaryMarginLoss("logistic"),
                          classes=np.arange(2), **F64)
    closed = {"linear": "_affine", "perceptron": "_perceptron", "cnn": "_cnn"}[kind]
    assert getattr(objective, closed) is not None
    generic = copy.copy(objective)
    generic._affine = generic._perceptron = generic._cnn = None
    rng = np.random.RandomState(0)
    X = torch.as_tensor(rng.normal(size=(7, 64)))
    y = objective.encode_labels(rng.randint(2, size=7))
    r = torch.as_tensor(rng.normal(size=objective.n_params))
    got, got_sum = objective.poison_feature_gradient(X, y, r, encoded=True)
    expected, expected_sum = generic.poison_feature_gradient(X, y, r, encoded=True)
    assert float(expected.norm()) > 0
    np.testing.assert_allclose(got_sum.numpy(), expected_sum.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-9, atol=1e-12)


def test_poison_feature_gradient_finite_differences(digits3, net_wd, or_data):
    # multinomial model and a (weight-decayed, so smooth) net: compare with central
    # differences of <d, sum grad_w l>
    for est, (X, y) in ((fit_quiet(LogisticRegression(), *digits3), digits3), (net_wd, or_data)):
        obj = as_objective(est, **F64)
        rng = np.random.RandomState(1)
        direction = torch.as_tensor(rng.normal(size=obj.n_params))
        Xp, yp = X[:3].copy(), y[:3]
        got = obj.poison_feature_gradient(Xp, yp, direction)[0].numpy()
        # the one-pass form: r computed from the rows' own gradient sum
        one_pass = obj.poison_feature_gradient(Xp, yp, lambda g: direction)[0].numpy()
        np.testing.assert_allclose(one_pass, got)

        def value(Z):
            return float(obj.loss_gradient_sum(Z, yp) @ direction)

        h = 1e-6
        for i, j in [(0, 0), (1, X.shape[1] - 1), (2, X.shape[1] // 2)]:
            up, down = Xp.copy(), Xp.copy()
            up[i, j] += h
            down[i, j] -= h
            numeric = (value(up) - value(down)) / (2 * h)
            assert got[i, j] == pytest.approx(numeric, rel=1e-5, abs=1e-7)


def test_penalty_forms_and_kappa(gaussian, regression, net_ce, net_wd):
    X, y = gaussian
    obj = as_objective(LogisticRegression(C=2.0).fit(X, y), **F64)
    assert obj.penalty_form == "sum"
    for n in (1, 10, 1000):
        assert obj.kappa(n) == pytest.approx(0.5)
    # intercept unpenalised (lbfgs); penalty gradient is (coef, 0)
    flat = obj.flat_params()
    np.testing.assert_allclose(
        obj.penalty_gradient().numpy(), np.concatenate([flat[:-1].numpy(), [0.0]])
    )

    sgd = fit_quiet(SGDClassifier(alpha=0.01, random_state=0), X, y)
    obj = as_objective(sgd, **F64)
    assert obj.penalty_form == "mean"
    for n in (1, 10, 1000):
        assert obj.kappa(n) == pytest.approx(0.01 * n)
    assert obj.penalty_weights["intercept"].item() == 0.0

    obj = as_objective(LogisticRegression(C=np.inf).fit(X, y), **F64)
    assert obj.penalty_form is None and obj.kappa(100) == 0.0

    obj = as_objective(fit_quiet(LinearSVC(C=4.0, intercept_scaling=2.0), X, y), **F64)
    assert obj.penalty_form == "sum" and obj.kappa(77) == pytest.approx(0.25)
    assert obj.penalty_weights["intercept"].item() == pytest.approx(0.25)  # 1 / scaling^2

    obj = as_objective(LogisticRegression(solver="liblinear").fit(X, y), **F64)
    assert obj.penalty_weights["intercept"].item() == pytest.approx(1.0)

    obj = as_objective(fit_quiet(SGDClassifier(penalty=None, random_state=0), X, y), **F64)
    assert obj.penalty_form is None and obj.kappa(10) == 0.0

    Xr, yr, _ = regression
    obj = as_objective(Ridge(alpha=3.0).fit(Xr, yr), **F64)
    assert obj.penalty_form == "sum" and obj.kappa(5) == pytest.approx(3.0)
    obj = as_objective(LinearRegression().fit(Xr, yr), **F64)
    assert obj.penalty_form is None and obj.kappa(5) == 0.0

    assert as_objective(net_ce, **F64).penalty_form is None
    wd = as_objective(net_wd, **F64)
    assert wd.penalty_form == "mean" and wd.kappa(10) == pytest.approx(10 * wd.penalty_strength)


def test_to_estimator_does_not_modify_source(gaussian, regression):
    X, y = gaussian
    est = LogisticRegression().fit(X, y)
    coef, intercept = est.coef_.copy(), est.intercept_.copy()
    obj = as_objective(est, **F64)
    flat = obj.flat_params()
    new = obj.to_estimator(-flat)
    np.testing.assert_array_equal(est.coef_, coef)
    np.testing.assert_array_equal(est.intercept_, intercept)
    assert new is not est
    np.testing.assert_allclose(new.coef_, -coef)
    np.testing.assert_allclose(new.intercept_, -intercept)
    np.testing.assert_allclose(new.decision_function(X), -est.decision_function(X))
    # the objective's own parameters are not changed either
    assert torch.equal(obj.flat_params(), flat)
    with pytest.raises(ValueError, match="shape"):
        obj.to_estimator(flat[:-1])

    Xr, yr, _ = regression
    ridge = Ridge().fit(Xr, yr)
    obj = as_objective(ridge, **F64)
    new = obj.to_estimator(2 * obj.flat_params())
    assert np.shape(new.intercept_) == np.shape(ridge.intercept_)
    assert new.coef_.shape == ridge.coef_.shape
    np.testing.assert_allclose(new.predict(Xr), 2 * ridge.predict(Xr))


def test_frozen_estimator_is_unwrapped(gaussian):
    X, y = gaussian
    est = LogisticRegression().fit(X, y)
    obj = as_objective(FrozenEstimator(est), **F64)
    assert obj.estimator is est
    direct = as_objective(est, **F64)
    assert torch.equal(obj.loss_gradient_sum(X, y), direct.loss_gradient_sum(X, y))


def test_float32_default_close_to_float64(gaussian):
    X, y = gaussian
    est = LogisticRegression().fit(X, y)
    g32 = as_objective(est, device="cpu").loss_gradient_sum(X, y)
    g64 = as_objective(est, **F64).loss_gradient_sum(X, y)
    assert g32.dtype == torch.float32
    np.testing.assert_allclose(g32.numpy(), g64.numpy(), rtol=1e-4, atol=1e-4)


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    "factory, match",
    [
        (lambda: DecisionTreeClassifier(random_state=0), "LogisticRegression"),
        (lambda: LogisticRegression(penalty="l1", solver="liblinear"), "L1.*L2 or no penalty"),
        (lambda: LogisticRegression(l1_ratio=1.0, solver="saga", max_iter=50), "L1.*L2"),
        (lambda: LogisticRegression(l1_ratio=0.5, solver="saga", max_iter=50), "L1.*L2"),
        (lambda: LogisticRegression(class_weight="balanced"), "class_weight.*no sample or class"),
        (lambda: LogisticRegressionCV(Cs=2, cv=2), "LogisticRegressionCV"),
        (lambda: SGDClassifier(loss="perceptron"), "perceptron.*log_loss.*modified_huber"),
        (lambda: SGDClassifier(penalty="l1"), "penalty='l1'.*L2"),
        (lambda: SGDClassifier(class_weight="balanced"), "class_weight"),
        (lambda: LinearSVC(class_weight="balanced"), "class_weight"),
        (lambda: LinearSVC(penalty="l1", dual=False), "penalty"),
        (lambda: RidgeClassifier(class_weight="balanced"), "class_weight"),
    ],
)
def test_unsupported_classifiers_raise_type_error(factory, match, gaussian):
    X, y = gaussian
    est = fit_quiet(factory(), X, y)
    with pytest.raises(TypeError, match=match):
        as_objective(est, **F64)


def test_unsupported_error_names_supported_estimators(gaussian):
    X, y = gaussian
    with pytest.raises(TypeError) as info:
        as_objective(DecisionTreeClassifier().fit(X, y))
    message = str(info.value)
    assert "DecisionTreeClassifier" in message
    for name in ("LogisticRegression", "SGDClassifier", "LinearSVC", "Ridge", "skorch"):
        assert name in message
    assert len(supported_estimators()) >= 7


def test_unsupported_regressors_and_nets(regression, or_data, mlp_class):
    X, y, Y = regression
    with pytest.raises(TypeError, match="positive"):
        as_objective(Ridge(positive=True).fit(X, y))
    with pytest.raises(TypeError, match="positive"):
        as_objective(LinearRegression(positive=True).fit(X, y))
    with pytest.raises(TypeError, match="alpha"):
        as_objective(Ridge(alpha=np.array([1.0, 2.0])).fit(X, Y))

    from skorch import NeuralNetClassifier

    Xo, yo = or_data
    base = dict(max_epochs=1, batch_size=-1, train_split=None, callbacks="disable")
    net = NeuralNetClassifier(mlp_class, criterion=torch.nn.MultiMarginLoss, **base)
    fit_quiet(net, Xo, yo)
    with pytest.raises(TypeError, match="CrossEntropyLoss"):
        as_objective(net)
    net = fit_quiet(
        NeuralNetClassifier(
            mlp_class,
            criterion=torch.nn.CrossEntropyLoss,
            criterion__label_smoothing=0.1,
            **base,
        ),
        Xo,
        yo,
    )
    with pytest.raises(TypeError, match="label_smoothing"):
        as_objective(net)
    net = fit_quiet(
        NeuralNetClassifier(
            mlp_class,
            criterion=torch.nn.CrossEntropyLoss,
            criterion__weight=torch.tensor([1.0, 2.0], dtype=torch.float64),
            **base,
        ),
        Xo,
        yo,
    )
    with pytest.raises(TypeError, match="weights"):
        as_objective(net)


def test_adamw_decoupled_decay_warns_and_is_ignored(or_data, mlp_class):
    from skorch import NeuralNetClassifier

    X, y = or_data
    net = NeuralNetClassifier(
        mlp_class,
        criterion=torch.nn.CrossEntropyLoss,
        optimizer=torch.optim.AdamW,
        optimizer__weight_decay=0.1,
        max_epochs=1,
        batch_size=-1,
        train_split=None,
        callbacks="disable",
    )
    fit_quiet(net, X, y)
    with pytest.warns(UserWarning, match="AdamW"):
        obj = as_objective(net, **F64)
    assert obj.penalty_form is None


def test_unfitted_raises_not_fitted(mlp_class):
    from skorch import NeuralNetClassifier

    for est in (LogisticRegression(), SGDClassifier(), LinearSVC(), Ridge(), LinearRegression()):
        with pytest.raises(NotFittedError):
            as_objective(est)
    with pytest.raises(NotFittedError):
        as_objective(NeuralNetClassifier(mlp_class))


def test_unknown_labels_raise_value_error(gaussian, digits3, net_ce, regression):
    X, y = gaussian
    obj = as_objective(LogisticRegression().fit(X, y), **F64)
    np.testing.assert_array_equal(obj.encode_labels(np.array([0, 1, 1])).numpy(), [-1, 1, 1])
    with pytest.raises(ValueError, match=r"\[2\]"):
        obj.encode_labels(np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="does not know"):
        obj.loss_gradient_sum(X[:3], np.array([0, 1, 5]))

    Xd, yd = digits3
    obj = as_objective(fit_quiet(LogisticRegression(), Xd, yd), **F64)
    np.testing.assert_array_equal(obj.encode_labels(np.array([2, 0])).numpy(), [2, 0])
    with pytest.raises(ValueError, match=r"\[7\]"):
        obj.encode_labels(np.array([0, 7]))
    obj = as_objective(fit_quiet(LinearSVC(), Xd, yd), **F64)
    np.testing.assert_array_equal(
        obj.encode_labels(np.array([1])).numpy(), [[-1.0, 1.0, -1.0]]
    )
    with pytest.raises(ValueError):
        obj.encode_labels(np.array([-1]))

    with pytest.raises(ValueError, match="does not know"):
        as_objective(net_ce, **F64).encode_labels(np.array([0, 3]))

    Xr, _, Y = regression
    obj = as_objective(Ridge().fit(Xr, Y), **F64)
    with pytest.raises(ValueError, match="outputs"):
        obj.encode_labels(np.zeros((4, 3)))


def test_column_vector_class_labels(gaussian):
    X, y = gaussian
    obj = as_objective(LogisticRegression().fit(X, y), **F64)
    expected = obj.loss_gradient_sum(X[:5], y[:5])
    # like scikit-learn's classifiers: a column vector is raveled, with a warning
    with pytest.warns(DataConversionWarning, match="column-vector"):
        got = obj.loss_gradient_sum(X[:5], y[:5].reshape(-1, 1))
    np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-12)
    with pytest.warns(DataConversionWarning, match="column-vector"):
        rows = obj.per_sample_gradients(X[:5], y[:5].reshape(-1, 1))
    np.testing.assert_allclose(rows.numpy(), obj.per_sample_gradients(X[:5], y[:5]).numpy())


def test_objective_rejects_bad_loss():
    module = torch.nn.Linear(2, 1)
    with pytest.raises(TypeError, match="TrainingLoss"):
        Objective(module, dict(module.named_parameters()), loss="hinge")
    with pytest.raises(ValueError, match="margin loss"):
        BinaryMarginLoss("zero_one")


def test_objective_does_not_touch_the_estimator(gaussian, net_ce, or_data):
    X, y = gaussian
    est = LogisticRegression().fit(X, y)
    snapshot = copy.deepcopy(est.__dict__)
    obj = as_objective(est, **F64)
    obj.objective_gradient(X, y)
    obj.per_sample_gradients(X, y)
    for key, value in snapshot.items():
        np.testing.assert_array_equal(getattr(est, key), value)
    # skorch: the net's module keeps its mode (train or eval; the objective itself is
    # evaluated in eval mode) and its parameters keep requires_grad
    Xo, yo = or_data
    module = net_ce.module_
    before = {k: v.detach().clone() for k, v in module.state_dict().items()}
    original = module.training
    grads = [None if p.grad is None else p.grad.clone() for p in module.parameters()]
    try:
        for mode in (True, False):
            module.train(mode)
            obj = as_objective(net_ce, **F64)
            obj.objective_gradient(Xo, yo)
            obj.per_sample_gradients(Xo, yo)
            obj.poison_feature_gradient(Xo[:3], yo[:3], obj.flat_params())
            assert all(m.training is mode for m in module.modules())
            assert all(p.requires_grad for p in module.parameters())
            for p, g in zip(module.parameters(), grads):  # no gradient accumulated
                assert (p.grad is None) if g is None else torch.equal(p.grad, g)
    finally:
        module.train(original)
    for key, value in module.state_dict().items():
        assert torch.equal(value, before[key]), key


def _affine_cases():
    from skorch import NeuralNetClassifier

    from skpoison.models import LogisticRegressionNet
    from skpoison.objectives import LinearModule

    rng = np.random.RandomState(0)
    X = rng.normal(size=(60, 5))
    y2 = (X[:, 0] + 0.5 * rng.normal(size=60) > 0).astype(int)
    y3 = np.digitize(X[:, 1] + 0.3 * rng.normal(size=60), [-0.5, 0.5])
    yr = X @ rng.normal(size=(5, 2)) + rng.normal(size=(60, 2))
    cases = [
        ("logistic binary", LogisticRegression(), y2),
        ("logistic multinomial", LogisticRegression(), y3),
        ("logistic one-vs-rest", SGDClassifier(loss="log_loss", random_state=0), y3),
        ("hinge binary", LinearSVC(), y2),
        ("squared hinge one-vs-rest", LinearSVC(loss="squared_hinge"), y3),
        ("modified huber", SGDClassifier(loss="modified_huber", random_state=0), y3),
        ("squared margin", RidgeClassifier(), y3),
        ("squared regression", Ridge(), yr),
        ("squared regression, one output", LinearRegression(), yr[:, 0]),
    ]
    out = [(name, fit_quiet(est, X, y), y) for name, est, y in cases]
    net = NeuralNetClassifier(
        LogisticRegressionNet, module__n_features=5, module__n_classes=3, max_epochs=3,
        criterion=torch.nn.CrossEntropyLoss, train_split=None, verbose=0,
    )
    out.append(("LogisticRegressionNet", net.fit(X.astype(np.float32), y3), y3))
    module = LinearModule(5, 1, fit_intercept=False)
    params = {"coef": torch.as_tensor(rng.normal(size=(1, 5)))}
    exponential = Objective(module, params, loss=BinaryMarginLoss("exponential"),
                            classes=np.array([0, 1]), fit_intercept=False, linear=True, **F64)
    out.append(("exponential, no intercept", exponential, y2))
    return X, out


def test_affine_feature_gradient_matches_autograd():
    # the closed form of affine models against the double backward, for every linear
    # loss, in the one-pass (callable residual) and batched forms
    X, cases = _affine_cases()
    rng = np.random.RandomState(1)
    for name, est, y in cases:
        obj = est if isinstance(est, Objective) else as_objective(est, **F64)
        assert obj._affine is not None, name
        generic = copy.copy(obj)
        generic._affine = None
        Xp = X[:17] + rng.normal(size=(17, 5))
        yp = obj.encode_labels(y[:17])
        base = torch.as_tensor(rng.normal(size=obj.n_params))

        def direction(s):
            return base + s / 7.0

        expected, expected_sum = generic.poison_feature_gradient(Xp, yp, direction, encoded=True)
        assert float(expected.norm()) > 0, name
        for batch_size in (None, 5):
            got, got_sum = obj.poison_feature_gradient(
                Xp, yp, direction, encoded=True, batch_size=batch_size
            )
            np.testing.assert_allclose(got_sum.numpy(), expected_sum.numpy(), rtol=1e-10,
                                       atol=1e-10, err_msg=name)
            np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-6,
                                       atol=1e-9 * float(expected.abs().max()), err_msg=name)
        # a fixed residual, batched: the generic batched form agrees too
        fixed = obj.poison_feature_gradient(Xp, yp, base, encoded=True, batch_size=4)[0]
        np.testing.assert_allclose(
            fixed.numpy(),
            generic.poison_feature_gradient(Xp, yp, base, encoded=True, batch_size=4)[0].numpy(),
            rtol=1e-6, atol=1e-9 * float(fixed.abs().max()), err_msg=name,
        )


def test_generic_batched_feature_gradient_is_exact(net_wd, or_data):
    # a net: two passes in batches give the one-batch result and gradient sum
    X, y = or_data
    obj = as_objective(net_wd, **F64)
    base = torch.as_tensor(np.random.RandomState(2).normal(size=obj.n_params))
    one, one_sum = obj.poison_feature_gradient(X[:11], y[:11], lambda s: base + s)
    two, two_sum = obj.poison_feature_gradient(X[:11], y[:11], lambda s: base + s, batch_size=3)
    np.testing.assert_allclose(two_sum.numpy(), one_sum.numpy(), rtol=1e-10)
    np.testing.assert_allclose(two.numpy(), one.numpy(), rtol=1e-8, atol=1e-12)


def test_memory_batches_are_even(net_wd, or_data):
    # batches that only bound memory split 13 rows by 4 as 4, 3, 3, 3 (never a 1-row
    # remainder) and the results do not depend on it
    from skpoison.attacks._least_squares import ResidualMap

    X, y = or_data
    X, y = X[:13], y[:13]
    obj = as_objective(net_wd, **F64)
    seen = []
    hook = obj.module.register_forward_pre_hook(lambda module, args: seen.append(len(args[0])))
    try:
        base = torch.as_tensor(np.random.RandomState(2).normal(size=obj.n_params))
        one, one_sum = obj.poison_feature_gradient(X, y, lambda s: base + s)
        seen.clear()
        total = obj.loss_gradient_sum(X, y, batch_size=4)
        assert seen == [4, 3, 3, 3]
        seen.clear()
        two, two_sum = obj.poison_feature_gradient(X, y, lambda s: base + s, batch_size=4)
        assert seen == [4, 3, 3, 3] * 2  # the sum's pass, then the feature gradient's
        seen.clear()
        residual_map = ResidualMap(obj, obj.encode_labels(y), base, 13, 4, lagged=True)
        residual_map.residual_and_gradient(obj.as_features(X))
        assert seen == [4, 3, 3, 3] * 2  # the first lagged call is exact: two passes
        seen.clear()
        residual_map.residual_and_gradient(obj.as_features(X))
        assert seen == [4, 3, 3, 3]
    finally:
        hook.remove()
    np.testing.assert_allclose(total.numpy(), one_sum.numpy(), rtol=1e-10)
    np.testing.assert_allclose(two_sum.numpy(), one_sum.numpy(), rtol=1e-10)
    np.testing.assert_allclose(two.numpy(), one.numpy(), rtol=1e-8, atol=1e-12)
