"""The per-sample training losses an objective can have, one strategy object each.

A loss says, in one place, how labels are encoded for it, its value on model outputs
and the range ``[a, b]`` of ``<h, grad_h l>`` that any single point can reach (what the
poisonability threshold needs, paper section 3).  :class:`~skpoison.objectives.Objective`
holds one and never branches on which it is.
"""

import math

import numpy as np
import torch
import torch.nn.functional as F

from .._utils import with_autograd
from ._margins import MARGIN_LOSSES, _margin_union_bounds, softmax_bounds, squared_bounds

__all__ = [
    "BinaryMarginLoss",
    "CrossEntropyLoss",
    "OneVsRestMarginLoss",
    "SquaredLoss",
    "TrainingLoss",
]


class TrainingLoss:
    """Interface of a per-sample loss ``l(h, y)`` on model outputs ``h``.

    Subclasses set ``kind`` and implement :meth:`encode`, :meth:`per_sample` and
    :meth:`group_bounds`.
    """

    #: Short name of the loss family (``Objective.kind``).
    kind = None
    #: Whether labels are class labels (classifiers) or real targets (regression).
    classification = True

    def encode(self, index, n_classes, *, device, dtype):
        """Labels in the form :meth:`per_sample` consumes.

        Parameters
        ----------
        index : ndarray of int
            For classifiers, the position of each label in the model's classes.
        n_classes : int
            Number of classes.
        device, dtype : torch.device, torch.dtype
        """
        raise NotImplementedError

    def per_sample(self, h, y):
        """Per-sample losses for outputs ``h`` of shape ``(m, k)`` and encoded labels ``y``."""
        raise NotImplementedError

    @with_autograd
    def output_derivatives(self, h, y):
        """First derivative of the loss in the outputs, and its second derivative's product.

        For outputs ``h`` of shape ``(m, k)`` and encoded labels ``y``, returns
        ``g = d l(h_j, y_j) / d h_j`` row by row (shape ``(m, k)``, detached) and a
        function ``s -> H s`` mapping ``(m, k)`` directions to the per-row products
        with the Hessians ``H_j = d^2 l(h_j, y_j) / d h_j^2``.  Affine models use them
        for the closed-form poison-feature gradient (:meth:`Objective.poison_feature_gradient`).

        This default differentiates :meth:`per_sample` with autograd on the ``(m, k)``
        outputs only; subclasses give closed forms.
        """
        h = h.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(self.per_sample(h, y).sum(), h, create_graph=True)

        def hessian_product(s):
            if not g.requires_grad:  # piecewise-linear losses: no curvature
                return torch.zeros_like(s)
            (out,) = torch.autograd.grad(
                g, h, grad_outputs=s, retain_graph=True, materialize_grads=True
            )
            return out

        return g.detach(), hessian_product

    def reversed_per_sample(self, h, y):
        """Per-sample *reversed* losses: small when the model does **not** predict ``y``.

        Gradient Matching's adversarial loss (the reversed cross-entropy of Fowl et
        al. 2021, paper equation (35)).  Losses without one raise ``TypeError``.
        """
        raise TypeError(f"{type(self).__name__} has no reversed loss.")

    def group_bounds(self, ranges, n_groups, *, n_outputs, n_classes=None, label_range=None):
        """Bounds ``(a, b)`` of ``<h, grad_h l>`` for one point, per threshold group.

        Parameters
        ----------
        ranges : ndarray of shape (k, 2) or None
            Range of each output over the poison feature box (``None``: unbounded).
        n_groups : int
            Number of threshold groups of the objective.
        n_outputs : int
            Number of model outputs ``k``.
        n_classes : int or None
            Number of classes the constant is taken for (``tau(2)`` passes 2).
        label_range : (low, high) or None
            Range of poison labels (regression).
        """
        raise NotImplementedError

    def __repr__(self):
        return f"{type(self).__name__}()"


class BinaryMarginLoss(TrainingLoss):
    """A binary margin loss ``l(y h)`` with ``y`` in {-1, +1} and one output ``h``.

    Parameters
    ----------
    margin : str
        A key of :data:`~skpoison.objectives.MARGIN_LOSSES`.
    """

    kind = "binary_margin"

    def __init__(self, margin):
        if margin not in MARGIN_LOSSES:
            raise ValueError(
                f"Unknown margin loss {margin!r}; expected one of {sorted(MARGIN_LOSSES)}."
            )
        self.margin = margin

    @property
    def spec(self):
        """The :class:`~skpoison.objectives.MarginLoss` (looked up, so objectives pickle)."""
        return MARGIN_LOSSES[self.margin]

    def encode(self, index, n_classes, *, device, dtype):
        return torch.as_tensor(2.0 * index - 1.0, device=device, dtype=dtype)

    def per_sample(self, h, y):
        return self.spec.loss(y * h[:, 0])

    @with_autograd
    def _margin_derivatives(self, t):
        """``l'(t)`` and ``l''(t)`` elementwise, by autograd on the margin loss itself
        (so kinks follow the same conventions as the loss's autograd gradient)."""
        t = t.detach().requires_grad_(True)
        (first,) = torch.autograd.grad(self.spec.loss(t).sum(), t, create_graph=True)
        if not first.requires_grad:  # hinge: piecewise linear
            return first.detach(), torch.zeros_like(first)
        (second,) = torch.autograd.grad(first.sum(), t, materialize_grads=True)
        return first.detach(), second

    def _scored(self, h):
        """The outputs the loss reads: the first (see :meth:`per_sample`)."""
        return h[:, :1]

    def output_derivatives(self, h, y):
        # l(y h): dl/dh = y l'(y h), d2l/dh2 = y^2 l''(y h) = l''(y h) for y in {-1, +1};
        # outputs the loss does not read get zero derivatives
        y = y.reshape(-1, 1) if y.dim() == 1 else y
        h = h.detach()
        scored = self._scored(h)
        first, second = self._margin_derivatives(y * scored)
        k = scored.shape[1]
        if k == h.shape[1]:
            return y * first, lambda s: second * s
        pad = (0, h.shape[1] - k)
        return F.pad(y * first, pad), lambda s: F.pad(second * s[:, :k], pad)

    def reversed_per_sample(self, h, y):
        # the loss of the other label: for the logistic loss exactly -log(1 - p_y)
        return self.spec.loss(-y * h[:, 0])

    def _bounds(self, ranges, k):
        if ranges is None:
            return self.spec.a, self.spec.b
        low, high = ranges[k]
        # a point of either label: margins y h over [low, high] or [-high, -low]
        return _margin_union_bounds(self.spec, [(low, high), (-high, -low)])

    def group_bounds(self, ranges, n_groups, *, n_outputs, n_classes=None, label_range=None):
        return [self._bounds(ranges, k) for k in range(n_groups)]

    def __repr__(self):
        return f"{type(self).__name__}({self.margin!r})"


class OneVsRestMarginLoss(BinaryMarginLoss):
    """One binary margin loss per class (one-vs-rest), summed over the classes."""

    kind = "ovr_margin"

    def encode(self, index, n_classes, *, device, dtype):
        signs = -np.ones((len(index), n_classes))
        signs[np.arange(len(index)), index] = 1.0
        return torch.as_tensor(signs, device=device, dtype=dtype)

    def _scored(self, h):
        return h

    def per_sample(self, h, y):
        return self.spec.loss(y * h).sum(dim=1)

    def reversed_per_sample(self, h, y):
        return self.spec.loss(-y * h).sum(dim=1)


class CrossEntropyLoss(TrainingLoss):
    """Softmax cross-entropy on logits, or NLLLoss on (log-)probabilities.

    Parameters
    ----------
    log_probabilities : bool, default=False
        The outputs are log-probabilities (``NLLLoss``) instead of logits.
    probability_epsilon : float or None, default=None
        When set, the outputs are probabilities and the loss is
        ``NLLLoss(log(p + probability_epsilon))``, as skorch's ``NeuralNetClassifier``
        computes it for ``NLLLoss``.
    """

    kind = "cross_entropy"

    def __init__(self, *, log_probabilities=False, probability_epsilon=None):
        self.log_probabilities = bool(log_probabilities)
        self.probability_epsilon = probability_epsilon

    def encode(self, index, n_classes, *, device, dtype):
        return torch.as_tensor(index, dtype=torch.long, device=device)

    def output_derivatives(self, h, y):
        if self.log_probabilities:
            return super().output_derivatives(h, y)
        # softmax cross-entropy: g = p - onehot(y), H s = p * s - p <p, s>
        p = torch.softmax(h.detach(), dim=1)
        g = p.clone()
        g[torch.arange(len(y), device=g.device), y] -= 1.0

        def hessian_product(s):
            ps = p * s
            return ps.sub_(p * ps.sum(dim=1, keepdim=True))

        return g, hessian_product

    def per_sample(self, h, y):
        if not self.log_probabilities:
            return F.cross_entropy(h, y, reduction="none")
        if self.probability_epsilon is not None:
            h = torch.log(h + self.probability_epsilon)
        return F.nll_loss(h, y, reduction="none")

    def reversed_per_sample(self, h, y):
        """``-log(1 - p_y)``, the reversed cross-entropy (paper equation (35))."""
        column = y[:, None]
        if not self.log_probabilities:
            # -log sum_{k != y} softmax(h)_k = logsumexp(h) - logsumexp(h without h_y)
            others = h.scatter(1, column, float("-inf"))
            return torch.logsumexp(h, dim=1) - torch.logsumexp(others, dim=1)
        if self.probability_epsilon is not None:
            h = torch.log(h + self.probability_epsilon)
        log_p = torch.clamp(h.gather(1, column)[:, 0], max=-torch.finfo(h.dtype).eps)
        return -torch.log(-torch.expm1(log_p))

    def group_bounds(self, ranges, n_groups, *, n_outputs, n_classes=None, label_range=None):
        if ranges is None:
            return [softmax_bounds(n_classes)]
        # the logit differences h_k - h_i a point in the box can produce
        intervals = [
            (ranges[k, 0] - ranges[i, 1], ranges[k, 1] - ranges[i, 0])
            for i in range(len(ranges))
            for k in range(len(ranges))
            if i != k
        ]
        return [softmax_bounds(n_classes, intervals)]

    def __repr__(self):
        return (
            f"{type(self).__name__}(log_probabilities={self.log_probabilities}, "
            f"probability_epsilon={self.probability_epsilon})"
        )


class SquaredLoss(TrainingLoss):
    """The regression loss ``0.5 * ||h - y||^2`` on real targets."""

    kind = "squared"
    classification = False

    def encode(self, values, n_outputs, *, device, dtype):
        values = np.asarray(values, dtype=float).reshape(len(values), -1)
        if values.shape[1] != n_outputs:
            raise ValueError(f"y has {values.shape[1]} outputs; the model has {n_outputs}.")
        return torch.as_tensor(values, device=device, dtype=dtype)

    def per_sample(self, h, y):
        return 0.5 * ((h - y) ** 2).sum(dim=1)

    def output_derivatives(self, h, y):
        return h.detach() - y, lambda s: s

    def reversed_per_sample(self, h, y):
        # regression has no other label: reversing the loss is maximising it
        return -self.per_sample(h, y)

    def group_bounds(self, ranges, n_groups, *, n_outputs, n_classes=None, label_range=None):
        if label_range is None:
            return [(-math.inf, math.inf)]
        return [squared_bounds(ranges, label_range, n_outputs)]
