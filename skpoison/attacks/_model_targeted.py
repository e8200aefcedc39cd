"""The Model-Targeted attack (Suya et al., ICML 2021) as an imbalanced-learn sampler."""

from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import _fit_context, clone
from sklearn.frozen import FrozenEstimator
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import HasMethods
from tqdm.auto import tqdm

from ..objectives import as_objective
from ..targets import TargetRecipe
from .._utils import NumberInterval, with_autograd
from ._base import BOX_CONSTRAINTS, COMMON_CONSTRAINTS, PoisonSampler, fit_analyzer

__all__ = ["ModelTargetedAttack"]


class ModelTargetedAttack(PoisonSampler):
    """Model-Targeted attack: online poison that drives retraining towards a target.

    Starting from no poison, each step (Suya et al. 2021, Algorithm 1)

    1. retrains the victim on the clean data plus the poison so far, giving ``w_t``;
    2. stops when ``||w_t - w||`` (all parameters, intercepts included) is at or
       below ``distance_tol``, or when ``round(epsilon_d * n)`` points were added;
    3. adds the feasible point of largest loss difference
       ``l(z; w_t) - l(z; w)`` between the current and the target model, found by
       projected gradient ascent (Adam) from ``n_starts`` clean points drawn with the
       seed, each tried with every class label.

    The loss difference is unbounded over unbounded feature sets, so the points are
    kept in a box: ``feature_range``, ``clip="data"``, or by default the clean data's
    per-feature range.  Retraining each step is what makes the attack expensive; for
    linear victims it is fast because the victim is refitted *warm-started* from the
    previous step's parameters (``warm_start=True`` is set when the victim has that
    parameter, as :class:`~sklearn.linear_model.LogisticRegression` and
    :class:`~sklearn.linear_model.SGDClassifier` do), and one point changes the
    optimum little.

    Parameters
    ----------
    target : estimator
        Target classifier: a recipe from :mod:`skpoison.targets`, a
        :class:`~sklearn.frozen.FrozenEstimator` of a fitted model, or a fitted model.
    victim : estimator
        Unfitted classifier the defender trains (same model family as the target).
    epsilon_d : float, default=0.1
        Largest number of poison points per clean point.
    distance_tol : float, default=0.0
        Stop once the retrained model is within this Euclidean distance of the target.
    n_starts : int, default=5
        Clean points the point search starts from (each with every label).
    search_iter : int, default=30
        Adam steps of the point search.
    search_lr : float, default=0.05
        Adam step size of the point search, in units of the mean box width.
    feature_range : (low, high) or None, default=None
        Box for the poison features (scalars or per-feature arrays).
    clip : {"data"} or None, default=None
        ``"data"`` clips poison to the clean data's per-feature range; combined with
        ``feature_range`` the intersection is used.
    random_state : int, RandomState instance or None, default=None
        Seed of the search starts.
    device : str, default="auto"
        Torch device; ``"auto"`` picks CUDA when available.
    dtype : {"float32", "float64"}, default="float32"
        Precision of the loss computations.
    verbose : int, default=0
        Show a progress bar with the model distance when positive.

    Attributes
    ----------
    X_poison_ : ndarray of shape (n_poison, n_features)
        The poison points, in the order they were added.
    y_poison_ : ndarray of shape (n_poison,)
        Their labels.
    n_poison_ : int
        Number of poison points (fewer than the budget when ``distance_tol`` stopped it).
    sampling_strategy_ : dict
        Poison points added per class label.
    estimator_ : estimator
        The victim retrained on clean data plus all the poison.
    target_ : estimator
        The fitted target model.
    analyzer_ : PoisonabilityAnalyzer
        The analyzer of the target on the clean data, for poison in the box.
    threshold_ : float
        tau of the target for poison in the box.
    history_ : ndarray of shape (n_poison_ + 1,)
        ``||w_t - w||`` of the victim retrained after ``t`` poison points.
    distance_ : float
        ``history_[-1]``.
    gradient_norm_ : float
        Relative gradient norm of the poison at the target, in the units of
        :meth:`~skpoison.PoisonabilityAnalyzer.gradient_norm` (1.0 when no point was added).
    n_iter_ : int
        Points added.
    converged_ : bool
        Whether ``distance_tol`` was reached.
    n_features_in_ : int
        Number of features seen during fit.

    See Also
    --------
    skpoison.attacks.GradientCanceling : Poison that makes the target stationary at once.
    skpoison.attacks.KKTAttack : The target's KKT condition with a few distinct points.

    References
    ----------
    .. [1] Suya, Mahloujifar, Suri, Evans and Tian, "Model-targeted poisoning attacks
       with provable convergence", ICML 2021.

    Examples
    --------
    >>> import copy
    >>> from sklearn.frozen import FrozenEstimator
    >>> from sklearn.linear_model import LogisticRegression
    >>> from skpoison.attacks import ModelTargetedAttack
    >>> from skpoison.datasets import make_gaussian
    >>> X, y = make_gaussian(n_samples=100, n_features=5, random_state=0)
    >>> target = LogisticRegression().fit(X, y)
    >>> target.coef_ = -0.2 * target.coef_
    >>> mta = ModelTargetedAttack(
    ...     FrozenEstimator(target), LogisticRegression(), epsilon_d=0.3, random_state=0
    ... )
    >>> X_mixed, y_mixed = mta.fit_resample(X, y)
    >>> X_mixed.shape, mta.n_iter_
    ((130, 5), 30)
    >>> bool(mta.history_[-1] < 0.5 * mta.history_[0])
    True
    """

    _parameter_constraints = {
        **COMMON_CONSTRAINTS,
        **BOX_CONSTRAINTS,
        "target": [HasMethods(["fit"])],
        "victim": [HasMethods(["fit"])],
        "distance_tol": [NumberInterval(Real, 0, None, closed="left")],
        "n_starts": [NumberInterval(Integral, 1, None, closed="left")],
        "search_iter": [NumberInterval(Integral, 0, None, closed="left")],
        "search_lr": [NumberInterval(Real, 0, None, closed="neither")],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        target,
        victim,
        *,
        epsilon_d=0.1,
        distance_tol=0.0,
        n_starts=5,
        search_iter=30,
        search_lr=0.05,
        feature_range=None,
        clip=None,
        random_state=None,
        device="auto",
        dtype="float32",
        verbose=0,
    ):
        self.target = target
        self.victim = victim
        self.epsilon_d = epsilon_d
        self.distance_tol = distance_tol
        self.n_starts = n_starts
        self.search_iter = search_iter
        self.search_lr = search_lr
        self.feature_range = feature_range
        self.clip = clip
        self.random_state = random_state
        self.device = device
        self.dtype = dtype
        self.verbose = verbose

    def _victim(self):
        if isinstance(self.victim, (FrozenEstimator, TargetRecipe)):
            raise ValueError(
                "ModelTargetedAttack retrains its victim on clean plus poison data; pass "
                f"an unfitted classifier as victim, not {type(self.victim).__name__}."
            )
        victim = clone(self.victim)
        if "warm_start" in victim.get_params():
            victim.set_params(warm_start=True)
        return victim

    def _worst_point(self, current, target, X, classes, box, rng):
        """Approximate ``argmax_z l(z; w_t) - l(z; w)`` over the box and the labels."""
        rows = rng.choice(len(X), size=self.n_starts, replace=self.n_starts > len(X))
        labels = np.tile(classes, self.n_starts)
        Z = target.as_features(np.repeat(X[rows], len(classes), axis=0))
        Z = Z.clone().requires_grad_(True)
        low, high = (target.as_features(b) for b in box)
        width = float((high - low).mean()) or 1.0
        optimizer = torch.optim.Adam([Z], lr=self.search_lr * width, maximize=True)

        def gaps(points):
            return current.sample_losses(points, labels) - target.sample_losses(points, labels)

        for _ in range(self.search_iter):
            optimizer.zero_grad()
            gaps(Z).sum().backward()
            optimizer.step()
            with torch.no_grad():
                Z.copy_(torch.maximum(torch.minimum(Z, high), low))
        with torch.no_grad():
            best = int(torch.argmax(gaps(Z)))
        return Z[best].detach().cpu().numpy().astype(np.float64), labels[best]

    @with_autograd
    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y):
        """Add poison points one at a time, retraining the victim after each.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Clean training data.
        y : array-like of shape (n_samples,)
            Clean labels.

        Returns
        -------
        self : ModelTargetedAttack
        """
        # the loss difference is unbounded: without a box, keep to the data's range
        X, y, budget, box = self._validate_classifier_data(X, y, bounded=True)
        rng = check_random_state(self.random_state)
        analyzer = fit_analyzer(self.target, X, y, box, device=self.device, dtype=self.dtype)
        target = analyzer.objective_
        self.analyzer_, self.target_ = analyzer, analyzer.target_
        self.threshold_ = analyzer.threshold_
        if not np.array_equal(np.unique(y), np.sort(target.classes)):
            raise ValueError(
                f"The target's classes {target.classes.tolist()} differ from the labels "
                f"of y {np.unique(y).tolist()}; build the target on the same classes."
            )
        w_target = target.flat_params()

        victim = self._victim()
        X_poison, y_poison, history = [], [], []
        converged = False
        progress = tqdm(range(budget + 1), disable=not self.verbose, desc="MTA", leave=False)
        for step in progress:
            if X_poison:
                X_train = np.vstack([X, np.asarray(X_poison)])
                y_train = np.concatenate([y, np.asarray(y_poison)])
            else:
                X_train, y_train = X, y
            victim.fit(X_train, y_train)
            current = as_objective(victim, device=self.device, dtype=self.dtype)
            w_current = current.flat_params()
            if w_current.shape != w_target.shape:
                raise ValueError(
                    f"The victim {type(victim).__name__} has {w_current.numel()} "
                    f"parameters but the target has {w_target.numel()}; use the target's "
                    "model family (and fit_intercept) as victim."
                )
            distance = float(torch.linalg.vector_norm(w_current - w_target))
            history.append(distance)
            if self.verbose:
                progress.set_postfix(distance=f"{distance:.3e}")
            if distance <= self.distance_tol:
                converged = True
                break
            if step == budget:
                break
            point, label = self._worst_point(current, target, X, target.classes, box, rng)
            X_poison.append(point)
            y_poison.append(label)
        progress.close()
        n_features = X.shape[1]
        self._set_poison(
            np.asarray(X_poison, dtype=np.float64).reshape(-1, n_features),
            np.asarray(y_poison, dtype=y.dtype),
        )
        self.estimator_ = victim
        self.history_ = np.asarray(history, dtype=float)
        self.distance_ = float(self.history_[-1])
        self.gradient_norm_ = (
            analyzer.gradient_norm(self.X_poison_, self.y_poison_) if X_poison else 1.0
        )
        self.n_iter_ = len(X_poison)
        self.converged_ = bool(converged)
        return self
