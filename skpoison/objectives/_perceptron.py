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

For the paper's MLP these are the matrix products the double backward makes (19:
twelve with a hidden-size weight, seven with the output layer's; 16 when the
gradient sum is skipped), but without autograd's graph, the zero tensors its
leaky-ReLU double backward adds, and its separate sums.  On the MNIST MLP on one CPU
thread, alternating runs against the double backward measured 3 to 8% less time per
Gradient Canceling step in one batch and 8 to 12% in 8 batches of 225 rows
(``docs/performance.rst``).
"""

import functools

import torch
from torch import nn
from torch.nn.modules import module as module_base

__all__ = ["perceptron_feature_gradient", "perceptron_layers"]

_leaky_relu_backward = torch.ops.aten.leaky_relu_backward


def perceptron_layers(module, params):
    """The layers of ``module`` when it is a multilayer perceptron, or ``None``.

    Parameters
    ----------
    module : torch.nn.Module
        The objective's module.  A module declaring a ``perceptron_layers``
        attribute in its class (``(layer name, slope)`` pairs, as
        :class:`skpoison.models.MLP` does) promises that its forward flattens the
        rows and runs those ``torch.nn.Linear`` layers (its other submodules may
        only be ``Dropout``, ``Identity`` and plain containers); a subclass that
        overrides ``forward`` without declaring them again gets ``None``, and so
        does a malformed declaration.
    params : dict of str to tensor
        The objective's parameters; they must be exactly the layers' weights and
        biases.

    Returns
    -------
    description : (layers, flatten) or None
        ``layers`` holds ``(weight name, bias name or None, slope)`` per linear
        layer, where ``slope`` is the negative slope of the activation after the
        layer (0 for ReLU) and ``None`` for the last layer; ``flatten`` says
        whether the module flattens its input rows first.  ``None`` unless
        ``module`` declares its layers or is a :class:`torch.nn.Sequential` of
        ``Flatten`` (first only), ``Linear``, ``ReLU``, ``LeakyReLU``, ``Dropout``
        and ``Identity`` layers (exactly these classes, each instance once) in
        which every linear layer but the last is followed by one activation and
        the last by none.  Also ``None`` when a submodule is in training mode,
        hooks are registered (forward or backward, on a submodule or globally) or
        a method is replaced on an instance (its ``forward`` or call
        implementation, or a compiled one), since the closed form runs none of
        them.
    """
    if _runs_more_than_layers(module):
        return None
    try:
        declared = getattr(module, "perceptron_layers", None)
    except Exception:  # a declaring property that fails declares nothing
        return None
    if declared is not None:
        owner = _defined_in(module, "perceptron_layers")
        if owner is None or not issubclass(owner, _defined_in(module, "forward")):
            return None  # set on the instance, or a subclass changed the forward
        described = _declared_layers(module, declared)
        if described is None:
            return None
        layers, named = described
        flatten = True
    elif type(module) is nn.Sequential:
        layers, named, flatten = [], {}, False
        children = list(module._modules.items())  # a repeated instance runs each time
        if len({id(layer) for _, layer in children}) != len(children):
            return None  # one instance used twice: tied weights or a shared activation
        for index, (name, layer) in enumerate(children):
            if type(layer) is nn.Flatten and index == 0:
                if (layer.start_dim, layer.end_dim) != (1, -1):
                    return None
                flatten = True
            elif type(layer) is nn.Linear:
                if layers and layers[-1][1] is None:
                    return None  # two linear layers without an activation between
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


def _declared_layers(module, declared):
    """``(layers, modules by name)`` from a ``perceptron_layers`` declaration, or
    ``None`` when it is malformed or the module holds other layers than it says."""
    try:
        layers = [(str(name), None if slope is None else float(slope))
                  for name, slope in declared]
        named = {name: module.get_submodule(name) for name, _ in layers}
    except (TypeError, ValueError, AttributeError):
        return None
    if any(type(layer) is not nn.Linear for layer in named.values()):
        return None  # a layer swapped for another class
    linear = {id(layer) for layer in named.values()}
    if len(linear) != len(named):
        return None  # tied layers
    allowed = (nn.Dropout, nn.Identity, nn.Sequential, nn.ModuleList, nn.ModuleDict)
    if any(m is not module and id(m) not in linear and type(m) not in allowed
           for m in module.modules()):
        return None  # another module swapped in (for the dropout, say)
    return layers, named


def _runs_more_than_layers(module):
    """Whether calling ``module`` would run more than its layers' forward: hooks
    (forward or backward, on a submodule or global), a method of the class (such as
    ``forward``, ``_call_impl`` or a convolution's ``_conv_forward``) replaced on an
    instance (``torch.nn.Module.compile`` sets a compiled call), or a submodule in
    training mode."""
    global_hooks = ("_global_forward_hooks", "_global_forward_pre_hooks",
                    "_global_backward_hooks", "_global_backward_pre_hooks")
    if any(getattr(module_base, name, None) for name in global_hooks):
        return True
    return any(
        m.training or m._forward_hooks or m._forward_pre_hooks or m._backward_hooks
        or m._backward_pre_hooks or getattr(m, "_compiled_call_impl", None) is not None
        or not _methods(type(m)).isdisjoint(vars(m))
        for m in module.modules()
    )


@functools.lru_cache(maxsize=None)
def _methods(klass):
    """The names of the callables ``klass`` defines or inherits (read once per class)."""
    names = set()
    for name in dir(klass):
        try:
            if callable(getattr(klass, name)):
                names.add(name)
        except Exception:  # a descriptor that fails on the class defines no method
            continue
    return frozenset(names)


def _gradient_sum_parts(wanted, into, params, like, unflatten):
    """``(total, parts)``: the flat gradient sum (``into``, or zeros like ``like``) and
    its views by parameter name; ``(None, None)`` when the sum is not ``wanted``."""
    if not wanted:
        return None, None
    total = into if into is not None else torch.zeros(
        sum(v.numel() for v in params.values()), device=like.device, dtype=like.dtype
    )
    return total, unflatten(total)


def _defined_in(module, name):
    """The class in ``type(module).__mro__`` whose body defines ``name``, or ``None``."""
    return next((klass for klass in type(module).__mro__ if name in vars(klass)), None)


def perceptron_feature_gradient(layers, params, loss, X, y, direction, *, unflatten,
                                into=None, gradient_sum=True, out=None):
    """One batch of :meth:`Objective.poison_feature_gradient` for a perceptron.

    Parameters
    ----------
    layers : tuple
        From :func:`perceptron_layers`.
    params : dict of str to tensor
        The parameters to evaluate at, by name.
    loss : TrainingLoss
        Gives ``g`` and the Hessian products at the outputs
        (:meth:`TrainingLoss.output_derivatives`).
    X : tensor of shape (m, n_features)
        Flat poison rows.
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
        With a tensor ``direction``, ``False`` skips the gradient sum (one
        weight-gradient product per layer, and the bias sums) and returns ``None``
        for it.
    out : contiguous tensor of the shape of ``X``, or None
        Receives the feature gradient (and is then the ``grad_x`` returned), so that
        batches write into one tensor without a copy.

    Returns
    -------
    grad_x : tensor of the shape of ``X``
    gradient_sum : tensor of shape (n_params,) or None
    """
    gradient_sum = gradient_sum or callable(direction)
    weights = [params[w].detach() for w, _, _ in layers]
    biases = [None if b is None else params[b].detach() for _, b, _ in layers]
    slopes = [s for _, _, s in layers]
    # forward: layer inputs a_{l-1}, and what each activation's derivative is read
    # from: the pre-activation z_l, or the activation itself, computed in place, where
    # a nonnegative slope keeps the sign (a_l > 0 exactly where z_l > 0)
    inputs, pre = [], []
    a = X
    for W, b, slope in zip(weights, biases, slopes):
        inputs.append(a)
        z = a @ W.T if b is None else torch.addmm(b, a, W.T)
        if slope is not None:
            a = nn.functional.leaky_relu(z, slope, inplace=slope >= 0)
        pre.append(a if slope is not None and slope >= 0 else z)
    g, hessian_product = loss.output_derivatives(pre[-1], y)
    # backward: dz_l, and the gradient sum
    total, parts = _gradient_sum_parts(gradient_sum, into, params, X, unflatten)
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
    split = unflatten((direction(total) if callable(direction) else direction).detach())
    # forward tangent along r: z_dot_l
    z_dot = None
    for index, (weight, bias, _) in enumerate(layers):
        R, a = split[weight], inputs[index]
        if z_dot is None:
            t = a @ R.T if bias is None else torch.addmm(split[bias], a, R.T)
        else:
            a_dot = _leaky_relu_backward(z_dot, pre[index - 1], slopes[index - 1], False)
            t = a_dot @ weights[index].T
            if bias is not None:
                t.add_(split[bias])
            t.addmm_(a, R.T)
        z_dot = t
    # reverse: the cotangents of the outputs, then of each layer's input
    cotangent = hessian_product(z_dot)
    for index in range(len(layers) - 1, -1, -1):
        product = torch.mm(cotangent, weights[index], out=out if index == 0 else None)
        a_cotangent = product.addmm_(dz[index], split[layers[index][0]])
        if index:
            cotangent = _leaky_relu_backward(
                a_cotangent, pre[index - 1], slopes[index - 1], False
            )
    return a_cotangent, total
