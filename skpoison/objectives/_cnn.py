"""Gradient Canceling's feature gradient in closed form for the paper's CNN.

:class:`skpoison.models.CNN` computes, on images ``x``,
``a_1 = relu(z_1)``, ``z_1 = K_1 * x + b_1``; ``s = relu(z_2)``, ``z_2 = K_2 * a_1 + b_2``;
``f = flatten(maxpool(s))``; ``a_3 = relu(z_3)``, ``z_3 = f W_3^T + b_3``;
``h = a_3 W_4^T + b_4`` (``*``: a convolution; dropout is the identity in eval mode).
Every step is linear or piecewise linear in its input, so the derivation of the
perceptron's closed form (``skpoison.objectives._perceptron``) carries over with the
max-pooling as one more linear map (a selection, with the indices of the forward):

- the backward pass gives ``dz_l`` and the gradient sum (each weight's gradient is
  its layer's ``dz_l`` against its input);
- the forward tangent along the residual ``r = (R_l, r_l)`` is
  ``z_dot_l = (layer l's linear map with R_l)(a_{l-1}) + r_l + (with K_l)(a_dot_{l-1})``,
  each ``a_dot`` masked like ``a``, pooled with the forward's indices;
- one reverse pass from ``H h_dot`` gives the feature gradient: the cotangent of each
  layer's input is that of its output through ``K_l`` (or ``W_l``), plus ``dz_l``
  through ``R_l``, then masked (or scattered back by the pooling indices).

These are the convolutions the double backward makes (seven the size of the second
convolution, against three in a training step; five of the first, against two),
without autograd's graph, the zero tensors of its ReLU double backward and its
separate sums.  ReLU masks are autograd's (``z > 0``, read from ``relu(z)``) and the
pooling keeps the forward's indices, so ties and kinks are treated as autograd treats
them.  On the MNIST CNN on one CPU thread, alternating runs of a Gradient Canceling
step over 1800 rows took 13 to 15% less time than with the double backward in one
batch and 9 to 11% less in 8 lagged batches (``docs/performance.rst``).

A batch's rows go through in blocks (``_BLOCK_VALUES``): their temporaries stay
small, and one batch of 1800 MNIST rows peaks at 2.0 GB instead of 3.2 GB.
"""

import math

import torch
from torch import nn
from torch.nn.modules.utils import _pair

from .._utils import batch_slices
from ._perceptron import _gradient_sum_parts, _runs_more_than_layers

__all__ = ["cnn_feature_gradient", "cnn_layers"]

_aten = torch.ops.aten
# values of the second convolution's output per block of rows (2**23: 32 MiB in
# float32, 227 MNIST rows); on one CPU thread, blocks of 113 or 227 rows ran a
# one-batch step over 1800 MNIST rows 5 to 6% faster than one block, 56 rows 4%
_BLOCK_VALUES = 2**23
_PARAMETERS = ("conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias",
               "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias")
_LAYERS = {"conv1": nn.Conv2d, "conv2": nn.Conv2d, "pool": nn.MaxPool2d,
           "drop": nn.Dropout, "fc1": nn.Linear, "fc2": nn.Linear}
_STRIDE, _NO_PADDING, _DILATION = [1, 1], [0, 0], [1, 1]
_POOL = [2, 2]


def cnn_layers(module, params):
    """The image shape of ``module`` when the closed form applies to it, or ``None``.

    Parameters
    ----------
    module : torch.nn.Module
        The objective's module.
    params : dict of str to tensor
        The objective's parameters; they must be exactly the module's weights and
        biases.

    Returns
    -------
    image_shape : tuple of int or None
        ``(channels, height, width)`` for an instance of exactly
        :class:`skpoison.models.CNN` (not a subclass) as it is built: unit-stride,
        unpadded convolutions with biases, a 2 x 2 max-pooling, its layers of
        exactly their classes and distinct, each parameter its own, every
        submodule in eval mode, no hook registered (forward or backward, on a
        submodule or globally) and no method replaced on an instance (such as
        ``forward``, a convolution's ``_conv_forward`` or a compiled call).
        ``None`` otherwise (the double backward then runs).
    """
    from ..models._modules import CNN  # skpoison.models imports the objectives

    if type(module) is not CNN or _runs_more_than_layers(module):
        return None
    layers = {name: getattr(module, name, None) for name in _LAYERS}
    if any(type(layer) is not kind for name, kind in _LAYERS.items()
           for layer in [layers[name]]):
        return None  # a layer swapped for another class (a subclass too)
    if len({id(layer) for layer in layers.values()}) != len(layers):
        return None  # tied layers
    names = [name for name, _ in module.named_parameters()]  # a shared one counts once
    if len(names) != len(_PARAMETERS) or set(names) != set(_PARAMETERS):
        return None  # a parameter shared between layers, or one more
    for name in ("conv1", "conv2"):
        conv = layers[name]
        if (conv.bias is None or _pair(conv.stride) != (1, 1)
                or conv.padding != (0, 0) or _pair(conv.dilation) != (1, 1)
                or conv.groups != 1 or conv.padding_mode != "zeros"):
            return None
    pool = layers["pool"]
    stride = pool.kernel_size if pool.stride is None else pool.stride
    if (_pair(pool.kernel_size) != (2, 2) or _pair(stride) != (2, 2)
            or _pair(pool.padding) != (0, 0) or _pair(pool.dilation) != (1, 1)
            or pool.ceil_mode or pool.return_indices):
        return None
    if layers["fc1"].bias is None or layers["fc2"].bias is None:
        return None
    if set(params) != set(_PARAMETERS):
        return None
    try:
        image_shape = tuple(int(v) for v in module.image_shape)
    except (TypeError, ValueError, AttributeError):
        return None
    if len(image_shape) != 3 or image_shape[0] != layers["conv1"].in_channels:
        return None
    return image_shape


def _input_gradient(grad, inputs, weight):
    """The gradient of ``conv2d(inputs, weight)`` in ``inputs`` along ``grad``."""
    return _aten.convolution_backward(
        grad, inputs, weight, None, _STRIDE, _NO_PADDING, _DILATION, False, [0, 0], 1,
        [True, False, False],
    )[0]


def _pool_backward(grad, pooled, s, indices):
    """``grad`` (one value per pooled output, flat per row) scattered back onto ``s``
    at the forward's indices."""
    return _aten.max_pool2d_with_indices_backward(
        grad.view_as(pooled), s, _POOL, _POOL, [0, 0], [1, 1], False, indices
    )


def _relu_backward(grad, activation):
    """``grad`` where ``activation = relu(z) > 0`` (autograd's mask), else 0."""
    return _aten.leaky_relu_backward(grad, activation, 0.0, False)


def cnn_feature_gradient(image_shape, params, loss, X, y, direction, *, unflatten,
                         into=None, gradient_sum=True):
    """One batch of :meth:`Objective.poison_feature_gradient` for the paper's CNN.

    The rows are processed in blocks of at most ``_BLOCK_VALUES`` values in the
    second convolution's output (227 MNIST rows), so that the temporaries of one
    block are freed before the next: the pass peaks lower and a step frees less
    memory at once.  With a callable ``direction``, the forward and backward passes
    of every block come first, their results kept, then the residual, then each
    block's tangent and reverse passes; with a tensor, each block runs whole in
    turn.  The gradient sum then adds up in another order, which changes it only
    by rounding.

    Parameters
    ----------
    image_shape : tuple of int
        From :func:`cnn_layers`.
    params : dict of str to tensor
        The parameters to evaluate at, by name.
    loss : TrainingLoss
        Gives ``g`` and the Hessian products at the outputs
        (:meth:`TrainingLoss.output_derivatives`).
    X : tensor of shape (m, ...)
        Poison rows of ``prod(image_shape)`` values each.
    y : tensor
        Their encoded labels.
    direction : tensor or callable
        The residual (flat, in the objective's parameter order), or a function
        mapping this batch's gradient sum to it.
    unflatten : callable
        Splits a flat tensor into views shaped like each parameter, by name
        (:meth:`Objective.unflatten`).
    into : tensor of shape (n_params,) or None
        Receives the batch's gradient sum in place (and is then the sum returned).
    gradient_sum : bool, default=True
        With a tensor ``direction``, ``False`` skips the weight gradients (the
        second convolution's and the first's, among others) and returns ``None``
        for the sum.

    Returns
    -------
    grad_x : tensor of the shape of ``X``
    gradient_sum : tensor of shape (n_params,) or None
    """
    gradient_sum = gradient_sum or callable(direction)
    weights = tuple(params[name].detach() for name in _PARAMETERS)
    m = len(X)
    x = X.reshape(m, *image_shape)
    total, parts = _gradient_sum_parts(gradient_sum, into, params, X, unflatten)
    K1, K2 = weights[0], weights[2]
    values_per_row = K2.shape[0] * math.prod(  # the second convolution's output
        side - k1 - k2 + 2 for side, k1, k2 in zip(image_shape[1:], K1.shape[2:], K2.shape[2:])
    )
    rows = max(1, _BLOCK_VALUES // max(1, values_per_row))  # (0: conv2d says why)
    blocks = list(batch_slices(m, rows, even=True))
    if callable(direction):  # every block's forward and backward, then the residual
        passes = [_forward_backward(weights, loss, x[b], y[b], parts) for b in blocks]
        R = unflatten(direction(total).detach())
    else:
        passes = [None] * len(blocks)
        R = unflatten(direction.detach())
    if len(blocks) == 1:
        kept = passes[0] or _forward_backward(weights, loss, x, y, parts)
        return _tangent_reverse(weights, R, kept).reshape(X.shape), total
    grad_x = torch.empty_like(x)
    for b, kept in zip(blocks, passes):
        grad_x[b] = _tangent_reverse(
            weights, R, kept or _forward_backward(weights, loss, x[b], y[b], parts)
        )
    return grad_x.reshape(X.shape), total


def _forward_backward(weights, loss, x, y, parts):
    """The forward and backward passes over the images ``x``.

    Adds their gradient to ``parts`` (the gradient sum's blocks, by name; ``None``
    skips the weight gradients) and returns what the tangent and reverse passes read,
    as a list that :func:`_tangent_reverse` empties.
    """
    K1, b1, K2, b2, W3, b3, W4, b4 = weights
    # forward; the activations overwrite their pre-activations (relu(z) > 0 iff z > 0)
    a1 = torch.conv2d(x, K1, b1).relu_()
    s = torch.conv2d(a1, K2, b2).relu_()
    pooled, indices = _aten.max_pool2d_with_indices(s, _POOL, _POOL)
    f = pooled.flatten(1)
    a3 = torch.addmm(b3, f, W3.T).relu_()
    g, hessian_product = loss.output_derivatives(torch.addmm(b4, a3, W4.T), y)
    # backward: dz per layer, and the gradient sum
    dz3 = _relu_backward(g @ W4, a3)
    dz2 = _relu_backward(_pool_backward(dz3 @ W3, pooled, s, indices), s)
    if parts is not None:
        parts["fc2.weight"].addmm_(g.T, a3)
        parts["fc2.bias"].add_(g.sum(dim=0))
        parts["fc1.weight"].addmm_(dz3.T, f)
        parts["fc1.bias"].add_(dz3.sum(dim=0))
        da1, dK2, db2 = _aten.convolution_backward(
            dz2, a1, K2, [K2.shape[0]], _STRIDE, _NO_PADDING, _DILATION, False, [0, 0], 1,
            [True, True, True],
        )
        parts["conv2.weight"].add_(dK2)
        parts["conv2.bias"].add_(db2)
        dz1 = _relu_backward(da1, a1)
        del da1
        _, dK1, db1 = _aten.convolution_backward(
            dz1, x, K1, [K1.shape[0]], _STRIDE, _NO_PADDING, _DILATION, False, [0, 0], 1,
            [False, True, True],
        )
        parts["conv1.weight"].add_(dK1)
        parts["conv1.bias"].add_(db1)
    else:
        dz1 = _relu_backward(_input_gradient(dz2, a1, K2), a1)
    return [x, a1, s, pooled, indices, f, a3, g, hessian_product, dz3, dz2, dz1]


def _tangent_reverse(weights, R, kept):
    """The forward tangent along the residual ``R`` (by name), then the reverse pass
    from ``H h_dot``: the feature gradient of the images in ``kept``.

    ``kept`` is what :func:`_forward_backward` returned; it is emptied, so that the
    tensors deleted here are freed at once (the others when this returns).
    """
    K1, _, K2, _, W3, _, W4, _ = weights
    x, a1, s, pooled, indices, f, a3, g, hessian_product, dz3, dz2, dz1 = kept
    kept.clear()
    m = len(x)
    a1_dot = _relu_backward(torch.conv2d(x, R["conv1.weight"], R["conv1.bias"]), a1)
    s_dot = torch.conv2d(a1_dot, K2, R["conv2.bias"]).add_(torch.conv2d(a1, R["conv2.weight"]))
    del a1_dot  # each large temporary goes as soon as it is used
    s_dot = _relu_backward(s_dot, s)
    f_dot = s_dot.flatten(2).gather(2, indices.flatten(2)).view(m, -1)
    del s_dot
    a3_dot = _relu_backward(
        torch.addmm(R["fc1.bias"], f_dot, W3.T).addmm_(f, R["fc1.weight"].T), a3
    )
    h_dot = torch.addmm(R["fc2.bias"], a3_dot, W4.T).addmm_(a3, R["fc2.weight"].T)
    # reverse pass from H h_dot
    c3 = _relu_backward((hessian_product(h_dot) @ W4).addmm_(g, R["fc2.weight"]), a3)
    c2 = _relu_backward(
        _pool_backward((c3 @ W3).addmm_(dz3, R["fc1.weight"]), pooled, s, indices), s
    )
    c1 = _input_gradient(c2, a1, K2)
    del c2
    c1 = _relu_backward(c1.add_(_input_gradient(dz2, a1, R["conv2.weight"])), a1)
    del dz2
    return _input_gradient(c1, x, K1).add_(_input_gradient(dz1, x, R["conv1.weight"]))
