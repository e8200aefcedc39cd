"""Objective adapters for fitted scikit-learn linear models."""

import copy
from collections import OrderedDict

import numpy as np
import torch
from sklearn.linear_model import (
    LinearRegression,
    LogisticRegression,
    LogisticRegressionCV,
    Ridge,
    RidgeClassifier,
    SGDClassifier,
)
from sklearn.svm import LinearSVC

from ._base import Objective
from ._losses import BinaryMarginLoss, CrossEntropyLoss, OneVsRestMarginLoss, SquaredLoss
from ._penalty import Penalty
from ._registry import register_adapter

__all__ = ["LinearModule"]

_SGD_LOSSES = {
    "log_loss": "logistic",
    "log": "logistic",
    "hinge": "hinge",
    "modified_huber": "modified_huber",
    "squared_hinge": "squared_hinge",
}


class LinearModule(torch.nn.Module):
    """``h = X @ coef.T + intercept``: the affine map of a linear model.

    Examples
    --------
    >>> import torch
    >>> from skpoison.objectives import LinearModule
    >>> m = LinearModule(n_features=3, n_outputs=2, fit_intercept=True)
    >>> m(torch.ones(4, 3)).shape
    torch.Size([4, 2])
    """

    def __init__(self, n_features, n_outputs, fit_intercept=True):
        super().__init__()
        self.coef = torch.nn.Parameter(torch.zeros(n_outputs, n_features))
        if fit_intercept:
            self.intercept = torch.nn.Parameter(torch.zeros(n_outputs))
        else:
            self.intercept = None

    def forward(self, X):
        """Decision values ``X @ coef.T + intercept``, shape ``(n_samples, n_outputs)``."""
        h = X @ self.coef.T
        if self.intercept is not None:
            h = h + self.intercept
        return h


class _LinearRebuild:
    """A fitted copy of a linear model holding other ``coef_``/``intercept_`` (picklable)."""

    def __init__(self, estimator, fit_intercept):
        self.estimator = estimator
        self.fit_intercept = fit_intercept

    def __call__(self, new_params):
        new = copy.deepcopy(self.estimator)
        coef_shape = np.shape(self.estimator.coef_)
        new.coef_ = new_params["coef"].numpy().astype(float).reshape(coef_shape)
        if self.fit_intercept:
            shape = np.shape(self.estimator.intercept_)
            values = new_params["intercept"].numpy().astype(float)
            new.intercept_ = values.reshape(shape) if shape else float(values[0])
        return new


def _unsupported(estimator, what):
    return TypeError(
        f"{type(estimator).__name__} with {what} is not supported: skpoison needs the "
        "objective the victim minimises (L2 or no penalty, no sample or class weights)."
    )


def _margin_loss(margin, classes):
    """The binary margin loss for two classes, one per class (one-vs-rest) otherwise."""
    return BinaryMarginLoss(margin) if len(classes) == 2 else OneVsRestMarginLoss(margin)


def _linear_objective(
    estimator,
    *,
    loss,
    classes=None,
    penalty_form=None,
    strength=0.0,
    intercept_weight=0.0,
    device,
    dtype,
):
    coef_attr = np.asarray(estimator.coef_, dtype=float)
    coef = np.atleast_2d(coef_attr)
    k, d = coef.shape
    fit_intercept = bool(getattr(estimator, "fit_intercept", True))
    module = LinearModule(d, k, fit_intercept)
    params = OrderedDict(coef=torch.as_tensor(coef))
    weights = {"coef": 1.0}
    if fit_intercept:
        intercept = np.broadcast_to(np.asarray(estimator.intercept_, dtype=float), (k,))
        params["intercept"] = torch.as_tensor(np.array(intercept))
        weights["intercept"] = intercept_weight
    groups = None
    if isinstance(loss, OneVsRestMarginLoss):
        groups = [
            [("coef", j)] + ([("intercept", j)] if fit_intercept else []) for j in range(k)
        ]
    return Objective(
        module,
        params,
        loss=loss,
        penalty=Penalty(weights, form=penalty_form, strength=strength),
        estimator=estimator,
        rebuild=_LinearRebuild(estimator, fit_intercept),
        classes=classes,
        groups=groups,
        fit_intercept=fit_intercept,
        n_features_in=getattr(estimator, "n_features_in_", d),
        linear=True,
        device=device,
        dtype=dtype,
    )


def _check_no_class_weight(estimator):
    if getattr(estimator, "class_weight", None) is not None:
        raise _unsupported(estimator, "class_weight")


@register_adapter(LogisticRegressionCV)
def _logistic_cv(estimator, *, device, dtype):
    raise TypeError(
        "LogisticRegressionCV is not supported; refit a LogisticRegression with the "
        "chosen C_ and pass that."
    )


@register_adapter(
    LogisticRegression, "LogisticRegression (binary and multinomial, L2 or no penalty)"
)
def _logistic(estimator, *, device, dtype):
    _check_no_class_weight(estimator)
    penalty = getattr(estimator, "penalty", "l2")
    l1_ratio = getattr(estimator, "l1_ratio", None)
    if penalty in ("l1", "elasticnet") or (penalty == "deprecated" and l1_ratio not in (None, 0)):
        raise _unsupported(estimator, f"an L1 penalty (penalty={penalty!r}, l1_ratio={l1_ratio})")
    C = float(estimator.C)
    if penalty is None or penalty == "none" or not np.isfinite(C):
        form, strength = None, 0.0
    else:
        form, strength = "sum", 1.0 / C
    liblinear = getattr(estimator, "solver", "lbfgs") == "liblinear"
    # liblinear penalises the intercept through a constant feature intercept_scaling
    intercept_weight = 1.0 / float(estimator.intercept_scaling) ** 2 if liblinear else 0.0
    classes = estimator.classes_
    if len(classes) == 2 or liblinear or getattr(estimator, "multi_class", "auto") == "ovr":
        loss = _margin_loss("logistic", classes)
    else:
        loss = CrossEntropyLoss()
    return _linear_objective(
        estimator,
        loss=loss,
        classes=classes,
        penalty_form=form,
        strength=strength,
        intercept_weight=intercept_weight,
        device=device,
        dtype=dtype,
    )


@register_adapter(SGDClassifier, "SGDClassifier (log_loss, hinge, modified_huber, squared_hinge; L2)")
def _sgd(estimator, *, device, dtype):
    _check_no_class_weight(estimator)
    if estimator.loss not in _SGD_LOSSES:
        raise _unsupported(
            estimator, f"loss={estimator.loss!r} (supported: {sorted(set(_SGD_LOSSES))})"
        )
    if estimator.penalty not in ("l2", None):
        raise _unsupported(estimator, f"penalty={estimator.penalty!r}")
    form = "mean" if estimator.penalty == "l2" and estimator.alpha > 0 else None
    classes = estimator.classes_
    return _linear_objective(
        estimator,
        loss=_margin_loss(_SGD_LOSSES[estimator.loss], classes),
        classes=classes,
        penalty_form=form,
        strength=float(estimator.alpha) if form else 0.0,
        device=device,
        dtype=dtype,
    )


@register_adapter(LinearSVC, "LinearSVC (hinge, squared_hinge)")
def _linear_svc(estimator, *, device, dtype):
    _check_no_class_weight(estimator)
    if estimator.penalty != "l2":
        raise _unsupported(estimator, f"penalty={estimator.penalty!r}")
    if estimator.multi_class != "ovr":
        raise _unsupported(estimator, f"multi_class={estimator.multi_class!r}")
    classes = estimator.classes_
    return _linear_objective(
        estimator,
        loss=_margin_loss(estimator.loss, classes),
        classes=classes,
        penalty_form="sum",
        strength=1.0 / float(estimator.C),
        intercept_weight=1.0 / float(estimator.intercept_scaling) ** 2,
        device=device,
        dtype=dtype,
    )


def _alpha(estimator):
    alpha = np.asarray(estimator.alpha, dtype=float)
    if alpha.size != 1:
        raise _unsupported(estimator, "one alpha per target")
    if getattr(estimator, "positive", False):
        raise _unsupported(estimator, "positive=True")
    return float(alpha.reshape(-1)[0])


@register_adapter(RidgeClassifier, "RidgeClassifier")
def _ridge_classifier(estimator, *, device, dtype):
    _check_no_class_weight(estimator)
    alpha = _alpha(estimator)
    classes = estimator.classes_
    # ||y - Xw||^2 + alpha ||w||^2 is twice sum 0.5 (y - h)^2 + alpha * 0.5 ||w||^2
    return _linear_objective(
        estimator,
        loss=_margin_loss("squared", classes),
        classes=classes,
        penalty_form="sum" if alpha > 0 else None,
        strength=alpha,
        device=device,
        dtype=dtype,
    )


@register_adapter(Ridge, "Ridge")
def _ridge(estimator, *, device, dtype):
    alpha = _alpha(estimator)
    return _linear_objective(
        estimator,
        loss=SquaredLoss(),
        penalty_form="sum" if alpha > 0 else None,
        strength=alpha,
        device=device,
        dtype=dtype,
    )


@register_adapter(LinearRegression, "LinearRegression")
def _linear_regression(estimator, *, device, dtype):
    if getattr(estimator, "positive", False):
        raise _unsupported(estimator, "positive=True")
    return _linear_objective(estimator, loss=SquaredLoss(), device=device, dtype=dtype)
