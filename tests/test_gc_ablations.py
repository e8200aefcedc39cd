"""Gradient Canceling ablations of the paper's released code: cancel only some
parameter blocks, and plain gradient descent on the summed-loss gradient's norm."""

import numpy as np
import pytest
import torch
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression

from skpoison.attacks import GradientCanceling
from skpoison.datasets import load_digits, make_gaussian
from skpoison.models import make_net


@pytest.fixture(scope="module")
def tiny_net():
    X, y = load_digits(return_X_y=True)
    X, y = X[:120].astype(np.float32), y[:120]
    net = make_net("mlp", hidden_size=8, max_epochs=3, random_state=0, device="cpu").fit(X, y)
    return X, y, net


def _summed_gradient(module, X, y, names):
    """Gradient of the summed cross-entropy wrt the named parameters (autograd)."""
    params = dict(module.named_parameters())
    loss = torch.nn.functional.cross_entropy(
        module(torch.as_tensor(X, dtype=torch.float64)), torch.as_tensor(y), reduction="sum"
    )
    grads = torch.autograd.grad(loss, [params[k] for k in names])
    return torch.cat([g.reshape(-1) for g in grads])


def _double_module(net):
    module = net.module_.__class__(n_features=64, n_classes=10, hidden_size=8)
    module.load_state_dict(net.module_.state_dict())
    return module.double().eval()


def _blocks_norm(module, X, y, X_poison, y_poison, names):
    """Relative norm of the chosen blocks of the mixed gradient (autograd)."""
    clean = _summed_gradient(module, X, y, names)
    mixed = clean + _summed_gradient(module, X_poison, y_poison, names)
    return float(mixed.norm()) / (len(X) + len(X_poison)) / (float(clean.norm()) / len(X))


@pytest.mark.parametrize("optimizer", ["adam", "lbfgs", "gauss-newton"])
@pytest.mark.parametrize("names", [["fc1.weight"], ["fc2.bias", "fc3.weight"]])
def test_residual_is_the_norm_of_the_chosen_blocks(tiny_net, names, optimizer):
    X, y, net = tiny_net
    gc = GradientCanceling(FrozenEstimator(net), epsilon_d=0.25, max_iter=3, parameters=names,
                           optimizer=optimizer, random_state=0, device="cpu",
                           dtype="float64").fit(X, y)
    module = _double_module(net)
    X0, y0 = X[gc.init_indices_], y[gc.init_indices_]
    assert gc.history_[0] == pytest.approx(_blocks_norm(module, X, y, X0, y0, names), rel=1e-6)
    # the reported norm is that of the returned poison, and it never rose
    final = _blocks_norm(module, X, y, gc.X_poison_, gc.y_poison_, names)
    assert gc.gradient_norm_ == pytest.approx(final, rel=1e-6)
    assert gc.gradient_norm_ <= gc.history_[0]
    if optimizer != "gauss-newton":  # (three Levenberg-Marquardt steps may all be rejected)
        assert gc.gradient_norm_ < gc.history_[0]
    # a different selection reports a different residual
    every = GradientCanceling(FrozenEstimator(net), epsilon_d=0.25, max_iter=1, random_state=0,
                              device="cpu", dtype="float64").fit(X, y)
    assert every.history_[0] != pytest.approx(gc.history_[0], rel=1e-3)


def test_all_blocks_equal_the_default(tiny_net):
    X, y, net = tiny_net
    params = dict(epsilon_d=0.25, max_iter=15, random_state=0, device="cpu", dtype="float64")
    default = GradientCanceling(FrozenEstimator(net), **params).fit(X, y)
    names = list(default.objective_.params)
    every = GradientCanceling(FrozenEstimator(net), parameters=names, **params).fit(X, y)
    np.testing.assert_allclose(every.history_, default.history_, rtol=1e-10)
    np.testing.assert_allclose(every.X_poison_, default.X_poison_, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("optimizer", ["adam", "lbfgs"])
def test_first_layer_only_cancels_it_better(tiny_net, optimizer):
    X, y, net = tiny_net
    gc = GradientCanceling(FrozenEstimator(net), epsilon_d=0.5, max_iter=200,
                           parameters=["fc1.weight"], optimizer=optimizer, random_state=0,
                           device="cpu").fit(X, y)
    assert gc.gradient_norm_ < 0.2 * gc.history_[0]
    # the whole gradient is cancelled far less than the chosen block
    assert gc.gradient_norm() > 2 * gc.gradient_norm_


@pytest.mark.parametrize("names", [["fc9.weight"], []])
def test_unknown_blocks_raise(tiny_net, names):
    X, y, net = tiny_net
    with pytest.raises(ValueError, match="parameter names"):
        GradientCanceling(FrozenEstimator(net), parameters=names, device="cpu").fit(X, y)


def test_gd_steps_along_the_summed_gradient_norm():
    X, y = make_gaussian(random_state=0)
    X, y = X[:200], y[:200]
    lr_model = LogisticRegression(C=np.inf, max_iter=2000).fit(X, y)
    target = LogisticRegression(C=np.inf).fit(X, 1 - y)  # a far target
    gc = GradientCanceling(FrozenEstimator(target), epsilon_d=0.1, optimizer="gd", lr=0.5,
                           schedule="constant", max_iter=2, random_state=0,
                           dtype="float64", device="cpu").fit(X, y)
    assert lr_model.score(X, y) > 0.5  # data the target disagrees with

    w = torch.tensor(np.r_[target.coef_.ravel(), target.intercept_], dtype=torch.float64)
    s = lambda labels: torch.as_tensor(2.0 * (labels == target.classes_[1]) - 1.0)  # noqa: E731

    def summed_gradient(features, labels):
        v = w.clone().requires_grad_(True)
        t = torch.as_tensor(features) @ v[:-1] + v[-1]
        loss = torch.nn.functional.softplus(-s(labels) * t).sum()
        return torch.autograd.grad(loss, v, create_graph=True)[0]

    X0 = torch.tensor(X[gc.init_indices_], requires_grad=True)
    y0 = y[gc.init_indices_]
    norm = (summed_gradient(X, y).detach() + summed_gradient(X0, y0)).norm()
    (grad,) = torch.autograd.grad(norm, X0)
    X1 = (X0 - 0.5 * grad).detach().numpy()
    assert gc.history_[1] == pytest.approx(gc.gradient_norm(X1, y0), rel=1e-8)
    assert gc.history_[1] < gc.history_[0]

