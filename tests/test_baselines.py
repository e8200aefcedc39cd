"""The paper's baselines: Gradient Matching and TGDA."""

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression, Ridge, SGDClassifier
from sklearn.metrics import log_loss
from sklearn.model_selection import train_test_split
from sklearn.svm import LinearSVC
from sklearn.tree import DecisionTreeClassifier
from sklearn.utils._param_validation import InvalidParameterError

from skpoison.attacks import TGDA, GradientCanceling, GradientMatching
from skpoison.datasets import load_digits, make_gaussian
from skpoison.models import MLP, SeededNeuralNetClassifier
from skpoison.objectives import BinaryMarginLoss, CrossEntropyLoss
from skpoison.targets import LabelFlipTarget, ScaledTarget


def _gaussian(n=120, d=5, seed=0):
    return make_gaussian(n_samples=n, n_features=d, random_state=seed)


def _net(**kw):
    params = dict(
        module__n_features=None, module__n_classes=None, module__hidden_size=8,
        optimizer=torch.optim.LBFGS, lr=1.0, max_epochs=3, batch_size=-1, verbose=0,
        random_state=0,
    )
    return SeededNeuralNetClassifier(MLP, **{**params, **kw})


# ------------------------------------------------------------------ reversed losses
def test_reversed_cross_entropy_is_minus_log_of_one_minus_p():
    rng = np.random.RandomState(0)
    h = torch.as_tensor(rng.normal(size=(7, 4)), dtype=torch.float64)
    y = torch.as_tensor(rng.randint(4, size=7))
    p = torch.softmax(h, dim=1)[torch.arange(7), y]
    expected = -torch.log(1 - p)
    np.testing.assert_allclose(CrossEntropyLoss().reversed_per_sample(h, y), expected)
    log_probs = torch.log_softmax(h, dim=1)
    reversed_nll = CrossEntropyLoss(log_probabilities=True).reversed_per_sample(log_probs, y)
    np.testing.assert_allclose(reversed_nll, expected)
    # binary logistic: the loss of the other sign is the same reversed cross-entropy
    t = h[:, :1]
    signs = 2.0 * (y % 2) - 1.0
    p_binary = torch.sigmoid(signs * t[:, 0])
    np.testing.assert_allclose(
        BinaryMarginLoss("logistic").reversed_per_sample(t, signs), -torch.log(1 - p_binary)
    )


# ---------------------------------------------------------------- Gradient Matching
def test_gradient_matching_reaches_the_reversed_direction():
    X, y = _gaussian()
    gm = GradientMatching(
        LogisticRegression(), epsilon_d=0.1, max_iter=200, dtype="float64", random_state=0
    ).fit(X, y)
    # independent: binary logistic, dJ/dz = p1 - (1 - y) and dl/dz = p1 - y per row
    model = gm.estimator_

    def design(Z):
        return np.hstack([Z, np.ones((len(Z), 1))])

    p_clean = model.predict_proba(X)[:, 1]
    target = design(X).T @ (p_clean - (1 - y)) / len(X)
    p_poison = model.predict_proba(gm.X_poison_)[:, 1]
    poison = design(gm.X_poison_).T @ (p_poison - gm.y_poison_)
    cosine = target @ poison / np.linalg.norm(target) / np.linalg.norm(poison)
    assert gm.history_[0] > 0.1
    assert 1 - cosine < 1e-3
    assert gm.dissimilarity_ == pytest.approx(1 - cosine, abs=1e-9)
    np.testing.assert_array_equal(gm.y_poison_, y[gm.init_indices_])


def test_gradient_matching_stays_in_the_ball_and_the_box():
    X, y = _gaussian()
    low, high = X.min(axis=0) - 0.1, X.max(axis=0) + 0.1
    gm = GradientMatching(
        LogisticRegression(), epsilon_d=0.2, max_iter=30, perturbation_bound=0.25,
        feature_range=(low, high), restarts=2, random_state=0,
    ).fit(X, y)
    start = X[gm.init_indices_]
    moved = np.abs(gm.X_poison_ - start)
    assert moved.max() <= 0.25 + 1e-6
    assert moved.max() > 0.2  # the bound is active, not trivially met
    assert np.all(gm.X_poison_ >= low - 1e-6) and np.all(gm.X_poison_ <= high + 1e-6)
    assert gm.dissimilarity_ == pytest.approx(gm.restart_dissimilarities_.min())
    clipped = GradientMatching(
        LogisticRegression(), epsilon_d=0.2, max_iter=30, clip="data", random_state=0
    ).fit(X, y)
    assert np.all(clipped.X_poison_ >= X.min(axis=0) - 1e-6)
    assert np.all(clipped.X_poison_ <= X.max(axis=0) + 1e-6)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("sampler", ["gm", "tgda"])
def test_batched_and_unbatched_agree(sampler):
    X, y = load_digits(digits=(0, 1, 2), return_X_y=True)
    X, y = X[:90], y[:90]
    if sampler == "gm":
        make = lambda b: GradientMatching(  # noqa: E731
            LogisticRegression(), epsilon_d=0.1, max_iter=20, batch_size=b,
            dtype="float64", random_state=0,
        )
    else:
        make = lambda b: TGDA(  # noqa: E731
            LogisticRegression(), epsilon_d=0.1, max_iter=3, cg_max_iter=10,
            follower_steps=2, batch_size=b, dtype="float64", random_state=0,
        )
    one = make(None).fit(X, y)
    batched = make(4).fit(X, y)
    np.testing.assert_allclose(batched.history_, one.history_, rtol=1e-9, atol=1e-12)
    # Adam divides by the gradient's size: rounding in near-zero entries moves them a bit
    np.testing.assert_allclose(batched.X_poison_, one.X_poison_, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(
    "victim, regression",
    [
        (LinearSVC(), False),
        (SGDClassifier(loss="log_loss", random_state=0), False),  # mean-form penalty
        (LogisticRegression(), False),  # multiclass cross-entropy
        (Ridge(), True),
    ],
)
def test_gradient_matching_lowers_the_dissimilarity_on_linear_victims(victim, regression):
    X, y = load_digits(digits=(0, 1, 2), return_X_y=True)
    X, y = X[:120], y[:120]
    if regression:
        y = y.astype(float) + 0.1 * np.random.RandomState(0).normal(size=len(y))
    gm = GradientMatching(victim, epsilon_d=0.2, max_iter=40, random_state=0).fit(X, y)
    assert gm.dissimilarity_ < 0.5 * gm.history_[0]


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_gradient_matching_and_tgda_on_a_net():
    X, y = load_digits(return_X_y=True)
    X, y = X[:200].astype(np.float32), y[:200]
    gm = GradientMatching(_net(), epsilon_d=0.1, max_iter=30, random_state=0).fit(X, y)
    assert gm.dissimilarity_ < 0.5 * gm.history_[0]
    net = _net(optimizer=torch.optim.SGD, lr=0.1, max_epochs=20)
    tgda = TGDA(
        net, epsilon_d=0.1, max_iter=3, cg_max_iter=5, follower_steps=2, damping=0.1,
        random_state=0,
    ).fit(X, y)
    assert tgda.X_poison_.shape == (20, 64)
    assert np.all(np.isfinite(tgda.history_)) and np.all(np.isfinite(tgda.X_poison_))
    assert np.abs(tgda.leader_gradient_).max() > 0
    assert not np.allclose(tgda.X_poison_, X[tgda.init_indices_])


# ----------------------------------------------------------------------------- TGDA
def _tiny_problem():
    rng = np.random.RandomState(0)
    X = rng.normal(size=(16, 3))
    y = (X[:, 0] + 0.5 * rng.normal(size=16) > 0).astype(int)
    return X, y


def test_tgda_total_gradient_is_the_derivative_through_retraining():
    X, y = _tiny_problem()
    victim = LogisticRegression(tol=1e-12, max_iter=10000)
    tgda = TGDA(
        victim, epsilon_d=0.25, max_iter=1, damping=0.0, cg_max_iter=100, cg_tol=1e-12,
        dtype="float64", device="cpu", random_state=0,
    ).fit(X, y)
    val = tgda.validation_indices_
    train = np.setdiff1d(np.arange(len(X)), val)
    start, labels = X[tgda.init_indices_], y[tgda.init_indices_]

    def leader_objective(X_poison):  # validation loss of the retrained follower
        model = clone(victim).fit(
            np.vstack([X[train], X_poison]), np.concatenate([y[train], labels])
        )
        return log_loss(y[val], model.predict_proba(X[val]), labels=[0, 1])

    step = 1e-5
    numeric = np.zeros_like(start)
    for i, j in np.ndindex(start.shape):
        e = np.zeros_like(start)
        e[i, j] = step
        numeric[i, j] = (leader_objective(start + e) - leader_objective(start - e)) / (2 * step)
    np.testing.assert_allclose(
        tgda.leader_gradient_, numeric, rtol=1e-4, atol=1e-6 * np.abs(numeric).max()
    )
    assert tgda.history_[0] == pytest.approx(leader_objective(start), rel=1e-8)
    # the leader's step raised the retrained victim's validation loss
    assert leader_objective(tgda.X_poison_) > leader_objective(start)


def test_tgda_one_leader_step_raises_the_retrained_validation_loss():
    X, y = load_digits(digits=(1, 7), return_X_y=True)
    X, y = X[:200], y[:200]
    victim = LogisticRegression(max_iter=1000)
    tgda = TGDA(
        victim, epsilon_d=0.1, max_iter=1, feature_range=(0, 1), dtype="float64",
        random_state=0,
    ).fit(X, y)
    val = tgda.validation_indices_
    train = np.setdiff1d(np.arange(len(X)), val)

    def validation_loss(X_poison):
        model = clone(victim).fit(
            np.vstack([X[train], X_poison]), np.concatenate([y[train], tgda.y_poison_])
        )
        return log_loss(y[val], model.predict_proba(X[val]), labels=[1, 7])

    assert validation_loss(tgda.X_poison_) > validation_loss(X[tgda.init_indices_])
    assert np.all((tgda.X_poison_ >= 0) & (tgda.X_poison_ <= 1))
    np.testing.assert_array_equal(tgda.y_poison_, y[tgda.init_indices_])


# ------------------------------------------------------------- the paper's ordering
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_baselines_lower_accuracy_and_gc_lowers_it_more_on_digits():
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, train_size=300, test_size=400, random_state=0, stratify=y
    )
    victim = LogisticRegression(max_iter=500)

    def accuracy(sampler=None):
        X_mixed, y_mixed = (X_train, y_train) if sampler is None else (
            sampler.fit_resample(X_train, y_train)
        )
        return clone(victim).fit(X_mixed, y_mixed).score(X_test, y_test)

    clean = accuracy()
    gm = accuracy(GradientMatching(victim, epsilon_d=0.1, max_iter=100, random_state=0))
    tgda = accuracy(
        TGDA(victim, epsilon_d=0.1, max_iter=10, cg_max_iter=5, follower_steps=2,
             leader_lr=0.5, random_state=0)
    )
    gc = GradientCanceling(
        LabelFlipTarget(victim, flip_fraction=0.5, random_state=0), epsilon_d=0.1,
        max_iter=200, random_state=0,
    )
    gc_accuracy = accuracy(gc)
    assert gc.threshold_ < 0.1
    assert gm < clean and tgda < clean
    assert gc_accuracy < min(gm, tgda)


# --------------------------------------------------------------------------- errors
@pytest.mark.parametrize("Attack", [GradientMatching, TGDA])
def test_bad_input_gets_clear_errors(Attack):
    X, y = _gaussian(n=40)
    with pytest.raises(TypeError, match="not a supported victim"):
        Attack(DecisionTreeClassifier(), max_iter=1).fit(X, y)
    with pytest.raises(ValueError, match="raise epsilon_d"):
        Attack(LogisticRegression(), epsilon_d=0.001, max_iter=1).fit(X, y)
    with pytest.raises(InvalidParameterError, match="epsilon_d"):
        Attack(LogisticRegression(), epsilon_d=True, max_iter=1).fit(X, y)
    with pytest.raises(ValueError, match="outside feature_range"):
        Attack(LogisticRegression(), feature_range=(0, 1), max_iter=1).fit(X, y)
    with pytest.raises(ValueError, match="Unknown label type"):
        Attack(LogisticRegression(), max_iter=1).fit(X, X[:, 0])
    X_nan = X.copy()
    X_nan[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        Attack(LogisticRegression(), max_iter=1).fit(X_nan, y)


def test_tgda_specific_errors():
    X, y = _gaussian(n=40)
    with pytest.raises(ValueError, match="validation_fraction"):
        TGDA(LogisticRegression(), validation_fraction=0.99, max_iter=1).fit(X, y)
    with pytest.raises(ValueError, match="not the recipe"):
        TGDA(ScaledTarget(LogisticRegression()), max_iter=1).fit(X, y)
    with pytest.raises(InvalidParameterError, match="follower_steps"):
        TGDA(LogisticRegression(), follower_steps=1.5).fit(X, y)


def test_resample_returns_clean_then_poison():
    X, y = _gaussian(n=40)
    for attack in (
        GradientMatching(LogisticRegression(), epsilon_d=0.25, max_iter=2, random_state=0),
        TGDA(LogisticRegression(), epsilon_d=0.25, max_iter=1, random_state=0),
    ):
        X_mixed, y_mixed = attack.fit_resample(X, y)
        np.testing.assert_array_equal(X_mixed[:40], X)
        np.testing.assert_allclose(X_mixed[40:], attack.X_poison_)
        np.testing.assert_array_equal(y_mixed[40:], attack.y_poison_)
        assert attack.n_poison_ == 10
