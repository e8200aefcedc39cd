"""Defenses: SeverFilter, InfluenceFilter (data filters) and MaxUpClassifier (training)."""

import copy
import pickle
import warnings

import numpy as np
import pytest
import torch
from imblearn import FunctionSampler
from imblearn.pipeline import Pipeline
from scipy.special import lambertw
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.tree import DecisionTreeClassifier
from sklearn.utils import get_tags

from skpoison import GradientCanceling, PoisonabilityAnalyzer
from skpoison.datasets import load_digits, make_gaussian
from skpoison.defenses import InfluenceFilter, MaxUpClassifier, SeverFilter
from skpoison.models import SeededNeuralNetClassifier
from skpoison.objectives import as_objective
from _gradpc_old import old_gradpc

FILTERS = (SeverFilter, InfluenceFilter)


# ------------------------------------------------------------------------ data
def _gaussian(n=200):
    return make_gaussian(n_samples=n, n_features=5, random_state=0)


def _digits3():
    return load_digits(digits=(0, 1, 2), return_X_y=True)


def plant_far(X, y, *, fraction=0.05, scale=5.0, seed=0):
    """Clean data plus ``fraction`` poison: clean rows pushed far away along one random
    direction (``scale`` times the data's spread), labels moved to the next class.

    Returns the mixed data and the number of clean rows (the poison comes last).
    """
    rng = np.random.RandomState(seed)
    n = len(X)
    idx = rng.choice(n, int(round(fraction * n)), replace=False)
    direction = rng.normal(size=X.shape[1])
    direction /= np.linalg.norm(direction)
    X_poison = X[idx] + scale * np.std(X) * np.sqrt(X.shape[1]) * direction
    classes = np.unique(y)
    y_poison = classes[(np.searchsorted(classes, y[idx]) + 1) % len(classes)]
    return np.vstack([X, X_poison]), np.concatenate([y, y_poison]), n


def _sigmoid(t):
    return 1.0 / (1.0 + np.exp(-t))


def _binary_logistic_parts(model, X, y):
    """Per-sample gradients and the mean-objective Hessian of a binary L2 logistic
    regression, in plain numpy (independent of torch): parameters ``[coef, intercept]``."""
    Xt = np.hstack([X, np.ones((len(X), 1))])
    w = np.concatenate([model.coef_.ravel(), model.intercept_])
    p = _sigmoid(Xt @ w)
    y01 = (y == model.classes_[1]).astype(float)
    grads = (p - y01)[:, None] * Xt
    penalty = np.ones(len(w)) / model.C
    penalty[-1] = 0.0  # lbfgs does not penalise the intercept
    H = (Xt.T * (p * (1 - p))) @ Xt + np.diag(penalty)
    return grads, H / len(X)


# ------------------------------------------------------------ poison is removed
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("Filter", FILTERS)
def test_filters_remove_far_poison(Filter, seed):
    X, y, n = plant_far(*_digits3(), seed=seed)
    n_poison = len(X) - n
    filt = Filter(LogisticRegression(max_iter=1000), removal_fraction=n_poison / len(X))
    filt.fit(X, y)
    assert filt.n_removed_ == n_poison
    # measured: 0.93 to 1.0 of the removed rows are poison for both filters
    assert np.mean(filt.removed_indices_ >= n) >= 0.85


def test_sever_removes_far_poison_gaussian():
    X, y, n = plant_far(*_gaussian(300), seed=0)
    filt = SeverFilter(LogisticRegression(), removal_fraction=(len(X) - n) / len(X)).fit(X, y)
    assert np.mean(filt.removed_indices_ >= n) >= 0.85  # measured 1.0


def test_sever_removes_far_outliers_of_a_regressor():
    rng = np.random.RandomState(0)
    X = rng.normal(size=(150, 3))
    y = X @ [1.0, -2.0, 0.5] + 0.1 * rng.normal(size=150)
    X = np.vstack([X, rng.normal(size=(8, 3)) + 6.0])
    y = np.concatenate([y, np.full(8, -40.0)])
    one = SeverFilter(Ridge(alpha=1.0), removal_fraction=8 / 158).fit(X, y)
    assert np.sum(one.removed_indices_ >= 150) >= 5  # measured 6: they drag the fit
    # rounds: once the worst are gone, the refit exposes the rest (Sever's loop)
    rounds = SeverFilter(Ridge(alpha=1.0), removal_fraction=8 / 158, n_iter=4).fit(X, y)
    assert set(rounds.removed_indices_) == set(range(150, 158))


# ------------------------------------------------------ outputs and their meaning
@pytest.mark.parametrize("Filter", FILTERS)
@pytest.mark.parametrize("fraction", [0.0, 0.05, 1 / 3])
def test_fit_predict_fit_resample_and_indices_agree(Filter, fraction):
    X, y = _gaussian()
    X_orig, y_orig = X.copy(), y.copy()
    filt = Filter(LogisticRegression(), removal_fraction=fraction)
    labels = filt.fit_predict(X, y)
    assert labels.dtype.kind == "i" and set(np.unique(labels)) <= {-1, 1}
    n_remove = int(round(fraction * len(X)))
    assert filt.n_removed_ == n_remove == np.sum(labels == -1)
    np.testing.assert_array_equal(filt.sample_indices_, np.flatnonzero(labels == 1))
    np.testing.assert_array_equal(filt.removed_indices_, np.flatnonzero(labels == -1))
    assert filt.scores_.shape == (len(X),) and np.all(np.isfinite(filt.scores_))
    removed_per_class = np.bincount(y[filt.removed_indices_], minlength=2)
    assert filt.sampling_strategy_ == {0: removed_per_class[0], 1: removed_per_class[1]}
    # the removed rows are the highest-scoring ones (one round)
    if n_remove:
        assert filt.scores_[filt.removed_indices_].min() >= filt.scores_[filt.sample_indices_].max()

    X_res, y_res = clone(filt).fit_resample(X.astype(np.float32), y.astype(np.int32))
    np.testing.assert_array_equal(X_res, X[filt.sample_indices_].astype(np.float32))
    np.testing.assert_array_equal(y_res, y[filt.sample_indices_])
    assert X_res.dtype == np.float32 and y_res.dtype == np.int32
    # inputs untouched, the estimator parameter never fitted
    np.testing.assert_array_equal(X, X_orig)
    np.testing.assert_array_equal(y, y_orig)
    assert not hasattr(filt.estimator, "coef_")


def test_fit_resample_keeps_list_inputs_and_one_vs_all_labels():
    X, y = _digits3()
    filt = SeverFilter(LogisticRegression(max_iter=1000), removal_fraction=0.1)
    X_res, y_res = filt.fit_resample(X, y)
    X_list, y_list = clone(filt).fit_resample(X.tolist(), y.tolist())
    assert isinstance(X_list, list) and isinstance(y_list, list)
    np.testing.assert_allclose(X_list, X_res)
    one_hot = np.eye(3, dtype=int)[y]
    X_ova, y_ova = clone(filt).fit_resample(X, one_hot)
    np.testing.assert_allclose(X_ova, X_res)
    np.testing.assert_array_equal(y_ova.argmax(axis=1), y_res)


@pytest.mark.parametrize("n_iter", [1, 2, 3, 7])
def test_sever_total_removed_is_round_fraction_n(n_iter):
    X, y = _gaussian(203)
    filt = SeverFilter(LogisticRegression(), removal_fraction=0.1, n_iter=n_iter).fit(X, y)
    assert filt.n_removed_ == len(filt.removed_indices_) == round(0.1 * 203) == 20
    assert filt.n_rounds_ == n_iter
    assert len(filt.sample_indices_) + len(filt.removed_indices_) == 203


_FIT_SIZES = []


class _RecordingLogisticRegression(LogisticRegression):
    """A LogisticRegression that records how many rows each fit saw."""

    def fit(self, X, y, sample_weight=None):
        _FIT_SIZES.append(len(X))
        return super().fit(X, y, sample_weight=sample_weight)


def test_sever_rounds_refit_on_the_kept_rows():
    X, y, n = plant_far(*_digits3(), seed=1)
    _FIT_SIZES.clear()
    filt = SeverFilter(_RecordingLogisticRegression(max_iter=1000), removal_fraction=0.1, n_iter=3)
    filt.fit(X, y)
    k = int(round(0.1 * len(X)))
    bounds = [round(r * k / 3) for r in range(4)]
    assert _FIT_SIZES == [len(X) - b for b in bounds[:3]]

    # two rounds are two one-round filters, the second on the rows the first kept
    two = SeverFilter(LogisticRegression(max_iter=1000), removal_fraction=0.1, n_iter=2).fit(X, y)
    k1 = round(k / 2)
    first = SeverFilter(LogisticRegression(max_iter=1000), removal_fraction=k1 / len(X)).fit(X, y)
    kept = first.sample_indices_
    second = SeverFilter(
        LogisticRegression(max_iter=1000), removal_fraction=(k - k1) / len(kept)
    ).fit(X[kept], y[kept])
    np.testing.assert_array_equal(two.sample_indices_, kept[second.sample_indices_])


# ------------------------------------------------------------- the Sever scores
def test_sever_scores_match_numpy():
    X, y, _ = plant_far(*_gaussian(), seed=0)
    filt = SeverFilter(LogisticRegression(C=0.5), removal_fraction=0.0).fit(X, y)
    model = LogisticRegression(C=0.5).fit(X, y)
    grads, _ = _binary_logistic_parts(model, X, y)
    centred = grads - grads.mean(axis=0)
    v = np.linalg.svd(centred, full_matrices=False)[2][0]
    np.testing.assert_allclose(filt.scores_, (centred @ v) ** 2, rtol=1e-5, atol=1e-10)


def test_sever_streamed_equals_in_memory():
    X, y, _ = plant_far(*_digits3(), seed=0)
    full = SeverFilter(LogisticRegression(max_iter=1000), removal_fraction=0.05).fit(X, y)
    streamed = SeverFilter(
        LogisticRegression(max_iter=1000), removal_fraction=0.05, batch_size=64, random_state=0
    ).fit(X, y)
    np.testing.assert_allclose(streamed.scores_, full.scores_, rtol=1e-4, atol=1e-8)
    np.testing.assert_array_equal(streamed.removed_indices_, full.removed_indices_)


def test_sever_streams_large_gradient_matrices_by_itself(monkeypatch):
    from skpoison.defenses import _sever

    X, y, _ = plant_far(*_digits3(), seed=0)
    full = SeverFilter(LogisticRegression(max_iter=1000), removal_fraction=0.05).fit(X, y)
    monkeypatch.setattr(_sever, "_MAX_HELD", 1000)
    auto = clone(full).set_params(random_state=0).fit(X, y)
    np.testing.assert_allclose(auto.scores_, full.scores_, rtol=1e-4, atol=1e-8)


# ---------------------------------------------------------- the influence scores
@pytest.mark.parametrize("damping", [0.0, 0.1])
def test_self_influence_matches_numpy(damping):
    X, y, _ = plant_far(*_gaussian(), seed=0)
    filt = InfluenceFilter(LogisticRegression(C=0.5), removal_fraction=0.05, damping=damping)
    filt.fit(X, y)
    assert filt.solver_ == "exact"
    model = LogisticRegression(C=0.5).fit(X, y)
    grads, H = _binary_logistic_parts(model, X, y)
    solved = np.linalg.solve(H + damping * np.eye(len(H)), grads.T).T
    np.testing.assert_allclose(filt.scores_, np.sum(grads * solved, axis=1), rtol=1e-5)


def test_validation_influence_matches_numpy():
    X, y = _gaussian()
    filt = InfluenceFilter(
        LogisticRegression(), removal_fraction=0.1, influence="validation",
        validation_fraction=0.25, damping=0.05, random_state=0,
    ).fit(X, y)
    val = filt.validation_indices_
    train = np.setdiff1d(np.arange(len(X)), val)
    assert len(val) == 50
    model = LogisticRegression().fit(X[train], y[train])
    _, H = _binary_logistic_parts(model, X[train], y[train])
    grads, _ = _binary_logistic_parts(model, X, y)
    s_test = np.linalg.solve(H + 0.05 * np.eye(len(H)), grads[val].mean(axis=0))
    np.testing.assert_allclose(filt.scores_, -grads @ s_test, rtol=1e-5, atol=1e-12)
    # reproducible split
    again = clone(filt).fit(X, y)
    np.testing.assert_array_equal(again.validation_indices_, val)


def test_validation_influence_sign_predicts_leave_one_out():
    """A high score is a harmful row: removing it lowers the validation loss by about
    score / n_train (Koh and Liang's first-order approximation)."""
    from sklearn.metrics import log_loss

    X, y = _gaussian()
    precise = LogisticRegression(tol=1e-10, max_iter=10000)
    filt = InfluenceFilter(
        precise, removal_fraction=0.0, influence="validation", damping=0.0, random_state=0
    ).fit(X, y)
    val = filt.validation_indices_
    train = np.setdiff1d(np.arange(len(X)), val)
    base = log_loss(y[val], clone(precise).fit(X[train], y[train]).predict_proba(X[val]))
    rows = train[np.argsort(-np.abs(filt.scores_[train]))[:12]]
    actual = []
    for i in rows:
        kept = np.setdiff1d(train, [i])
        model = clone(precise).fit(X[kept], y[kept])
        actual.append(log_loss(y[val], model.predict_proba(X[val])) - base)
    predicted = -filt.scores_[rows] / len(train)
    assert np.corrcoef(predicted, actual)[0, 1] > 0.95
    assert np.all(np.sign(predicted) == np.sign(actual))


@pytest.mark.parametrize("influence", ["self", "validation"])
def test_conjugate_gradients_agree_with_exact(influence):
    X, y = load_digits(digits=(0, 1, 2), return_X_y=True)
    X, y = X[:240], y[:240]
    params = dict(removal_fraction=0.05, influence=influence, damping=0.01, random_state=0)
    exact = InfluenceFilter(LogisticRegression(max_iter=1000), solver="exact", **params).fit(X, y)
    cg = InfluenceFilter(
        LogisticRegression(max_iter=1000), solver="cg", cg_max_iter=500, cg_tol=1e-10,
        batch_size=100, **params,
    ).fit(X, y)
    assert (exact.solver_, cg.solver_) == ("exact", "cg")
    scale = np.abs(exact.scores_).max()
    np.testing.assert_allclose(cg.scores_, exact.scores_, rtol=1e-5, atol=1e-7 * scale)
    np.testing.assert_array_equal(cg.removed_indices_, exact.removed_indices_)


def test_conjugate_gradients_warn_when_capped():
    X, y = _digits3()
    filt = InfluenceFilter(
        LogisticRegression(max_iter=1000), solver="cg", cg_max_iter=2, damping=0.01
    )
    with pytest.warns(ConvergenceWarning, match="cg_max_iter=2"):
        filt.fit(X[:120], y[:120])


def test_singular_hessian_asks_for_damping():
    # no penalty, no damping, a constant feature: the Hessian is singular
    X, y = _gaussian()
    X = np.hstack([X, np.zeros((len(X), 1))])
    filt = InfluenceFilter(LogisticRegression(C=np.inf), damping=0.0)
    with pytest.raises(ValueError, match="raise damping"):
        filt.fit(X, y)


# --------------------------------------------------------------------- nets
class _TinyNet(torch.nn.Module):
    def __init__(self, n_features=5, n_classes=2, hidden=4):
        super().__init__()
        self.hidden = torch.nn.Linear(n_features, hidden)
        self.out = torch.nn.Linear(hidden, n_classes)

    def forward(self, X):
        return self.out(torch.tanh(self.hidden(X)))


def _tiny_net(Net=SeededNeuralNetClassifier, **kwargs):
    params = dict(
        max_epochs=30, lr=0.2, batch_size=-1, verbose=0, device="cpu", random_state=0
    )
    params.update(kwargs)
    return Net(_TinyNet, **params)


def test_filters_work_on_a_skorch_net():
    X, y, n = plant_far(*_gaussian(), seed=0)
    sever = SeverFilter(_tiny_net(), removal_fraction=0.05, device="cpu").fit(X, y)
    assert sever.n_removed_ == 10 and np.all(np.isfinite(sever.scores_))
    exact = InfluenceFilter(_tiny_net(), removal_fraction=0.05, damping=0.1, device="cpu")
    exact.fit(X, y)
    cg = clone(exact).set_params(solver="cg", cg_max_iter=300, cg_tol=1e-8).fit(X, y)
    assert (exact.solver_, cg.solver_) == ("exact", "cg")
    # float32 products and an indefinite Hessian: agreement up to float32 precision
    scale = np.abs(exact.scores_).max()
    np.testing.assert_allclose(cg.scores_, exact.scores_, rtol=1e-3, atol=1e-3 * scale)


# --------------------------------------------------------------- pipelines
def test_pipeline_gc_sever_grid_search():
    X, y = _gaussian(240)
    pipe = Pipeline([
        ("poison", GradientCanceling(
            old_gradpc(LogisticRegression(max_iter=1000), epsilon_w=0.1, random_state=0),
            max_iter=50, random_state=0, device="cpu",
        )),
        ("filter", SeverFilter(LogisticRegression(max_iter=1000))),
        ("model", LogisticRegression(max_iter=1000)),
    ])
    grid = {"poison__epsilon_d": [0.1, 0.3], "filter__removal_fraction": [0.0, 0.1]}
    cv = StratifiedKFold(3, shuffle=True, random_state=0)
    search = GridSearchCV(pipe, grid, cv=cv, error_score="raise").fit(X, y)
    scores = search.cv_results_["mean_test_score"]
    assert len(search.cv_results_["params"]) == 4
    assert np.all(np.isfinite(scores))
    # removing nothing is the same as no filter at all
    no_filter = GridSearchCV(
        Pipeline([("poison", pipe.named_steps["poison"]), ("model", pipe.named_steps["model"])]),
        {"poison__epsilon_d": [0.1, 0.3]}, cv=cv,
    ).fit(X, y)
    params = search.cv_results_["params"]
    for eps, score in zip([0.1, 0.3], no_filter.cv_results_["mean_test_score"]):
        (i,) = [j for j, p in enumerate(params)
                if p == {"poison__epsilon_d": eps, "filter__removal_fraction": 0.0}]
        assert scores[i] == pytest.approx(score)
    # the filter removed rows only at fit time; prediction sees every row
    assert len(search.predict(X)) == len(X)


def _plant(X, y, scale):
    X_all, y_all, _ = plant_far(X, y, fraction=0.3, scale=scale, seed=0)
    return X_all, y_all


def test_pipeline_filter_undoes_far_poison_in_grid_search():
    X, y = _digits3()
    pipe = Pipeline([
        ("poison", FunctionSampler(func=_plant, kw_args={"scale": 5.0}, validate=False)),
        ("filter", SeverFilter(LogisticRegression(max_iter=1000))),
        ("model", LogisticRegression(max_iter=1000)),
    ])
    search = GridSearchCV(
        pipe, {"filter__removal_fraction": [0.0, 0.3 / 1.3]},
        cv=StratifiedKFold(3, shuffle=True, random_state=0),
    ).fit(X, y)
    without, with_sever = search.cv_results_["mean_test_score"]
    # measured: 0.935 without the filter, 0.998 with it (every split alike)
    assert with_sever > without + 0.03
    assert search.best_params_["filter__removal_fraction"] > 0


# ------------------------------------------------------------------ API, tags
@pytest.mark.parametrize("Filter", FILTERS)
def test_filter_api_and_tags(Filter):
    filt = Filter(LogisticRegression())
    tags = get_tags(filt)
    assert tags.estimator_type == "outlier_detector"
    assert tags.target_tags.required and not tags.input_tags.sparse
    assert tags.sampler_tags.sample_indices
    assert not hasattr(filt, "transform") and not hasattr(filt, "predict")
    X, y = _gaussian()
    fitted = filt.fit(X, y)
    assert fitted is filt
    np.testing.assert_array_equal(filt.get_feature_names_out(), [f"x{i}" for i in range(5)])
    restored = pickle.loads(pickle.dumps(filt))
    np.testing.assert_array_equal(restored.sample_indices_, filt.sample_indices_)


@pytest.mark.parametrize(
    "Filter, params, match",
    [
        (SeverFilter, {"removal_fraction": -0.1}, "removal_fraction"),
        (SeverFilter, {"removal_fraction": 1.0}, "removal_fraction"),
        (SeverFilter, {"n_iter": 0}, "n_iter"),
        (SeverFilter, {"batch_size": 0}, "batch_size"),
        (InfluenceFilter, {"removal_fraction": 1.5}, "removal_fraction"),
        (InfluenceFilter, {"influence": "foo"}, "influence"),
        (InfluenceFilter, {"damping": -1.0}, "damping"),
        (InfluenceFilter, {"validation_fraction": 0.0}, "validation_fraction"),
        (InfluenceFilter, {"solver": "lissa"}, "solver"),
        (InfluenceFilter, {"cg_max_iter": 0}, "cg_max_iter"),
        (InfluenceFilter, {"cg_tol": 0.0}, "cg_tol"),
    ],
)
def test_bad_parameters_raise(Filter, params, match):
    X, y = _gaussian()
    with pytest.raises(ValueError, match=match):
        Filter(LogisticRegression(), **params).fit(X, y)


@pytest.mark.parametrize("Filter", FILTERS)
def test_bad_inputs_raise_clear_errors(Filter):
    X, y = _gaussian()
    filt = Filter(LogisticRegression(), removal_fraction=0.1)
    with pytest.raises(ValueError, match="requires y"):
        filt.fit_predict(X)
    with pytest.raises(ValueError, match="2 classes"):
        filt.fit(X, np.zeros(len(X)))
    with pytest.raises(ValueError, match="Unknown label type"):
        filt.fit(X, np.linspace(0, 1, len(X)))
    X_nan = X.copy()
    X_nan[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        filt.fit(X_nan, y)
    with pytest.raises(ValueError, match="inconsistent"):
        filt.fit(X, y[:-1])
    with pytest.raises(ValueError, match="fewer than 2"):
        Filter(LogisticRegression(), removal_fraction=0.99).fit(X[:20], y[:20])
    with pytest.raises(TypeError, match="not a supported victim"):
        Filter(DecisionTreeClassifier()).fit(X, y)


def test_validation_split_too_small_raises():
    X, y = _gaussian()
    filt = InfluenceFilter(LogisticRegression(), influence="validation", validation_fraction=0.001)
    with pytest.raises(ValueError, match="validation_fraction"):
        filt.fit(X, y)


# -------------------------------------------------------------------- MaxUp
def test_maxup_loss_is_the_mean_worst_loss_over_augmentations():
    X, y = _gaussian(40)
    net = _tiny_net(MaxUpClassifier, n_augment=3, perturbation_std=0.5).initialize()
    Xt = torch.as_tensor(X, dtype=torch.float32)
    yt = torch.as_tensor(y, dtype=torch.int64)

    torch.manual_seed(7)
    step = net.train_step_single((Xt, yt))
    grads = [p.grad.clone() for p in net.module_.parameters()]
    net.module_.zero_grad()

    torch.manual_seed(7)
    noise = torch.randn((3, *Xt.shape))
    per_copy = torch.stack([
        torch.nn.functional.cross_entropy(net.module_(Xt + 0.5 * noise[a]), yt, reduction="none")
        for a in range(3)
    ])
    expected = per_copy.max(dim=0).values.mean()
    expected.backward()
    assert step["loss"].detach().item() == pytest.approx(expected.detach().item(), rel=1e-6)
    for got, want in zip(grads, (p.grad for p in net.module_.parameters())):
        torch.testing.assert_close(got, want)
    # the reported prediction of each row is that of its worst copy
    worst = per_copy.argmax(dim=0)
    with torch.no_grad():
        outputs = torch.stack([net.module_(Xt + 0.5 * noise[a]) for a in range(3)])
    torch.testing.assert_close(step["y_pred"], outputs[worst, torch.arange(len(Xt))])
    assert net.criterion_.reduction == "mean"  # restored


def test_maxup_uniform_perturbation_has_the_given_std():
    net = _tiny_net(MaxUpClassifier, n_augment=5, perturbation="uniform", perturbation_std=0.3)
    torch.manual_seed(0)
    copies = net.augment(torch.zeros(2000, 5))
    assert copies.shape == (5, 2000, 5)
    assert float(copies.std()) == pytest.approx(0.3, rel=0.02)
    assert float(copies.abs().max()) <= 0.3 * 3**0.5 + 1e-6


def test_maxup_without_perturbation_is_plain_training():
    X, y = _gaussian(80)
    plain = _tiny_net().fit(X, y)
    maxup = _tiny_net(MaxUpClassifier, n_augment=1, perturbation_std=0.0).fit(X, y)
    np.testing.assert_allclose(maxup.predict_proba(X), plain.predict_proba(X), rtol=1e-5)


def test_maxup_is_reproducible_and_differs_from_plain_training():
    X, y = _gaussian(80)
    net = _tiny_net(MaxUpClassifier, n_augment=4, perturbation_std=0.5)
    first = clone(net).fit(X, y).predict_proba(X)
    second = clone(net).fit(X, y).predict_proba(X)
    np.testing.assert_array_equal(first, second)
    fitted = clone(net).fit(X, y)
    # prediction is plain: no perturbation, the same output twice
    np.testing.assert_array_equal(fitted.predict_proba(X), fitted.predict_proba(X))
    plain = _tiny_net().fit(X, y).predict_proba(X)
    assert not np.allclose(first, plain)
    assert fitted.get_params()["n_augment"] == 4


def test_maxup_is_a_victim_like_any_other():
    X, y = _gaussian(120)
    net = _tiny_net(MaxUpClassifier, n_augment=2, perturbation_std=0.2).fit(X, y)
    objective = as_objective(net, device="cpu")
    assert objective.kind == "cross_entropy" and objective.n_params == 5 * 4 + 4 + 4 * 2 + 2
    analyzer = PoisonabilityAnalyzer(FrozenEstimator(net), device="cpu", dtype="float64")
    analyzer.fit(X, y)

    def inner_product(model):
        """mean <h, softmax(h) - onehot> over the clean logits (Theorem 4)."""
        module = copy.deepcopy(model.module_).double().eval()
        with torch.no_grad():
            h = module(torch.as_tensor(X, dtype=torch.float64))
        onehot = torch.nn.functional.one_hot(torch.as_tensor(y), 2)
        return float((h * (torch.softmax(h, 1) - onehot)).sum(1).mean())

    # the victim's objective is plain cross-entropy at its parameters (MaxUp only
    # changes how they were trained): tau = max(inner, 0) / W(1/e). The trained net
    # has a negative inner product here, so its threshold is 0.
    W = float(lambertw(1 / np.e).real)
    inner = inner_product(net)
    assert analyzer.inner_product_ == pytest.approx(inner, rel=1e-6)
    assert analyzer.threshold_ == pytest.approx(max(inner, 0.0) / W, rel=1e-6, abs=1e-12)
    target = old_gradpc(_tiny_net(MaxUpClassifier, n_augment=2), epsilon_w=0.5, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        attack = GradientCanceling(
            target, epsilon_d=0.1, max_iter=5, random_state=0, device="cpu"
        ).fit(X, y)
    assert attack.X_poison_.shape == (12, 5)
    assert type(attack.target_) is MaxUpClassifier
    assert attack.threshold_ > 0  # the GradPC target is far from stationary
    assert attack.threshold_ == pytest.approx(inner_product(attack.target_) / W, rel=1e-4)
    assert attack.gradient_norm_ < attack.history_[0]
    assert attack.gradient_norm(attack.X_poison_, attack.y_poison_) == pytest.approx(
        attack.gradient_norm_, rel=1e-3)


@pytest.mark.parametrize(
    "params, match",
    [
        ({"n_augment": 0}, "n_augment"),
        ({"n_augment": 2.5}, "n_augment"),
        ({"perturbation": "salt"}, "perturbation"),
        ({"perturbation_std": -0.1}, "perturbation_std"),
    ],
)
def test_maxup_bad_parameters_raise(params, match):
    X, y = _gaussian(40)
    with pytest.raises(ValueError, match=match):
        _tiny_net(MaxUpClassifier, **params).fit(X, y)
