"""The victim's training objective, viewed at fixed parameters ``w``.

An :class:`Objective` is ``sum_i l(z_i; w) + kappa(N) * R(w)`` over the ``N`` training
points: a per-sample loss (a :class:`~skpoison.objectives.TrainingLoss` strategy) on the
outputs of a torch module, and an L2 :class:`~skpoison.objectives.Penalty`.  It gives
per-sample losses, outputs, the loss-gradient sum streamed in batches, per-sample
gradients (``torch.func``) and the gradient with respect to poison features that
Gradient Canceling needs.
"""

import math
import warnings
from collections import OrderedDict

import numpy as np
import torch
from sklearn.exceptions import DataConversionWarning
from torch.func import functional_call, grad, vmap

from .._utils import (
    batch_slices,
    class_indices,
    resolve_device,
    resolve_dtype,
    to_tensor,
    user_stacklevel,
    with_autograd,
)
from ._cnn import cnn_feature_gradient, cnn_layers
from ._convolution import SeparateConvolutionGradients
from ._losses import TrainingLoss
from ._penalty import Penalty
from ._perceptron import perceptron_feature_gradient, perceptron_layers

__all__ = ["Objective"]


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
    loss : TrainingLoss
        The per-sample loss on the outputs (a strategy from
        :mod:`skpoison.objectives`: binary margin, one-vs-rest margin, cross-entropy or
        squared loss).
    penalty : Penalty or None
        The L2 penalty and how it scales with the number of samples.
    estimator : object
        The fitted estimator this objective describes (never modified).
    rebuild : callable
        ``rebuild(params_dict) -> estimator``: a fitted copy of ``estimator`` holding
        other parameter values.
    classes : ndarray or None
        Class labels for classifiers, in the order of the outputs.
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
        loss,
        penalty=None,
        estimator=None,
        rebuild=None,
        classes=None,
        head=None,
        groups=None,
        fit_intercept=True,
        n_features_in=None,
        linear=False,
        device="cpu",
        dtype="float32",
    ):
        if not isinstance(loss, TrainingLoss):
            raise TypeError(f"loss must be a TrainingLoss, got {loss!r}.")
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype)
        self.module = module.to(device=self.device, dtype=self.dtype).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.params = OrderedDict(
            (k, v.detach().to(device=self.device, dtype=self.dtype).clone())
            for k, v in params.items()
        )
        self.loss = loss
        self.penalty = penalty if penalty is not None else Penalty()
        self.estimator = estimator
        self._rebuild = rebuild
        self.classes = None if classes is None else np.asarray(classes)
        self.penalty_weights = OrderedDict(
            (k, to_tensor(self.penalty.weights[k], device=self.device, dtype=self.dtype).expand_as(v))
            if k in self.penalty.weights
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
        self._affine = self._affine_parameters()
        # a net with convolution layers gets their gradients recorded as separate ops
        self._convolutions = any(
            isinstance(m, (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d))
            for m in self.module.modules()
        )
        # multilayer perceptrons and the paper's CNN get the feature gradient in
        # closed form
        self._perceptron = None if self._affine is not None else perceptron_layers(
            self.module, self.params
        )
        self._cnn = None if self._affine is not None else cnn_layers(self.module, self.params)

    @property
    def kind(self):
        """The loss family: ``"binary_margin"``, ``"ovr_margin"``, ``"cross_entropy"``
        or ``"squared"``."""
        return self.loss.kind

    @property
    def penalty_form(self):
        """``"sum"``, ``"mean"`` or ``None`` (see :class:`Penalty`)."""
        return self.penalty.form

    @property
    def penalty_strength(self):
        """``1/C`` (sum form) or ``alpha`` (mean form)."""
        return self.penalty.strength

    @property
    def log_probabilities(self):
        """Whether the outputs are (log-)probabilities fed to ``NLLLoss``."""
        return getattr(self.loss, "log_probabilities", False)

    @property
    def probability_epsilon(self):
        """The ``eps`` of ``NLLLoss(log(p + eps))`` when the outputs are probabilities."""
        return getattr(self.loss, "probability_epsilon", None)

    @property
    def n_outputs(self):
        """Number of model outputs ``k`` (of the last linear layer)."""
        return int(self.params[self.head[0]].shape[0])

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

    def _affine_parameters(self):
        """``(weight, bias or None)`` names when ``module`` is ``X @ weight.T + bias``.

        True for the linear adapters (``linear=True``), :class:`torch.nn.Linear` and
        modules declaring an ``affine_parameters`` attribute (such as
        :class:`skpoison.models.LogisticRegressionNet`); ``None`` otherwise.
        """
        if self.linear:
            names = ("coef", "intercept")
        elif isinstance(self.module, torch.nn.Linear):
            names = ("weight", "bias")
        else:
            names = getattr(self.module, "affine_parameters", None)
            if names is None:
                return None
        weight, bias = names
        if weight not in self.params or set(self.params) - {weight, bias}:
            return None
        return weight, (bias if bias in self.params else None)

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
    def activation_elements(self, X):
        """Elements the model's layers output per row shaped like those of ``X``.

        An estimate of what a backward pass keeps per row: the sum of the output
        sizes of the module's leaf modules, counted at each call, read from shapes
        alone.  The module's Python ``forward`` runs on two rows of the ``meta``
        device with its parameters and buffers on ``meta`` too, so nothing is
        computed and no parameter or buffer (a batch norm's running statistics)
        changes.  Affine models return their number of outputs.  A module that
        cannot run on ``meta`` returns 0 with a warning (clean batches are then
        sized by the input alone).

        Examples
        --------
        >>> import numpy as np
        >>> from skpoison.models import make_net
        >>> from skpoison.objectives import as_objective
        >>> X, y = np.zeros((4, 4), dtype=np.float32), np.array([0, 1, 0, 1])
        >>> net = make_net("mlp", hidden_size=8, max_epochs=1, random_state=0, device="cpu")
        >>> objective = as_objective(net.fit(X, y), device="cpu")
        >>> objective.activation_elements(X)  # fc1, dropout, fc2, dropout: 8 each; fc3: 2
        34
        """
        if self._affine is not None:
            return self.n_outputs
        rows = torch.empty((2, *np.shape(X)[1:]), device="meta", dtype=self.dtype)
        state = {
            k: v.to("meta")
            for k, v in (*self.module.named_parameters(), *self.module.named_buffers())
        }
        counted = [0]

        def count(module, inputs, output):
            if isinstance(output, torch.Tensor):
                counted[0] += output.numel()

        leaves = [m for m in self.module.modules() if not list(m.children())]
        hooks = [m.register_forward_hook(count) for m in leaves]
        try:
            with torch.no_grad():
                functional_call(self.module, state, (rows,))
        except Exception as error:  # e.g. an op without a meta kernel, a .item() call
            warnings.warn(
                f"The layer outputs of {type(self.module).__name__} could not be sized "
                f"on the meta device ({type(error).__name__}: {error}); clean batches are "
                "sized by the input alone. Pass batch_size to bound their memory.",
                RuntimeWarning,
                stacklevel=user_stacklevel(),
            )
            return 0
        finally:
            for hook in hooks:
                hook.remove()
        return counted[0] // 2

    def as_features(self, X):
        """``X`` as a tensor on the objective's device and dtype."""
        return to_tensor(X, device=self.device, dtype=self.dtype)

    def encode_labels(self, y):
        """Encode labels the way the loss consumes them.

        Classifiers: +-1 for binary margins, a +-1 matrix for one-vs-rest, class
        indices for cross-entropy; labels the model does not know raise ``ValueError``.
        Regression: a float tensor of shape ``(m, k)``.  ``y`` is always taken as raw
        labels (a tensor is converted, never assumed to be encoded already); methods
        that accept encoded labels say so with their ``encoded`` argument.
        """
        if isinstance(y, torch.Tensor):
            y = y.detach().cpu().numpy()
        y = np.asarray(y)
        if not self.loss.classification:
            return self.loss.encode(y, self.n_outputs, device=self.device, dtype=self.dtype)
        if y.ndim == 2:
            if y.shape[1] != 1:
                raise ValueError(
                    f"y has shape {y.shape}; a classifier target needs one label per row."
                )
            warnings.warn(
                "A column-vector y was passed when a 1d array was expected; it is raveled.",
                DataConversionWarning,
                stacklevel=user_stacklevel(),
            )
            y = y.ravel()
        index = class_indices(self.classes, y, owner="the target model")
        return self.loss.encode(index, len(self.classes), device=self.device, dtype=self.dtype)

    def _labels(self, y, encoded):
        return y if encoded else self.encode_labels(y)

    # ------------------------------------------------------------------- losses
    def outputs(self, X, params=None):
        """Model outputs (logits, decision values) for features ``X``."""
        params = self.params if params is None else params
        return functional_call(self.module, params, (self.as_features(X),))

    def sample_losses(self, X, y, params=None, *, encoded=False):
        """Per-sample losses ``l(z_i; w)`` (differentiable in ``X`` and ``params``).

        ``encoded=True`` says ``y`` comes from :meth:`encode_labels` already.
        """
        return self.loss.per_sample(self.outputs(X, params), self._labels(y, encoded))

    # ----------------------------------------------------------------- penalty
    def kappa(self, n_samples):
        """Penalty scale ``kappa(N)`` for an objective over ``N`` samples."""
        return self.penalty.kappa(n_samples)

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
    def _grad_params(self, params=None):
        params = self.params if params is None else params
        # in the objective's order, whatever the order of a dict passed in: flat
        # gradients are read that way
        return OrderedDict(
            (k, params[k].detach().clone().requires_grad_(True)) for k in self.params
        )

    @with_autograd
    def loss_gradient_sum(self, X, y, *, batch_size=None, encoded=False, params=None):
        """``sum_i grad_w l(z_i; w)`` over the rows of ``(X, y)``, streamed in batches.

        ``params`` (a dict like ``params``) evaluates it at other parameters.  Each
        batch of ``X`` is converted to a tensor on its own, so an array of another
        dtype or on another device is never copied whole.
        """
        X = X if isinstance(X, torch.Tensor) else np.asarray(X)
        y = self._labels(y, encoded)
        params = self._grad_params(params)
        total = torch.zeros(self.n_params, device=self.device, dtype=self.dtype)
        for sl in batch_slices(len(X), batch_size, even=True):
            features = self.as_features(X[sl])
            losses = self.loss.per_sample(functional_call(self.module, params, (features,)), y[sl])
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

    @with_autograd
    def per_sample_gradients(self, X, y, *, encoded=False):
        """Per-sample gradients ``grad_w l(z_i; w)``, shape ``(m, n_params)`` (torch.func)."""
        X = self.as_features(X)
        y = self._labels(y, encoded)

        def single(params, x, t):
            h = functional_call(self.module, params, (x.unsqueeze(0),))
            return self.loss.per_sample(h, t.unsqueeze(0)).sum()

        grads = vmap(grad(single), in_dims=(None, 0, 0))(dict(self.params), X, y)
        return torch.cat([grads[k].reshape(len(X), -1) for k in self.params], dim=1)

    @with_autograd
    def poison_feature_gradient(
        self, X, y, direction, *, encoded=False, batch_size=None, params=None, lagged=None
    ):
        """``grad_X <r, sum_j grad_w l(z_j; w)>`` for poison rows ``(X, y)``.

        This is equation (34) of the paper without its ``1/n`` factor: the gradient of
        the canceling residual's inner product with respect to each poison feature
        vector, exact for any batch of rows since the sum is additive.

        Affine models (linear adapters, :class:`torch.nn.Linear`,
        :class:`~skpoison.models.LogisticRegressionNet`) use a closed form: with
        outputs ``h_j = W x_j + b``, ``g_j = dl/dh_j`` and ``H_j = d^2 l / dh_j^2``
        (:meth:`TrainingLoss.output_derivatives`), the gradient for row ``j`` is
        ``R_W^T g_j + W^T H_j (R_W x_j + r_b)`` where ``(R_W, r_b)`` is ``r`` split
        like ``(W, b)``.  Multilayer perceptrons (:class:`~skpoison.models.MLP`, and
        a :class:`torch.nn.Sequential` of linear layers with ReLU or leaky ReLU
        activations) and the paper's CNN (:class:`~skpoison.models.CNN` as built)
        use the same products and convolutions as the double backward, written out
        without autograd's graph (modules ``skpoison.objectives._perceptron`` and
        ``skpoison.objectives._cnn``), when every submodule is in eval mode, no hook
        is registered and no method is replaced on an instance.  Other models
        differentiate twice with autograd.

        Parameters
        ----------
        X, y : array-like or tensor
            Poison rows.
        direction : tensor or callable
            The residual ``r``, or a function mapping the (detached) gradient sum of
            these rows to ``r`` (computed from the same rows; called once).
        encoded : bool, default=False
            Whether ``y`` comes from :meth:`encode_labels` already.
        batch_size : int or None, default=None
            Rows per batch (``None``: one batch); the result does not depend on it.
            With a callable ``direction`` and several batches, other models make two
            passes (the gradient sum first, without a graph).  Affine models ignore
            it: their closed form holds no temporary larger than ``(m, 2 k)`` for
            ``k`` outputs, so one batch already has memory bounded like a batch.
        params : dict of str to tensor or None, default=None
            Parameters to evaluate at (shaped like ``params``); ``None``: ``w``.
        lagged : tensor of shape (n_params,) or None, default=None
            With a callable ``direction``: the residual that every batch's feature
            gradient uses instead (whatever the number of batches), so that one pass
            suffices; ``direction`` is still called, after the pass, with the exact
            gradient sum of these rows.  Affine models ignore it: their one pass is
            exact already.

        Returns
        -------
        grad_x : tensor of the shape of ``X``
        gradient_sum : tensor of shape (n_params,)
            ``sum_j grad_w l(z_j; w)`` over these rows (detached).
        """
        X = self.as_features(X).detach()
        y = self._labels(y, encoded)
        if self._affine is not None:
            return self._affine_feature_gradient(X, y, direction, params)
        slices = list(batch_slices(len(X), batch_size, even=True))
        # checked at each call, once for all batches: hooks or a training mode may
        # have come since the objective was built
        perceptron = None if self._perceptron is None else perceptron_layers(
            self.module, self.params
        )
        cnn = None if self._cnn is None else cnn_layers(self.module, self.params)
        if len(slices) == 1 and lagged is None:
            return self._batch_feature_gradient(
                X, y, direction, params, perceptron=perceptron, cnn=cnn
            )
        gradient_sum = after_pass = None
        if callable(direction) and lagged is not None:  # one pass along the lagged r
            direction, after_pass = lagged, direction
        elif callable(direction):  # pass 1: the gradient sum, no graph kept
            gradient_sum = self.loss_gradient_sum(
                X, y, batch_size=batch_size, encoded=True, params=params
            )
            direction = direction(gradient_sum)
        # contiguous, so that each batch's block of rows is too (the closed forms
        # write into it)
        grad_x = torch.empty_like(X, memory_format=torch.contiguous_format)
        total = torch.zeros(self.n_params, device=self.device, dtype=self.dtype)
        # one copy of the parameters for all batches (the closed form needs none)
        leaves = self._grad_params(params) if perceptron is None and cnn is None else None
        for sl in slices:
            self._batch_feature_gradient(
                X[sl], y[sl], direction, params, perceptron=perceptron, cnn=cnn,
                leaves=leaves, into=total, gradient_sum=gradient_sum is None, out=grad_x[sl],
            )
        if after_pass is not None:  # the exact residual, from this pass's sum
            after_pass(total)
        return grad_x, (total if gradient_sum is None else gradient_sum)

    def _batch_feature_gradient(self, X, y, direction, params=None, *, perceptron=None,
                                cnn=None, leaves=None, into=None, gradient_sum=True, out=None):
        """One batch of :meth:`poison_feature_gradient` (models that are not affine).

        With ``perceptron`` (what :func:`~skpoison.objectives._perceptron.perceptron_layers`
        returned for this call), the closed form runs on flat rows of the right
        width; with ``cnn`` (from :func:`~skpoison.objectives._cnn.cnn_layers`), on
        rows of the image's size; otherwise, and for rows of another size, the
        double backward.  ``gradient_sum=False`` (with a tensor ``direction``) lets
        a closed form skip the batch's gradient sum, which the double backward
        computes anyway.  ``out`` (a contiguous tensor shaped like ``X``) receives
        the feature gradient; the perceptron's closed form writes it there directly.
        """
        # the closed forms read the parameters by name, in the objective's order
        values = self.params if params is None else {k: params[k] for k in self.params}
        rows = None  # the perceptron's flat rows, when its closed form applies
        if perceptron is not None:
            layers, flatten = perceptron
            rows = X.reshape(len(X), -1) if flatten else X
            if rows.dim() != 2 or rows.shape[1] != self.params[layers[0][0]].shape[1]:
                rows = None
        if cnn is not None and len(X) and X[0].numel() == math.prod(cnn):
            result = cnn_feature_gradient(
                cnn, values, self.loss, X, y, direction, unflatten=self.unflatten,
                into=into, gradient_sum=gradient_sum,
            )
        elif rows is not None:
            grad_x, total = perceptron_feature_gradient(
                layers, values, self.loss, rows, y, direction, unflatten=self.unflatten,
                into=into, gradient_sum=gradient_sum,
                out=None if out is None else out.view(rows.shape),
            )
            return (grad_x.reshape(X.shape) if out is None else out), total
        else:
            result = self._autograd_feature_gradient(
                X, y, direction, params, leaves=leaves, into=into
            )
        if out is not None:
            out.copy_(result[0])
            return out, result[1]
        return result

    def _autograd_feature_gradient(self, X, y, direction, params=None, *, leaves=None, into=None):
        """One batch of :meth:`poison_feature_gradient` by double backward.

        ``leaves`` (from :meth:`_grad_params`) lets batches share one copy of the
        parameters; ``into`` (a flat tensor, with a tensor ``direction``) receives the
        batch's gradient sum in place and is returned as the sum.  The second pass
        seeds each parameter's gradient with its block of ``r`` (no flat copy of the
        gradients), and convolutions record their gradients as separate ops
        (:class:`~skpoison.objectives._convolution.SeparateConvolutionGradients`), so
        that it computes no weight-shaped gradient.
        """
        X = X.requires_grad_(True)
        leaves = self._grad_params(params) if leaves is None else leaves
        with SeparateConvolutionGradients(X, enabled=self._convolutions) as convolutions:
            losses = self.loss.per_sample(functional_call(self.module, leaves, (X,)), y)
            grads = torch.autograd.grad(
                losses.sum(), list(leaves.values()), create_graph=True, materialize_grads=True
            )
            if into is None:
                gradient_sum = torch.cat([g.detach().reshape(-1) for g in grads])
            else:  # no flat copy of this batch's gradients
                for total, g in zip(self.unflatten(into).values(), grads):
                    total.add_(g.detach())
                gradient_sum = into
            r = direction(gradient_sum) if callable(direction) else direction
            seeded = [(g, part) for g, part in zip(grads, self.unflatten(r).values())
                      if g.requires_grad]
            if not seeded:  # e.g. every hinge margin beyond its kink
                return torch.zeros_like(X), gradient_sum
            convolutions.wrt = "features"
            (grad_x,) = torch.autograd.grad(
                [g for g, _ in seeded], X, grad_outputs=[part for _, part in seeded],
                materialize_grads=True,
            )
        return grad_x, gradient_sum

    def _affine_feature_gradient(self, X, y, direction, params=None):
        """:meth:`poison_feature_gradient` in closed form for ``h = X W^T + b``.

        Four products with ``X`` and ``(m, k)`` temporaries only: ``h = X W^T + b``,
        the gradient sum ``g^T X``, ``s = X R_W^T + r_b`` and
        ``grad_x = g R_W + (H s) W``.
        """
        weight, bias = self._affine
        params = self.params if params is None else params
        W = params[weight]
        b = None if bias is None else params[bias]
        h = X @ W.T if b is None else torch.addmm(b, X, W.T)
        g, hessian_product = self.loss.output_derivatives(h, y)
        parts = {weight: g.T @ X}
        if b is not None:
            parts[bias] = g.sum(dim=0)
        gradient_sum = torch.cat([parts[k].reshape(-1) for k in self.params])
        r = direction(gradient_sum) if callable(direction) else direction
        split = self.unflatten(r)
        R_W = split[weight]
        s = X @ R_W.T if b is None else torch.addmm(split[bias], X, R_W.T)
        return (g @ R_W).addmm_(hessian_product(s), W), gradient_sum

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
        return self.loss.group_bounds(
            ranges,
            len(self.groups),
            n_outputs=self.n_outputs,
            n_classes=n_classes or self.n_classes,
            label_range=label_range,
        )

