"""Bad input to the Python API fails loudly, and unusual but valid input works (issue 8)."""

import warnings

import numpy as np
import pytest
import torch
from sklearn.exceptions import NotFittedError
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression, Ridge

from skpoison import GradientCanceling, PoisonabilityAnalyzer
from skpoison.defenses import MaxUpClassifier, SeverFilter
from skpoison.models import MLP, SeededNeuralNetClassifier, make_net
from skpoison.objectives import as_objective
from skpoison.targets import GradPC, LabelFlipTarget, RandomPC, ScaledTarget
from skpoison._utils import resolve_device, to_tensor

pd = pytest.importorskip("pandas")

CPU = dict(device="cpu")


@pytest.fixture
def clean_lr(gaussian):
    X, y = gaussian
    return LogisticRegression().fit(X, y)


# ------------------------------------------------------------ non-finite targets


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_target_parameters_are_named(gaussian, clean_lr, bad):
    X, y = gaussian
    clean_lr.coef_[0, 2] = bad
    frozen = FrozenEstimator(clean_lr)
    # today: tau = 0 ("poisonable at any budget") and relative_change_ = inf
    with pytest.raises(ValueError, match=r"non-finite parameters: coef \(1 of 5 entries\)"):
        PoisonabilityAnalyzer(frozen, **CPU).fit(X, y)
    with pytest.raises(ValueError, match="non-finite parameters: coef"):
        GradPC(frozen, epsilon_w=0.5, **CPU).fit(X, y)
    with pytest.raises(ValueError, match="non-finite parameters: coef"):
        RandomPC(frozen, epsilon_w=0.5, random_state=0, **CPU).fit(X, y)
    with pytest.raises(ValueError, match="non-finite parameters: coef") as info:
        GradientCanceling(frozen, epsilon_d=0.1, max_iter=3, **CPU).fit(X, y)
    assert "lr" not in str(info.value)  # the target is at fault, not the step size


def test_parameters_beyond_float32_suggest_float64(gaussian, clean_lr):
    X, y = gaussian
    clean_lr.coef_ = clean_lr.coef_ * 1e300  # finite in float64, inf in float32
    frozen = FrozenEstimator(clean_lr)
    with pytest.raises(ValueError, match=r"as float32.*dtype='float64'"):
        PoisonabilityAnalyzer(frozen, dtype="float32", **CPU).fit(X, y)
    # finite parameters, but <w, g(mu)> overflows float64: an error, not tau = 0
    with pytest.raises(ValueError, match="overflows float64"):
        PoisonabilityAnalyzer(frozen, dtype="float64", **CPU).fit(X, y)


def test_overflowing_clean_gradient_is_the_targets_fault(gaussian, clean_lr):
    X, y = gaussian
    X = np.abs(X) + 1.0  # every logit is a sum of +-inf terms in float32: NaN
    clean_lr.coef_ = np.array([[1e38, -1e38, 1e38, -1e38, 1e38]])
    clean_lr.intercept_ = np.zeros(1)
    frozen = FrozenEstimator(clean_lr)
    with pytest.raises(ValueError, match="clean data is not finite in float32") as info:
        GradientCanceling(frozen, epsilon_d=0.1, max_iter=3, **CPU).fit(X, y)
    assert "lr" not in str(info.value)


# ------------------------------------------------------------------ feature names


def test_reordered_dataframe_columns_raise(gaussian):
    X, y = gaussian
    df = pd.DataFrame(X, columns=list("abcde"))
    target = GradPC(LogisticRegression(), epsilon_w=0.5, random_state=0).fit(df, y)
    reordered = df[list("edcba")]
    frozen = FrozenEstimator(target.target_)
    with pytest.raises(ValueError, match="same order"):
        PoisonabilityAnalyzer(frozen, **CPU).fit(reordered, y)
    with pytest.raises(ValueError, match="same order"):
        GradientCanceling(frozen, epsilon_d=0.1, max_iter=2, **CPU).fit(reordered, y)
    with pytest.raises(ValueError, match="same order"):
        GradPC(FrozenEstimator(target.estimator_), epsilon_w=0.5, **CPU).fit(reordered, y)
    # the right order gives the right answer
    tau = PoisonabilityAnalyzer(frozen, **CPU).fit(df, y).threshold_
    with pytest.warns(UserWarning, match="does not have valid feature names"):
        tau_array = PoisonabilityAnalyzer(frozen, **CPU).fit(X, y).threshold_
    assert tau == pytest.approx(tau_array, rel=1e-5)  # float32 sums in another order


def test_names_on_one_side_warn_like_sklearn(gaussian):
    X, y = gaussian
    df = pd.DataFrame(X, columns=list("abcde"))
    with_names = FrozenEstimator(LogisticRegression().fit(df, y))
    without_names = FrozenEstimator(LogisticRegression().fit(X, y))
    with pytest.warns(UserWarning, match="does not have valid feature names"):
        PoisonabilityAnalyzer(with_names, **CPU).fit(X, y)
    with pytest.warns(UserWarning, match="X has feature names, but LogisticRegression"):
        PoisonabilityAnalyzer(without_names, **CPU).fit(df, y)


@pytest.mark.parametrize(
    "recipe",
    [
        GradPC(LogisticRegression(), epsilon_w=0.5, random_state=0, **CPU),
        RandomPC(LogisticRegression(), epsilon_w=0.5, random_state=0, **CPU),
        ScaledTarget(LogisticRegression()),
        LabelFlipTarget(LogisticRegression(), random_state=0),
    ],
    ids=lambda r: type(r).__name__,
)
def test_recipes_keep_feature_names(gaussian, recipe):
    X, y = gaussian
    df = pd.DataFrame(X, columns=list("abcde"))
    fitted = recipe.fit(df, y)
    np.testing.assert_array_equal(fitted.target_.feature_names_in_, list("abcde"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fitted.predict(df)  # no feature-name warning


# --------------------------------------------------------------------- budgets


@pytest.mark.parametrize("recipe", [GradPC, RandomPC])
def test_huge_absolute_budget_does_not_overflow(gaussian, recipe):
    X, y = gaussian
    fitted = recipe(
        LogisticRegression(), epsilon_w=1e155, relative=False, random_state=0, **CPU
    ).fit(X, y)
    w0 = np.r_[fitted.estimator_.coef_.ravel(), fitted.estimator_.intercept_]
    w = np.r_[fitted.target_.coef_.ravel(), fitted.target_.intercept_]
    # the squares of the step overflow float64; the corruption must still use the budget
    assert np.linalg.norm((w - w0) / 1e155) == pytest.approx(1.0, rel=1e-9)
    assert fitted.relative_change_ == pytest.approx(1e155 / np.linalg.norm(w0), rel=1e-9)


@pytest.mark.parametrize("recipe", [GradPC, RandomPC])
def test_unrepresentable_budget_is_rejected(gaussian, recipe):
    X, y = gaussian
    with pytest.raises(ValueError, match="epsilon_w=1e\\+308.*smaller epsilon_w"):
        recipe(LogisticRegression(), epsilon_w=1e308, relative=True, **CPU).fit(X, y)


# -------------------------------------------------------------------- booleans


@pytest.mark.parametrize(
    "estimator",
    [
        GradientCanceling(ScaledTarget(LogisticRegression()), epsilon_d=True),
        GradientCanceling(ScaledTarget(LogisticRegression()), max_iter=True),
        GradientCanceling(ScaledTarget(LogisticRegression()), lr=True),
        PoisonabilityAnalyzer(ScaledTarget(LogisticRegression()), batch_size=True),
        GradPC(LogisticRegression(), epsilon_w=True),
        GradPC(LogisticRegression(), step_size=True),
        RandomPC(LogisticRegression(), epsilon_w=True),
        ScaledTarget(LogisticRegression(), scale=True),
        LabelFlipTarget(LogisticRegression(), flip_fraction=True),
        SeverFilter(LogisticRegression(), removal_fraction=False),
    ],
    ids=lambda e: type(e).__name__,
)
def test_booleans_are_not_numbers(gaussian, estimator):
    X, y = gaussian
    with pytest.raises(ValueError, match="not a bool"):
        estimator.fit(X, y)


def test_booleans_are_not_numbers_in_methods(gaussian, clean_lr):
    X, y = gaussian
    analyzer = PoisonabilityAnalyzer(FrozenEstimator(clean_lr), **CPU).fit(X, y)
    with pytest.raises(ValueError, match="not a boolean"):
        analyzer.is_poisonable(True)
    with pytest.raises(ValueError, match="not booleans"):
        PoisonabilityAnalyzer(FrozenEstimator(clean_lr), feature_range=(False, True)).fit(X, y)
    with pytest.raises(ValueError, match="batch_size"):
        make_net("mlp", batch_size=True, device="cpu")


# ---------------------------------------------------------------------- devices


@pytest.mark.parametrize("device", ["bogus", "mps", "meta", "cuda:x", torch.device("meta"), 3])
def test_resolve_device_names_the_choices(device):
    with pytest.raises(ValueError, match="'auto', 'cpu', 'cuda', 'cuda:N'"):
        resolve_device(device)


def test_resolve_device_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for device in ("cuda", "cuda:0", torch.device("cuda")):
        with pytest.raises(ValueError, match="no CUDA device; use device='cpu'"):
            resolve_device(device)
    assert resolve_device("auto") == torch.device("cpu")


def test_resolve_device_accepts_torch_devices(gaussian, clean_lr):
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    assert resolve_device(" cpu ") == torch.device("cpu")
    X, y = gaussian
    analyzer = PoisonabilityAnalyzer(FrozenEstimator(clean_lr), device=torch.device("cpu"))
    assert analyzer.fit(X, y).objective_.device == torch.device("cpu")
    with pytest.raises(ValueError, match="'auto', 'cpu', 'cuda', 'cuda:N'"):
        PoisonabilityAnalyzer(FrozenEstimator(clean_lr), device="bogus").fit(X, y)


# ------------------------------------------------------------------- arrays


def test_negative_strides_work(gaussian, clean_lr):
    X, y = gaussian
    frozen = FrozenEstimator(clean_lr)
    reversed_tau = PoisonabilityAnalyzer(frozen, dtype="float64", **CPU).fit(X[::-1], y[::-1])
    tau = PoisonabilityAnalyzer(frozen, dtype="float64", **CPU).fit(X[::-1].copy(), y[::-1])
    assert reversed_tau.threshold_ == tau.threshold_
    gc = GradientCanceling(frozen, epsilon_d=0.1, max_iter=2, random_state=0, **CPU)
    X_mixed, _ = gc.fit_resample(X[:, ::-1], y)
    np.testing.assert_array_equal(X_mixed[:200], X[:, ::-1])


def test_read_only_arrays_are_copied():
    array = np.ones(3)
    array.flags.writeable = False
    tensor = to_tensor(array, device="cpu")
    tensor[0] = 5.0
    assert array[0] == 1.0


@pytest.mark.parametrize(
    "feature_range", [(np.zeros(3), np.ones(3)), (np.zeros((1, 5)), 1.0), (0.0, np.ones(6))]
)
def test_feature_range_shape_must_match_features(gaussian, clean_lr, feature_range):
    X, y = gaussian
    frozen = FrozenEstimator(clean_lr)
    message = "feature_range: the (low|high) bound has shape .* but X has 5 features"
    with pytest.raises(ValueError, match=message):
        PoisonabilityAnalyzer(frozen, feature_range=feature_range, **CPU).fit(X, y)
    with pytest.raises(ValueError, match=message):
        GradientCanceling(frozen, feature_range=feature_range, max_iter=2, **CPU).fit(X, y)


# ------------------------------------------------------------------- objectives


def test_skorch_nll_adapter_honours_dtype(or_data, mlp_class):
    from skorch import NeuralNetClassifier

    X, y = or_data
    torch.manual_seed(0)
    net = NeuralNetClassifier(  # skorch's default criterion: NLLLoss on probabilities
        mlp_class, module__output="softmax", max_epochs=2, train_split=None, verbose=0
    ).fit(X, y)
    assert next(net.module_.parameters()).dtype == torch.float64
    objective = as_objective(net, device="cpu", dtype="float32")
    assert objective.dtype == torch.float32
    assert objective.flat_params().dtype == torch.float32
    # skorch takes log(p + eps) with eps of the module's dtype
    assert objective.probability_epsilon == torch.finfo(torch.float64).eps
    analyzer = PoisonabilityAnalyzer(FrozenEstimator(net), dtype="float32", **CPU).fit(X, y)
    assert analyzer.objective_.dtype == torch.float32


def test_tensor_labels_are_raw_labels(gaussian, clean_lr, regression, blobs3):
    X, y = gaussian
    objective = as_objective(clean_lr, device="cpu", dtype="float64")
    raw = torch.tensor(y, dtype=torch.float64)  # the objective's dtype, still labels
    np.testing.assert_array_equal(objective.encode_labels(raw).numpy(), 2.0 * y - 1.0)
    np.testing.assert_allclose(
        objective.sample_losses(X, raw).numpy(), objective.sample_losses(X, y).numpy()
    )

    X3, y3 = blobs3
    multi = as_objective(LogisticRegression().fit(X3, y3 + 1), device="cpu", dtype="float64")
    labels = torch.tensor(y3 + 1)  # int64 tensor of labels {1, 2, 3}: indices {0, 1, 2}
    np.testing.assert_array_equal(multi.encode_labels(labels).numpy(), y3)

    Xr, yr, _ = regression
    ridge = as_objective(Ridge().fit(Xr, yr), device="cpu", dtype="float64")
    losses = ridge.sample_losses(Xr, torch.tensor(yr, dtype=torch.float64))
    assert losses.shape == (len(yr),)  # not (m, m) by broadcasting
    np.testing.assert_allclose(losses.numpy(), ridge.sample_losses(Xr, yr).numpy())


# ----------------------------------------------------------------------- pandas


def test_gradient_canceling_returns_the_given_containers(gaussian):
    X, y = gaussian
    df = pd.DataFrame(X, columns=list("abcde"))
    ys = pd.Series(y, name="label")
    gc = GradientCanceling(
        ScaledTarget(LogisticRegression()), epsilon_d=0.1, max_iter=3, random_state=0, **CPU
    )
    X_mixed, y_mixed = gc.fit_resample(df, ys)
    assert isinstance(X_mixed, pd.DataFrame) and list(X_mixed.columns) == list("abcde")
    assert isinstance(y_mixed, pd.Series) and y_mixed.name == "label"
    assert y_mixed.dtype == ys.dtype and X_mixed.shape == (220, 5)
    np.testing.assert_array_equal(X_mixed.to_numpy()[200:], gc.X_poison_)


def test_poison_pipeline_on_dataframe_gives_no_feature_name_warning(gaussian):
    from imblearn.pipeline import Pipeline

    X, y = gaussian
    df = pd.DataFrame(X, columns=list("abcde"))
    target = GradPC(LogisticRegression(), epsilon_w=0.5, random_state=0, **CPU)
    gc = GradientCanceling(target, epsilon_d=0.1, max_iter=3, random_state=0, **CPU)
    pipe = Pipeline([("poison", gc), ("victim", LogisticRegression())])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        score = pipe.fit(df, y).score(df, y)
    assert score == pipe.named_steps["victim"].score(df, y)
    np.testing.assert_array_equal(pipe.named_steps["victim"].feature_names_in_, list("abcde"))


# ------------------------------------------------------------------- skorch nets

_NET = dict(
    module__n_features=None,
    module__n_classes=None,
    module__hidden_size=8,
    max_epochs=2,
    lr=0.1,
    verbose=0,
    random_state=0,
)


@pytest.mark.parametrize("net_class", [SeededNeuralNetClassifier, MaxUpClassifier])
def test_nets_follow_the_sklearn_contract(gaussian, net_class):
    X, y = gaussian
    with pytest.raises(NotFittedError):
        net_class(MLP, **_NET).predict(X)
    from_arrays = net_class(MLP, **_NET).fit(X, y).predict_proba(X)
    from_lists = net_class(MLP, **_NET).fit(X.tolist(), y.tolist()).predict_proba(X)
    np.testing.assert_array_equal(from_lists, from_arrays)
    with pytest.raises(ValueError, match="Unknown label type: continuous"):
        net_class(MLP, **_NET).fit(X, X[:, 0])
    with pytest.raises(ValueError, match="requires y to be passed"):
        net_class(MLP, **_NET).fit(X, None)
