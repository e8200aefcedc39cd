"""Target recipes (ScaledTarget, LabelFlipTarget) and resolve_target."""

import copy
import warnings

import numpy as np
import pytest
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.exceptions import NotFittedError
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression, Ridge, SGDClassifier
from sklearn.svm import LinearSVC

from skpoison import PoisonabilityAnalyzer
from skpoison.targets import LabelFlipTarget, ScaledTarget, resolve_target

F64 = dict(device="cpu", dtype="float64")


def negated(est):
    new = copy.deepcopy(est)
    new.coef_ = -est.coef_
    new.intercept_ = -est.intercept_
    return new


class RecordingClassifier(ClassifierMixin, BaseEstimator):
    """Remembers the labels it was fitted on (to see what LabelFlipTarget passes)."""

    def fit(self, X, y):
        self.y_seen_ = np.array(y, copy=True)
        self.classes_ = np.unique(y)
        self.n_features_in_ = np.asarray(X).shape[1]
        return self

    def predict(self, X):
        return np.full(len(X), self.classes_[0])


# ------------------------------------------------------------------ ScaledTarget


@pytest.mark.parametrize("scale", [0.5, 2.0])
def test_scaled_linear_target(gaussian, scale):
    X, y = gaussian
    recipe = ScaledTarget(LogisticRegression(), scale=scale).fit(X, y)
    source = LogisticRegression().fit(X, y)
    np.testing.assert_allclose(recipe.estimator_.coef_, source.coef_)
    np.testing.assert_allclose(recipe.target_.coef_, scale * source.coef_, rtol=1e-12)
    np.testing.assert_allclose(recipe.target_.intercept_, scale * source.intercept_, rtol=1e-12)
    np.testing.assert_array_equal(recipe.predict(X), source.predict(X))
    np.testing.assert_allclose(recipe.decision_function(X), scale * source.decision_function(X))
    assert recipe.score(X, y) == source.score(X, y)
    np.testing.assert_array_equal(recipe.classes_, source.classes_)
    assert recipe.n_features_in_ == X.shape[1]
    assert recipe.target_ is not recipe.estimator_


def test_scaled_multiclass_and_regression(digits3, regression):
    X, y = digits3
    source = LinearSVC().fit(X, y)
    recipe = ScaledTarget(FrozenEstimator(source), scale=0.3).fit(X, y)
    np.testing.assert_allclose(recipe.target_.coef_, 0.3 * source.coef_)
    np.testing.assert_allclose(recipe.target_.intercept_, 0.3 * source.intercept_)
    np.testing.assert_array_equal(recipe.predict(X), source.predict(X))
    assert recipe.estimator_ is source

    Xr, yr, Y = regression
    for target in (yr, Y):
        ridge = Ridge().fit(Xr, target)
        scaled = ScaledTarget(Ridge(), scale=0.5).fit(Xr, target)
        np.testing.assert_allclose(scaled.predict(Xr), 0.5 * ridge.predict(Xr), rtol=1e-10)
        assert np.shape(scaled.target_.intercept_) == np.shape(ridge.intercept_)


def test_scaled_frozen_source_is_not_modified(gaussian):
    X, y = gaussian
    source = LogisticRegression().fit(X, y)
    coef, intercept = source.coef_.copy(), source.intercept_.copy()
    recipe = ScaledTarget(FrozenEstimator(source), scale=0.25).fit(X, y)
    np.testing.assert_array_equal(source.coef_, coef)
    np.testing.assert_array_equal(source.intercept_, intercept)
    np.testing.assert_allclose(recipe.target_.coef_, 0.25 * coef)


def test_scaled_nested_recipe(gaussian):
    X, y = gaussian
    inner = ScaledTarget(LogisticRegression(), scale=0.5)
    recipe = ScaledTarget(inner, scale=0.5).fit(X, y)
    source = LogisticRegression().fit(X, y)
    np.testing.assert_allclose(recipe.target_.coef_, 0.25 * source.coef_, rtol=1e-12)
    assert not hasattr(inner, "target_")


def test_scaled_net_only_last_layer(net_ce, or_data):
    X, y = or_data
    before = {k: v.detach().clone() for k, v in net_ce.module_.named_parameters()}
    recipe = ScaledTarget(FrozenEstimator(net_ce), scale=0.5).fit(X, y)
    after = dict(recipe.target_.module_.named_parameters())
    assert torch.equal(after["hidden.weight"], before["hidden.weight"])
    assert torch.equal(after["hidden.bias"], before["hidden.bias"])
    assert torch.allclose(after["out.weight"], 0.5 * before["out.weight"])
    assert torch.allclose(after["out.bias"], 0.5 * before["out.bias"])
    # the source net is untouched, predictions are the same, logits are halved
    for name, value in net_ce.module_.named_parameters():
        assert torch.equal(value, before[name])
    np.testing.assert_array_equal(recipe.predict(X), net_ce.predict(X))
    np.testing.assert_allclose(
        recipe.target_.forward(X).numpy(), 0.5 * net_ce.forward(X).numpy(), rtol=1e-12
    )


def test_scaling_down_lowers_threshold(gaussian):
    X, y = gaussian
    adversarial = FrozenEstimator(negated(LogisticRegression(C=0.5).fit(X, y)))
    taus = [
        PoisonabilityAnalyzer(ScaledTarget(adversarial, scale=s), **F64).fit(X, y).threshold_
        for s in (0.25, 0.5, 1.0)
    ]
    assert 0 < taus[0] < taus[1] < taus[2]
    plain = PoisonabilityAnalyzer(adversarial, **F64).fit(X, y).threshold_
    assert taus[2] == pytest.approx(plain, rel=1e-12)


def test_scale_must_be_positive(gaussian):
    X, y = gaussian
    for bad in (0.0, -1.0):
        with pytest.raises(ValueError, match="scale"):
            ScaledTarget(LogisticRegression(), scale=bad).fit(X, y)


# --------------------------------------------------------------- LabelFlipTarget


@pytest.mark.parametrize("fraction", [0.1, 0.3, 0.77])
def test_label_flip_flips_exactly_the_requested_rows(digits3, fraction):
    X, y = digits3
    recipe = LabelFlipTarget(RecordingClassifier(), flip_fraction=fraction, random_state=0)
    recipe.fit(X, y)
    seen = recipe.target_.y_seen_
    changed = np.flatnonzero(seen != y)
    n_flip = int(round(fraction * len(y)))
    assert len(changed) == n_flip  # every chosen row gets a *different* class
    np.testing.assert_array_equal(changed, recipe.flipped_indices_)
    assert len(np.unique(recipe.flipped_indices_)) == n_flip
    assert set(np.unique(seen)) <= set(np.unique(y))
    if fraction > 0.5:  # with three classes both other classes are used
        for c in np.unique(y):
            rows = changed[y[changed] == c]
            assert len(np.unique(seen[rows])) == 2


def test_label_flip_binary_flips_to_the_other_class(gaussian):
    X, y = gaussian
    recipe = LabelFlipTarget(RecordingClassifier(), flip_fraction=0.4, random_state=3).fit(X, y)
    idx = recipe.flipped_indices_
    np.testing.assert_array_equal(recipe.target_.y_seen_[idx], 1 - y[idx])
    untouched = np.setdiff1d(np.arange(len(y)), idx)
    np.testing.assert_array_equal(recipe.target_.y_seen_[untouched], y[untouched])


def test_label_flip_reproducible(gaussian):
    X, y = gaussian
    a = LabelFlipTarget(LogisticRegression(), flip_fraction=0.3, random_state=0).fit(X, y)
    b = LabelFlipTarget(LogisticRegression(), flip_fraction=0.3, random_state=0).fit(X, y)
    c = LabelFlipTarget(LogisticRegression(), flip_fraction=0.3, random_state=1).fit(X, y)
    np.testing.assert_array_equal(a.flipped_indices_, b.flipped_indices_)
    np.testing.assert_array_equal(a.target_.coef_, b.target_.coef_)
    assert not np.array_equal(a.flipped_indices_, c.flipped_indices_)
    rs = np.random.RandomState(5)
    d = LabelFlipTarget(LogisticRegression(), random_state=rs).fit(X, y)
    e = LabelFlipTarget(LogisticRegression(), random_state=np.random.RandomState(5)).fit(X, y)
    np.testing.assert_array_equal(d.flipped_indices_, e.flipped_indices_)


def test_label_flip_all_labels_gives_a_bad_model(gaussian):
    X, y = gaussian
    recipe = LabelFlipTarget(LogisticRegression(), flip_fraction=1.0, random_state=0).fit(X, y)
    assert len(recipe.flipped_indices_) == len(y)
    assert recipe.score(X, y) < 0.2
    clean = LogisticRegression().fit(X, y)
    assert clean.score(X, y) > 0.8
    # the flipped model is an adversarial target: positive threshold
    tau = PoisonabilityAnalyzer(FrozenEstimator(recipe.target_), **F64).fit(X, y).threshold_
    assert tau > 1.0
    np.testing.assert_array_equal(recipe.classes_, clean.classes_)
    assert recipe.predict_proba(X).shape == (len(y), 2)


def test_label_flip_rejects_frozen_and_recipes(gaussian):
    X, y = gaussian
    fitted = LogisticRegression().fit(X, y)
    for bad in (FrozenEstimator(fitted), ScaledTarget(LogisticRegression())):
        with pytest.raises(ValueError, match="unfitted classifier"):
            LabelFlipTarget(bad, random_state=0).fit(X, y)


def test_label_flip_bad_parameters(gaussian):
    X, y = gaussian
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="flip_fraction"):
            LabelFlipTarget(LogisticRegression(), flip_fraction=bad).fit(X, y)
    with pytest.raises(ValueError, match="two classes"):
        LabelFlipTarget(LogisticRegression(), random_state=0).fit(X, np.zeros(len(y), dtype=int))
    with pytest.raises(ValueError):
        LabelFlipTarget(LogisticRegression(), random_state=0).fit(X, np.linspace(0, 1, len(y)))


def test_label_flip_with_sgd_target_in_analyzer(gaussian):
    # recipes are accepted as target= and fitted on the data the analyzer sees
    X, y = gaussian
    recipe = LabelFlipTarget(SGDClassifier(random_state=0), flip_fraction=0.9, random_state=0)
    an = PoisonabilityAnalyzer(recipe, **F64).fit(X, y)
    direct = clone(recipe).fit(X, y).target_
    np.testing.assert_allclose(an.target_.coef_, direct.coef_)
    assert an.threshold_ > 0


# -------------------------------------------------------------- resolve_target


def test_resolve_target(gaussian, net_ce, or_data, mlp_class):
    X, y = gaussian
    fitted = LogisticRegression().fit(X, y)
    assert resolve_target(fitted, X, y) is fitted
    assert resolve_target(FrozenEstimator(fitted), X, y) is fitted

    recipe = ScaledTarget(LogisticRegression(), scale=0.5)
    target = resolve_target(recipe, X, y)
    np.testing.assert_allclose(target.coef_, 0.5 * fitted.coef_, rtol=1e-10)
    assert not hasattr(recipe, "target_")  # the recipe is cloned, never fitted in place

    with pytest.raises(NotFittedError, match="FrozenEstimator"):
        resolve_target(LogisticRegression(), X, y)
    with pytest.raises(NotFittedError, match="recipe"):
        resolve_target(FrozenEstimator(LogisticRegression()), X, y)

    from skorch import NeuralNetClassifier

    Xo, yo = or_data
    assert resolve_target(net_ce, Xo, yo) is net_ce
    with pytest.raises(NotFittedError, match="FrozenEstimator"):
        resolve_target(NeuralNetClassifier(mlp_class), Xo, yo)


# ------------------------------------------------------------------ clone safety


@pytest.mark.parametrize(
    "recipe",
    [
        ScaledTarget(LogisticRegression(), scale=0.5),
        LabelFlipTarget(LogisticRegression(), flip_fraction=0.3, random_state=0),
        ScaledTarget(LabelFlipTarget(LogisticRegression(), random_state=1), scale=2.0),
    ],
    ids=["scaled", "label-flip", "nested"],
)
def test_clone_then_fit_gives_identical_target(gaussian, recipe):
    X, y = gaussian
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # clone must not warn about parameters
        copy_ = clone(recipe)
    assert copy_.get_params(deep=False).keys() == recipe.get_params(deep=False).keys()
    a = copy_.fit(X, y).target_
    b = clone(recipe).fit(X, y).target_
    c = recipe.fit(X, y).target_
    for other in (b, c):
        np.testing.assert_array_equal(a.coef_, other.coef_)
        np.testing.assert_array_equal(a.intercept_, other.intercept_)


def test_recipe_unfitted_methods_raise(gaussian):
    X, _ = gaussian
    for recipe in (ScaledTarget(LogisticRegression()), LabelFlipTarget(LogisticRegression())):
        with pytest.raises(NotFittedError):
            recipe.predict(X)
