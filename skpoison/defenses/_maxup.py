"""MaxUp (Gong et al. 2021): train on the worst of several random perturbations."""

from numbers import Integral, Real

import torch
from skorch.dataset import unpack_data

from .._utils import with_autograd
from ..models import SeededNeuralNetClassifier

__all__ = ["MaxUpClassifier"]

_PERTURBATIONS = ("gaussian", "uniform")


class MaxUpClassifier(SeededNeuralNetClassifier):
    """A skorch classifier trained with MaxUp: the worst loss over random perturbations.

    MaxUp (Gong, Ren, Ye and Liu 2021) replaces each training row ``x`` by
    ``n_augment`` randomly perturbed copies ``x + delta_a`` and minimises, per row, the
    *largest* of their losses, averaged over the mini-batch::

        loss = mean_i max_a l(f(x_i + delta_ia), y_i)

    (summed instead of averaged when the criterion's ``reduction`` is ``"sum"``).  It
    is the training-time defense of Lu, Kamath and Yu (2023, appendix C.10): a victim
    like any other, whose objective :func:`skpoison.objectives.as_objective` reads as
    that of a plain net (``CrossEntropyLoss`` on the module's logits), so
    :class:`~skpoison.PoisonabilityAnalyzer`,
    :class:`~skpoison.attacks.GradientCanceling` and the target recipes accept it.
    Only training changes: validation, ``predict`` and ``predict_proba`` see the rows
    as they are.

    It is a :class:`~skpoison.models.SeededNeuralNetClassifier`: ``random_state`` seeds
    torch during ``fit`` (weights, shuffling and the perturbations), float64 rows are
    cast to the module's dtype and any class labels are accepted.

    Parameters
    ----------
    module : torch.nn.Module class or instance
        The net, mapping float rows to logits.
    *args
        Passed to :class:`~skpoison.models.SeededNeuralNetClassifier`.
    n_augment : int, default=4
        Perturbed copies per row (``m`` in the MaxUp paper); ``1`` is plain training
        on noisy rows.
    perturbation : {"gaussian", "uniform"}, default="gaussian"
        ``"gaussian"``: ``delta ~ N(0, perturbation_std^2)`` per feature;
        ``"uniform"``: uniform on ``[-sqrt(3) s, sqrt(3) s]``, ``s =
        perturbation_std`` (the same standard deviation).
    perturbation_std : float, default=0.1
        Standard deviation of the perturbation, in the units of the features (``0``:
        no perturbation, i.e. plain training).
    criterion : torch criterion class, default=torch.nn.CrossEntropyLoss
        Must accept ``reduction="none"`` (every torch loss does).
    train_split : callable or None, default=None
    classes : array-like or None, default=None
    random_state : int, RandomState instance or None, default=None
        Seed of torch during ``fit``.
    **kwargs
        Any other skorch parameter (``optimizer``, ``lr``, ``max_epochs``,
        ``batch_size``, ``module__*``, ``device``, ...).

    Attributes
    ----------
    module_ : torch.nn.Module
        The fitted module.
    classes_ : ndarray
        Class labels.
    n_features_in_ : int
        Row length seen during fit.

    Notes
    -----
    The ``n_augment`` perturbations of a mini-batch ``X`` (shape ``(b, ...)``) are
    drawn in one call, a tensor of shape ``(n_augment, b, ...)`` from torch's RNG, and
    the ``n_augment * b`` perturbed rows go through the module in one forward pass
    (batch-norm statistics are those of the perturbed rows).  The ``y_pred`` a
    training step reports is, per row, that of its worst copy.

    References
    ----------
    C. Gong, T. Ren, M. Ye and Q. Liu (2021). MaxUp: Lightweight Adversarial Training
    with Data Augmentation Improves Neural Network Training. CVPR.

    Examples
    --------
    >>> import numpy as np
    >>> from skpoison.datasets import load_digits
    >>> from skpoison.defenses import MaxUpClassifier
    >>> from skpoison.models import MLP
    >>> X, y = load_digits(digits=(0, 1, 2), return_X_y=True)
    >>> net = MaxUpClassifier(
    ...     MLP, module__n_features=64, module__n_classes=3, module__hidden_size=16,
    ...     n_augment=4, perturbation_std=0.1, max_epochs=10, lr=0.1, batch_size=32,
    ...     verbose=0, random_state=0)
    >>> net = net.fit(X, y)
    >>> bool(net.score(X, y) > 0.9)
    True
    """

    def __init__(
        self,
        module,
        *args,
        n_augment=4,
        perturbation="gaussian",
        perturbation_std=0.1,
        **kwargs,
    ):
        super().__init__(module, *args, **kwargs)
        self.n_augment = n_augment
        self.perturbation = perturbation
        self.perturbation_std = perturbation_std

    # --------------------------------------------------------------- validation
    def _check_maxup_params(self):
        n = self.n_augment
        if isinstance(n, bool) or not isinstance(n, Integral) or n < 1:
            raise ValueError(f"n_augment must be an int >= 1, got {n!r}.")
        if self.perturbation not in _PERTURBATIONS:
            raise ValueError(
                f"perturbation must be one of {_PERTURBATIONS}, got {self.perturbation!r}."
            )
        std = self.perturbation_std
        if isinstance(std, bool) or not isinstance(std, Real) or not (0 <= std < float("inf")):
            raise ValueError(f"perturbation_std must be a finite float >= 0, got {std!r}.")

    @with_autograd
    def fit(self, X, y, **fit_params):
        """Initialise (unless ``warm_start``) and train with MaxUp, seeded.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training rows.
        y : array-like of shape (n_samples,)
            Class labels.
        **fit_params
            Passed to :meth:`skorch.NeuralNet.fit`.

        Returns
        -------
        self : MaxUpClassifier
        """
        self._check_maxup_params()
        return super().fit(X, y, **fit_params)

    def partial_fit(self, X, y=None, classes=None, **fit_params):
        """Train further with MaxUp (initialising first if needed).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        classes : array-like or None
            Unused (skorch's signature).
        **fit_params
            Passed to :meth:`skorch.NeuralNet.partial_fit`.

        Returns
        -------
        self : MaxUpClassifier
        """
        self._check_maxup_params()
        return super().partial_fit(X, y, classes=classes, **fit_params)

    # ----------------------------------------------------------------- training
    def augment(self, X):
        """``n_augment`` perturbed copies of a batch: shape ``(n_augment, *X.shape)``.

        Draws from torch's RNG (seeded during ``fit``).
        """
        shape = (self.n_augment, *X.shape)
        if self.perturbation == "gaussian":
            noise = torch.randn(shape, device=X.device, dtype=X.dtype)
        else:
            noise = (2 * torch.rand(shape, device=X.device, dtype=X.dtype) - 1) * (3**0.5)
        return X.unsqueeze(0) + self.perturbation_std * noise

    def per_sample_loss(self, y_pred, y_true, X=None, training=False):
        """The criterion's loss of each row (its ``reduction`` set to ``"none"``)."""
        criterion = self.criterion_
        reduction = criterion.reduction
        criterion.reduction = "none"
        try:
            losses = self.get_loss(y_pred, y_true, X=X, training=training)
        finally:
            criterion.reduction = reduction
        return losses.reshape(len(y_pred), -1).sum(dim=1) if losses.ndim > 1 else losses

    def maxup_loss(self, X, y, **fit_params):
        """The MaxUp loss of a batch and, per row, the prediction of its worst copy."""
        if not isinstance(X, torch.Tensor):
            raise TypeError(
                "MaxUpClassifier perturbs tensor batches; X must be an array or tensor, "
                f"not {type(X).__name__}."
            )
        X = X.to(self.device)
        y = y.to(self.device) if isinstance(y, torch.Tensor) else y
        copies = self.augment(X)
        n_rows = X.shape[0]
        y_pred = self.infer(copies.reshape(-1, *X.shape[1:]), **fit_params)
        y_rep = y.repeat(self.n_augment) if isinstance(y, torch.Tensor) else y
        losses = self.per_sample_loss(y_pred, y_rep, X=copies, training=True)
        worst, which = losses.reshape(self.n_augment, n_rows).max(dim=0)
        loss = worst.sum() if self.criterion_.reduction == "sum" else worst.mean()
        y_pred = y_pred.reshape(self.n_augment, n_rows, *y_pred.shape[1:])
        return loss, y_pred[which, torch.arange(n_rows, device=which.device)]

    def train_step_single(self, batch, **fit_params):
        """One MaxUp step: the worst loss over the perturbed copies, backpropagated."""
        self._set_training(True)
        Xi, yi = unpack_data(batch)
        loss, y_pred = self.maxup_loss(Xi, yi, **fit_params)
        loss.backward()
        return {"loss": loss, "y_pred": y_pred}
