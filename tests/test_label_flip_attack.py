"""LabelFlipAttack: exact rows and counts, the shared flip rule, adversarial strength."""

import numpy as np
import pytest
from imblearn.pipeline import Pipeline
from scipy.special import expit
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.utils import check_random_state

from skpoison import PoisonabilityAnalyzer
from skpoison.attacks import LabelFlipAttack
from skpoison.datasets import load_digits, make_gaussian
from skpoison.targets import LabelFlipTarget


@pytest.fixture
def gaussian():
    return make_gaussian(n_samples=200, n_features=5, random_state=0)


def test_random_rows_and_labels_for_a_seed(gaussian):
    X, y = gaussian
    flip = LabelFlipAttack(LogisticRegression(), epsilon_d=0.3, random_state=3).fit(X, y)
    # independent replay of the documented rule: sorted distinct rows, then a shift
    rng = check_random_state(3)
    rows = np.sort(rng.choice(200, size=60, replace=False))
    labels = 1 - y[rows]  # binary: the shift is always 1
    rng.randint(1, 2, size=60)
    np.testing.assert_array_equal(flip.flip_indices_, rows)
    np.testing.assert_array_equal(flip.y_poison_, labels)
    np.testing.assert_array_equal(flip.X_poison_, X[rows])
    assert flip.n_poison_ == 60 and flip.sampling_strategy_ == {
        0: int(np.sum(labels == 0)),
        1: int(np.sum(labels == 1)),
    }
    X_mixed, y_mixed = flip.fit_resample(X, y)
    np.testing.assert_array_equal(X_mixed[:200], X)
    np.testing.assert_array_equal(y_mixed[200:], labels)


def test_budget_above_one_draws_with_replacement(gaussian):
    X, y = gaussian
    flip = LabelFlipAttack(LogisticRegression(), epsilon_d=1.5, random_state=0).fit(X, y)
    assert flip.n_poison_ == 300
    np.testing.assert_array_equal(flip.y_poison_, 1 - y[flip.flip_indices_])


@pytest.mark.parametrize("fraction", [0.2, 0.5, 1.0])
def test_same_rows_as_label_flip_target(fraction):
    X, y = load_digits(return_X_y=True)
    X, y = X[:300], y[:300]  # ten classes: the drawn other class matters
    target = LabelFlipTarget(LogisticRegression(), flip_fraction=fraction, random_state=7)
    target.fit(X, y)
    flip = LabelFlipAttack(LogisticRegression(), epsilon_d=fraction, random_state=7).fit(X, y)
    np.testing.assert_array_equal(flip.flip_indices_, target.flipped_indices_)
    # the target was trained on the clean labels with the attack's poison labels swapped in
    y_flipped = y.copy()
    y_flipped[flip.flip_indices_] = flip.y_poison_
    assert np.all(flip.y_poison_ != y[flip.flip_indices_])
    np.testing.assert_allclose(
        LogisticRegression().fit(X, y_flipped).coef_, target.target_.coef_
    )


def test_multiclass_random_labels_are_uniform_over_the_others():
    X, y = load_digits(return_X_y=True)
    flip = LabelFlipAttack(LogisticRegression(), epsilon_d=3.0, random_state=0).fit(X, y)
    shift = (flip.y_poison_ - y[flip.flip_indices_]) % 10
    counts = np.bincount(shift, minlength=10)
    assert counts[0] == 0
    expected = flip.n_poison_ / 9
    assert np.all(np.abs(counts[1:] - expected) < 5 * np.sqrt(expected))


def _logistic_losses(model, X, y):
    margins = (2 * y - 1) * model.decision_function(X)
    return np.logaddexp(0.0, -margins)


def test_adversarial_flips_take_the_largest_flipped_losses(gaussian):
    X, y = gaussian
    flip = LabelFlipAttack(
        LogisticRegression(), epsilon_d=0.2, strategy="adversarial", random_state=0
    ).fit(X, y)
    clean = LogisticRegression().fit(X, y)
    flipped_loss = _logistic_losses(clean, X, 1 - y)
    chosen = np.sort(np.argsort(-flipped_loss)[:40])
    np.testing.assert_array_equal(flip.flip_indices_, chosen)
    np.testing.assert_array_equal(flip.y_poison_, 1 - y[chosen])


def test_adversarial_flips_raise_the_clean_loss_more_than_random(gaussian):
    X, y = gaussian

    def clean_loss_after(strategy):
        flip = LabelFlipAttack(
            LogisticRegression(), epsilon_d=0.2, strategy=strategy, random_state=0
        )
        victim = LogisticRegression().fit(*flip.fit_resample(X, y))
        return _logistic_losses(victim, X, y).mean()

    clean = _logistic_losses(LogisticRegression().fit(X, y), X, y).mean()
    random, adversarial = clean_loss_after("random"), clean_loss_after("adversarial")
    assert clean < random < adversarial
    assert adversarial > 1.3 * random  # measured: 0.46 vs 0.31


def test_adversarial_multiclass_label_maximises_the_loss():
    X, y = load_digits(return_X_y=True)
    X, y = X[:400], y[:400]
    flip = LabelFlipAttack(
        LogisticRegression(max_iter=500), epsilon_d=0.1, strategy="adversarial", random_state=0
    ).fit(X, y)
    log_proba = flip.estimator_.predict_log_proba(X[flip.flip_indices_])
    log_proba[np.arange(flip.n_poison_), y[flip.flip_indices_]] = np.inf
    # cross-entropy is largest for the class of smallest probability
    np.testing.assert_array_equal(flip.y_poison_, np.argmin(log_proba, axis=1))


def test_gradient_norm_in_analyzer_units(gaussian):
    X, y = gaussian
    clean = LogisticRegression(fit_intercept=False).fit(X, y)
    flip = LabelFlipAttack(
        LogisticRegression(), epsilon_d=0.5, target=FrozenEstimator(clean), random_state=0
    ).fit(X, y)
    analyzer = PoisonabilityAnalyzer(FrozenEstimator(clean)).fit(X, y)
    assert flip.gradient_norm_ == pytest.approx(
        analyzer.gradient_norm(flip.X_poison_, flip.y_poison_)
    )
    # independent numpy reference at the clean model (no intercept, C=1)
    w = clean.coef_.ravel()

    def grad_sum(A, b):
        s = 2.0 * b - 1.0
        return -(A * (s * expit(-s * (A @ w)))[:, None]).sum(axis=0)

    g_clean = grad_sum(X, y) + w
    mixed = (g_clean + grad_sum(flip.X_poison_, flip.y_poison_)) / 300
    expected = np.linalg.norm(mixed) / np.linalg.norm(g_clean / 200)
    assert flip.gradient_norm_ == pytest.approx(expected, rel=1e-3)
    assert flip.threshold_ == pytest.approx(analyzer.threshold_)
    assert LabelFlipAttack(LogisticRegression(), random_state=0).fit(X, y).gradient_norm_ != 0


def test_distance_to_label_flip_target_falls_with_budget(gaussian):
    X, y = gaussian
    target = LabelFlipTarget(LogisticRegression(), flip_fraction=0.4, random_state=0).fit(X, y)
    distances = []
    for eps in (0.1, 0.2, 0.4):
        flip = LabelFlipAttack(LogisticRegression(), epsilon_d=eps, random_state=0)
        victim = LogisticRegression().fit(*flip.fit_resample(X, y))
        distances.append(np.linalg.norm(victim.coef_ - target.target_.coef_))
    assert distances[0] > distances[1] > distances[2]


def test_grid_search_over_epsilon_d(gaussian):
    X, y = gaussian
    pipe = Pipeline(
        [("poison", LabelFlipAttack(LogisticRegression(), random_state=0)),
         ("clf", LogisticRegression())]
    )
    search = GridSearchCV(pipe, {"poison__epsilon_d": [0.05, 1.0]}, cv=3).fit(X, y)
    scores = search.cv_results_["mean_test_score"]
    assert scores[0] > scores[1]


@pytest.mark.parametrize(
    "params, X_y, match",
    [
        ({"epsilon_d": 0.001}, None, "raise epsilon_d"),
        ({}, "one_class", "at least two classes"),
        ({}, "nan", "NaN"),
        ({"strategy": "adversarial", "estimator": "frozen"}, None, "unfitted classifier"),
    ],
)
def test_bad_input(gaussian, params, X_y, match):
    X, y = gaussian
    X = X.copy()
    if X_y == "one_class":
        y = np.zeros_like(y)
    elif X_y == "nan":
        X[0, 0] = np.nan
    if params.get("estimator") == "frozen":
        params = {**params, "estimator": FrozenEstimator(LogisticRegression().fit(X, y))}
    params = {"estimator": LogisticRegression(), **params}
    with pytest.raises(ValueError, match=match):
        LabelFlipAttack(**params).fit(X, y)


def test_continuous_labels_are_rejected(gaussian):
    X, _ = gaussian
    with pytest.raises(ValueError, match="Unknown label type"):
        LabelFlipAttack(LogisticRegression()).fit(X, np.linspace(0, 1, len(X)))
