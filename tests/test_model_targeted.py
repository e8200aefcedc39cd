"""ModelTargetedAttack: online poison whose retrained model approaches the target."""

import copy
import functools

import numpy as np
import pytest
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.svm import LinearSVC

from skpoison.attacks import ModelTargetedAttack

FAST = dict(n_starts=3, search_iter=15, random_state=0)


@functools.lru_cache(maxsize=None)
def _separable():
    """Two well separated 2-D blobs and a target that misclassifies about half."""
    rng = np.random.RandomState(0)
    X = np.vstack([rng.normal([2, 2], 0.5, (50, 2)), rng.normal([-2, -2], 0.5, (50, 2))])
    y = np.repeat([1, 0], 50)
    clean = LogisticRegression().fit(X, y)
    target = copy.deepcopy(clean)
    target.coef_ = 0.5 * clean.coef_ * np.array([[1.0, -1.0]])
    target.intercept_ = np.zeros(1)
    return X, y, target


@pytest.fixture
def separable():
    X, y, target = _separable()
    return X.copy(), y.copy(), FrozenEstimator(target)


def _flat(model):
    return np.concatenate([model.coef_.ravel(), model.intercept_])


def test_distance_shrinks_monotonically_on_a_separable_problem(separable):
    X, y, target = separable
    w = _flat(target.estimator)
    mta = ModelTargetedAttack(
        target, LogisticRegression(), epsilon_d=0.5, distance_tol=0.02, **FAST
    ).fit(X, y)
    h = mta.history_
    assert len(h) == mta.n_iter_ + 1
    assert h[0] == pytest.approx(np.linalg.norm(_flat(LogisticRegression().fit(X, y)) - w),
                                 rel=1e-3)
    # monotone within a tolerance (measured: largest rise 0.004 of a start at 2.1)
    assert np.max(np.diff(h)) < 0.01
    assert h[-1] < 0.2 * h[0]
    # history_ is the distance of a victim retrained on clean plus the poison
    victim = LogisticRegression(tol=1e-10, max_iter=10000).fit(*mta.fit_resample(X, y))
    assert np.linalg.norm(_flat(victim) - w) == pytest.approx(mta.distance_, abs=1e-3)
    assert mta.distance_ == h[-1]


def test_stops_at_the_distance_tolerance(separable):
    X, y, target = separable
    mta = ModelTargetedAttack(
        target, LogisticRegression(), epsilon_d=2.0, distance_tol=0.5, **FAST
    ).fit(X, y)
    assert mta.converged_
    assert mta.history_[-1] <= 0.5 < mta.history_[-2]
    assert mta.n_poison_ == mta.n_iter_ < 200


def test_budget_bounds_the_points_and_poison_is_in_the_box(separable):
    X, y, target = separable
    mta = ModelTargetedAttack(
        target, LogisticRegression(), epsilon_d=0.1, feature_range=(-4.0, 4.0), **FAST
    ).fit(X, y)
    assert mta.n_poison_ == 10 and not mta.converged_
    assert np.all(np.abs(mta.X_poison_) <= 4.0 + 1e-6)
    assert set(np.unique(mta.y_poison_)) <= {0, 1}
    assert mta.gradient_norm_ == pytest.approx(
        mta.analyzer_.gradient_norm(mta.X_poison_, mta.y_poison_)
    )


def test_distance_to_target_falls_with_budget(separable):
    X, y, target = separable
    w = _flat(target.estimator)
    distances = []
    for eps in (0.05, 0.2, 0.4):
        mta = ModelTargetedAttack(target, LogisticRegression(), epsilon_d=eps, **FAST)
        victim = LogisticRegression().fit(*mta.fit_resample(X, y))
        distances.append(np.linalg.norm(_flat(victim) - w))
    assert distances[0] > distances[1] > distances[2]


def test_each_point_maximises_the_loss_difference(separable):
    """The first point beats every clean point (with either label) on the gap."""
    X, y, target = separable
    mta = ModelTargetedAttack(target, LogisticRegression(), epsilon_d=0.01, **FAST).fit(X, y)
    clean = LogisticRegression().fit(X, y)

    def gap(points, labels):
        s = 2.0 * labels - 1.0
        return np.logaddexp(0, -s * clean.decision_function(points)) - np.logaddexp(
            0, -s * target.decision_function(points)
        )

    best = gap(mta.X_poison_, mta.y_poison_)[0]
    for label in (0, 1):
        assert best >= gap(X, np.full(len(X), label)).max() - 1e-4


def test_bad_input(separable):
    X, y, target = separable
    with pytest.raises(ValueError, match="unfitted classifier as victim"):
        ModelTargetedAttack(target, target).fit(X, y)
    with pytest.raises(ValueError, match="parameters but the target has"):
        ModelTargetedAttack(target, LogisticRegression(fit_intercept=False), **FAST).fit(X, y)
    three = LogisticRegression().fit(X, np.arange(len(X)) % 3)
    with pytest.raises(ValueError, match="differ from the labels"):
        ModelTargetedAttack(FrozenEstimator(three), LinearSVC()).fit(X, y)
    with pytest.raises(ValueError, match="raise epsilon_d"):
        ModelTargetedAttack(target, LogisticRegression(), epsilon_d=1e-3).fit(X, y)
    X_nan = X.copy()
    X_nan[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        ModelTargetedAttack(target, LogisticRegression()).fit(X_nan, y)
