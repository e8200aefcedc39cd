"""Gradient Canceling's feature gradient in closed form for multilayer perceptrons.

A perceptron here is a chain of linear layers ``z_l = a_{l-1} W_l^T + b_l``, each but
the last followed by a (leaky) ReLU ``a_l = sigma_l(z_l)``, on flat rows ``a_0 = x``.
With the loss's first derivative ``g = dl/dh`` and Hessian products ``H`` at the
outputs ``h = z_L``, the backward pass gives ``dz_L = g`` and
``dz_{l-1} = (dz_l W_l) * sigma'(z_{l-1})``, and the parameter gradient sums
``dz_l^T a_{l-1}`` and ``sum_rows dz_l``.

For a residual ``r = (R_l, r_l)`` split like the parameters, the inner product
``<r, grad_w l(x)>`` of one row is ``g . h_dot``, where ``h_dot`` is the forward
tangent along the parameters: ``z_dot_1 = x R_1^T + r_1``,
``z_dot_l = (z_dot_{l-1} * sigma'(z_{l-1})) W_l^T + a_{l-1} R_l^T + r_l``.  Its
gradient in ``x`` runs one reverse pass: the output cotangent is ``H h_dot``, and at
each layer the cotangent of ``a_{l-1}`` is ``c_l W_l + dz_l R_l``, with
``c_{l-1} = that * sigma'(z_{l-1})``; the row's feature gradient is the cotangent of
``a_0``.  A (leaky) ReLU's second derivative is zero away from its kink, so no other
term appears; at the kink the masks are those autograd uses (``z > 0``).

For the paper's MLP this is the same twelve weight-sized matrix products as the
double backward, but it skips autograd's graph, the zero tensors its leaky-ReLU
double backward adds, and its separate sums: 4 to 7% of a Gradient Canceling step on
the MNIST MLP on one CPU thread.
"""

import torch
from torch import nn

__all__ = ["perceptron_feature_gradient", "perceptron_layers"]

_leaky_relu_backward = torch.ops.aten.leaky_relu_backward


def perceptron_layers(module, params):
    """The layers of ``module`` when it is a multilayer perceptron, or ``None``.

    Parameters
    ----------
    module : torch.nn.Module
        The objective's module, in eval mode (dropout is the identity).  A module
        declaring a ``perceptron_layers`` attribute (``(layer name, slope)`` pairs,
        as :class:`skpoison.models.MLP` does) promises that its forward flattens the
        rows and runs those layers; a subclass that overrides ``forward`` without
        declaring them again gets ``None``.
    params : dict of str to tensor
        The objective's parameters; they must be exactly the layers' weights and
        biases.

    Returns
    -------
    layers : tuple of (str, str or None, float or None), or None
        ``(weight name, bias name, slope)`` per linear layer, where ``slope`` is the
        negative slope of the activation after the layer (0 for ReLU) and ``None``
        for the last layer.  ``None`` when ``module`` declares no layers and is not
        a :class:`torch.nn.Sequential` of
        ``Flatten`` (first only), ``Linear``, ``ReLU``, ``LeakyReLU``, ``Dropout``
        and ``Identity`` layers that ends in a ``Linear``.
    flatten : bool
        Whether the module flattens its input rows first (absent when ``layers`` is
        ``None``).
    """
    declared = getattr(module, "perceptron_layers", None)
    if declared is not None and not issubclass(
        _defined_in(module, "perceptron_layers"), _defined_in(module, "forward")
    ):
        return None  # a subclass changed the forward the layers describe
    if declared is not None:
        layers, flatten = list(declared), True
        named = {name: module.get_submodule(name) for name, _ in layers}
    elif type(module) is nn.Sequential:
        layers, named, flatten = [], {}, False
        for index, (name, layer) in enumerate(module.named_children()):
            if isinstance(layer, nn.Flatten) and index == 0:
                if (layer.start_dim, layer.end_dim) != (1, -1):
                    return None
                flatten = True
            elif type(layer) is nn.Linear:
                layers.append((name, None))
                named[name] = layer
            elif type(layer) in (nn.ReLU, nn.LeakyReLU):
                if not layers or layers[-1][1] is not None:
                    return None  # an activation first, or two in a row
                slope = 0.0 if type(layer) is nn.ReLU else float(layer.negative_slope)
                layers[-1] = (layers[-1][0], slope)
            elif type(layer) not in (nn.Dropout, nn.Identity):
                return None
        if not layers or layers[-1][1] is not None:
            return None  # no linear layer, or an activation after the last one
    else:
        return None
    out, names = [], set()
    for name, slope in layers:
        weight = f"{name}.weight"
        bias = f"{name}.bias" if named[name].bias is not None else None
        out.append((weight, bias, slope))
        names.update(n for n in (weight, bias) if n is not None)
    if names != set(params):
        return None
    return tuple(out), flatten


def _defined_in(module, name):
    """The class in ``type(module).__mro__`` whose body defines ``name``."""
    return next((klass for klass in type(module).__mro__ if name in vars(klass)), None)


def _blocks(flat, params):
    """Views of the flat tensor ``flat`` shaped like each of ``params``, by name."""
    out, start = {}, 0
    for name, value in params.items():
        out[name] = flat[start:start + value.numel()].view_as(value)
        start += value.numel()
    return out


def perceptron_feature_gradient(layers, params, loss, X, y, direction, into=None, *,
                                gradient_sum=True):
    """One batch of :meth:`Objective.poison_feature_gradient` for a perceptron.

    Parameters
    ----------
    layers : tuple
        From :func:`perceptron_layers`.
    params : dict of str to tensor
        The parameters to evaluate at.
    loss : TrainingLoss
        Gives ``g`` and the Hessian products at the outputs
        (:meth:`TrainingLoss.output_derivatives`).
    X : tensor of shape (m, n_features)
        Flat poison rows.
    y : tensor
        Their encoded labels.
    direction : tensor or callable
        The residual (flat, ordered like ``params``), or a function mapping this
        batch's gradient sum to it.
    into : tensor of shape (n_params,) or None
        Receives the batch's gradient sum in place (and is then the sum returned).
    gradient_sum : bool, default=True
        With a tensor ``direction``, ``False`` skips the gradient sum (two products
        per hidden layer) and returns ``None`` for it.

    Returns
    -------
    grad_x : tensor of the shape of ``X``
    gradient_sum : tensor of shape (n_params,) or None
    """
    gradient_sum = gradient_sum or callable(direction)
    weights = [params[w].detach() for w, _, _ in layers]
    biases = [None if b is None else params[b].detach() for _, b, _ in layers]
    slopes = [s for _, _, s in layers]
    # forward: pre-activations z_l and layer inputs a_{l-1}
    inputs, pre = [], []
    a = X
    for W, b, slope in zip(weights, biases, slopes):
        inputs.append(a)
        z = a @ W.T if b is None else torch.addmm(b, a, W.T)
        pre.append(z)
        if slope is not None:
            a = nn.functional.leaky_relu(z, slope)
    g, hessian_product = loss.output_derivatives(pre[-1], y)
    # backward: dz_l, and the gradient sum
    total = None
    if gradient_sum:
        total = into if into is not None else torch.zeros(
            sum(v.numel() for v in params.values()), device=X.device, dtype=X.dtype
        )
        parts = _blocks(total, params)
    dz = [None] * len(layers)
    dz[-1] = g
    for index in range(len(layers) - 1, -1, -1):
        weight, bias, _ = layers[index]
        if gradient_sum:
            parts[weight].addmm_(dz[index].T, inputs[index])
            if bias is not None:
                parts[bias].add_(dz[index].sum(dim=0))
        if index:
            dz[index - 1] = _leaky_relu_backward(
                dz[index] @ weights[index], pre[index - 1], slopes[index - 1], False
            )
    split = _blocks(direction(total) if callable(direction) else direction, params)
    # forward tangent along r: z_dot_l
    z_dot = None
    for index, (weight, bias, _) in enumerate(layers):
        R = split[weight]
        if z_dot is None:
            t = inputs[index] @ R.T if bias is None else torch.addmm(split[bias], inputs[index], R.T)
        else:
            a_dot = _leaky_relu_backward(z_dot, pre[index - 1], slopes[index - 1], False)
            t = a_dot @ weights[index].T
            if bias is not None:
                t.add_(split[bias])
            t.addmm_(inputs[index], R.T)
        z_dot = t
    # reverse: the cotangents of the outputs, then of each layer's input
    cotangent = hessian_product(z_dot)
    for index in range(len(layers) - 1, -1, -1):
        a_cotangent = (cotangent @ weights[index]).addmm_(dz[index], split[layers[index][0]])
        if index:
            cotangent = _leaky_relu_backward(
                a_cotangent, pre[index - 1], slopes[index - 1], False
            )
    return a_cotangent, total
