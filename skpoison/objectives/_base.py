"""The victim's training objective, viewed at fixed parameters ``w``.

An :class:`Objective` is ``sum_i l(z_i; w) + kappa(N) * R(w)`` over the ``N`` training
points, with ``R(w) = 0.5 * sum_j r_j * w_j ** 2`` (``r_j`` the penalty weight of each
parameter: 0 for unpenalised intercepts) and ``kappa`` in *sum form* (a constant,
``1/C``) or *mean form* (``alpha * N``).  It gives per-sample losses, outputs, the
clean gradient streamed in batches, per-sample gradients (``torch.func``) and the
gradient with respect to poison features that Gradient Canceling needs.
"""

import math
import warnings
from collections import OrderedDict

import numpy as np
import torch
from sklearn.exceptions import DataConversionWarning
from torch.func import functional_call, grad, vmap

from ..utils import resolve_device, resolve_dtype, to_tensor
from ._margins import MARGIN_LOSSES, _margin_union_bounds, softmax_bounds

__all__ = ["Objective"]

_KINDS = ("binary_margin", "ovr_margin", "cross_entropy", "squared")


def _batches(n, batch_size):
    if batch_size is None or batch_size >= n:
        yield slice(0, n)
        return
    for start in range(0, n, batch_size):
        yield slice(start, min(start + batch_size, n))


class _EncodedLabels:
    """Labels already encoded by :meth:`Objective.encode_labels` (an explicit marker:
    whether labels are encoded is never guessed from a tensor's dtype)."""

    __slots__ = ("tensor",)

    def __init__(self, tensor):
        self.tensor = tensor

    def __len__(self):
        return len(self.tensor)

    def __getitem__(self, index):
        return _EncodedLabels(self.tensor[index])


class Objective:
    """A victim's training objective at fixed parameters.

    Build one with :func:`skpoison.objectives.as_objective`; adapters fill in the
    parameters below.

    Parameters
    ----------
    module : torch.nn.Module
        Maps a float tensor of shape ``(m, n_features)`` to outputs ``(m, k)``
        (logits, decision values or log-probabilities). Used in eval mode.
    params : dict of str to torch.Tensor
        The fixed parameters ``w`` (for linear models: ``coef`` and ``intercept``).
    kind : {"binary_margin", "ovr_margin", "cross_entropy", "squared"}
        How outputs and labels make the per-sample loss: a binary margin loss of
        ``y * h`` with ``y`` in {-1, +1}; one binary margin loss per class
        (one-vs-rest); softmax cross-entropy; or ``0.5 * ||h - y||^2``.
    loss : str or None
        The margin loss (a key of :data:`MARGIN_LOSSES`) for the margin kinds.
    estimator : object
        The fitted estimator this objective describes (never modified).
    rebuild : callable
        ``rebuild(params_dict) -> estimator``: a fitted copy of ``estimator`` holding
        other parameter values.
    classes : ndarray or None
        Class labels for classifiers, in the order of the outputs.
    log_probabilities : bool
        For ``"cross_entropy"``: the loss is ``NLLLoss`` of the outputs, which are
        log-probabilities (or probabilities, see ``probability_epsilon``).
    probability_epsilon : float or None
        When set, the outputs are probabilities and the loss is
        ``NLLLoss(log(p + probability_epsilon))``, as skorch's
        ``NeuralNetClassifier`` computes it for ``NLLLoss``.
    penalty_weights : dict of str to torch.Tensor or None
        Per-parameter weights ``r_j`` of the L2 penalty; missing names are unpenalised.
    penalty_form : {"sum", "mean"} or None
        ``"sum"``: ``kappa(N) = strength``; ``"mean"``: ``kappa(N) = strength * N``.
    penalty_strength : float
        ``1/C`` (sum form) or ``alpha`` (mean form).
    head : list of str
        Names of the parameters of the last linear layer, whose outputs are the
        logits (all parameters for linear models): the threshold is computed there.
    groups : list of list of (str, index) or None
        For one-vs-rest models, the head entries of each binary problem.
    fit_intercept : bool
        Whether the model has intercepts (the threshold is then only necessary).
    n_features_in : int or None
        Number of input features the model expects, when known.
    linear : bool
        Whether ``module`` is affine in its input (box-reach bounds need it).
    device, dtype : torch.device, torch.dtype
    """

    def __init__(
        self,
        module,
        params,
        *,
        kind,
        loss=None,
        estimator=None,
        rebuild=None,
        classes=None,
        log_probabilities=False,
        probability_epsilon=None,
        penalty_weights=None,
        penalty_form=None,
        penalty_strength=0.0,
        head=None,
        groups=None,
        fit_intercept=True,
        n_features_in=None,
        linear=False,
        device="cpu",
        dtype="float32",
    ):
        if kind not in _KINDS:
            raise ValueError(f"kind must be one of {_KINDS}, got {kind!r}.")
        if kind in ("binary_margin", "ovr_margin") and loss not in MARGIN_LOSSES:
            raise ValueError(f"Unknown margin loss {loss!r}.")
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype)
        self.module = module.to(device=self.device, dtype=self.dtype).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.params = OrderedDict(
            (k, v.detach().to(device=self.device, dtype=self.dtype).clone())
            for k, v in params.items()
        )
        self.kind = kind
        self.loss = loss
        self.estimator = estimator
        self._rebuild = rebuild
        self.classes = None if classes is None else np.asarray(classes)
        self.log_probabilities = bool(log_probabilities)
        self.probability_epsilon = probability_epsilon
        self.penalty_form = penalty_form if penalty_strength else None
        self.penalty_strength = float(penalty_strength) if penalty_form else 0.0
        weights = penalty_weights or {}
        self.penalty_weights = OrderedDict(
            (k, to_tensor(weights[k], device=self.device, dtype=self.dtype).expand_as(v))
            if k in weights
            else (k, torch.zeros_like(v))
            for k, v in self.params.items()
        )
        self.head = list(head) if head is not None else list(self.params)
        self.fit_intercept = bool(fit_intercept)
        self.n_features_in = n_features_in
        self.linear = bool(linear)
        self._shapes = [v.shape for v in self.params.values()]
        self._sizes = [v.numel() for v in self.params.values()]
        self._offsets = dict(zip(self.params, np.cumsum([0] + self._sizes[:-1]).tolist()))
        self.groups = self._group_indices(groups)

    # ------------------------------------------------------------------ parameters
    @property
    def n_params(self):
        """Number of scalar parameters."""
        return int(sum(self._sizes))

    @property
    def n_classes(self):
        """Number of classes (``None`` for regression)."""
        return None if self.classes is None else len(self.classes)

    def flat_params(self):
        """The parameters as one flat tensor (the order of ``params``)."""
        return torch.cat([v.reshape(-1) for v in self.params.values()])

    def unflatten(self, flat):
        """Split a flat tensor into a parameter dict shaped like ``params``."""
        out, start = OrderedDict(), 0
        for (name, shape), size in zip(zip(self.params, self._shapes), self._sizes):
            out[name] = flat[start : start + size].reshape(shape)
            start += size
        return out

    def _group_indices(self, groups):
        """Flat index tensors of the head parameters of each threshold group."""
        if groups is None:
            idx = [
                torch.arange(self._offsets[n], self._offsets[n] + self.params[n].numel())
                for n in self.head
            ]
            return [torch.cat(idx).to(self.device)]
        out = []
        for entries in groups:
            idx = []
            for name, index in entries:
                local = torch.arange(self.params[name].numel()).reshape(self.params[name].shape)
                idx.append(local[index].reshape(-1) + self._offsets[name])
            out.append(torch.cat(idx).to(self.device))
        return out

    def check_n_features(self, n_features):
        """Raise ``ValueError`` when ``n_features`` differs from what the model expects."""
        if self.n_features_in is not None and n_features != self.n_features_in:
            raise ValueError(
                f"X has {n_features} features, but the target model "
                f"{type(self.estimator).__name__} expects {self.n_features_in}."
            )

    def to_estimator(self, flat_params):
        """Return a fitted copy of the estimator holding ``flat_params`` (never in place)."""
        if self._rebuild is None:
            raise TypeError("This objective cannot rebuild its estimator.")
        flat = to_tensor(flat_params, device=self.device, dtype=self.dtype)
        if flat.shape != (self.n_params,):
            raise ValueError(
                f"flat_params must have shape ({self.n_params},), got {tuple(flat.shape)}."
            )
        return self._rebuild(
            OrderedDict((k, v.detach().cpu()) for k, v in self.unflatten(flat).items())
        )

    # ---------------------------------------------------------------------- data
    def as_features(self, X):
        """``X`` as a tensor on the objective's device and dtype."""
        return to_tensor(X, device=self.device, dtype=self.dtype)

    def encode_labels(self, y):
        """Encode labels the way the loss consumes them.

        Classifiers: +-1 for binary margins, a +-1 matrix for one-vs-rest, class
        indices for cross-entropy; labels the model does not know raise ``ValueError``.
        Regression: a float tensor of shape ``(m, k)``.  Tensors are raw labels too;
        only the result of :meth:`_encoded_labels` passes through unchanged.
        """
        if isinstance(y, _EncodedLabels):
            return y.tensor
        if isinstance(y, torch.Tensor):  # raw labels, whatever their dtype
            y = y.detach().cpu().numpy()
        y = np.asarray(y)
        if self.classes is not None and y.ndim == 2:
            if y.shape[1] != 1:
                raise ValueError(
                    f"y has shape {y.shape}; a classifier target needs one label per row."
                )
            warnings.warn(
                "A column-vector y was passed when a 1d array was expected; it is raveled.",
                DataConversionWarning,
                stacklevel=2,
            )
            y = y.ravel()
        if self.classes is None:
            y = np.asarray(y, dtype=float)
            y = y.reshape(len(y), -1)
            k = self.params[self.head[0]].shape[0] if self.head else 1
            if y.shape[1] != k:
                raise ValueError(f"y has {y.shape[1]} outputs; the model has {k}.")
            return to_tensor(y, device=self.device, dtype=self.dtype)
        # classes_ need not be sorted (skorch nets may set them in any order)
        sorter = np.argsort(self.classes, kind="stable")
        position = np.searchsorted(self.classes, y, sorter=sorter)
        index = sorter[np.clip(position, 0, len(self.classes) - 1)]
        unknown = self.classes[index] != y
        if np.any(unknown):
            raise ValueError(
                f"y contains labels {np.unique(y[unknown]).tolist()} that the target "
                f"model does not know; its classes are {self.classes.tolist()}."
            )
        if self.kind == "cross_entropy":
            return torch.as_tensor(index, dtype=torch.long, device=self.device)
        if self.kind == "binary_margin":
            return to_tensor(2.0 * index - 1.0, device=self.device, dtype=self.dtype)
        signs = -np.ones((len(y), len(self.classes)))
        signs[np.arange(len(y)), index] = 1.0
        return to_tensor(signs, device=self.device, dtype=self.dtype)

    def _encoded_labels(self, y):
        """``y`` encoded once, for internal callers that pass the same labels repeatedly
        to the loss and gradient methods (sliceable; never re-encoded)."""
        return _EncodedLabels(self.encode_labels(y))

    # ------------------------------------------------------------------- losses
    def outputs(self, X, params=None):
        """Model outputs (logits, decision values) for features ``X``."""
        params = self.params if params is None else params
        return functional_call(self.module, params, (self.as_features(X),))

    def _losses_from_outputs(self, h, y):
        if self.kind == "binary_margin":
            return MARGIN_LOSSES[self.loss].loss(y * h[:, 0])
        if self.kind == "ovr_margin":
            return MARGIN_LOSSES[self.loss].loss(y * h).sum(dim=1)
        if self.kind == "cross_entropy":
            if self.log_probabilities:
                if self.probability_epsilon is not None:
                    h = torch.log(h + self.probability_epsilon)
                return torch.nn.functional.nll_loss(h, y, reduction="none")
            return torch.nn.functional.cross_entropy(h, y, reduction="none")
        return 0.5 * ((h - y) ** 2).sum(dim=1)

    def sample_losses(self, X, y, params=None):
        """Per-sample losses ``l(z_i; w)`` (differentiable in ``X`` and ``params``)."""
        X = self.as_features(X)
        return self._losses_from_outputs(self.outputs(X, params), self.encode_labels(y))

    # ----------------------------------------------------------------- penalty
    def kappa(self, n_samples):
        """Penalty scale ``kappa(N)`` for an objective over ``N`` samples."""
        if self.penalty_form == "sum":
            return self.penalty_strength
        if self.penalty_form == "mean":
            return self.penalty_strength * n_samples
        return 0.0

    def penalty_value(self, params=None):
        """``R(w) = 0.5 * sum_j r_j w_j^2``."""
        params = self.params if params is None else params
        return sum(0.5 * (self.penalty_weights[k] * v**2).sum() for k, v in params.items())

    def penalty_gradient(self):
        """``grad R(w)`` as a flat tensor."""
        return torch.cat(
            [(self.penalty_weights[k] * v).reshape(-1) for k, v in self.params.items()]
        )

    # --------------------------------------------------------------- gradients
    def loss_gradient_sum(self, X, y, *, batch_size=None):
        """``sum_i grad_w l(z_i; w)`` over the rows of ``(X, y)``, streamed in batches."""
        X = self.as_features(X)
        y = self.encode_labels(y)
        params = OrderedDict((k, v.clone().requires_grad_(True)) for k, v in self.params.items())
        total = torch.zeros(self.n_params, device=self.device, dtype=self.dtype)
        for sl in _batches(len(X), batch_size):
            losses = self._losses_from_outputs(
                functional_call(self.module, params, (X[sl],)), y[sl]
            )
            grads = torch.autograd.grad(
                losses.sum(), list(params.values()), materialize_grads=True
            )
            total += torch.cat([g.reshape(-1) for g in grads])
        return total

    def objective_gradient(self, X, y, *, batch_size=None):
        """Gradient of the full objective ``sum_i l(z_i; w) + kappa(N) R(w)`` on ``(X, y)``."""
        n = len(X)
        return self.loss_gradient_sum(X, y, batch_size=batch_size) + self.kappa(
            n
        ) * self.penalty_gradient()

    def mean_gradient(self, X, y, *, batch_size=None):
        """``g(mu)``: the full objective gradient on ``(X, y)`` divided by its size."""
        return self.objective_gradient(X, y, batch_size=batch_size) / len(X)

    def per_sample_gradients(self, X, y):
        """Per-sample gradients ``grad_w l(z_i; w)``, shape ``(m, n_params)`` (torch.func)."""
        X = self.as_features(X)
        y = self.encode_labels(y)

        def single(params, x, t):
            h = functional_call(self.module, params, (x.unsqueeze(0),))
            return self._losses_from_outputs(h, t.unsqueeze(0)).sum()

        grads = vmap(grad(single), in_dims=(None, 0, 0))(dict(self.params), X, y)
        return torch.cat([grads[k].reshape(len(X), -1) for k in self.params], dim=1)

    def poison_feature_gradient(self, X, y, direction):
        """``grad_X <r, sum_j grad_w l(z_j; w)>`` for poison rows ``(X, y)``.

        This is equation (34) of the paper without its ``1/n`` factor: the gradient of
        the canceling residual's inner product with respect to each poison feature
        vector, exact for any batch of rows since the sum is additive.

        Parameters
        ----------
        X, y : array-like or tensor
            Poison rows.
        direction : tensor or callable
            The residual ``r``, or a function mapping the (detached) gradient sum of
            these rows to ``r`` (one pass: ``r`` computed from the same forward pass).

        Returns
        -------
        grad_x : tensor of the shape of ``X``
        gradient_sum : tensor of shape (n_params,)
            ``sum_j grad_w l(z_j; w)`` over these rows (detached).
        """
        X = self.as_features(X).detach().requires_grad_(True)
        y = self.encode_labels(y)
        params = OrderedDict((k, v.clone().requires_grad_(True)) for k, v in self.params.items())
        losses = self._losses_from_outputs(functional_call(self.module, params, (X,)), y)
        grads = torch.autograd.grad(
            losses.sum(), list(params.values()), create_graph=True, materialize_grads=True
        )
        flat = torch.cat([g.reshape(-1) for g in grads])
        gradient_sum = flat.detach()
        r = direction(gradient_sum) if callable(direction) else direction
        product = flat @ r
        if not product.requires_grad:  # e.g. every hinge margin beyond its kink
            return torch.zeros_like(X), gradient_sum
        (grad_x,) = torch.autograd.grad(product, X, materialize_grads=True)
        return grad_x, gradient_sum

    # ------------------------------------------------------------ threshold data
    def output_ranges(self, feature_range):
        """Range ``[low, high]`` of each output over the feature box, or ``None``.

        Only affine models have a closed form; for others this returns ``None``.
        """
        if not self.linear:
            return None
        low, high = feature_range
        coef = self.params["coef"]
        d = coef.shape[1]
        low = torch.broadcast_to(to_tensor(low, device=self.device, dtype=self.dtype), (d,))
        high = torch.broadcast_to(to_tensor(high, device=self.device, dtype=self.dtype), (d,))
        center, radius = (low + high) / 2, (high - low) / 2
        mid = coef @ center
        if "intercept" in self.params:
            mid = mid + self.params["intercept"]
        spread = coef.abs() @ radius
        return torch.stack([mid - spread, mid + spread], dim=1).cpu().numpy().astype(float)

    def group_bounds(self, *, feature_range=None, label_range=None, n_classes=None):
        """Bounds ``(a, b)`` of ``<h, grad_h l>`` for any single point, per threshold group.

        ``n_classes`` overrides the number of classes of a cross-entropy model (the
        binary variant ``tau(2)`` uses 2).
        """
        ranges = None if feature_range is None else self.output_ranges(feature_range)
        if self.kind in ("binary_margin", "ovr_margin"):
            spec = MARGIN_LOSSES[self.loss]
            bounds = []
            n_groups = len(self.groups)
            for k in range(n_groups):
                if ranges is None:
                    bounds.append((spec.a, spec.b))
                else:
                    lo, hi = ranges[k]
                    bounds.append(_margin_union_bounds(spec, [(lo, hi), (-hi, -lo)]))
            return bounds
        if self.kind == "cross_entropy":
            c = n_classes or self.n_classes
            if ranges is None:
                return [softmax_bounds(c)]
            intervals = [
                (ranges[k, 0] - ranges[i, 1], ranges[k, 1] - ranges[i, 0])
                for i in range(len(ranges))
                for k in range(len(ranges))
                if i != k
            ]
            return [softmax_bounds(c, intervals)]
        # squared loss 0.5 * ||h - y||^2: <h, h - y> = sum_k h_k (h_k - y_k)
        if label_range is None:
            return [(-math.inf, math.inf)]
        ylo, yhi = float(label_range[0]), float(label_range[1])
        k = self.params[self.head[0]].shape[0]
        out_ranges = ranges if ranges is not None else [(-math.inf, math.inf)] * k
        a = b = 0.0
        for lo, hi in out_ranges:
            a_k = math.inf
            b_k = -math.inf
            for yv in (ylo, yhi):
                # h (h - y) is a convex parabola in h with vertex at y / 2
                h_min = float(np.clip(yv / 2, lo, hi))
                a_k = min(a_k, h_min * (h_min - yv))
                for h in (lo, hi):
                    b_k = max(b_k, math.inf if not np.isfinite(h) else h * (h - yv))
            a += a_k
            b += b_k
        return [(a, b)]
