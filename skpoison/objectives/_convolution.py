"""Convolutions whose backward records the input and weight gradients as separate ops.

Gradient Canceling differentiates a net's parameter gradient once more, with respect
to the poison features (double backward).  PyTorch records a convolution's backward as
one op, ``convolution_backward``, that returns the input and the weight gradient
together.  Its own derivative, ``_convolution_double_backward``, then computes a
weight-shaped gradient whenever the layer's input gradient flows on, which it does in
every convolution but the first.  The second pass never uses that gradient (it
differentiates with respect to the features only), and it is an expensive
convolution: the batch becomes the channels and a feature map becomes the kernel.
On the MNIST CNN it took a fifth of a GC step.

Inside :class:`SeparateConvolutionGradients`, each ``conv1d``, ``conv2d`` or
``conv3d`` call becomes :class:`_Convolution`.  Its backward, when a graph is being
built (``create_graph=True``), records the input gradient as a transposed convolution
and the weight gradient as a weight-only ``convolution_backward``.  The derivatives of
those two ops compute only the gradients that are asked for.  The values are those of
``torch.nn.functional.conv2d`` and friends up to rounding (the input and bias
gradients come from other kernels); the recorded graph differs.
"""

import operator

import torch
from torch.nn import functional as F
from torch.overrides import TorchFunctionMode

__all__ = ["SeparateConvolutionGradients"]

_CONVOLUTIONS = {F.conv1d: 1, F.conv2d: 2, F.conv3d: 3}
_ARGUMENTS = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")
_DEFAULTS = {"bias": None, "stride": 1, "padding": 0, "dilation": 1, "groups": 1}


def _expand(value, dims):
    """An integer or a sequence of integers as a list of ``dims`` ints."""
    try:
        return [operator.index(value)] * dims
    except TypeError:
        value = [operator.index(v) for v in value]
    return value * dims if len(value) == 1 else value


def _padding(padding, weight, dilation):
    """Explicit padding for ``padding`` (ints, ``"valid"`` or ``"same"``), or ``None``
    where ``"same"`` needs more on one side than the other (the built-in op pads the
    input first then)."""
    dims = len(dilation)
    if padding == "valid":
        return [0] * dims
    if padding == "same":
        total = [d * (k - 1) for d, k in zip(dilation, weight.shape[2:])]
        return None if any(t % 2 for t in total) else [t // 2 for t in total]
    return _expand(padding, dims)


def _reaches(tensor, features):
    """Whether ``tensor`` depends on the leaf ``features`` (a walk of its graph)."""
    if tensor is None or not tensor.requires_grad:
        return False
    stack, seen = [tensor.grad_fn], set()
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        if hasattr(node, "variable"):  # AccumulateGrad: a leaf
            if node.variable is features:
                return True
            continue
        stack.extend(edge for edge, _ in node.next_functions)
    return tensor is features


def _from_features_only(tensor, features):
    """Whether ``tensor`` comes from the leaf ``features`` through one-input ops only.

    Such an input's gradient is never needed while differentiating with respect to
    the parameters (it would be the features' own gradient).
    """
    node = tensor.grad_fn
    while node is not None:
        edges = [edge for edge, _ in node.next_functions if edge is not None]
        if len(edges) != 1:
            return False
        node = edges[0]
        if hasattr(node, "variable"):  # AccumulateGrad: a leaf
            return node.variable is features
    return tensor is features


class _Convolution(torch.autograd.Function):
    """``aten.convolution`` with a backward built from ops that mask their gradients."""

    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, dilation, groups, mode):
        ctx.save_for_backward(x, weight)
        ctx.configuration = (stride, padding, dilation, groups)
        ctx.mode = mode
        ctx.features_only = _from_features_only(x, mode.features)
        # a weight or bias computed from the features keeps its gradient in the
        # second pass (a kernel predicted from the input, say)
        ctx.from_features = (_reaches(weight, mode.features), _reaches(bias, mode.features))
        zeros = [0] * len(stride)
        return torch.ops.aten.convolution(
            x, weight, bias, stride, padding, dilation, False, zeros, groups
        )

    @staticmethod
    def backward(ctx, grad_output):
        x, weight = ctx.saved_tensors
        stride, padding, dilation, groups = ctx.configuration
        need_x, need_weight, need_bias = ctx.needs_input_grad[:3]
        if ctx.mode.wrt == "features":
            need_weight = need_weight and ctx.from_features[0]
            need_bias = need_bias and ctx.from_features[1]
        elif ctx.features_only:
            need_x = False
        grad_x = grad_weight = grad_bias = None
        zeros = [0] * len(stride)
        if torch.is_grad_enabled():  # a graph is being built: two separate ops
            if need_x:
                grad_x = torch.ops.aten.convolution(
                    grad_output, weight, None, stride, padding, dilation, True,
                    _output_padding(x, grad_output, weight, stride, padding, dilation),
                    groups,
                )
            if need_weight:
                grad_weight = torch.ops.aten.convolution_backward(
                    grad_output, x, weight, None, stride, padding, dilation, False, zeros,
                    groups, [False, True, False],
                )[1]
        elif need_x or need_weight:
            grad_x, grad_weight, _ = torch.ops.aten.convolution_backward(
                grad_output, x, weight, None, stride, padding, dilation, False, zeros,
                groups, [need_x, need_weight, False],
            )
        if need_bias:
            grad_bias = grad_output.sum(dim=[0, *range(2, grad_output.dim())])
        return grad_x, grad_weight, grad_bias, None, None, None, None, None


def _output_padding(x, grad_output, weight, stride, padding, dilation):
    """The transposed convolution's ``output_padding`` that restores ``x``'s shape."""
    out = []
    for d in range(len(stride)):
        size = (
            (grad_output.shape[2 + d] - 1) * stride[d]
            - 2 * padding[d]
            + dilation[d] * (weight.shape[2 + d] - 1)
            + 1
        )
        out.append(x.shape[2 + d] - size)
    return out


class SeparateConvolutionGradients(TorchFunctionMode):
    """Context in which convolutions keep their input and weight gradients apart.

    For the two passes of a double backward: first the parameter gradient, with
    ``create_graph=True``; then, after setting ``wrt = "features"``, the gradient of
    a function of it with respect to ``features`` alone.  Convolutions called inside
    (``torch.nn.functional.conv1d``, ``conv2d``, ``conv3d``, hence
    :class:`torch.nn.Conv2d` and friends) then record a graph whose derivative skips
    the weight-shaped gradients the second pass does not use, and the first pass
    skips the input gradient of a convolution applied to the features themselves.
    Values equal those of the built-in ops up to rounding.  A weight or bias computed
    from the features keeps its gradient in the second pass.  Unbatched inputs,
    ``padding="same"`` that needs more padding on one side, arguments the built-in
    op would reject and calls with no gradient to record run the built-in op.

    Parameters
    ----------
    features : torch.Tensor
        The leaf tensor that the second pass differentiates with respect to.
    enabled : bool, default=True
        ``False`` makes the context a no-op (for nets without convolution layers,
        where intercepting every torch call would only cost time).

    Attributes
    ----------
    wrt : {"parameters", "features"}
        What the next backward differentiates with respect to; set it to
        ``"features"`` before the second pass (where a convolution's weight and bias
        gradients are then skipped).
    """

    def __init__(self, features, *, enabled=True):
        super().__init__()
        self.features = features
        self.enabled = enabled
        self.wrt = "parameters"

    def __enter__(self):
        return super().__enter__() if self.enabled else self

    def __exit__(self, *exc_info):
        return super().__exit__(*exc_info) if self.enabled else None

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        dims = _CONVOLUTIONS.get(func)
        if dims is not None and torch.is_grad_enabled():
            call = dict(_DEFAULTS, **dict(zip(_ARGUMENTS, args)), **kwargs)
            x, weight, bias = call["input"], call["weight"], call["bias"]
            tensors = [t for t in (x, weight, bias) if t is not None]
            if (
                len(call) == len(_ARGUMENTS)
                and x.dim() == dims + 2
                and any(t.requires_grad for t in tensors)
            ):
                try:
                    stride = _expand(call["stride"], dims)
                    dilation = _expand(call["dilation"], dims)
                    padding = _padding(call["padding"], weight, dilation)
                    groups = operator.index(call["groups"])
                except (TypeError, ValueError):  # let the built-in op judge them
                    padding = None
                if padding is not None:
                    return _Convolution.apply(
                        x, weight, bias, stride, padding, dilation, groups, self
                    )
        return func(*args, **kwargs)
