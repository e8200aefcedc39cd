"""The KKT attack (Koh, Steinhardt and Liang 2022) as an imbalanced-learn sampler."""

import math
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import _fit_context
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import HasMethods
from sklearn.utils.validation import check_is_fitted
from tqdm.auto import tqdm

from .._utils import NumberInterval, with_autograd
from ._base import (
    BATCH_CONSTRAINT,
    BOX_CONSTRAINTS,
    COMMON_CONSTRAINTS,
    CancelingResidual,
    PoisonSampler,
    fit_analyzer,
)
from ._frank_wolfe import round_weights, simplex_weights

__all__ = ["KKTAttack"]


class KKTAttack(PoisonSampler):
    """KKT attack: a few distinct poison points, repeated, that make the target stationary.

    For a target ``w`` of a linear classifier, the poison is ``n_points_per_class``
    distinct points per class, ``z_k = (x_k, y_k)``, repeated ``c_k`` times with
    ``sum_k c_k = n_poison = round(epsilon_d * n)``, chosen so that ``w`` satisfies
    the victim's KKT stationarity condition on clean plus poison data,
    ``g_hat(mu) + (1/n) sum_k c_k grad_w l(z_k; w) = 0``, with the points in the
    feasible set (``feature_range``, ``clip``) (Koh, Steinhardt and Liang 2022; for
    binary models one point per class, as in the paper).  The residual of that
    condition is minimised in two phases of ``max_iter // 2`` Adam steps on the point
    features (projected onto the box):

    1. the multiplicities are relaxed to fractions on the simplex and re-solved
       exactly (a small non-negative least-squares problem) at every step;
    2. the fractions are rounded to integer counts (largest remainder, deterministic)
       and the points alone are optimised with those counts.

    The best iterate of phase 2 is kept.  Only linear models are supported (binary
    margin losses, one-vs-rest and multinomial logistic regression), as in the paper.

    Parameters
    ----------
    target : estimator
        Target linear classifier: a recipe from :mod:`skpoison.targets`, a
        :class:`~sklearn.frozen.FrozenEstimator` of a fitted model, or a fitted model.
    epsilon_d : float, default=0.1
        Poison points per clean point.
    n_points_per_class : int, default=1
        Distinct poison points per class label.
    max_iter : int, default=600
        Optimisation steps over both phases.
    lr : float, default=0.1
        Adam step size, in units of the clean data's mean per-feature standard
        deviation (cosine-annealed within each phase).
    tol : float, default=1e-6
        Stop phase 2 when the relative gradient norm is at or below ``tol``.
    batch_size : int or None, default=None
        Rows per batch when streaming the clean gradient.
    feature_range : (low, high) or None, default=None
        Box for the poison features (scalars or per-feature arrays).
    clip : {"data"} or None, default=None
        ``"data"`` clips poison to the clean data's per-feature range; combined with
        ``feature_range`` the intersection is used.
    random_state : int, RandomState instance or None, default=None
        Seed of the clean points the distinct points start from.
    device : str, default="auto"
        Torch device; ``"auto"`` picks CUDA when available.
    dtype : {"float32", "float64"}, default="float32"
        Precision of the optimisation.
    verbose : int, default=0
        Show a progress bar with the relative gradient norm when positive.

    Attributes
    ----------
    atoms_ : ndarray of shape (n_atoms, n_features)
        The distinct poison points.
    atom_labels_ : ndarray of shape (n_atoms,)
        Their labels.
    counts_ : ndarray of shape (n_atoms,)
        Their multiplicities (sum ``n_poison_``; 0 for a point not used).
    X_poison_ : ndarray of shape (n_poison, n_features)
        Each distinct point repeated ``counts_`` times.
    y_poison_ : ndarray of shape (n_poison,)
        Its labels.
    n_poison_ : int
        Number of poison points.
    sampling_strategy_ : dict
        Poison points added per class label.
    target_ : estimator
        The fitted target model.
    objective_ : Objective
        The target's training objective.
    analyzer_ : PoisonabilityAnalyzer
        The analyzer of the target on the clean data, for poison in the box.
    threshold_ : float
        tau of the target for poison in the box.
    history_ : ndarray of shape (n_iter_,)
        Relative gradient norm per step (phase 1: the relaxed fractions; phase 2: the
        integer counts), in the units of :meth:`~skpoison.PoisonabilityAnalyzer.gradient_norm`.
    gradient_norm_ : float
        Relative gradient norm of ``X_poison_``.
    n_iter_ : int
        Steps taken.
    converged_ : bool
        Whether ``tol`` was reached.
    n_features_in_ : int
        Number of features seen during fit.

    See Also
    --------
    skpoison.attacks.GradientCanceling : The same condition with ``n_poison`` free points.
    skpoison.attacks.FrankWolfeCanceling : The same condition over poison measures.

    References
    ----------
    .. [1] Koh, Steinhardt and Liang, "Stronger data poisoning attacks break data
       sanitization defenses", Machine Learning 111, 2022.

    Examples
    --------
    >>> import copy
    >>> from sklearn.frozen import FrozenEstimator
    >>> from sklearn.linear_model import LogisticRegression
    >>> from skpoison.attacks import KKTAttack
    >>> from skpoison.datasets import make_gaussian
    >>> X, y = make_gaussian(n_samples=200, n_features=5, random_state=0)
    >>> target = LogisticRegression(fit_intercept=False).fit(X, y)
    >>> target.coef_ = -0.2 * target.coef_
    >>> kkt = KKTAttack(FrozenEstimator(target), epsilon_d=4.0, random_state=0)
    >>> X_mixed, y_mixed = kkt.fit_resample(X, y)
    >>> X_mixed.shape, kkt.atoms_.shape
    ((1000, 5), (2, 5))
    >>> bool(kkt.gradient_norm_ < 0.01)
    True
    """

    _parameter_constraints = {
        **COMMON_CONSTRAINTS,
        **BOX_CONSTRAINTS,
        **BATCH_CONSTRAINT,
        "target": [HasMethods(["fit"])],
        "n_points_per_class": [NumberInterval(Integral, 1, None, closed="left")],
        "max_iter": [NumberInterval(Integral, 2, None, closed="left")],
        "lr": [NumberInterval(Real, 0, None, closed="neither")],
        "tol": [NumberInterval(Real, 0, None, closed="left")],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        target,
        *,
        epsilon_d=0.1,
        n_points_per_class=1,
        max_iter=600,
        lr=0.1,
        tol=1e-6,
        batch_size=None,
        feature_range=None,
        clip=None,
        random_state=None,
        device="auto",
        dtype="float32",
        verbose=0,
    ):
        self.target = target
        self.epsilon_d = epsilon_d
        self.n_points_per_class = n_points_per_class
        self.max_iter = max_iter
        self.lr = lr
        self.tol = tol
        self.batch_size = batch_size
        self.feature_range = feature_range
        self.clip = clip
        self.random_state = random_state
        self.device = device
        self.dtype = dtype
        self.verbose = verbose

    @staticmethod
    def _check_objective(objective):
        if not objective.linear or objective.kind not in (
            "binary_margin",
            "ovr_margin",
            "cross_entropy",
        ):
            raise TypeError(
                f"KKTAttack supports linear classifiers (LogisticRegression, "
                f"SGDClassifier, LinearSVC, RidgeClassifier); the target "
                f"{type(objective.estimator).__name__} is not one. Use GradientCanceling "
                "for other models."
            )

    @with_autograd
    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y):
        """Build the distinct poison points and their multiplicities.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Clean training data.
        y : array-like of shape (n_samples,)
            Clean labels.

        Returns
        -------
        self : KKTAttack
        """
        X, y, n_poison, box = self._validate_classifier_data(
            X, y, regressor_error=TypeError(
                "KKTAttack attacks linear classifiers; the target is a regressor. Use "
                "GradientCanceling for regression targets."
            ),
        )
        n = X.shape[0]
        rng = check_random_state(self.random_state)
        analyzer = fit_analyzer(
            self.target, X, y, box, batch_size=self.batch_size, device=self.device,
            dtype=self.dtype,
        )
        objective = analyzer.objective_
        self._check_objective(objective)
        self.analyzer_, self.target_, self.objective_ = analyzer, analyzer.target_, objective
        self.threshold_ = analyzer.threshold_
        residual_of = CancelingResidual(analyzer.clean_, n_poison)
        base = residual_of.base
        base_np = base.cpu().numpy().astype(np.float64)
        eps = n_poison / n

        labels = np.repeat(objective.classes, self.n_points_per_class)
        y_enc = objective.encode_labels(labels)
        rows = rng.choice(n, size=len(labels), replace=len(labels) > n)
        Z = objective.as_features(X[rows]).clone().requires_grad_(True)
        low = high = None
        if box is not None:
            low, high = objective.as_features(box[0]), objective.as_features(box[1])
            with torch.no_grad():
                Z.copy_(torch.maximum(torch.minimum(Z, high), low))
        scale = float(np.mean(np.std(X, axis=0))) or 1.0
        optimizer = torch.optim.Adam([Z], lr=self.lr * scale)
        half = self.max_iter // 2
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: 0.5 * (1.0 + math.cos(math.pi * (s % half) / half))
        )
        base_norm = max(float(base.norm()), np.finfo(float).tiny)

        history, converged = [], False
        best_value, best_Z, counts = math.inf, Z.detach().clone(), None
        progress = tqdm(range(self.max_iter), disable=not self.verbose, desc="KKT", leave=False)
        for step in progress:
            G = objective.per_sample_gradients(Z.detach(), y_enc, encoded=True)
            if step < half:
                fractions = simplex_weights(G.cpu().numpy().astype(np.float64), base_np, eps)
            else:
                if counts is None:  # phase 2: integer multiplicities from now on
                    counts = round_weights(fractions, n_poison)
                fractions = counts / n_poison
            p = torch.as_tensor(fractions, dtype=base.dtype, device=base.device)
            residual = base + eps * (p @ G)
            value = residual_of.relative(residual)
            if not math.isfinite(value):
                raise FloatingPointError(
                    f"KKTAttack hit a non-finite residual at iteration {step}; lower lr "
                    "or use dtype='float64'."
                )
            history.append(value)
            if self.verbose:
                progress.set_postfix(gradient_norm=f"{value:.3e}")
            if counts is not None:
                if value < best_value:
                    best_value, best_Z = value, Z.detach().clone()
                if value <= self.tol:
                    converged = True
                    break
            grad_z, _ = objective.poison_feature_gradient(Z.detach(), y_enc, residual, encoded=True)
            # d/dx_k 0.5 ||r||^2 = eps p_k grad_x <r, grad_w l(z_k)>, scaled by ||g_hat||^2
            optimizer.zero_grad()
            Z.grad = eps * p[:, None] * grad_z / base_norm**2
            optimizer.step()
            schedule.step()
            if low is not None:
                with torch.no_grad():
                    Z.copy_(torch.maximum(torch.minimum(Z, high), low))
        progress.close()
        self.atoms_ = best_Z.cpu().numpy().astype(np.float64)
        self.atom_labels_ = labels
        self.counts_ = counts
        self._set_poison(
            np.repeat(self.atoms_, counts, axis=0), np.repeat(labels, counts)
        )
        self.history_ = np.asarray(history, dtype=float)
        self.gradient_norm_ = analyzer.gradient_norm(self.X_poison_, self.y_poison_)
        self.n_iter_ = len(history)
        self.converged_ = bool(converged)
        return self

    @with_autograd
    def gradient_norm(self, X_poison=None, y_poison=None):
        """Relative gradient norm of a poison set (default: the fitted one)."""
        check_is_fitted(self)
        if X_poison is None:
            X_poison, y_poison = self.X_poison_, self.y_poison_
        return self.analyzer_.gradient_norm(X_poison, y_poison)
