"""Objective adapters for skorch nets wrapping torch modules."""

import copy
import warnings
from collections import OrderedDict

import numpy as np
import torch
from skorch import NeuralNet, NeuralNetClassifier

from .._utils import user_stacklevel
from ._base import Objective
from ._losses import CrossEntropyLoss
from ._penalty import Penalty
from ._registry import register_adapter

__all__ = ["last_linear_layer"]


def last_linear_layer(module):
    """Name of the last :class:`torch.nn.Linear` registered in ``module``.

    Its outputs are the logits on which the threshold is computed (paper, Theorem 4).

    Examples
    --------
    >>> import torch
    >>> from skpoison.objectives import last_linear_layer
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    >>> last_linear_layer(net)
    '2'
    """
    name = None
    for child_name, child in module.named_modules():
        if isinstance(child, torch.nn.Linear):
            name = child_name
    if name is None:
        raise TypeError(
            f"{type(module).__name__} has no torch.nn.Linear layer; the threshold needs "
            "logits produced by a last linear layer."
        )
    return name


class _NetRebuild:
    """A fitted copy of a skorch net holding other module parameters (picklable)."""

    def __init__(self, net):
        self.net = net

    def __call__(self, new_params):
        new = copy.deepcopy(self.net)
        current = dict(new.module_.named_parameters())
        with torch.no_grad():
            for name, value in new_params.items():
                current[name].copy_(value.to(current[name].device, current[name].dtype))
        return new


def _weight_decays(net, named):
    """Per-parameter weight decay of the net's optimizer (0 where absent)."""
    decays = {name: 0.0 for name in named}
    optimizer = getattr(net, "optimizer_", None)
    if optimizer is None:
        return decays
    if isinstance(optimizer, torch.optim.AdamW):
        if any(g.get("weight_decay", 0) for g in optimizer.param_groups):
            warnings.warn(
                "AdamW's decoupled weight decay is not a penalty of the training "
                "objective; the objective is taken without it.",
                UserWarning,
                stacklevel=user_stacklevel(),
            )
        return decays
    by_id = {id(p): name for name, p in named.items()}
    for group in optimizer.param_groups:
        for p in group["params"]:
            if id(p) in by_id:
                decays[by_id[id(p)]] = float(group.get("weight_decay", 0.0))
    return decays


@register_adapter(
    NeuralNet, "skorch NeuralNet / NeuralNetClassifier (CrossEntropyLoss or NLLLoss)"
)
def _skorch_net(net, *, device, dtype):
    """Objective of a fitted skorch ``NeuralNet``."""
    criterion = net.criterion_
    probability_epsilon = None
    if isinstance(criterion, torch.nn.CrossEntropyLoss):
        log_probabilities = False
        if criterion.label_smoothing:
            raise TypeError("CrossEntropyLoss with label_smoothing is not supported.")
    elif isinstance(criterion, torch.nn.NLLLoss):
        log_probabilities = True
        if isinstance(net, NeuralNetClassifier):
            # NeuralNetClassifier's module outputs probabilities and its get_loss takes
            # log(p + eps), eps of the module's dtype, before NLLLoss
            module_dtype = next(net.module_.parameters()).dtype
            probability_epsilon = float(torch.finfo(module_dtype).eps)
    else:
        raise TypeError(
            f"criterion {type(criterion).__name__} is not supported; use "
            "torch.nn.CrossEntropyLoss (logits) or torch.nn.NLLLoss (log-probabilities)."
        )
    if criterion.weight is not None:
        raise TypeError("Class weights in the criterion are not supported.")
    if criterion.reduction not in ("mean", "sum"):
        raise TypeError(f"criterion reduction {criterion.reduction!r} is not supported.")

    module = copy.deepcopy(net.module_)
    named = OrderedDict(module.named_parameters())
    decays = _weight_decays(net, OrderedDict(net.module_.named_parameters()))
    has_decay = any(decays.values())
    # torch adds weight_decay * w to the gradient of the (mean or summed) loss
    form = None if not has_decay else ("mean" if criterion.reduction == "mean" else "sum")

    head_layer = last_linear_layer(module)
    prefix = f"{head_layer}." if head_layer else ""
    head = [n for n in named if n.startswith(prefix) and n[len(prefix) :] in ("weight", "bias")]
    n_outputs = dict(module.named_modules())[head_layer].out_features
    classes = getattr(net, "classes_", None)
    if classes is None:
        classes = np.arange(n_outputs)

    return Objective(
        module,
        OrderedDict((k, v.detach()) for k, v in named.items()),
        loss=CrossEntropyLoss(
            log_probabilities=log_probabilities, probability_epsilon=probability_epsilon
        ),
        penalty=Penalty(decays if has_decay else None, form=form, strength=1.0),
        estimator=net,
        rebuild=_NetRebuild(net),
        classes=np.asarray(classes),
        head=head,
        fit_intercept=True,
        n_features_in=getattr(net, "n_features_in_", None),
        linear=False,
        device=device,
        dtype=dtype,
    )
