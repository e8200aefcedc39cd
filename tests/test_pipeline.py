"""GradientCanceling composed with imblearn's Pipeline, GridSearchCV and clone."""

import functools

import numpy as np
import pytest
from imblearn.pipeline import Pipeline
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold

from skpoison import GradientCanceling
from skpoison.datasets import load_digits
from _gradpc_old import old_gradpc


@functools.lru_cache(maxsize=None)
def _digits17():
    return load_digits(digits=(1, 7), return_X_y=True)


@pytest.fixture
def digits17():
    """MNIST-17's small cousin: digits 1 and 7 of sklearn's digits (361 rows)."""
    X, y = _digits17()
    return X.copy(), y.copy()


def _recipe():
    return old_gradpc(LogisticRegression(max_iter=1000), epsilon_w=0.5, max_iter=20, random_state=0)


def _pipeline(target=None, **gc_params):
    params = dict(max_iter=100, lr=0.2, random_state=0)
    params.update(gc_params)
    return Pipeline(
        [
            ("poison", GradientCanceling(_recipe() if target is None else target, **params)),
            ("victim", LogisticRegression(max_iter=1000)),
        ]
    )


def test_grid_search_reports_accuracy_falling_with_budget(digits17):
    X, y = digits17
    budgets = [0.03, 0.3, 3.0]
    search = GridSearchCV(
        _pipeline(),
        {"poison__epsilon_d": budgets},
        cv=StratifiedKFold(3, shuffle=True, random_state=0),
        error_score="raise",
    ).fit(X, y)
    scores = search.cv_results_["mean_test_score"]
    assert [p["poison__epsilon_d"] for p in search.cv_results_["params"]] == budgets
    assert np.all(np.diff(scores) < 0), scores
    # a tiny budget leaves the victim near-perfect; above tau it collapses
    assert scores[0] > 0.95
    assert scores[0] - scores[-1] > 0.25
    # the search prefers the least poisoned victim
    assert search.best_params_ == {"poison__epsilon_d": 0.03}


def test_prediction_sees_clean_data(digits17):
    X, y = digits17
    pipe = _pipeline(epsilon_d=1.0).fit(X, y)
    gc, victim = pipe.named_steps["poison"], pipe.named_steps["victim"]
    assert not hasattr(gc, "transform")
    # predict passes X straight to the victim: the sampler acts at fit time only
    np.testing.assert_array_equal(pipe.predict(X), victim.predict(X))
    np.testing.assert_allclose(pipe.decision_function(X), victim.decision_function(X))
    assert pipe.score(X, y) == pytest.approx(victim.score(X, y))
    # the victim was trained on clean + poison: the same as fitting on fit_resample's output
    X_res, y_res = clone(gc).fit_resample(X, y)
    assert len(X_res) == len(X) + gc.n_poison_
    reference = LogisticRegression(max_iter=1000).fit(X_res, y_res)
    np.testing.assert_allclose(victim.coef_, reference.coef_, rtol=1e-6, atol=1e-8)
    clean_only = LogisticRegression(max_iter=1000).fit(X, y)
    assert not np.allclose(victim.coef_, clean_only.coef_, atol=1e-3)


def test_clone_with_recipe_target_keeps_working(digits17):
    X, y = digits17
    gc = GradientCanceling(_recipe(), epsilon_d=0.2, max_iter=30, random_state=0)
    gc.fit(X, y)
    twin = clone(gc)
    assert not hasattr(twin, "X_poison_")
    assert twin.get_params()["target__epsilon_w"] == 0.5
    # the recipe is cloned unfitted and rebuilt from the data
    assert not hasattr(twin.target, "target_")
    twin.fit(X, y)
    np.testing.assert_array_equal(twin.init_indices_, gc.init_indices_)
    np.testing.assert_allclose(twin.X_poison_, gc.X_poison_)
    np.testing.assert_allclose(twin.target_.coef_, gc.target_.coef_)


def test_frozen_target_survives_clone(digits17):
    X, y = digits17
    fitted = LogisticRegression(max_iter=1000).fit(X, y)
    fitted.coef_ = -0.5 * fitted.coef_
    coef = fitted.coef_.copy()
    gc = GradientCanceling(FrozenEstimator(fitted), epsilon_d=0.3, max_iter=30, random_state=0)
    twin = clone(gc)
    assert isinstance(twin.target, FrozenEstimator)
    np.testing.assert_array_equal(twin.target.estimator.coef_, coef)
    twin.fit(X, y)
    gc.fit(X, y)
    np.testing.assert_allclose(twin.X_poison_, gc.X_poison_)
    np.testing.assert_array_equal(fitted.coef_, coef)
    # and through a grid search, whose scores are those of the victim retrained on
    # each training fold plus the poison built against the same frozen target
    pipe = _pipeline(FrozenEstimator(fitted), max_iter=20)
    cv = StratifiedKFold(3)
    search = GridSearchCV(pipe, {"poison__epsilon_d": [0.1, 1.0]}, cv=cv,
                          error_score="raise").fit(X, y)
    train, test = next(cv.split(X, y))
    for i, eps in enumerate([0.1, 1.0]):
        by_hand = clone(pipe).set_params(poison__epsilon_d=eps).fit(X[train], y[train])
        assert search.cv_results_["split0_test_score"][i] == pytest.approx(
            by_hand.score(X[test], y[test]))
    np.testing.assert_array_equal(fitted.coef_, coef)


def test_fitted_unfrozen_target_fails_after_clone(digits17):
    X, y = digits17
    fitted = LogisticRegression(max_iter=1000).fit(X, y)
    # without clone the fitted model is used as it is
    GradientCanceling(fitted, epsilon_d=0.1, max_iter=5, random_state=0).fit(X, y)
    with pytest.raises(NotFittedError, match="FrozenEstimator"):
        clone(GradientCanceling(fitted, epsilon_d=0.1, max_iter=5)).fit(X, y)
    search = GridSearchCV(
        _pipeline(fitted, max_iter=5), {"poison__epsilon_d": [0.1]}, cv=2, error_score="raise"
    )
    with pytest.raises(NotFittedError, match="FrozenEstimator"):
        search.fit(X, y)
