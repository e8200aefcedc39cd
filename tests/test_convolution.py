"""Convolutions with separately recorded gradients (SeparateConvolutionGradients).

The poison-feature gradient of a convolutional net must equal an independent
computation (forward-over-reverse with ``torch.func``, which never sees the mode), and
the double backward must not compute the weight-shaped gradients that PyTorch's
built-in convolution double backward computes and discards.
"""

import copy

import numpy as np
import pytest
import torch
from torch import nn
from torch.func import functional_call, grad, jvp
from torch.utils._python_dispatch import TorchDispatchMode

from skpoison.objectives import CrossEntropyLoss, Objective
from skpoison.objectives import _convolution as convolution
from skpoison.objectives._convolution import SeparateConvolutionGradients

CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}


class ConvNet(nn.Module):
    """Two convolutions (3 -> 5 -> 7 channels) with tanh, then a linear layer.

    tanh keeps every second derivative non-zero, so a wrong term cannot hide behind a
    ReLU mask.  Flat rows are reshaped to ``(3, side, ..., side)`` images.
    """

    def __init__(self, dims, side, first=None, second=None, scale=None):
        super().__init__()
        self.shape = (3,) + (side,) * dims
        self.scale = scale
        self.conv1 = CONV[dims](3, 5, 3, **(first or {}))
        self.conv2 = CONV[dims](5, 7, 3, **(second or {}))
        with torch.no_grad():
            n_flat = self.conv2(self.conv1(torch.zeros(1, *self.shape))).numel()
        self.fc = nn.Linear(n_flat, 4)

    def forward(self, X):
        X = X.reshape(len(X), *self.shape)
        if self.scale is not None:  # a parameter before the first convolution
            X = X * self.scale
        X = torch.tanh(self.conv1(X))
        return self.fc(torch.tanh(self.conv2(X)).flatten(1))


def objective_of(module, device="cpu"):
    module = module.double().to(device)
    params = {k: v.detach() for k, v in module.named_parameters()}
    return Objective(module, params, loss=CrossEntropyLoss(), classes=np.arange(4),
                     head=["fc.weight", "fc.bias"], device=device, dtype="float64")


def independent_feature_gradient(objective, X, y, r):
    """``d/dt grad_X L(w + t r)`` by forward-over-reverse: equal to
    ``grad_X <r, grad_w L>`` by the symmetry of mixed partial derivatives."""
    params = dict(objective.params)
    direction = dict(objective.unflatten(r))

    def loss(X_, p):
        return objective.loss.per_sample(functional_call(objective.module, p, (X_,)), y).sum()

    _, tangent = jvp(lambda p: grad(loss)(X, p), (params,), (direction,))
    gradient = grad(loss, argnums=1)(X, params)
    return tangent, torch.cat([gradient[k].reshape(-1) for k in params])



def assert_matches_forward_over_reverse(module, n_features, *, rows=6, batch_size=None):
    """The feature gradient and the gradient sum of ``module``'s objective at a random
    residual equal :func:`independent_feature_gradient`'s."""
    objective = objective_of(module)
    assert objective._convolutions
    X = torch.randn(rows, n_features, dtype=torch.float64)
    y = torch.arange(rows) % 4
    r = torch.randn(objective.n_params, dtype=torch.float64)
    grad_x, gradient_sum = objective.poison_feature_gradient(
        X, y, r, encoded=True, batch_size=batch_size
    )
    expected_x, expected_sum = independent_feature_gradient(objective, X, y, r)
    np.testing.assert_allclose(gradient_sum.numpy(), expected_sum.numpy(), rtol=1e-10,
                               atol=1e-12)
    np.testing.assert_allclose(grad_x.numpy(), expected_x.numpy(), rtol=1e-10, atol=1e-12)

CASES = {
    "conv2d": (2, 9, {}, {}),
    "conv2d stride padding dilation": (2, 11, dict(stride=2, padding=1),
                                       dict(dilation=2, padding=2)),
    "conv2d no bias": (2, 8, dict(padding=1, bias=False), dict(stride=2, bias=False)),
    "conv2d reflect padding": (2, 8, dict(padding=1, padding_mode="reflect"), {}),
    "conv2d string padding": (2, 8, dict(padding="same", dilation=2), dict(padding="valid")),
    "conv1d": (1, 13, dict(stride=3), dict(padding=1)),
    "conv3d": (3, 6, dict(padding=1), {}),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("batch_size", [None, 4])
def test_feature_gradient_equals_forward_over_reverse(case, batch_size):
    dims, side, first, second = CASES[case]
    torch.manual_seed(0)
    assert_matches_forward_over_reverse(ConvNet(dims, side, first, second), 3 * side**dims,
                                        rows=10, batch_size=batch_size)


def test_grouped_convolutions_equal_forward_over_reverse():
    class Grouped(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(2, 4, 3, groups=2, padding=1)
            self.conv2 = nn.Conv2d(4, 6, 3, groups=2, stride=2)
            self.fc = nn.Linear(6 * 3 * 3, 4)

        def forward(self, X):
            X = torch.tanh(self.conv1(X.reshape(len(X), 2, 7, 7)))
            return self.fc(torch.tanh(self.conv2(X)).flatten(1))

    torch.manual_seed(1)
    assert_matches_forward_over_reverse(Grouped(), 98)


class ConvolutionShapes(TorchDispatchMode):
    """Records the output shape and the ``transposed`` flag of every convolution."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func is torch.ops.aten.convolution.default:
            self.calls.append((tuple(out.shape), bool(args[6])))
        elif func is torch.ops.aten.convolution_backward.default:
            self.calls += [(tuple(o.shape), "backward") for o in out if o is not None]
        return out


def convolution_calls(objective, X, y, r):
    with ConvolutionShapes() as recorded:
        objective.poison_feature_gradient(X, y, r, encoded=True)
    return recorded.calls


def test_double_backward_computes_no_unused_weight_gradient(monkeypatch):
    """Built in, the second pass computes a gradient shaped like a weight that nothing
    uses (the pass differentiates with respect to the features); separated, only the
    first pass's weight gradients are computed.  The first pass also skips the input
    gradient of the convolution applied to the features."""
    torch.manual_seed(0)
    objective = objective_of(ConvNet(2, 9))
    X = torch.randn(11, 3 * 81, dtype=torch.float64)  # 11 rows: no shape coincides
    y = torch.arange(11) % 4
    r = torch.randn(objective.n_params, dtype=torch.float64)
    weights = {(5, 3, 3, 3), (3, 5, 3, 3), (7, 5, 3, 3), (5, 7, 3, 3)}  # either layout
    features = (11, 3, 9, 9)

    def count(calls, shapes):
        return sum(shape in shapes for shape, _ in calls)

    separate = convolution_calls(objective, X, y, r)
    objective._convolutions = False
    builtin = convolution_calls(objective, X, y, r)
    assert count(builtin, weights) == 3
    assert count(separate, weights) == 2
    assert count(separate, {features}) == count(builtin, {features}) == 2

    objective._convolutions = True
    monkeypatch.setattr(convolution, "_from_features_only", lambda tensor, features: False)
    assert count(convolution_calls(objective, X, y, r), {features}) == 3


def test_first_convolution_after_a_parameter_keeps_its_input_gradient():
    """An input that depends on a parameter needs its gradient in the first pass."""
    torch.manual_seed(0)
    module = ConvNet(2, 9, scale=nn.Parameter(torch.full((1, 3, 1, 1), 1.5)))
    assert_matches_forward_over_reverse(module, 3 * 81, rows=5)


def test_convolutions_outside_a_graph_are_the_builtin_op():
    conv = nn.Conv2d(3, 4, 3).double()
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64)
    with SeparateConvolutionGradients(x) as mode:
        with torch.no_grad():
            plain = conv(x)
        recorded = conv(x)
        unbatched = conv(x[0])
    assert mode.wrt == "parameters"
    assert plain.grad_fn is None
    assert type(recorded.grad_fn).__name__ == "_ConvolutionBackward"
    assert type(unbatched.grad_fn).__name__ != "_ConvolutionBackward"  # built in
    np.testing.assert_array_equal(recorded.detach().numpy(), plain.numpy())
    np.testing.assert_allclose(unbatched.detach().numpy(), plain[0].numpy(), rtol=1e-12)


def test_weight_and_bias_computed_from_the_features_keep_their_gradients():
    """A kernel and a bias predicted from the input: the second pass differentiates
    them too (they are not parameters of the net)."""

    class Predicted(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(1, 3, 3, padding=1)
            self.kernel = nn.Parameter(torch.randn(4, 3, 3, 3) / 5)
            self.fc = nn.Linear(4 * 5 * 5, 4)

        def forward(self, X):
            images = X.reshape(len(X), 1, 7, 7)
            h = torch.tanh(self.conv1(images))
            gain = torch.tanh(X.mean())  # depends on the features
            h = nn.functional.conv2d(h, self.kernel * (1 + gain), bias=gain.expand(4))
            return self.fc(torch.tanh(h).flatten(1))

    torch.manual_seed(2)
    assert_matches_forward_over_reverse(Predicted(), 49)


@pytest.mark.parametrize("kwargs, separated", [
    (dict(stride=np.int64(2), padding=torch.tensor(1)), True),  # any integer type
    (dict(padding="same"), True),  # odd kernel: the same padding on both sides
    (dict(padding="same", dilation=(1, 2)), True),
    (dict(padding="valid", groups=np.int32(1)), True),
    (dict(padding="same", kernel=2), False),  # one more row on one side: built in
])
def test_functional_convolution_arguments(kwargs, separated):
    kwargs = dict(kwargs)
    kernel = kwargs.pop("kernel", 3)
    x = torch.randn(2, 3, 9, 9, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(4, 3, kernel, kernel, dtype=torch.float64, requires_grad=True)
    expected = nn.functional.conv2d(x, weight, **kwargs)
    with SeparateConvolutionGradients(x):
        out = nn.functional.conv2d(x, weight, **kwargs)
    assert (type(out.grad_fn).__name__ == "_ConvolutionBackward") is separated
    np.testing.assert_allclose(out.detach().numpy(), expected.detach().numpy(), rtol=1e-12)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("batch_size", [None, 4])
def test_separated_convolutions_on_cuda_equal_the_cpu(batch_size):
    torch.manual_seed(0)
    module = ConvNet(2, 11, dict(stride=2, padding=1), dict(dilation=2, padding=2))
    cpu = objective_of(module)
    gpu = objective_of(copy.deepcopy(module), device="cuda")
    X = torch.randn(10, 3 * 121, dtype=torch.float64)
    y = torch.arange(10) % 4
    r = torch.randn(cpu.n_params, dtype=torch.float64)
    expected = cpu.poison_feature_gradient(X, y, r, encoded=True, batch_size=batch_size)
    with ConvolutionShapes() as recorded:
        got = gpu.poison_feature_gradient(X, y.cuda(), r.cuda(), encoded=True,
                                          batch_size=batch_size)
    assert sum(kind is True for _, kind in recorded.calls) > 0  # separated on CUDA too
    for a, b in zip(got, expected):
        np.testing.assert_allclose(a.cpu().numpy(), b.numpy(), rtol=1e-9, atol=1e-12)
