"""The closed-form feature gradient of the paper's CNN against the double backward.

Gradient Canceling's feature gradient ``grad_X <r, sum_j grad_w l(x_j)>`` of
:class:`skpoison.models.CNN` is written out layer by layer
(``skpoison.objectives._cnn``); these tests compare it, and the gradient sum it
returns, with autograd's double backward of the same objective (copied with the
closed form switched off) and with forward-over-reverse through ``torch.func``, and
check which modules get it.
"""

import copy

import numpy as np
import pytest
import torch
from torch import nn
from torch.func import functional_call, grad, jvp

from skpoison.models import CNN, make_net
from skpoison.objectives import (
    BinaryMarginLoss,
    CrossEntropyLoss,
    Objective,
    SquaredLoss,
    as_objective,
)
from skpoison.objectives._cnn import cnn_layers

from _closed_form import (
    assert_every_batch_mode_matches,
    assert_gradient_canceling_unchanged,
)

F64 = dict(device="cpu", dtype="float64")


def _objective(loss, classes, n_classes, image_shape=(1, 8, 8), **kwargs):
    torch.manual_seed(0)
    module = CNN(image_shape=image_shape, n_classes=n_classes, hidden_size=5,
                 channels=(3, 4), **kwargs).double().eval()
    params = {k: v.detach() for k, v in module.named_parameters()}
    return Objective(module, params, loss=loss, classes=classes, **F64)


def _generic(objective):
    """The same objective with the closed form switched off (the double backward)."""
    generic = copy.copy(objective)
    generic._cnn = None
    return generic


def _data(objective, m, rng):
    X = torch.as_tensor(rng.normal(size=(m, int(np.prod(objective.module.image_shape)))))
    if objective.classes is None:
        y = torch.as_tensor(rng.normal(size=(m, objective.module.n_classes)))
    else:
        y = objective.encode_labels(objective.classes[rng.randint(len(objective.classes),
                                                                  size=m)])
    return X, y


def _cases():
    return [
        ("cross entropy", _objective(CrossEntropyLoss(), np.arange(3), 3)),
        ("three channels, odd sides, dropout", _objective(
            CrossEntropyLoss(), np.arange(3), 3, image_shape=(3, 9, 8), dropout=0.5)),
        ("binary logistic margin", _objective(BinaryMarginLoss("logistic"), np.arange(2), 1)),
        ("hinge margin (no curvature)", _objective(BinaryMarginLoss("hinge"), np.arange(2), 1)),
        ("squared loss", _objective(SquaredLoss(), None, 2)),
    ]


@pytest.mark.parametrize("name, objective", _cases(), ids=[c[0] for c in _cases()])
def test_closed_form_matches_double_backward(name, objective):
    assert objective._cnn == objective.module.image_shape
    generic = _generic(objective)
    rng = np.random.RandomState(1)
    X, y = _data(objective, 13, rng)
    base = torch.as_tensor(rng.normal(size=objective.n_params))
    assert_every_batch_mode_matches(objective, generic, X, y, base, rng,
                                    nonzero="hinge" not in name)


@pytest.mark.parametrize("rows_per_block", [1, 2, 3])
def test_rows_in_blocks_give_the_same_gradients(monkeypatch, rows_per_block):
    # every batch mode, its rows split into blocks of a few rows (as 1800 MNIST rows
    # are split into 8): each block's forward and backward, then the residual of the
    # whole batch, then each block's tangent and reverse
    from skpoison.objectives import _cnn

    objective = _cases()[1][1]  # 3 channels of 9 x 8: 4 x 5 x 4 = 80 values per row
    monkeypatch.setattr(_cnn, "_BLOCK_VALUES", 80 * rows_per_block + 79)
    passes = []
    forward_backward = _cnn._forward_backward

    def counted(weights, loss, x, y, parts):
        passes.append(len(x))
        return forward_backward(weights, loss, x, y, parts)

    monkeypatch.setattr(_cnn, "_forward_backward", counted)
    rng = np.random.RandomState(4)
    X, y = _data(objective, 13, rng)
    base = torch.as_tensor(rng.normal(size=objective.n_params))
    assert_every_batch_mode_matches(objective, _generic(objective), X, y, base, rng)
    # the first call: one batch of 13 rows, in even blocks of at most rows_per_block
    first = passes[:-(-13 // rows_per_block)]
    assert sum(first) == 13 and max(first) - min(first) <= 1
    assert max(first) <= rows_per_block


def test_closed_form_equals_forward_over_reverse():
    # independent of autograd's double backward: d/dt grad_X L(w + t r) with torch.func
    objective = _cases()[1][1]
    rng = np.random.RandomState(2)
    X, y = _data(objective, 6, rng)
    r = torch.as_tensor(rng.normal(size=objective.n_params))
    tangent = dict(objective.unflatten(r))

    def feature_gradient(params):
        def total(X):
            outputs = functional_call(objective.module, params, (X,))
            return objective.loss.per_sample(outputs, y).sum()
        return grad(total)(X)

    _, expected = jvp(feature_gradient, (dict(objective.params),), (tangent,))
    got, _ = objective.poison_feature_gradient(X, y, r, encoded=True)
    np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-9, atol=1e-12)


def test_kinks_and_pooling_ties_are_treated_as_autograd_treats_them():
    # whole channels at exactly zero: ReLU at its kink and every pooling window tied
    objective = _cases()[0][1]
    module = objective.module
    with torch.no_grad():
        module.conv1.weight[0].zero_()
        module.conv1.bias[0] = 0.0
        module.conv2.weight[1].zero_()
        module.conv2.bias[1] = 0.0
        module.fc1.weight[2].zero_()
        module.fc1.bias[2] = 0.0
    params = {k: v.detach() for k, v in module.named_parameters()}
    objective = Objective(module, params, loss=CrossEntropyLoss(), classes=np.arange(3), **F64)
    assert objective._cnn is not None
    rng = np.random.RandomState(3)
    X, y = _data(objective, 9, rng)
    X[:, :8] = 0.0  # rows of zeros in the images too
    base = torch.as_tensor(rng.normal(size=objective.n_params))
    got, got_sum = objective.poison_feature_gradient(X, y, base, encoded=True, batch_size=4)
    expected, expected_sum = _generic(objective).poison_feature_gradient(
        X, y, base, encoded=True, batch_size=4
    )
    np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(got_sum.numpy(), expected_sum.numpy(), rtol=1e-10, atol=1e-12)


def test_images_keep_their_shape_and_a_wrong_size_says_what_is_wrong():
    objective = _cases()[0][1]
    generic = _generic(objective)
    rng = np.random.RandomState(4)
    X, y = _data(objective, 7, rng)
    images = X.reshape(7, 1, 8, 8)
    base = torch.as_tensor(rng.normal(size=objective.n_params))
    got, _ = objective.poison_feature_gradient(images, y, base, encoded=True, batch_size=3)
    expected, _ = generic.poison_feature_gradient(images, y, base, encoded=True, batch_size=3)
    assert got.shape == (7, 1, 8, 8)
    np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-9, atol=1e-12)
    # rows of another size take the double backward, which says what is wrong
    with pytest.raises(ValueError, match="CNN expects rows of 64 features, got 63"):
        objective.poison_feature_gradient(X[:, :63], y, base, encoded=True)


@pytest.mark.parametrize("batch_size, lagged", [(None, False), (6, False), (6, True)])
def test_gradient_canceling_is_unchanged_by_the_closed_form(monkeypatch, batch_size, lagged):
    rng = np.random.RandomState(0)
    X = rng.uniform(size=(40, 64)).astype(np.float32)
    y = (X[:, :32].mean(axis=1) > X[:, 32:].mean(axis=1)).astype(int)
    net = make_net("cnn", image_shape=(1, 8, 8), max_epochs=2, random_state=0,
                   device="cpu").fit(X, y)
    assert as_objective(net)._cnn == (1, 8, 8)
    assert_gradient_canceling_unchanged(
        monkeypatch, net, X, y, "cnn_layers", moved=0.99, epsilon_d=0.3, max_iter=8,
        batch_size=batch_size, lagged_residual=lagged,
    )


class _Conv2d(nn.Conv2d):
    pass


class _CNN(CNN):
    pass


def _refusals():
    """Modules the closed form must refuse, each with what changed."""
    def changed(edit):
        torch.manual_seed(0)
        module = CNN(image_shape=(1, 8, 8), n_classes=3, hidden_size=5,
                     channels=(3, 4)).double().eval()
        edit(module)
        return module

    def swap_conv(m):
        conv = _Conv2d(3, 4, 3).double()
        conv.load_state_dict(m.conv2.state_dict())
        m.conv2 = conv

    return {
        "a subclass": lambda: _CNN(image_shape=(1, 8, 8), n_classes=3, hidden_size=5,
                                   channels=(3, 4)).double().eval(),
        "training mode": lambda: changed(lambda m: m.train()),
        "dropout in training mode": lambda: changed(lambda m: m.drop.train()),
        "a convolution subclass": lambda: changed(swap_conv),
        "a strided convolution": lambda: changed(lambda m: setattr(m.conv2, "stride", (2, 2))),
        "a padded convolution": lambda: changed(lambda m: setattr(m.conv1, "padding", (1, 1))),
        "reflected padding": lambda: changed(
            lambda m: setattr(m.conv1, "padding_mode", "reflect")),
        "a dilated convolution": lambda: changed(lambda m: setattr(m.conv2, "dilation", 2)),
        "another pooling": lambda: changed(lambda m: setattr(m, "pool", nn.MaxPool2d(3, 1))),
        "a ceil-mode pooling": lambda: changed(lambda m: setattr(m.pool, "ceil_mode", True)),
        "an average pooling": lambda: changed(lambda m: setattr(m, "pool", nn.AvgPool2d(2))),
        "an identity for the dropout": lambda: changed(lambda m: setattr(m, "drop",
                                                                         nn.Identity())),
        "tied linear layers": lambda: changed(lambda m: setattr(m, "fc2", m.fc1)),
        "a convolution without bias": lambda: changed(
            lambda m: setattr(m.conv1, "bias", None)),
        "an instance forward": lambda: changed(lambda m: setattr(m, "forward", m.forward)),
        "a forward hook": lambda: changed(
            lambda m: m.conv2.register_forward_hook(lambda *a: None)),
        "a forward pre-hook": lambda: changed(
            lambda m: m.fc1.register_forward_pre_hook(lambda *a: None)),
        "a backward hook": lambda: changed(
            lambda m: m.register_full_backward_hook(lambda *a: None)),
        "a broken image shape": lambda: changed(lambda m: setattr(m, "image_shape", (1, 8))),
        "a convolution's _conv_forward set on the instance": lambda: changed(
            lambda m: setattr(m.conv1, "_conv_forward", m.conv1._conv_forward)),
        "a compiled module": lambda: changed(lambda m: m.compile()),
        "a shared bias": lambda: changed(lambda m: setattr(m.fc2, "bias", m.fc1.bias)),
        "one more parameter": lambda: changed(
            lambda m: m.register_parameter("scale", nn.Parameter(torch.ones(1)))),
    }


@pytest.mark.parametrize("name", list(_refusals()))
def test_modules_the_closed_form_refuses(name):
    module = _refusals()[name]()
    # a state dict lists a shared tensor under each name
    params = {k: v.detach() for k, v in module.state_dict().items()}
    assert cnn_layers(module, params) is None


def test_a_global_hook_is_refused():
    module = _refusals()["training mode"]().eval()
    params = {k: v.detach() for k, v in module.named_parameters()}
    assert cnn_layers(module, params) == (1, 8, 8)
    handle = nn.modules.module.register_module_forward_hook(lambda *a: None)
    try:
        assert cnn_layers(module, params) is None
    finally:
        handle.remove()
    assert cnn_layers(module, params) == (1, 8, 8)


def test_every_path_runs_the_closed_form(monkeypatch):
    # the closed form, not the double backward, runs in each mode, and the second
    # of two exact passes skips the gradient sum the first pass computed
    from skpoison.objectives import _base

    calls = []
    closed_form = _base.cnn_feature_gradient

    def spy(*args, **kwargs):
        calls.append(kwargs["gradient_sum"])
        return closed_form(*args, **kwargs)

    def no_double_backward(*args, **kwargs):
        raise AssertionError("the double backward ran")

    monkeypatch.setattr(_base, "cnn_feature_gradient", spy)
    monkeypatch.setattr(_base.Objective, "_autograd_feature_gradient", no_double_backward)
    objective = _cases()[0][1]
    rng = np.random.RandomState(6)
    X, y = _data(objective, 10, rng)
    base = torch.as_tensor(rng.normal(size=objective.n_params))

    def direction(s):
        return base + s

    for kwargs, expected in [(dict(), [True]), (dict(batch_size=5), [False, False]),
                             (dict(batch_size=5, lagged=base), [True, True])]:
        calls.clear()
        objective.poison_feature_gradient(X, y, direction, encoded=True, **kwargs)
        assert calls == expected


def test_float32_matches_the_double_backward():
    torch.manual_seed(0)
    module = CNN(image_shape=(1, 8, 8), n_classes=3, hidden_size=5, channels=(3, 4)).eval()
    params = {k: v.detach() for k, v in module.named_parameters()}
    objective = Objective(module, params, loss=CrossEntropyLoss(), classes=np.arange(3),
                          device="cpu", dtype="float32")
    assert objective._cnn is not None
    rng = np.random.RandomState(7)
    X, y = _data(objective, 12, rng)
    X = X.float()
    base = torch.as_tensor(rng.normal(size=objective.n_params), dtype=torch.float32)
    got, got_sum = objective.poison_feature_gradient(X, y, base, encoded=True, batch_size=5)
    expected, expected_sum = _generic(objective).poison_feature_gradient(
        X, y, base, encoded=True, batch_size=5
    )
    assert got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-4,
                               atol=1e-5 * float(expected.abs().max()))
    np.testing.assert_allclose(got_sum.numpy(), expected_sum.numpy(), rtol=1e-4,
                               atol=1e-5 * float(expected_sum.abs().max()))


def test_parameters_must_be_exactly_the_layers():
    objective = _cases()[0][1]
    params = dict(objective.params)
    assert cnn_layers(objective.module, params) == (1, 8, 8)
    assert cnn_layers(objective.module, {**params, "extra": torch.zeros(1)}) is None
    assert cnn_layers(objective.module, {k: v for k, v in params.items()
                                         if k != "fc2.bias"}) is None


def test_parameters_registered_again_keep_the_closed_form():
    # a weight deleted and set again comes after its bias: the order does not matter
    objective = _cases()[0][1]
    module = copy.deepcopy(objective.module)
    weight = module.fc1.weight
    del module.fc1.weight
    module.fc1.weight = weight
    names = [name for name, _ in module.named_parameters()]
    assert names.index("fc1.weight") > names.index("fc1.bias")
    assert cnn_layers(module, dict(objective.params)) == (1, 8, 8)


def test_tied_convolutions_are_refused_whatever_the_parameters_say():
    # a state dict lists a shared layer under both names
    module = CNN(image_shape=(3, 8, 8), n_classes=3, hidden_size=5, channels=(3, 3)).eval()
    params = {k: v.detach() for k, v in module.state_dict().items()}
    assert cnn_layers(module, params) == (3, 8, 8)
    module.conv2 = module.conv1
    params = {k: v.detach() for k, v in module.state_dict().items()}
    assert {"conv1.weight", "conv2.weight"} <= set(params)
    assert cnn_layers(module, params) is None


def test_hooks_and_training_mode_fall_back_to_the_same_result():
    # refused at each call, not only when the objective was built: the double
    # backward then runs (and the hook with it), with the closed form's result
    objective = _cases()[0][1]
    rng = np.random.RandomState(5)
    X, y = _data(objective, 8, rng)
    base = torch.as_tensor(rng.normal(size=objective.n_params))
    closed = objective.poison_feature_gradient(X, y, base, encoded=True, batch_size=3)[0]
    calls = []
    handle = objective.module.conv1.register_forward_hook(lambda *a: calls.append(1))
    try:
        hooked = objective.poison_feature_gradient(X, y, base, encoded=True, batch_size=3)[0]
    finally:
        handle.remove()
    assert calls
    np.testing.assert_allclose(hooked.numpy(), closed.numpy(), rtol=1e-9, atol=1e-12)
    objective.module.drop.train()  # dropout p=0 in training mode: the same function
    try:
        trained = objective.poison_feature_gradient(X, y, base, encoded=True, batch_size=3)[0]
        assert cnn_layers(objective.module, objective.params) is None
    finally:
        objective.module.drop.eval()
    np.testing.assert_allclose(trained.numpy(), closed.numpy(), rtol=1e-9, atol=1e-12)
