"""ScaledTarget: the same decisions with a less confident model."""

from numbers import Real

import torch

from sklearn.base import _fit_context
from sklearn.utils._param_validation import HasMethods
from sklearn.utils.validation import validate_data

from ..objectives import as_objective
from .._utils import NumberInterval, with_autograd
from ._base import TargetRecipe, fit_source_estimator

__all__ = ["ScaledTarget"]


class ScaledTarget(TargetRecipe):
    """Scale a model's output layer: same predictions, lower threshold.

    Multiplies the parameters of the output layer (all parameters of a linear model,
    intercepts included; the last linear layer of a net) by ``scale``.  For linear
    models and nets the logits scale by ``scale`` and so the predicted classes do not
    change, while the threshold tau shrinks: less confident targets are easier to
    poison (paper, appendix C.8).

    Parameters
    ----------
    estimator : estimator
        The model to scale: an unfitted estimator (cloned and fitted on the data), a
        :class:`~sklearn.frozen.FrozenEstimator` of a fitted one, or another recipe.
    scale : float, default=0.5
        Positive factor applied to the output-layer parameters.

    Attributes
    ----------
    target_ : estimator
        The scaled model (a fitted copy; the source is never modified).
    estimator_ : estimator
        The model before scaling.
    classes_ : ndarray
        Class labels of the target (classifiers only).
    n_features_in_ : int
        Number of features seen during fit.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> from skpoison.datasets import make_gaussian
    >>> from skpoison.targets import ScaledTarget
    >>> X, y = make_gaussian(random_state=0)
    >>> half = ScaledTarget(LogisticRegression(), scale=0.5).fit(X, y)
    >>> bool(np.allclose(half.target_.coef_, 0.5 * half.estimator_.coef_))
    True
    >>> bool((half.predict(X) == half.estimator_.predict(X)).all())
    True
    """

    _parameter_constraints = {
        "estimator": [HasMethods(["fit"])],
        "scale": [NumberInterval(Real, 0, None, closed="neither")],
    }

    def __init__(self, estimator, *, scale=0.5):
        self.estimator = estimator
        self.scale = scale

    @with_autograd
    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y):
        """Fit (or take) the source model and scale its output layer.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Targets.

        Returns
        -------
        self : ScaledTarget
        """
        X_given = X
        X, y = validate_data(self, X, y, multi_output=True)
        source = fit_source_estimator(self.estimator, X_given, y)
        objective = as_objective(source, device="cpu", dtype="float64")
        flat = objective.flat_params().clone()
        # the output layer: every threshold group (all parameters of a linear model)
        flat[torch.cat(objective.groups)] *= self.scale
        self._set_fitted_attributes(objective.to_estimator(flat), source)
        return self
