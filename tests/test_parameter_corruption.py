"""Tests of the parameter-corruption targets GradPC and RandomPC."""

import copy

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression, Ridge, SGDClassifier
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.svm import LinearSVC
from sklearn.utils._param_validation import InvalidParameterError

from skpoison import PoisonabilityAnalyzer
from skpoison.datasets import load_digits, make_gaussian
from skpoison.objectives import as_objective
from skpoison.targets import GradPC, RandomPC, TargetRecipe


# the schedule of this package before GradPC followed the paper's released code:
# relative radius, 100 full-batch steps on a held-out 30%, best iterate
OLD = dict(relative=True, validation_fraction=0.3, batch_size=None, max_iter=100,
           iterate="best", train_mode=False)


def _old(**params):
    """GradPC parameters of the earlier schedule, overridden by ``params``."""
    return {**OLD, **params}


def _flat(model):
    """All parameters of a fitted linear model: coef then intercept."""
    return np.concatenate([np.ravel(model.coef_), np.ravel(model.intercept_)])


def _val_loss(model, X, y):
    objective = as_objective(model, device="cpu", dtype="float64")
    return float(objective.sample_losses(X, y).mean())


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)


@pytest.fixture(scope="module")
def clean_lr(digits):
    X_train, _, y_train, _ = digits
    return LogisticRegression(max_iter=1000).fit(X_train, y_train)


# ------------------------------------------------------------------------ the budget
@pytest.mark.parametrize("epsilon_w", [0.1, 0.5, 1.0])
def test_gradpc_l2_budget_holds_and_is_reached(digits, clean_lr, epsilon_w):
    X_train, _, y_train, _ = digits
    gpc = GradPC(FrozenEstimator(clean_lr), **_old(epsilon_w=epsilon_w, random_state=0))
    gpc.fit(X_train, y_train)
    w0, w = _flat(clean_lr), _flat(gpc.target_)
    change = np.linalg.norm(w - w0) / np.linalg.norm(w0)
    assert change <= epsilon_w + 1e-6
    # normalised-gradient ascent ends on the boundary of the ball
    assert change == pytest.approx(epsilon_w, rel=1e-6)
    assert gpc.relative_change_ == pytest.approx(change, rel=1e-9)
    assert gpc.radius_ == pytest.approx(epsilon_w * np.linalg.norm(w0), rel=1e-9)
    # intercepts are corrupted too, not only the coefficients
    assert not np.allclose(gpc.target_.intercept_, clean_lr.intercept_)


@pytest.mark.parametrize("epsilon_w", [0.1, 1.0])
def test_randompc_l2_lies_on_the_sphere(digits, clean_lr, epsilon_w):
    X_train, _, y_train, _ = digits
    rpc = RandomPC(FrozenEstimator(clean_lr), epsilon_w=epsilon_w, relative=True, random_state=0)
    rpc.fit(X_train, y_train)
    w0, w = _flat(clean_lr), _flat(rpc.target_)
    change = np.linalg.norm(w - w0) / np.linalg.norm(w0)
    assert change == pytest.approx(epsilon_w, rel=1e-9)
    assert rpc.relative_change_ <= epsilon_w + 1e-6
    assert rpc.relative_change_ == pytest.approx(change, rel=1e-9)


@pytest.mark.parametrize("Recipe", [GradPC, RandomPC])
def test_absolute_radius(digits, clean_lr, Recipe):
    X_train, _, y_train, _ = digits
    params = _old(relative=False) if Recipe is GradPC else {}
    recipe = Recipe(FrozenEstimator(clean_lr), epsilon_w=0.3, relative=False, random_state=0)
    recipe.set_params(**params)
    recipe.fit(X_train, y_train)
    w0, w = _flat(clean_lr), _flat(recipe.target_)
    assert recipe.radius_ == 0.3
    # the radius is absolute: ||dw|| = 0.3, which is far below 0.3 * ||w0||
    assert np.linalg.norm(w - w0) == pytest.approx(0.3, rel=1e-6)
    assert np.linalg.norm(w0) > 10
    assert recipe.relative_change_ == pytest.approx(0.3 / np.linalg.norm(w0), rel=1e-6)


@pytest.mark.parametrize("relative", [True, False])
def test_linf_stays_in_the_box(digits, clean_lr, relative):
    X_train, _, y_train, _ = digits
    eps = 0.2 if relative else 0.5
    w0 = _flat(clean_lr)
    r = eps * np.abs(w0).max() if relative else eps
    gpc = GradPC(
        FrozenEstimator(clean_lr), epsilon_w=eps, norm="linf", relative=relative, random_state=0
    ).fit(X_train, y_train)
    rpc = RandomPC(
        FrozenEstimator(clean_lr), epsilon_w=eps, norm="linf", relative=relative, random_state=0
    ).fit(X_train, y_train)
    dw_g = _flat(gpc.target_) - w0
    dw_r = _flat(rpc.target_) - w0
    assert gpc.radius_ == pytest.approx(r, rel=1e-12)
    assert np.abs(dw_g).max() <= r * (1 + 1e-9)
    assert np.abs(dw_g).max() == pytest.approx(r, rel=1e-9)
    assert gpc.relative_change_ <= np.abs(dw_g).max() / np.abs(w0).max() * (1 + 1e-9)
    # sign steps leave the L2 ball of the same relative size: the box is what binds
    assert np.linalg.norm(dw_g) > r
    # RandomPC with linf moves every parameter by exactly +-r
    np.testing.assert_allclose(np.abs(dw_r), r, rtol=1e-9)
    if relative:
        assert gpc.relative_change_ <= eps + 1e-6
        assert rpc.relative_change_ == pytest.approx(eps, rel=1e-9)
    # GradPC is the more harmful corruption at the same budget
    assert gpc.score(X_train, y_train) < rpc.score(X_train, y_train) - 0.2


# ---------------------------------------------------------------------- the harm done
def test_gradpc_beats_clean_and_random(digits, clean_lr):
    X_train, X_test, y_train, y_test = digits
    gpc = GradPC(LogisticRegression(max_iter=1000), **_old(epsilon_w=1.0, random_state=0))
    gpc.fit(X_train, y_train)
    rpc = RandomPC(LogisticRegression(max_iter=1000), epsilon_w=1.0, relative=True,
                   random_state=0)
    rpc.fit(X_train, y_train)
    clean_acc = gpc.estimator_.score(X_test, y_test)
    assert clean_acc > 0.9
    np.testing.assert_allclose(gpc.estimator_.coef_, clean_lr.coef_, rtol=1e-6, atol=1e-8)

    # paper protocol (LR, epsilon_w = 1): test accuracy far below clean
    assert gpc.score(X_test, y_test) < clean_acc - 0.5
    assert gpc.score(X_test, y_test) < rpc.score(X_test, y_test) - 0.2

    val = gpc.validation_indices_
    Xv, yv = X_train[val], y_train[val]
    loss_clean = _val_loss(gpc.estimator_, Xv, yv)
    loss_gpc = _val_loss(gpc.target_, Xv, yv)
    loss_rpc = _val_loss(rpc.target_, Xv, yv)
    assert loss_gpc > 10 * loss_clean
    assert loss_gpc > 2 * loss_rpc
    assert gpc.score(Xv, yv) < rpc.score(Xv, yv)
    # target_ is the best iterate of the history
    assert loss_gpc == pytest.approx(gpc.loss_history_.max(), rel=1e-9)
    assert gpc.loss_history_[-1] > gpc.loss_history_[0] > loss_clean


def test_larger_budget_gives_lower_accuracy(digits):
    X_train, X_test, y_train, y_test = digits
    clean = LogisticRegression(max_iter=1000).fit(X_train, y_train)
    scores, losses = [], []
    for eps in (0.02, 0.05, 0.1, 0.5):
        gpc = GradPC(FrozenEstimator(clean), **_old(epsilon_w=eps, random_state=0))
        gpc.fit(X_train, y_train)
        scores.append(gpc.score(X_test, y_test))
        losses.append(gpc.loss_history_.max())
    assert all(a > b for a, b in zip(scores, scores[1:])), scores
    assert all(a < b for a, b in zip(losses, losses[1:])), losses


def test_validation_subset_and_history(digits, clean_lr):
    X_train, _, y_train, _ = digits
    n = len(X_train)
    gpc = GradPC(
        FrozenEstimator(clean_lr), **_old(epsilon_w=0.5, validation_fraction=0.2, max_iter=7,
                                          random_state=0),
    ).fit(X_train, y_train)
    val = gpc.validation_indices_
    assert len(val) == round(0.2 * n)
    assert len(np.unique(val)) == len(val) and np.all(np.diff(val) > 0)
    assert gpc.n_iter_ == 7 and gpc.loss_history_.shape == (7,)
    # default step 2.5 / max_iter * r: after 7 steps the ball's boundary is reached
    assert gpc.relative_change_ == pytest.approx(0.5, rel=1e-6)
    # two steps of 0.1 * r travel at most 0.2 * r: the boundary is not reached
    short = GradPC(
        FrozenEstimator(clean_lr), **_old(epsilon_w=0.5, max_iter=2, step_size=0.1, random_state=0)
    ).fit(X_train, y_train)
    assert 0.1 * 0.5 < short.relative_change_ <= 0.2 * 0.5 + 1e-9
    tiny = GradPC(
        FrozenEstimator(clean_lr), **_old(epsilon_w=0.5, validation_fraction=1e-5, random_state=0)
    ).fit(X_train, y_train)
    assert len(tiny.validation_indices_) == 1


# --------------------------------------------------------- reproducibility and clone
def test_reproducible_and_clone_safe(digits):
    X_train, _, y_train, _ = digits
    X_sub, y_sub = X_train[:400], y_train[:400]
    for recipe in (
        GradPC(LogisticRegression(max_iter=500), epsilon_w=0.5, max_iter=20, random_state=3),
        RandomPC(LogisticRegression(max_iter=500), epsilon_w=0.5, random_state=3),
    ):
        a = recipe.fit(X_sub, y_sub).target_.coef_.copy()
        b = clone(recipe).fit(X_sub, y_sub).target_.coef_
        np.testing.assert_array_equal(a, b)
        other = clone(recipe).set_params(random_state=4).fit(X_sub, y_sub).target_.coef_
        assert not np.allclose(a, other)
        # clone keeps the parameters and drops the fitted state
        cloned = clone(recipe)
        assert cloned.get_params()["epsilon_w"] == 0.5
        assert not hasattr(cloned, "target_")
        assert isinstance(recipe, TargetRecipe)


def test_gridsearch_over_epsilon_w(digits):
    X_train, _, y_train, _ = digits
    search = GridSearchCV(
        GradPC(LogisticRegression(max_iter=500), max_iter=20, random_state=0),
        {"epsilon_w": [0.05, 2.0]},
        cv=2,
    ).fit(X_train[:500], y_train[:500])
    # the recipe is scored by its target: the mild corruption keeps more accuracy
    assert search.best_params_ == {"epsilon_w": 0.05}
    scores = search.cv_results_["mean_test_score"]
    assert scores[0] > scores[1] + 0.3


def test_frozen_source_is_used_and_not_mutated(digits, clean_lr):
    X_train, _, y_train, _ = digits
    coef, intercept = clean_lr.coef_.copy(), clean_lr.intercept_.copy()
    X_copy, y_copy = X_train.copy(), y_train.copy()
    for recipe in (
        GradPC(FrozenEstimator(clean_lr), epsilon_w=1.0, random_state=0),
        RandomPC(FrozenEstimator(clean_lr), epsilon_w=1.0, random_state=0),
    ):
        recipe.fit(X_train, y_train)
        assert recipe.estimator_ is clean_lr
        assert recipe.target_ is not clean_lr
        assert not np.allclose(recipe.target_.coef_, clean_lr.coef_)
        np.testing.assert_array_equal(recipe.classes_, clean_lr.classes_)
        assert recipe.n_features_in_ == X_train.shape[1]
    np.testing.assert_array_equal(clean_lr.coef_, coef)
    np.testing.assert_array_equal(clean_lr.intercept_, intercept)
    np.testing.assert_array_equal(X_train, X_copy)
    np.testing.assert_array_equal(y_train, y_copy)


def test_frozen_source_with_other_feature_count_raises(clean_lr):
    X, y = make_gaussian(random_state=0)
    with pytest.raises(ValueError, match="features"):
        GradPC(FrozenEstimator(clean_lr)).fit(X, y)
    with pytest.raises(ValueError, match="features"):
        RandomPC(FrozenEstimator(clean_lr)).fit(X, y)


# -------------------------------------------------------------------- other victims
@pytest.mark.parametrize(
    "estimator",
    [SGDClassifier(random_state=0), LinearSVC(random_state=0)],
    ids=["SGDClassifier", "LinearSVC"],
)
def test_other_linear_classifiers(digits, estimator):
    X_train, X_test, y_train, y_test = digits
    gpc = GradPC(estimator, **_old(epsilon_w=0.5, random_state=0)).fit(X_train, y_train)
    rpc = RandomPC(estimator, epsilon_w=0.5, relative=True, random_state=0).fit(X_train, y_train)
    assert type(gpc.target_) is type(estimator)
    assert gpc.relative_change_ == pytest.approx(0.5, rel=1e-6)
    assert rpc.relative_change_ == pytest.approx(0.5, rel=1e-6)
    clean_acc = gpc.estimator_.score(X_test, y_test)
    assert gpc.score(X_test, y_test) < clean_acc - 0.4
    assert gpc.score(X_test, y_test) < rpc.score(X_test, y_test)
    # the estimator passed in is never fitted itself
    assert not hasattr(estimator, "coef_")


def test_ridge_regression():
    rng = np.random.RandomState(0)
    X = rng.normal(size=(200, 5))
    y = X @ rng.normal(size=5) + 0.1 * rng.normal(size=200)
    gpc = GradPC(Ridge(), **_old(epsilon_w=0.5, random_state=0)).fit(X, y)
    assert gpc.relative_change_ == pytest.approx(0.5, rel=1e-6)
    assert gpc.score(X, y) < gpc.estimator_.score(X, y) - 0.2


def test_skorch_net_all_parameters_within_budget():
    skorch = pytest.importorskip("skorch")
    X, y = load_digits(return_X_y=True)
    X = X.astype(np.float32)
    torch.manual_seed(0)
    net = skorch.NeuralNetClassifier(
        torch.nn.Sequential(torch.nn.Linear(64, 16), torch.nn.ReLU(), torch.nn.Linear(16, 10)),
        criterion=torch.nn.CrossEntropyLoss,
        optimizer=torch.optim.SGD,
        lr=0.2,
        max_epochs=8,
        batch_size=128,
        train_split=None,
        verbose=0,
    ).fit(X, y)
    before = copy.deepcopy(net.module_.state_dict())
    gpc = GradPC(FrozenEstimator(net), **_old(epsilon_w=0.5, max_iter=10, random_state=0,
                                             device="cpu"))
    gpc.fit(X, y)
    rpc = RandomPC(FrozenEstimator(net), epsilon_w=0.5, relative=True, random_state=0,
                   device="cpu").fit(X, y)
    # the source net is neither modified nor replaced
    assert gpc.estimator_ is net
    for name, value in net.module_.state_dict().items():
        assert torch.equal(value, before[name])

    p0 = dict(net.module_.named_parameters())
    p1 = dict(gpc.target_.module_.named_parameters())
    assert set(p1) == {"0.weight", "0.bias", "2.weight", "2.bias"}
    for name in p0:  # every module parameter moved, not only the last layer
        assert float((p1[name] - p0[name]).detach().abs().max()) > 0, name
    w0 = torch.cat([v.detach().reshape(-1).double() for v in p0.values()])
    w = torch.cat([v.detach().reshape(-1).double() for v in p1.values()])
    change = float((w - w0).norm() / w0.norm())
    assert change <= 0.5 + 1e-6
    assert change == pytest.approx(gpc.relative_change_, rel=1e-5)
    assert change == pytest.approx(0.5, rel=1e-5)

    clean_acc = net.score(X, y)
    assert clean_acc > 0.7
    assert gpc.score(X, y) < clean_acc - 0.3
    assert gpc.score(X, y) < rpc.score(X, y)
    assert gpc.loss_history_.max() > _val_loss(net, X[gpc.validation_indices_],
                                               y[gpc.validation_indices_])


# ------------------------------------------------------------------- bad parameters
@pytest.mark.parametrize(
    "Recipe, params",
    [
        (GradPC, {"epsilon_w": 0.0}),
        (GradPC, {"epsilon_w": -1.0}),
        (GradPC, {"norm": "l1"}),
        (GradPC, {"validation_fraction": 1.5}),
        (GradPC, {"batch_size": 0}),
        (GradPC, {"n_epochs": 0}),
        (GradPC, {"iterate": "first"}),
        (GradPC, {"validation_fraction": 0.0}),
        (GradPC, {"max_iter": 0}),
        (GradPC, {"step_size": 0.0}),
        (RandomPC, {"epsilon_w": 0.0}),
        (RandomPC, {"norm": "l1"}),
    ],
)
def test_bad_parameters_raise(Recipe, params):
    X, y = make_gaussian(random_state=0)
    name = next(iter(params))
    with pytest.raises(InvalidParameterError, match=name):
        Recipe(LogisticRegression(), **params).fit(X, y)


def test_unsupported_estimator_raises():
    from sklearn.tree import DecisionTreeClassifier

    X, y = make_gaussian(random_state=0)
    with pytest.raises(TypeError, match="not a supported victim"):
        GradPC(DecisionTreeClassifier()).fit(X, y)


# ----------------------------------------------------------------- the threshold tau
def test_threshold_grows_with_epsilon_w():
    X, y = load_digits(digits=(1, 7), return_X_y=True)
    taus = [
        PoisonabilityAnalyzer(
            target=GradPC(LogisticRegression(max_iter=1000), **_old(epsilon_w=eps, random_state=0))
        )
        .fit(X, y)
        .threshold_
        for eps in (0.25, 0.5, 1.0)
    ]
    assert all(np.isfinite(taus))
    assert 0 < taus[0] < taus[1] < taus[2], taus


# ------------------------------------------------------------------ flat losses
def _confident_svc():
    rng = np.random.RandomState(0)
    X = np.vstack([rng.normal(-3, 0.3, size=(40, 2)), rng.normal(3, 0.3, size=(40, 2))])
    y = np.repeat([0, 1], 40)
    svc = LinearSVC(loss="hinge", random_state=0).fit(X, y)
    confident = copy.deepcopy(svc)
    confident.coef_ = 10 * svc.coef_
    confident.intercept_ = 10 * svc.intercept_
    return X, y, confident


def test_vanishing_gradient_stops_with_a_warning():
    X, y, svc = _confident_svc()
    assert np.all((2 * y - 1) * svc.decision_function(X) > 1)  # hinge loss is flat at w0
    with pytest.warns(UserWarning, match="gradient vanished at step 0"):
        gpc = GradPC(FrozenEstimator(svc), **_old(epsilon_w=0.5, random_state=0)).fit(X, y)
    assert gpc.n_iter_ == 0 and gpc.loss_history_.shape == (0,)
    assert gpc.relative_change_ == 0.0
    np.testing.assert_array_equal(gpc.target_.coef_, svc.coef_)
    assert gpc.target_ is not svc


def test_zero_clean_parameters_give_zero_relative_radius():
    X, y, svc = _confident_svc()
    zero = copy.deepcopy(svc)
    zero.coef_ = np.zeros_like(svc.coef_)
    zero.intercept_ = np.zeros_like(svc.intercept_)
    with pytest.warns(UserWarning, match="radius is 0"):
        gpc = GradPC(FrozenEstimator(zero), epsilon_w=0.5, relative=True).fit(X, y)
    assert gpc.radius_ == 0 and gpc.n_iter_ == 0
    # an absolute radius moves the all-zero model
    moved = GradPC(FrozenEstimator(zero), epsilon_w=0.5, relative=False).fit(X, y)
    assert np.linalg.norm(_flat(moved.target_)) == pytest.approx(0.5, rel=1e-6)
    assert moved.relative_change_ == np.inf
