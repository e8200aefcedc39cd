"""A grid over budgets and seeds runs in parallel (joblib processes, Dask) with identical scores."""

import functools

import joblib
import numpy as np
import pytest
from imblearn.pipeline import Pipeline
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold

from skpoison import GradientCanceling
from skpoison.datasets import load_digits
from skpoison.targets import GradPC

GRID = {"poison__epsilon_d": [0.03, 1.0], "poison__random_state": [0, 1]}


@functools.lru_cache(maxsize=None)
def _data():
    X, y = load_digits(digits=(1, 7), return_X_y=True)
    return X[:150], y[:150]


def _search(n_jobs):
    recipe = GradPC(LogisticRegression(max_iter=1000), epsilon_w=0.5, max_iter=10,
                    random_state=0, device="cpu")
    pipe = Pipeline([
        ("poison", GradientCanceling(recipe, max_iter=40, lr=0.2, device="cpu")),
        ("victim", LogisticRegression(max_iter=1000)),
    ])
    return GridSearchCV(pipe, GRID, cv=StratifiedKFold(2, shuffle=True, random_state=0),
                        n_jobs=n_jobs, error_score="raise")


def _split_scores(search):
    return np.array([search.cv_results_[f"split{k}_test_score"] for k in range(2)])


@functools.lru_cache(maxsize=None)
def _sequential():
    return _search(1).fit(*_data())


def _sequential_scores():
    return _split_scores(_sequential())


def test_sequential_grid_is_not_trivial():
    scores = _sequential_scores()
    # 4 candidates x 2 folds; a large budget hurts the victim, so a mix-up of
    # candidates between workers would show in the comparisons below
    budget = np.array([p["poison__epsilon_d"] for p in _sequential().cv_results_["params"]])
    assert scores.shape == (2, 4)
    assert scores[:, budget == 1.0].mean() < scores[:, budget == 0.03].mean() - 0.03


def test_grid_search_with_joblib_processes_matches_sequential():
    X, y = _data()
    with joblib.parallel_backend("loky"):
        search = _search(2).fit(X, y)
    np.testing.assert_array_equal(_split_scores(search), _sequential_scores())


@pytest.mark.parametrize("processes", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_grid_search_with_dask_matches_sequential(processes):
    distributed = pytest.importorskip("distributed")
    X, y = _data()
    with (
        distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=processes,
                                 dashboard_address=None) as cluster,
        distributed.Client(cluster),
        joblib.parallel_backend("dask"),
    ):
        search = _search(2).fit(X, y)
    np.testing.assert_array_equal(_split_scores(search), _sequential_scores())
