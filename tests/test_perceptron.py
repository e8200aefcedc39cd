"""The closed-form feature gradient of multilayer perceptrons against the double backward.

Gradient Canceling's feature gradient ``grad_X <r, sum_j grad_w l(x_j)>`` of an MLP is
written out layer by layer (``skpoison.objectives._perceptron``); these tests compare
it, and the gradient sum it returns, with autograd's double backward of the same
objective (the objective copied with the closed form switched off), and check which
modules get it.
"""

import copy

import numpy as np
import pytest
import torch
from torch import nn

from skpoison.models import MLP, make_net
from skpoison.objectives import (
    BinaryMarginLoss,
    CrossEntropyLoss,
    Objective,
    SquaredLoss,
    as_objective,
)
from skpoison.objectives._perceptron import perceptron_layers

from _closed_form import (
    assert_every_batch_mode_matches,
    assert_gradient_canceling_unchanged,
)

F64 = dict(device="cpu", dtype="float64")


def _objective(module, loss, classes):
    module = module.double()
    params = {k: v.detach() for k, v in module.named_parameters()}
    return Objective(module, params, loss=loss, classes=classes, **F64)


def _cases():
    torch.manual_seed(0)
    three = np.arange(3)
    return [
        ("MLP", _objective(MLP(n_features=6, n_classes=3, hidden_size=5), CrossEntropyLoss(),
                           three)),
        ("Sequential, ReLU and dropout", _objective(nn.Sequential(
            nn.Linear(6, 7), nn.ReLU(), nn.Dropout(0.5), nn.Linear(7, 4), nn.LeakyReLU(0.1),
            nn.Identity(), nn.Linear(4, 3)), CrossEntropyLoss(), three)),
        ("Sequential, a layer without bias", _objective(nn.Sequential(
            nn.Flatten(), nn.Linear(6, 5, bias=False), nn.LeakyReLU(0.3), nn.Linear(5, 3)),
            CrossEntropyLoss(), three)),
        ("Sequential, one layer", _objective(nn.Sequential(nn.Linear(6, 3)),
                                             CrossEntropyLoss(), three)),
        ("binary logistic margin", _objective(nn.Sequential(
            nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 1)), BinaryMarginLoss("logistic"),
            np.arange(2))),
        ("hinge margin (no curvature)", _objective(nn.Sequential(
            nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 1)), BinaryMarginLoss("hinge"),
            np.arange(2))),
        ("squared loss", _objective(nn.Sequential(
            nn.Linear(6, 5), nn.LeakyReLU(0.2), nn.Linear(5, 2)), SquaredLoss(), None)),
    ]


@pytest.mark.parametrize("name, objective", _cases(), ids=[c[0] for c in _cases()])
def test_closed_form_matches_double_backward(name, objective):
    assert objective._perceptron is not None
    generic = copy.copy(objective)
    generic._perceptron = None
    rng = np.random.RandomState(1)
    X = torch.as_tensor(rng.normal(size=(17, 6)))
    if objective.classes is None:
        y = torch.as_tensor(rng.normal(size=(17, 2)))
    else:
        y = objective.encode_labels(objective.classes[rng.randint(len(objective.classes), size=17)])
    base = torch.as_tensor(rng.normal(size=objective.n_params))
    assert_every_batch_mode_matches(objective, generic, X, y, base, rng,
                                    nonzero="hinge" not in name)


def test_closed_form_of_a_fitted_net_keeps_the_rows_shape():
    # MLP flattens its rows: images get a feature gradient shaped like them
    rng = np.random.RandomState(0)
    X = rng.normal(size=(30, 1, 2, 3)).astype(np.float32)
    y = rng.randint(3, size=30)
    net = make_net("mlp", hidden_size=5, max_epochs=2, random_state=0, device="cpu").fit(X, y)
    objective = as_objective(net, **F64)
    generic = copy.copy(objective)
    generic._perceptron = None
    base = torch.as_tensor(rng.normal(size=objective.n_params))
    got, _ = objective.poison_feature_gradient(X[:9], y[:9], base, batch_size=4)
    expected, _ = generic.poison_feature_gradient(X[:9], y[:9], base, batch_size=4)
    assert got.shape == (9, 1, 2, 3)
    np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-9, atol=1e-12)
    # rows that are not contiguous (a permuted array): batches write into one result
    strided = torch.as_tensor(rng.normal(size=(9, 3, 2, 1))).permute(0, 3, 2, 1)
    assert strided.shape == (9, 1, 2, 3) and not strided.is_contiguous()
    got, _ = objective.poison_feature_gradient(strided, y[:9], base, batch_size=4)
    expected, _ = generic.poison_feature_gradient(strided, y[:9], base, batch_size=4)
    np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-9, atol=1e-12)
    # rows of the wrong width take the double backward, which says what is wrong
    with pytest.raises(ValueError, match="expects rows of 6 features, got 5"):
        objective.poison_feature_gradient(X[:9].reshape(9, -1)[:, :5], y[:9], base)


@pytest.mark.parametrize("batch_size, lagged", [(None, False), (7, False), (7, True)])
def test_gradient_canceling_is_unchanged_by_the_closed_form(monkeypatch, batch_size, lagged):
    # the whole attack: the same poison with the closed form and with the double backward
    rng = np.random.RandomState(0)
    X = rng.normal(size=(60, 8)).astype(np.float32)
    y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0)
    net = make_net("mlp", hidden_size=6, max_epochs=3, random_state=0, device="cpu").fit(X, y)
    assert_gradient_canceling_unchanged(
        monkeypatch, net, X, y, "perceptron_layers", moved=0.95, epsilon_d=0.2, max_iter=10,
        batch_size=batch_size, lagged_residual=lagged,
    )


class _Linear(nn.Linear):
    pass


class _LeakyReLU(nn.LeakyReLU):
    pass


class _Sequential(nn.Sequential):
    pass


def _not_perceptrons():
    relu, tied = nn.ReLU(), nn.Linear(4, 4)
    return {
        "a curved activation": nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 2)),
        "an activation first": nn.Sequential(nn.ReLU(), nn.Linear(4, 2)),
        "two activations in a row": nn.Sequential(
            nn.Linear(4, 3), nn.ReLU(), nn.ReLU(), nn.Linear(3, 2)),
        "an activation after the last layer": nn.Sequential(
            nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2), nn.ReLU()),
        "two linear layers in a row": nn.Sequential(nn.Linear(4, 5), nn.Linear(5, 2)),
        "only an identity between linear layers": nn.Sequential(
            nn.Linear(4, 4), nn.Identity(), nn.Linear(4, 2)),
        "only dropout between linear layers": nn.Sequential(
            nn.Linear(4, 5), nn.Dropout(0.1), nn.Linear(5, 2)),
        "a shared activation": nn.Sequential(
            nn.Linear(4, 5), relu, nn.Linear(5, 5), relu, nn.Linear(5, 2)),
        "tied layers": nn.Sequential(tied, nn.ReLU(), tied, nn.LeakyReLU(), nn.Linear(4, 2)),
        "a Linear subclass": nn.Sequential(_Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)),
        "a LeakyReLU subclass": nn.Sequential(nn.Linear(4, 3), _LeakyReLU(), nn.Linear(3, 2)),
        "a Sequential subclass": _Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)),
        "Flatten not first": nn.Sequential(nn.Linear(4, 3), nn.Flatten(), nn.Linear(3, 2)),
        "Flatten over the rows too": nn.Sequential(nn.Flatten(0), nn.Linear(4, 2)),
        "a batch norm": nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.ReLU(),
                                      nn.Linear(3, 2)),
        "empty": nn.Sequential(),
        "a bare Linear": nn.Linear(4, 2),
    }


@pytest.mark.parametrize("name", list(_not_perceptrons()))
def test_other_modules_are_not_perceptrons(name):
    module = _not_perceptrons()[name].eval()
    params = {k: v.detach() for k, v in module.named_parameters()}
    assert perceptron_layers(module, params) is None
    # the objective falls back to the double backward where it can differentiate
    if name not in ("empty", "a bare Linear", "Flatten over the rows too"):
        objective = _objective(module, CrossEntropyLoss(), np.arange(2))
        assert objective._perceptron is None


def _eval_mlp(**kwargs):
    return MLP(n_features=4, hidden_size=3, n_classes=2, **kwargs).eval()


def test_declared_layers_and_what_they_promise():
    class Doubled(MLP):
        def forward(self, X):
            return 2 * super().forward(X)

    class Declared(Doubled):  # declaring the layers again is a promise
        perceptron_layers = MLP.perceptron_layers

    mlp = _eval_mlp(negative_slope=0.1)
    params = {k: v.detach() for k, v in mlp.named_parameters()}
    layers, flatten = perceptron_layers(mlp, params)
    assert layers == (("fc1.weight", "fc1.bias", 0.1), ("fc2.weight", "fc2.bias", 0.1),
                      ("fc3.weight", "fc3.bias", None))
    assert flatten
    # a subclass that changes the forward is not described by the inherited layers
    assert perceptron_layers(Doubled(n_features=4, hidden_size=3, n_classes=2).eval(),
                             params) is None
    assert perceptron_layers(Declared(n_features=4, hidden_size=3, n_classes=2).eval(),
                             params) is not None
    # layers declared inside a plain container
    class Stacked(nn.Module):
        perceptron_layers = (("layers.0", 0.0), ("layers.1", None))

        def __init__(self):
            super().__init__()
            self.layers = nn.ModuleList([nn.Linear(4, 3), nn.Linear(3, 2)])

        def forward(self, X):
            hidden = nn.functional.relu(self.layers[0](X.reshape(len(X), -1)))
            return self.layers[1](hidden)

    stacked = Stacked().eval()
    objective = _objective(stacked, CrossEntropyLoss(), np.arange(2))
    assert objective._perceptron is not None
    generic = copy.copy(objective)
    generic._perceptron = None
    X, r = torch.randn(5, 4, dtype=torch.float64), torch.randn(23, dtype=torch.float64)
    y = torch.tensor([0, 1, 1, 0, 1])
    np.testing.assert_allclose(
        objective.poison_feature_gradient(X, y, r, encoded=True)[0].numpy(),
        generic.poison_feature_gradient(X, y, r, encoded=True)[0].numpy(), rtol=1e-12)
    # the parameters must be exactly the layers'
    assert perceptron_layers(mlp, {**params, "extra": torch.zeros(1)}) is None
    assert perceptron_layers(mlp, {k: v for k, v in params.items() if k != "fc2.bias"}) is None
    # a layer swapped for another class on the instance
    swapped = _eval_mlp()
    swapped.fc2 = _Linear(3, 3).eval()
    assert perceptron_layers(swapped, params) is None
    # in training mode (dropout would be random) the closed form stands aside
    assert perceptron_layers(_eval_mlp(dropout=0.5).train(), params) is None
    # another module in the dropout's place, or tied layers
    swapped = _eval_mlp()
    swapped.drop = nn.Tanh().eval()
    assert perceptron_layers(swapped, params) is None
    tied = MLP(n_features=3, hidden_size=3, n_classes=2).eval()
    tied.fc2 = tied.fc1
    assert perceptron_layers(tied, {k: v.detach() for k, v in tied.state_dict().items()}) is None
    # a malformed declaration, or one that fails, is no declaration
    def failing(self):
        raise KeyError("fc9")

    for declaration in (lambda self: None, (("fc1", 0.2), ("missing", None)), 3,
                        property(failing)):
        odd = type("Odd", (MLP,), {"perceptron_layers": declaration,
                                   "forward": MLP.forward})(n_features=4, hidden_size=3,
                                                            n_classes=2).eval()
        assert perceptron_layers(odd, params) is None


def test_an_attribute_of_that_name_on_the_instance_is_no_declaration():
    # a submodule called perceptron_layers: the objective still builds, without it
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.perceptron_layers = nn.Sequential(nn.Linear(4, 3), nn.ReLU(),
                                                   nn.Linear(3, 2))

        def forward(self, X):
            return self.perceptron_layers(X)

    net = Net()
    objective = _objective(net, CrossEntropyLoss(), np.arange(2))
    assert objective._perceptron is None
    got, _ = objective.poison_feature_gradient(
        torch.ones(3, 4, dtype=torch.float64), torch.tensor([0, 1, 0]),
        torch.ones(objective.n_params, dtype=torch.float64), encoded=True)
    assert got.shape == (3, 4)


@pytest.mark.parametrize("where", ["forward hook", "pre-hook", "global hook", "train mode",
                                   "backward hook", "instance forward", "instance call"])
def test_hooks_and_training_mode_take_the_double_backward(where):
    # decided at each call: a hook registered after the objective was built counts
    objective = _cases()[0][1]
    assert objective._perceptron is not None
    generic = copy.copy(objective)
    generic._perceptron = None
    X = torch.as_tensor(np.random.RandomState(0).normal(size=(5, 6)))
    y, r = torch.tensor([0, 1, 2, 0, 1]), torch.ones(objective.n_params, dtype=torch.float64)
    layer = objective.module.fc2
    if where == "forward hook":
        handle = layer.register_forward_hook(lambda module, args, out: 2 * out)
    elif where == "pre-hook":
        handle = layer.register_forward_pre_hook(lambda module, args: (args[0] ** 2,))
    elif where == "global hook":
        handle = nn.modules.module.register_module_forward_hook(
            lambda module, args, out: out * 1.5 if isinstance(module, nn.Linear) else out)
    elif where == "backward hook":
        handle = layer.register_full_backward_hook(
            lambda module, grad_input, grad_output: (3 * grad_input[0],))
    elif where == "instance forward":
        module = objective.module
        module.forward = lambda X: 2 * type(module).forward(module, X)
        handle = type("Handle", (), {"remove": lambda self: vars(module).pop("forward")})()
    elif where == "instance call":
        call = layer._call_impl
        layer._call_impl = lambda *args, **kwargs: 2 * call(*args, **kwargs)
        handle = type("Handle", (), {"remove": lambda self: vars(layer).pop("_call_impl")})()
    else:
        objective.module.drop.p = 0.5
        objective.module.train()
    try:
        torch.manual_seed(0)  # the same dropout masks in both
        got, got_sum = objective.poison_feature_gradient(X, y, r, encoded=True)
        torch.manual_seed(0)
        expected, expected_sum = generic.poison_feature_gradient(X, y, r, encoded=True)
    finally:
        if where == "train mode":
            objective.module.eval()
        else:
            handle.remove()
    np.testing.assert_array_equal(got.numpy(), expected.numpy())
    np.testing.assert_array_equal(got_sum.numpy(), expected_sum.numpy())
    # and the hook or the dropout changed the result
    plain = objective.poison_feature_gradient(X, y, r, encoded=True)[0]
    assert not np.allclose(plain.numpy(), got.numpy())


@pytest.mark.parametrize("slope", [0.0, 0.2, -0.5])
def test_pre_activations_at_the_kink_take_autograd_s_side(slope):
    # z == 0 exactly in both hidden layers: the masks are those of autograd (z > 0),
    # read from the activation for slopes >= 0 and from z for a negative one
    module = nn.Sequential(nn.Linear(3, 4), nn.LeakyReLU(slope), nn.Linear(4, 4),
                           nn.LeakyReLU(slope), nn.Linear(4, 2))
    objective = _objective(module, CrossEntropyLoss(), np.arange(2))
    with torch.no_grad():
        objective.params["0.weight"][:2] = 0.0
        objective.params["0.bias"][:2] = 0.0  # rows 0 and 1 of z_1 are 0 for every x
        objective.params["2.weight"][0] = 0.0
        objective.params["2.bias"][0] = 0.0  # and row 0 of z_2
    generic = copy.copy(objective)
    generic._perceptron = None
    rng = np.random.RandomState(3)
    X = torch.as_tensor(rng.normal(size=(6, 3)))
    y = torch.tensor([0, 1, 1, 0, 1, 0])
    r = torch.as_tensor(rng.normal(size=objective.n_params))
    got, got_sum = objective.poison_feature_gradient(X, y, r, encoded=True)
    expected, expected_sum = generic.poison_feature_gradient(X, y, r, encoded=True)
    np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(got_sum.numpy(), expected_sum.numpy(), rtol=1e-12, atol=1e-15)


def test_params_in_another_order_and_a_direction_with_a_graph():
    objective = _cases()[1][1]
    rng = np.random.RandomState(4)
    X = torch.as_tensor(rng.normal(size=(7, 6)))
    y = torch.tensor([0, 1, 2, 0, 1, 2, 0])
    moved = {k: v + 0.1 for k, v in objective.params.items()}
    r = torch.as_tensor(rng.normal(size=objective.n_params))
    expected, expected_sum = objective.poison_feature_gradient(X, y, r, encoded=True,
                                                               params=moved)
    # the flat vectors keep the objective's order whatever the dict's order
    reordered = dict(reversed(list(moved.items())))
    got, got_sum = objective.poison_feature_gradient(X, y, r, encoded=True, params=reordered)
    np.testing.assert_array_equal(got.numpy(), expected.numpy())
    np.testing.assert_array_equal(got_sum.numpy(), expected_sum.numpy())
    # and through two passes in batches, where the first pass sums the gradients with
    # autograd, against the double backward given the same reordered dict
    generic = copy.copy(objective)
    generic._perceptron = None

    def direction(total):
        return r + total / 3.0

    for batch_size, lagged in ((3, None), (3, r), (None, None)):
        got, got_sum = objective.poison_feature_gradient(
            X, y, direction, encoded=True, params=reordered, batch_size=batch_size,
            lagged=lagged)
        expected, expected_sum = generic.poison_feature_gradient(
            X, y, direction, encoded=True, params=moved, batch_size=batch_size, lagged=lagged)
        np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-10, atol=1e-13)
        np.testing.assert_allclose(got_sum.numpy(), expected_sum.numpy(), rtol=1e-10,
                                   atol=1e-13)
    # an extra key in the dict is not a parameter: the sum keeps the objective's size
    _, one_sum = objective.poison_feature_gradient(X, y, direction, encoded=True,
                                                   params={**moved, "extra": torch.ones(2)})
    assert one_sum.shape == (objective.n_params,)
    # the double backward of a net that is no perceptron reads reordered params too
    curved = _objective(nn.Sequential(nn.Linear(6, 4), nn.Tanh(), nn.Linear(4, 3)),
                        CrossEntropyLoss(), np.arange(3))
    assert curved._perceptron is None
    shifted = {k: v + 0.1 for k, v in curved.params.items()}
    r_curved = torch.as_tensor(rng.normal(size=curved.n_params))
    for batch_size in (None, 3):
        expected = curved.poison_feature_gradient(X, y, r_curved, encoded=True,
                                                  params=shifted, batch_size=batch_size)
        got = curved.poison_feature_gradient(
            X, y, r_curved, encoded=True, params=dict(reversed(list(shifted.items()))),
            batch_size=batch_size)
        for a, b in zip(got, expected):
            np.testing.assert_array_equal(a.numpy(), b.numpy())
    # a residual that carries a graph gives a plain result, as the double backward does
    got = objective.poison_feature_gradient(X, y, r.clone().requires_grad_(True),
                                            encoded=True)[0]
    assert not got.requires_grad


def test_closed_form_batches_are_even(monkeypatch):
    # the written-out pass sees the same even batches as the double backward did
    from skpoison.attacks._least_squares import ResidualMap
    from skpoison.objectives import _base

    objective = _cases()[0][1]
    seen = []
    original = _base.perceptron_feature_gradient

    def counting(layers, params, loss, X, *args, **kwargs):
        seen.append(len(X))
        return original(layers, params, loss, X, *args, **kwargs)

    monkeypatch.setattr(_base, "perceptron_feature_gradient", counting)
    X = torch.as_tensor(np.random.RandomState(5).normal(size=(13, 6)))
    y = torch.as_tensor(np.arange(13) % 3)
    base = torch.ones(objective.n_params, dtype=torch.float64)
    residual_map = ResidualMap(objective, y, base, 13, 4, lagged=True)
    residual_map.residual_and_gradient(X)  # exact: the sum with autograd, then these
    assert seen == [4, 3, 3, 3]
    seen.clear()
    residual_map.residual_and_gradient(X)  # lagged: one pass, all of it written out
    assert seen == [4, 3, 3, 3]
