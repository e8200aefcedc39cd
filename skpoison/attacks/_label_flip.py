"""Label flipping: the classic poisoning baseline as an imbalanced-learn sampler."""

import numpy as np
import torch
from sklearn.base import _fit_context, clone
from sklearn.frozen import FrozenEstimator
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import HasMethods, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import validate_data

from ..objectives import as_objective
from ..targets import TargetRecipe
from .._utils import flip_labels, with_autograd
from ._base import COMMON_CONSTRAINTS, PoisonSampler, fit_analyzer, n_poison_points

__all__ = ["LabelFlipAttack"]


class LabelFlipAttack(PoisonSampler):
    """Poison made of copies of clean points with flipped labels.

    Adds ``n_poison = round(epsilon_d * n)`` copies of clean rows, each with a label
    other than its own.  ``strategy="random"`` draws the rows at random (with
    replacement only when ``n_poison > n``) and gives each a uniformly drawn other
    class; it is the rule of :class:`skpoison.targets.LabelFlipTarget`, so with
    ``epsilon_d`` equal to its ``flip_fraction`` and the same seed the poison is
    exactly the rows that target flips, with the same labels.
    ``strategy="adversarial"`` fits ``estimator`` on the clean data, gives each row
    the other class under which the clean model's loss is largest (for binary
    problems, the other class) and copies the rows of largest such loss (ties broken
    by the seed; past ``n`` rows the ranking repeats).

    The poison rows are clean feature vectors, so they lie in any box that holds the
    clean data: no projection is needed.

    Parameters
    ----------
    estimator : estimator
        The victim classifier, unfitted (any model :func:`skpoison.objectives.as_objective`
        supports).  Only ``strategy="adversarial"`` fits it (on the clean data).
    epsilon_d : float, default=0.1
        Poison points per clean point.
    strategy : {"random", "adversarial"}, default="random"
        How rows and labels are chosen (see above).
    target : estimator or None, default=None
        Optional target model (fitted, frozen or a recipe) against which
        ``gradient_norm_`` and ``threshold_`` are reported, so that label flipping
        can be compared with the target-based attacks in the same units.
    random_state : int, RandomState instance or None, default=None
        Seed of the rows and labels.
    device : str, default="auto"
        Torch device of the loss computations; ``"auto"`` picks CUDA when available.
    dtype : {"float32", "float64"}, default="float32"
        Precision of the loss computations.

    Attributes
    ----------
    X_poison_ : ndarray of shape (n_poison, n_features)
        The copied clean features.
    y_poison_ : ndarray of shape (n_poison,)
        Their flipped labels.
    flip_indices_ : ndarray of shape (n_poison,)
        Rows of the clean data that were copied (sorted).
    n_poison_ : int
        Number of poison points.
    sampling_strategy_ : dict
        Poison points added per class label.
    estimator_ : estimator or None
        The victim fitted on the clean data (``strategy="adversarial"`` only).
    analyzer_ : PoisonabilityAnalyzer or None
        The analyzer of ``target`` on the clean data, when a target is given.
    threshold_ : float
        tau of ``target`` (``nan`` without a target).
    gradient_norm_ : float
        Relative gradient norm of the poison at ``target``, in the units of
        :meth:`~skpoison.PoisonabilityAnalyzer.gradient_norm` (``nan`` without a target).
    history_ : ndarray of shape (1,)
        ``[gradient_norm_]``: the attack is one step.
    n_iter_ : int
        1.
    n_features_in_ : int
        Number of features seen during fit.

    See Also
    --------
    skpoison.targets.LabelFlipTarget : The model a victim learns from flipped labels.
    skpoison.attacks.GradientCanceling : Poison that makes a chosen target stationary.

    References
    ----------
    .. [1] Biggio, Nelson and Laskov, "Support vector machines under adversarial label
       noise", ACML 2011.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> from skpoison.attacks import LabelFlipAttack
    >>> from skpoison.datasets import make_gaussian
    >>> X, y = make_gaussian(n_samples=200, random_state=0)
    >>> flip = LabelFlipAttack(LogisticRegression(), epsilon_d=0.25, random_state=0)
    >>> X_mixed, y_mixed = flip.fit_resample(X, y)
    >>> X_mixed.shape, flip.n_poison_
    ((250, 10), 50)
    >>> bool(np.all(flip.y_poison_ != y[flip.flip_indices_]))
    True
    """

    _parameter_constraints = {
        **COMMON_CONSTRAINTS,
        "estimator": [HasMethods(["fit"])],
        "strategy": [StrOptions({"random", "adversarial"})],
        "target": [HasMethods(["fit"]), None],
    }

    def __init__(
        self,
        estimator,
        *,
        epsilon_d=0.1,
        strategy="random",
        target=None,
        random_state=None,
        device="auto",
        dtype="float32",
    ):
        self.estimator = estimator
        self.epsilon_d = epsilon_d
        self.strategy = strategy
        self.target = target
        self.random_state = random_state
        self.device = device
        self.dtype = dtype

    def _clean_losses(self, X, y, classes):
        """Loss of the clean model at every row under every class, shape (n, c)."""
        if isinstance(self.estimator, (FrozenEstimator, TargetRecipe)):
            raise ValueError(
                "LabelFlipAttack(strategy='adversarial') fits its estimator on the clean "
                f"data; pass an unfitted classifier, not {type(self.estimator).__name__}."
            )
        self.estimator_ = clone(self.estimator).fit(X, y)
        objective = as_objective(self.estimator_, device=self.device, dtype=self.dtype)
        with torch.no_grad():
            columns = [
                objective.sample_losses(X, np.full(len(y), label)).cpu().numpy()
                for label in classes
            ]
        return np.stack(columns, axis=1)

    @with_autograd
    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y):
        """Choose the rows to copy and their flipped labels.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Clean training data.
        y : array-like of shape (n_samples,)
            Clean class labels.

        Returns
        -------
        self : LabelFlipAttack
        """
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32])
        check_classification_targets(y)
        classes = np.unique(y)
        if len(classes) < 2:
            raise ValueError(
                f"y holds 1 class ({classes[0]!r}) in {len(y)} samples; LabelFlipAttack "
                "needs at least two classes to flip labels."
            )
        n_poison = n_poison_points(self.epsilon_d, len(X))
        rng = check_random_state(self.random_state)
        self.estimator_ = None
        losses = None
        if self.strategy == "adversarial":
            losses = self._clean_losses(X, y, classes)
        rows, labels = flip_labels(y, n_poison, rng, classes=classes, losses=losses)
        self.flip_indices_ = rows
        self._set_poison(X[rows], labels)
        self.analyzer_ = None
        self.threshold_ = self.gradient_norm_ = float("nan")
        if self.target is not None:
            self.analyzer_ = fit_analyzer(
                self.target, X, y, None, device=self.device, dtype=self.dtype
            )
            self.threshold_ = self.analyzer_.threshold_
            self.gradient_norm_ = self.analyzer_.gradient_norm(self.X_poison_, self.y_poison_)
        self.history_ = np.array([self.gradient_norm_])
        self.n_iter_ = 1
        return self
