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
``torch.nn.functional.conv2d`` and friends (same ops, same order); only the recorded
graph differs.
"""

import torch
from torch.nn import functional as F
from torch.overrides import TorchFunctionMode

__all__ = ["SeparateConvolutionGradients"]

_CONVOLUTIONS = {F.conv1d: 1, F.conv2d: 2, F.conv3d: 3}
_ARGUMENTS = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")
_DEFAULTS = {"bias": None, "stride": 1, "padding": 0, "dilation": 1, "groups": 1}


def _expand(value, dims):
    """An int or a sequence of ints as a list of ``dims`` ints."""
    if isinstance(value, int):
        return [value] * dims
    value = [int(v) for v in value]
    return value * dims if len(value) == 1 else value


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
            need_weight = need_bias = False
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
    Values equal those of the built-in ops.  Convolutions with string ``padding``,
    unbatched inputs or no gradient to record run unchanged.

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
                and not isinstance(call["padding"], str)
                and x.dim() == dims + 2
                and any(t.requires_grad for t in tensors)
            ):
                return _Convolution.apply(
                    x, weight, bias, _expand(call["stride"], dims),
                    _expand(call["padding"], dims), _expand(call["dilation"], dims),
                    int(call["groups"]), self,
                )
        return func(*args, **kwargs)
