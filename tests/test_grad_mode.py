"""Attacks, targets, analyzers, defenses and nets give the same result inside
``torch.no_grad()`` and ``torch.inference_mode()`` as outside.

They differentiate the training loss, so without turning autograd back on they would
fail there with torch's "element 0 of tensors does not require grad".
"""

import numpy as np
import pytest
import torch
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression

from skpoison import GradientCanceling, PoisonabilityAnalyzer
from skpoison.attacks import (
    TGDA,
    FrankWolfeCanceling,
    GradientMatching,
    KKTAttack,
    LabelFlipAttack,
    ModelTargetedAttack,
)
from skpoison.datasets import load_digits
from skpoison.defenses import InfluenceFilter, MaxUpClassifier, SeverFilter
from skpoison.models import MLP, make_net
from skpoison.objectives import BinaryMarginLoss, CleanGradient, as_objective
from skpoison.targets import GradPC, LabelFlipTarget, RandomPC, ScaledTarget

MODES = {"no_grad": torch.no_grad, "inference_mode": torch.inference_mode}


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return (X[:240] / 16).astype(np.float32), y[:240]


@pytest.fixture(scope="module")
def clean_models(digits):
    X, y = digits
    lr = LogisticRegression(max_iter=300).fit(X, y)
    net = make_net("mlp", hidden_size=16, max_epochs=3, random_state=0, device="cpu").fit(X, y)
    return {"lr": lr, "net": net}


def _pc(clean):
    return GradPC(FrozenEstimator(clean), epsilon_w=0.2, random_state=0)


# (name, models it applies to, factory of an unfitted estimator from the clean model)
ESTIMATORS = [
    ("GradientCanceling", ("lr", "net"),
     lambda c: GradientCanceling(_pc(c), epsilon_d=0.2, max_iter=3, random_state=0)),
    ("GradientCanceling lagged", ("net",),
     lambda c: GradientCanceling(_pc(c), epsilon_d=0.2, max_iter=3, batch_size=16,
                                 lagged_residual=True, random_state=0)),
    ("GradientCanceling lbfgs", ("lr", "net"),
     lambda c: GradientCanceling(_pc(c), epsilon_d=0.2, max_iter=3, optimizer="lbfgs",
                                 random_state=0)),
    ("PoisonabilityAnalyzer", ("lr", "net"), lambda c: PoisonabilityAnalyzer(_pc(c))),
    ("FrankWolfeCanceling", ("lr", "net"),
     lambda c: FrankWolfeCanceling(_pc(c), epsilon_d=0.2, max_iter=2, n_starts=1,
                                   search_iter=2, random_state=0)),
    ("KKTAttack", ("lr",), lambda c: KKTAttack(_pc(c), epsilon_d=0.2, max_iter=2, random_state=0)),
    ("ModelTargetedAttack", ("lr",),
     lambda c: ModelTargetedAttack(_pc(c), victim=LogisticRegression(max_iter=50),
                                   epsilon_d=0.1, n_starts=1, search_iter=0, random_state=0)),
    ("LabelFlipAttack", ("lr", "net"),
     lambda c: LabelFlipAttack(c, epsilon_d=0.2, strategy="adversarial", random_state=0)),
    ("GradientMatching", ("lr", "net"),
     lambda c: GradientMatching(c, epsilon_d=0.2, max_iter=2, random_state=0)),
    ("TGDA", ("lr", "net"),
     lambda c: TGDA(c, epsilon_d=0.2, max_iter=2, cg_max_iter=3, follower_steps=1,
                    random_state=0)),
    ("SeverFilter", ("lr", "net"), lambda c: SeverFilter(c)),
    ("InfluenceFilter", ("lr", "net"), lambda c: InfluenceFilter(c)),
    ("GradPC", ("lr", "net"), _pc),
    ("RandomPC", ("lr", "net"),
     lambda c: RandomPC(FrozenEstimator(c), epsilon_w=0.2, random_state=0)),
    ("ScaledTarget", ("lr", "net"), lambda c: ScaledTarget(FrozenEstimator(c))),
    ("LabelFlipTarget", ("lr",), lambda c: LabelFlipTarget(LogisticRegression(max_iter=50),
                                                            random_state=0)),
]
CASES = [
    pytest.param(make, model, id=f"{name}-{model}")
    for name, models, make in ESTIMATORS
    for model in models
]


def _result(estimator, X, y):
    """What the fitted estimator found, as one float64 array."""
    if hasattr(estimator, "fit_resample"):
        X_res, y_res = estimator.fit_resample(X, y)
        return np.concatenate([np.ravel(X_res), np.ravel(y_res)]).astype(np.float64)
    estimator.fit(X, y)
    if hasattr(estimator, "threshold_"):
        return np.atleast_1d(np.float64(estimator.threshold_))
    objective = as_objective(estimator.target_, device="cpu", dtype="float64")
    return objective.flat_params().numpy()


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # TGDA's few steps
@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("make, model", CASES)
def test_same_result_inside_a_no_gradient_mode(make, model, mode, digits, clean_models):
    X, y = digits
    clean = clean_models[model]
    expected = _result(make(clean), X, y)
    with MODES[mode]():
        found = _result(make(clean), X, y)
        assert not torch.is_grad_enabled()  # the caller's mode holds again
        assert torch.is_inference_mode_enabled() == (mode == "inference_mode")
    np.testing.assert_array_equal(found, expected)


@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("model", ["lr", "net"])
def test_gradient_norm_inside_a_no_gradient_mode(model, mode, digits, clean_models):
    X, y = digits
    clean = clean_models[model]
    attack = GradientCanceling(_pc(clean), epsilon_d=0.2, max_iter=3, random_state=0).fit(X, y)
    analyzer = PoisonabilityAnalyzer(_pc(clean)).fit(X, y)
    X_p, y_p = attack.X_poison_, attack.y_poison_
    expected = attack.gradient_norm(), analyzer.gradient_norm(X_p, y_p)
    with MODES[mode]():
        found = attack.gradient_norm(), analyzer.gradient_norm(X_p, y_p)
    assert found == expected


@pytest.mark.parametrize("mode", sorted(MODES))
def test_nets_train_inside_a_no_gradient_mode(mode, digits):
    # skorch trains under no_grad by itself, not under inference_mode
    X, y = digits
    nets = {
        "net": lambda: make_net("mlp", hidden_size=8, max_epochs=2, random_state=0,
                                device="cpu"),
        "maxup": lambda: MaxUpClassifier(MLP, module__n_features=None, module__n_classes=None,
                                         module__hidden_size=8, max_epochs=2, n_augment=2,
                                         random_state=0, verbose=0),
    }
    for name, make in nets.items():
        expected = make().fit(X, y).predict_proba(X)
        with MODES[mode]():
            found = make().fit(X, y).predict_proba(X)
        np.testing.assert_array_equal(found, expected, err_msg=name)


@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("model", ["lr", "net"])
def test_objective_gradients_of_tensors_made_inside_the_mode(model, mode, digits,
                                                             clean_models):
    # tensors made inside torch.inference_mode() cannot join a graph unless copied
    X, y = digits
    objective = as_objective(clean_models[model], device="cpu", dtype="float64")
    direction = torch.ones(objective.n_params, dtype=torch.float64)

    def gradients(X, labels):
        return (
            objective.poison_feature_gradient(X[:20], labels[:20], direction, encoded=True)[0],
            objective.loss_gradient_sum(X, labels, encoded=True),
            CleanGradient(objective, X, labels).gradient,
        )

    expected = gradients(objective.as_features(X), objective.encode_labels(y))
    with MODES[mode]():
        found = gradients(objective.as_features(X), objective.encode_labels(y))
    for a, b in zip(found, expected):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


@pytest.mark.parametrize("mode", sorted(MODES))
def test_margin_loss_derivatives_inside_the_mode(mode):
    loss = BinaryMarginLoss("logistic")
    h = torch.linspace(-2, 2, 7, dtype=torch.float64)[:, None]
    t = torch.tensor([1.0, -1, 1, 1, -1, 1, -1], dtype=torch.float64)
    expected = loss.output_derivatives(h, t)[0]
    with MODES[mode]():
        found = loss.output_derivatives(h.clone(), t.clone())[0]
    # the logistic loss log(1 + exp(-t h)): its derivative in h is -t / (1 + exp(t h))
    np.testing.assert_allclose(found.numpy()[:, 0], (-t / (1 + torch.exp(t * h[:, 0]))).numpy())
    np.testing.assert_array_equal(found.numpy(), expected.numpy())
