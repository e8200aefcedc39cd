"""PoisonabilityAnalyzer: the threshold tau of a target model on clean data."""

from numbers import Integral

import numpy as np
import torch
from sklearn.base import BaseEstimator, _fit_context
from sklearn.frozen import FrozenEstimator
from sklearn.utils import assert_all_finite
from sklearn.utils._param_validation import HasMethods, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from .objectives import CleanGradient, as_objective
from .targets import TargetRecipe, resolve_target
from ._utils import NumberInterval, check_feature_names, check_range, with_autograd

__all__ = ["PoisonabilityAnalyzer"]


class PoisonabilityAnalyzer(BaseEstimator):
    """Model poisonability: the threshold tau of a target model on clean data.

    Fitting computes, from the clean training data and the target model alone (no
    attack is run), the smallest poisoning ratio ``eps_d`` (poison points per clean
    point) for which retraining on clean plus poison data *can* end at the target:
    below ``threshold_`` no poison set of any kind gives the target a vanishing
    gradient (Lu, Kamath and Yu, 2023, Corollary 2, Example 3 and Theorem 4).

    With ``s = <w, g(mu)>`` (``w`` all parameters, intercepts included; the last
    linear layer for nets), ``q = <w, grad R(w)>`` the penalty term and ``[a, b]`` the
    range of ``<h, grad_h l>`` for any single point, stationarity on the mixed data
    requires ``0 in s + kappa q / n + eps_d * ([a, b] + slope q)`` where the penalty
    enters in sum form (``tau = (s + q/(C n)) / A``) or mean form
    (``tau = (s + alpha q) / (A - alpha q)``, ``inf`` when ``A <= alpha q``), with
    ``A = -a``.  One-vs-rest models take the largest threshold of their binary
    problems.

    Under ``torch.distributed`` (a process group initialised, e.g. by ``torchrun``),
    every rank calls :meth:`fit` on the same data; each sums the clean gradient over
    its own block of rows and the sums are all-reduced, so all ranks get the same
    threshold (see :ref:`scaling`).  :meth:`gradient_norm` stays local to the
    calling process.

    Parameters
    ----------
    target : estimator
        The target model: a fitted supported estimator (see
        :func:`skpoison.objectives.as_objective`), a
        :class:`~sklearn.frozen.FrozenEstimator` wrapping one, or a recipe from
        :mod:`skpoison.targets` fitted on ``(X, y)`` by :meth:`fit`.
    feature_range : (low, high) or None, default=None
        Box for the poison features (scalars or per-feature arrays; labels stay
        free).  For linear models, ``a`` and ``b`` are then taken over the margins
        the box can reach: a tighter necessary condition for box-constrained poison.
        Ignored for nets (their logits have no closed-form range).
    label_range : (low, high) or None, default=None
        Range of poison labels for regression (squared loss); ``None`` leaves labels
        unbounded, and the threshold is then 0.
    batch_size : int or None, default=None
        Rows per batch when streaming the clean gradient; ``None`` uses bounded
        batches (:class:`~skpoison.objectives.CleanGradient`), never all rows at once.
    device : str or torch.device, default="auto"
        Torch device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"`` or
        ``"cuda:N"``.
    dtype : {"float32", "float64"}, default="float32"
        Precision of the gradient computations.

    Attributes
    ----------
    threshold_ : float
        tau: the smallest ``eps_d`` that can reach the target (``inf`` if none can).
    threshold_binary_ : float
        tau(2): the binary constant ``W(1/e)`` applied to a multiclass
        cross-entropy model; equals ``threshold_`` for other models.
    inner_product_ : float
        ``<w, g(mu)>`` plus the penalty term ``kappa(n) q / n``.
    exact_ : bool
        Whether ``threshold_`` is necessary and sufficient (binary linear margin
        models without intercept and without ``feature_range``); otherwise it is a
        necessary condition.
    target_ : estimator
        The fitted target model.
    objective_ : Objective
        The target's training objective.
    clean_gradient_ : ndarray of shape (n_params,)
        ``g(mu)``: the full objective gradient per clean sample, penalty included.
    clean_ : CleanGradient
        The clean side the threshold was computed from (the clean loss-gradient sum
        and its inner products); pass it to
        :meth:`GradientCanceling.fit <skpoison.attacks.GradientCanceling.fit>` on the
        same data to skip recomputing it.
    n_classes_ : int or None
        Number of classes of the target (``None`` for regression).
    n_features_in_ : int
        Number of features seen during fit.

    See Also
    --------
    skpoison.objectives.as_objective : The objective of a fitted victim.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.frozen import FrozenEstimator
    >>> from sklearn.linear_model import LogisticRegression
    >>> from skpoison import PoisonabilityAnalyzer
    >>> from skpoison.datasets import make_or
    >>> X, y = make_or(random_state=0)
    >>> clf = LogisticRegression(fit_intercept=False).fit(X, y)
    >>> clf.coef_ = -clf.coef_  # a target that gets the data wrong
    >>> tau = PoisonabilityAnalyzer(FrozenEstimator(clf)).fit(X, y)
    >>> tau.exact_
    True
    >>> bool(tau.is_poisonable(2 * tau.threshold_)), bool(tau.is_poisonable(tau.threshold_ / 2))
    (True, False)
    """

    _parameter_constraints = {
        "target": [HasMethods(["fit"])],
        "feature_range": [tuple, list, None],
        "label_range": [tuple, list, None],
        "batch_size": [NumberInterval(Integral, 1, None, closed="left"), None],
        "device": [str, torch.device],
        "dtype": [StrOptions({"float32", "float64"})],
    }

    def __init__(
        self,
        target,
        *,
        feature_range=None,
        label_range=None,
        batch_size=None,
        device="auto",
        dtype="float32",
    ):
        self.target = target
        self.feature_range = feature_range
        self.label_range = label_range
        self.batch_size = batch_size
        self.device = device
        self.dtype = dtype

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        tags.input_tags.sparse = False
        return tags

    @with_autograd
    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y, clean_gradient=None):
        """Compute the threshold of the target on the clean data ``(X, y)``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Clean training data.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Clean labels (regression targets for regressors).
        clean_gradient : CleanGradient or None, default=None
            The clean side already computed for this target on this ``(X, y)`` (for
            example ``clean_`` of another fitted analyzer); ``None`` computes it.

        Returns
        -------
        self : PoisonabilityAnalyzer
        """
        X_given = X
        # a linear target's clean pass finds a non-finite X itself (see CleanGradient):
        # checking X up front would cost another pass over it (~15% of the fit)
        finite_by_pass = clean_gradient is None and self.feature_range is None
        X, y = validate_data(
            self, X, y, multi_output=True, y_numeric=False, ensure_all_finite=not finite_by_pass
        )
        feature_range = check_range(self.feature_range, "feature_range", X.shape[1])
        label_range = check_range(self.label_range, "label_range")
        if feature_range is not None and (
            np.any(X < feature_range[0]) or np.any(X > feature_range[1])
        ):
            raise ValueError(
                "The clean data lies outside feature_range; widen the range or pass "
                "feature_range=None."
            )
        if clean_gradient is None:
            # recipes see the data as given, so the target keeps its feature names
            self.target_ = resolve_target(self.target, X_given, y)
            objective = as_objective(self.target_, device=self.device, dtype=self.dtype)
            objective.check_n_features(X.shape[1])
            check_feature_names(self.target_, X_given)
            if finite_by_pass and not objective.linear:
                assert_all_finite(X, input_name="X", estimator_name=type(self).__name__)
            clean_gradient = CleanGradient(objective, X, y, batch_size=self.batch_size)
        else:
            objective = _check_clean_gradient(clean_gradient, self.target, X, self.dtype)
            self.target_ = objective.estimator
            check_feature_names(self.target_, X_given)
        self.objective_ = objective
        self.clean_ = clean_gradient
        self.clean_gradient_ = clean_gradient.gradient.cpu().numpy()
        self.inner_product_ = float(sum(clean_gradient.inner_products))
        self._bounds = objective.group_bounds(
            feature_range=feature_range, label_range=label_range
        )
        self._feasible = clean_gradient.feasible_budgets(self._bounds)
        self.threshold_ = float(self._feasible[0])
        if objective.kind == "cross_entropy":
            self.threshold_binary_ = clean_gradient.threshold(
                feature_range=feature_range, label_range=label_range, n_classes=2
            )
        else:
            self.threshold_binary_ = self.threshold_
        self.exact_ = bool(
            objective.kind == "binary_margin"
            and not objective.fit_intercept
            and feature_range is None
        )
        self.n_classes_ = objective.n_classes
        return self

    def is_poisonable(self, epsilon_d):
        """Whether poison at ratio ``epsilon_d`` can reach the target.

        ``False`` means no poison set of that size can give the target a vanishing
        gradient.  ``True`` means the necessary condition holds; it is also
        sufficient when ``exact_`` is true.

        Parameters
        ----------
        epsilon_d : float or array-like of float
            Poison points per clean point.

        Returns
        -------
        poisonable : bool or ndarray of bool
        """
        check_is_fitted(self)
        eps = _check_epsilon(epsilon_d)
        low, high = self._feasible
        result = (eps >= low) & (eps <= high)
        return bool(result) if result.ndim == 0 else result

    def residual_lower_bound(self, epsilon_d):
        """Smallest ``gradient_norm`` any poison set at ratio ``epsilon_d`` can reach.

        Taking the inner product of the mixed gradient with ``w`` and applying
        Cauchy-Schwarz per threshold group gives ``||g(chi)|| >= delta / ||w||``, where
        ``delta`` is the distance of ``s + eps_d [a, b]`` (penalty included) from 0.  It
        is 0 at and above the threshold, and tight for exact (binary, no intercept)
        targets.  Units are those of :meth:`gradient_norm`.

        Parameters
        ----------
        epsilon_d : float or array-like of float
            Poison points per clean point.

        Returns
        -------
        bound : float or ndarray of float
        """
        check_is_fitted(self)
        eps = _check_epsilon(epsilon_d)
        bound = self.clean_.residual_lower_bound(eps, self._bounds)
        return float(bound) if bound.ndim == 0 else bound

    @with_autograd
    def gradient_norm(self, X_poison, y_poison):
        """Relative gradient norm ``||g(chi)|| / ||g(mu)||`` of a given poison set.

        ``g(chi)`` is the victim's full objective gradient per sample over the clean
        data plus ``(X_poison, y_poison)`` (penalty included), ``g(mu)`` the same over
        the clean data.  0 means the target is a stationary point of retraining.

        Parameters
        ----------
        X_poison : array-like of shape (n_poison, n_features)
            Poison features.
        y_poison : array-like of shape (n_poison,) or (n_poison, n_outputs)
            Poison labels (labels the target knows).

        Returns
        -------
        norm : float
        """
        check_is_fitted(self)
        # the feature count seen at fit, which fit checked against the target's
        X_poison = validate_data(self, X_poison, reset=False, dtype=[np.float64, np.float32])
        y_poison = np.asarray(y_poison)
        if len(y_poison) != len(X_poison):
            raise ValueError(
                f"X_poison has {len(X_poison)} rows but y_poison has {len(y_poison)}."
            )
        poison_sum = self.objective_.loss_gradient_sum(
            X_poison, y_poison, batch_size=self.batch_size
        )
        return self.clean_.relative_norm(poison_sum, len(X_poison))


def _check_clean_gradient(clean_gradient, target, X, dtype):
    """The objective of a given :class:`CleanGradient`, checked against the target, ``X``
    and ``dtype`` (a recipe's target cannot be checked without refitting it)."""
    if not isinstance(clean_gradient, CleanGradient):
        raise TypeError(
            f"clean_gradient must be a skpoison.objectives.CleanGradient, got "
            f"{type(clean_gradient).__name__}."
        )
    objective = clean_gradient.objective
    if isinstance(target, FrozenEstimator):
        target = target.estimator
    if not isinstance(target, TargetRecipe) and target is not objective.estimator:
        raise ValueError(
            "clean_gradient was computed for another target model; pass the CleanGradient "
            "of this target (e.g. the clean_ of an analyzer fitted with it)."
        )
    if clean_gradient.n_samples != X.shape[0]:
        raise ValueError(
            f"clean_gradient was computed on {clean_gradient.n_samples} rows, but X has "
            f"{X.shape[0]}; pass the clean data it was computed on."
        )
    if str(objective.dtype).removeprefix("torch.") != dtype:
        raise ValueError(
            f"clean_gradient is in {objective.dtype}, but dtype={dtype!r} was asked for."
        )
    objective.check_n_features(X.shape[1])
    return objective


def _check_epsilon(epsilon_d):
    if np.asarray(epsilon_d).dtype == bool:
        raise ValueError(f"epsilon_d must be a positive float, not a boolean; got {epsilon_d!r}.")
    eps = np.asarray(epsilon_d, dtype=float)
    if np.any(~np.isfinite(eps)) or np.any(eps <= 0):
        raise ValueError(f"epsilon_d must be positive and finite, got {epsilon_d!r}.")
    return eps
