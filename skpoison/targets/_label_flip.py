"""LabelFlipTarget: the model a victim would learn from label-flipped data."""

from numbers import Real

import numpy as np
from sklearn.base import _fit_context, clone
from sklearn.frozen import FrozenEstimator
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import HasMethods
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import validate_data

from .._utils import NumberInterval, flip_labels, with_autograd
from ._base import TargetRecipe

__all__ = ["LabelFlipTarget"]


class LabelFlipTarget(TargetRecipe):
    """Target model fitted on data whose labels were partly flipped.

    A random ``flip_fraction`` of the training labels is replaced by a different class
    (the other class for binary problems, a uniformly drawn other class otherwise),
    and a clone of ``estimator`` is fitted on the result.  The flip rule is that of
    :class:`skpoison.attacks.LabelFlipAttack` with ``strategy="random"``: with
    ``epsilon_d=flip_fraction`` and the same seed, the attack adds copies of exactly
    the rows flipped here, with the same new labels.  This is how the KKT and
    model-targeted attacks choose their targets (paper, appendix C.6).

    Parameters
    ----------
    estimator : estimator
        Unfitted classifier to fit on the flipped data.
    flip_fraction : float, default=0.3
        Fraction of training labels to flip, in (0, 1].
    random_state : int, RandomState instance or None, default=None
        Seed of the choice of flipped rows and of their new labels.

    Attributes
    ----------
    target_ : estimator
        The classifier fitted on the flipped labels.
    estimator_ : estimator
        Same as ``target_``.
    flipped_indices_ : ndarray of shape (n_flipped,)
        Rows whose labels were flipped.
    classes_ : ndarray
        Class labels.
    n_features_in_ : int
        Number of features seen during fit.

    Examples
    --------
    >>> from sklearn.linear_model import LogisticRegression
    >>> from skpoison.datasets import make_gaussian
    >>> from skpoison.targets import LabelFlipTarget
    >>> X, y = make_gaussian(random_state=0)
    >>> flip = LabelFlipTarget(LogisticRegression(), flip_fraction=1.0).fit(X, y)
    >>> flip.score(X, y) < 0.2
    True
    """

    _parameter_constraints = {
        "estimator": [HasMethods(["fit"])],
        "flip_fraction": [NumberInterval(Real, 0, 1, closed="right")],
        "random_state": ["random_state"],
    }

    def __init__(self, estimator, *, flip_fraction=0.3, random_state=None):
        self.estimator = estimator
        self.flip_fraction = flip_fraction
        self.random_state = random_state

    @with_autograd
    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y):
        """Flip a fraction of the labels and fit the estimator on the result.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data.
        y : array-like of shape (n_samples,)
            Class labels.

        Returns
        -------
        self : LabelFlipTarget
        """
        if isinstance(self.estimator, (FrozenEstimator, TargetRecipe)):
            raise ValueError(
                "LabelFlipTarget fits its estimator on flipped labels; pass an unfitted "
                f"classifier, not {type(self.estimator).__name__}."
            )
        X_given = X
        X, y = validate_data(self, X, y)
        check_classification_targets(y)
        classes = np.unique(y)
        if len(classes) < 2:
            raise ValueError(
                f"y holds 1 class ({classes[0]!r}) in {len(y)} samples; LabelFlipTarget "
                "needs at least two classes to flip labels."
            )
        rng = check_random_state(self.random_state)
        n_flip = int(round(self.flip_fraction * len(y)))
        flipped, labels = flip_labels(y, n_flip, rng, classes=classes)
        y_flipped = y.copy()
        y_flipped[flipped] = labels
        target = clone(self.estimator).fit(X_given, y_flipped)  # keeps feature names
        self.flipped_indices_ = flipped
        self._set_fitted_attributes(target, target)
        return self
