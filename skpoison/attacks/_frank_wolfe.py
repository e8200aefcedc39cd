"""Frank-Wolfe Gradient Canceling: the paper's measure optimisation (Appendix B)."""

import math
from numbers import Integral, Real

import numpy as np
import torch
from scipy.optimize import nnls
from sklearn.base import _fit_context
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import HasMethods, StrOptions
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

__all__ = ["FrankWolfeCanceling"]


def round_weights(weights, n_points):
    """Counts summing to ``n_points`` from probability ``weights`` (largest remainder).

    Each atom first gets ``floor(n_points * weight)`` points; the points left go one
    each to the atoms of largest fractional part, ties to the earlier atom.  The result
    is deterministic and each count is within 1 of ``n_points * weight``.
    """
    weights = np.asarray(weights, dtype=float)
    weights = weights / weights.sum()
    exact = n_points * weights
    counts = np.floor(exact).astype(int)
    left = n_points - counts.sum()
    order = np.argsort(-(exact - counts), kind="stable")
    counts[order[:left]] += 1
    return counts


def simplex_weights(G, base, epsilon):
    """Weights ``p`` on the simplex minimising ``||base + epsilon * G.T @ p||``.

    Solved as a non-negative least-squares problem with the constraint ``sum p = 1``
    as a heavily weighted extra row (the fully corrective Frank-Wolfe step).
    """
    A = epsilon * G.T
    scale = max(float(np.abs(A).max()), float(np.abs(base).max()), 1.0) * 1e3
    A = np.vstack([A, np.full((1, G.shape[0]), scale)])
    b = np.concatenate([-base, [scale]])
    p, _ = nnls(A, b, maxiter=50 * G.shape[0] + 100)
    total = p.sum()
    return p / total if total > 0 else np.full(G.shape[0], 1.0 / G.shape[0])


class FrankWolfeCanceling(PoisonSampler):
    """Gradient Canceling over poison *distributions*, solved by Frank-Wolfe.

    Minimises ``0.5 * ||g_hat(mu) + eps_d * g(nu)||^2`` over probability measures
    ``nu`` on the feasible set (paper, Appendix B, problem (B.1)).  The objective is
    convex in ``nu``; each iteration adds one atom ``z``, the solution of the linear
    subproblem (B.5) ``min_z <r, grad_w l(z; w)>`` with ``r`` the current residual,
    found by projected gradient search (Adam) over the features from ``n_starts``
    clean points drawn with the seed, each tried with every class label; then the
    mass moves by ``nu <- (1 - eta) nu + eta delta_z`` (B.3).  ``step`` picks
    ``eta``: the exact line search of the quadratic (``"line-search"``), the classic
    ``2 / (t + 2)`` (``"standard"``), or a re-solve of all weights on the simplex
    (``"fully-corrective"``, default, the fastest to converge).

    The measure, ``atoms_``/``atom_labels_`` with ``weights_``, is then rounded to
    ``n_poison = round(epsilon_d * n)`` points deterministically: each atom gets
    ``floor(n_poison * weight)`` copies and the points left go one each to the atoms
    of largest fractional part (ties to the earlier atom).  ``eps_d`` in the residual
    is the rounded ratio ``n_poison / n``, so the only rounding error is that of the
    weights.  The residual is reported before (``residual_measure_``) and after
    (``gradient_norm_``) rounding.

    Frank-Wolfe needs a bounded feasible set: with neither ``feature_range`` nor
    ``clip``, the clean data's per-feature range is used (as ``clip="data"``).

    Parameters
    ----------
    target : estimator
        Target classifier: a recipe from :mod:`skpoison.targets`, a
        :class:`~sklearn.frozen.FrozenEstimator` of a fitted model, or a fitted model.
    epsilon_d : float, default=0.1
        Poison points per clean point.
    max_iter : int, default=100
        Frank-Wolfe iterations (atoms added at most).
    step : {"fully-corrective", "line-search", "standard"}, default="fully-corrective"
        How the weights are updated after an atom is found (see above).
    n_starts : int, default=10
        Clean points the atom search starts from (each with every label).
    search_iter : int, default=50
        Adam steps of the atom search.
    search_lr : float, default=0.05
        Adam step size of the atom search, in units of the mean box width.
    tol : float, default=1e-6
        Stop when the measure's relative gradient norm is at or below ``tol``.
    batch_size : int or None, default=None
        Rows per batch when streaming the clean gradient.
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
        Precision of the gradient computations.
    verbose : int, default=0
        Show a progress bar with the relative gradient norm when positive.

    Attributes
    ----------
    atoms_ : ndarray of shape (n_atoms, n_features)
        Support of the poison measure (features).
    atom_labels_ : ndarray of shape (n_atoms,)
        Labels of the atoms.
    weights_ : ndarray of shape (n_atoms,)
        Probability of each atom (sums to 1).
    counts_ : ndarray of shape (n_atoms,)
        Copies of each atom in the rounded poison (sums to ``n_poison_``).
    X_poison_ : ndarray of shape (n_poison, n_features)
        The rounded poison: each atom repeated ``counts_`` times.
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
        tau of the target for poison in the box (``analyzer_.threshold_``).
    history_ : ndarray of shape (n_iter_,)
        Relative gradient norm of the measure after each iteration, in the units of
        :meth:`~skpoison.PoisonabilityAnalyzer.gradient_norm`.
    residual_measure_ : float
        Relative gradient norm of the measure (before rounding).
    gradient_norm_ : float
        Relative gradient norm of the rounded poison ``X_poison_``.
    n_iter_ : int
        Iterations run.
    converged_ : bool
        Whether ``tol`` was reached, or no atom could lower the residual.
    n_features_in_ : int
        Number of features seen during fit.

    See Also
    --------
    skpoison.attacks.GradientCanceling : Algorithm 1, uniform weights on moving points.
    skpoison.PoisonabilityAnalyzer : The threshold below which no poison succeeds.

    References
    ----------
    .. [1] Lu, Kamath and Yu, "Exploring the limits of model-targeted indiscriminate
       data poisoning attacks", ICML 2023, Appendix B.
    .. [2] Frank and Wolfe, "An algorithm for quadratic programming", Naval Research
       Logistics Quarterly, 1956.

    Examples
    --------
    >>> import copy
    >>> from sklearn.frozen import FrozenEstimator
    >>> from sklearn.linear_model import LogisticRegression
    >>> from skpoison.attacks import FrankWolfeCanceling
    >>> from skpoison.datasets import make_gaussian
    >>> X, y = make_gaussian(n_samples=200, n_features=5, random_state=0)
    >>> target = LogisticRegression(fit_intercept=False).fit(X, y)
    >>> target.coef_ = -0.2 * target.coef_
    >>> fw = FrankWolfeCanceling(FrozenEstimator(target), epsilon_d=4.0, random_state=0)
    >>> X_mixed, y_mixed = fw.fit_resample(X, y)
    >>> X_mixed.shape, len(fw.atoms_) < 20
    ((1000, 5), True)
    >>> bool(fw.gradient_norm_ < 0.01)
    True
    """

    _parameter_constraints = {
        **COMMON_CONSTRAINTS,
        **BOX_CONSTRAINTS,
        **BATCH_CONSTRAINT,
        "target": [HasMethods(["fit"])],
        "max_iter": [NumberInterval(Integral, 1, None, closed="left")],
        "step": [StrOptions({"fully-corrective", "line-search", "standard"})],
        "n_starts": [NumberInterval(Integral, 1, None, closed="left")],
        "search_iter": [NumberInterval(Integral, 0, None, closed="left")],
        "search_lr": [NumberInterval(Real, 0, None, closed="neither")],
        "tol": [NumberInterval(Real, 0, None, closed="left")],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        target,
        *,
        epsilon_d=0.1,
        max_iter=100,
        step="fully-corrective",
        n_starts=10,
        search_iter=50,
        search_lr=0.05,
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
        self.max_iter = max_iter
        self.step = step
        self.n_starts = n_starts
        self.search_iter = search_iter
        self.search_lr = search_lr
        self.tol = tol
        self.batch_size = batch_size
        self.feature_range = feature_range
        self.clip = clip
        self.random_state = random_state
        self.device = device
        self.dtype = dtype
        self.verbose = verbose

    # ------------------------------------------------------------------ helpers
    def _search_atom(self, objective, X, classes, residual, box, rng):
        """Approximate ``argmin_z <r, grad_w l(z; w)>`` over the box and the labels."""
        rows = rng.choice(len(X), size=self.n_starts, replace=self.n_starts > len(X))
        starts = np.repeat(X[rows], len(classes), axis=0)
        labels = np.tile(classes, self.n_starts)
        y_enc = objective.encode_labels(labels)
        low, high = (objective.as_features(b) for b in box)
        Z = objective.as_features(starts).clone().requires_grad_(True)
        width = float((high - low).mean()) or 1.0
        optimizer = torch.optim.Adam([Z], lr=self.search_lr * width)
        for _ in range(self.search_iter):
            grad_z, _ = objective.poison_feature_gradient(Z.detach(), y_enc, residual, encoded=True)
            optimizer.zero_grad()
            Z.grad = grad_z
            optimizer.step()
            with torch.no_grad():
                Z.copy_(torch.maximum(torch.minimum(Z, high), low))
        Z = Z.detach()
        grads = objective.per_sample_gradients(Z, y_enc, encoded=True)
        best = int(torch.argmin(grads @ residual))
        return Z[best].cpu().numpy().astype(np.float64), labels[best], grads[best]

    def _weights(self, weights, G, gradient, residual, base, eps, t):
        """New weights after appending the atom of gradient ``gradient`` (or None: stop)."""
        if not weights:
            return [1.0]
        mixture = np.asarray(weights) @ G[:-1]
        d = eps * (gradient - mixture)
        gap = -float(residual @ d)
        if gap <= 0:  # no atom lowers the residual: the measure is optimal
            return None
        if self.step == "fully-corrective":
            return list(simplex_weights(G, base, eps))
        if self.step == "line-search":
            eta = min(gap / max(float(d @ d), np.finfo(float).tiny), 1.0)
        else:
            eta = 2.0 / (t + 2.0)
        return [(1.0 - eta) * p for p in weights] + [eta]

    # ---------------------------------------------------------------------- fit
    @with_autograd
    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y):
        """Build the poison measure for the clean data ``(X, y)`` and round it.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Clean training data.
        y : array-like of shape (n_samples,)
            Clean labels.

        Returns
        -------
        self : FrankWolfeCanceling
        """
        # Frank-Wolfe needs a bounded set: without a box, the clean data's range
        X, y, n_poison, box = self._validate_classifier_data(
            X, y, bounded=True, regressor_error=ValueError(
                "FrankWolfeCanceling searches atoms over class labels; it attacks "
                "classifier targets. Use GradientCanceling for regressors."
            ),
        )
        n = X.shape[0]
        rng = check_random_state(self.random_state)
        torch.manual_seed(int(rng.randint(np.iinfo(np.int32).max)))
        analyzer = fit_analyzer(
            self.target, X, y, box, batch_size=self.batch_size, device=self.device,
            dtype=self.dtype,
        )
        objective = analyzer.objective_
        self.analyzer_, self.target_, self.objective_ = analyzer, analyzer.target_, objective
        self.threshold_ = analyzer.threshold_
        residual_of = CancelingResidual(analyzer.clean_, n_poison)
        base = residual_of.base
        base_np = base.cpu().numpy().astype(np.float64)
        eps = n_poison / n
        classes = objective.classes

        atoms, labels, weights, gradients = [], [], [], []
        residual = base
        history, converged = [], False
        progress = tqdm(
            range(self.max_iter), disable=not self.verbose, desc="FrankWolfe", leave=False
        )
        for t in progress:
            atom, label, gradient = self._search_atom(objective, X, classes, residual, box, rng)
            G = np.vstack(gradients + [gradient.cpu().numpy().astype(np.float64)])
            new = self._weights(
                weights, G, G[-1], residual.cpu().numpy().astype(np.float64), base_np, eps, t
            )
            if new is None:
                converged = True
                break
            atoms.append(atom)
            labels.append(label)
            gradients.append(G[-1])
            weights = new
            mixture = torch.as_tensor(np.asarray(weights) @ G, dtype=base.dtype, device=base.device)
            residual = base + eps * mixture
            value = residual_of.relative(residual)
            if not math.isfinite(value):
                raise FloatingPointError(
                    f"FrankWolfeCanceling hit a non-finite residual at iteration {t}; "
                    "use dtype='float64' or a smaller feature_range."
                )
            history.append(value)
            if self.verbose:
                progress.set_postfix(gradient_norm=f"{value:.3e}")
            if value <= self.tol:
                converged = True
                break
        progress.close()
        self._finish(atoms, labels, weights, n_poison, history, converged)
        return self

    def _finish(self, atoms, labels, weights, n_poison, history, converged):
        weights = np.asarray(weights, dtype=float)
        keep = weights > 0
        self.atoms_ = np.asarray(atoms, dtype=np.float64)[keep]
        self.atom_labels_ = np.asarray(labels)[keep]
        self.weights_ = weights[keep] / weights[keep].sum()
        self.counts_ = round_weights(self.weights_, n_poison)
        self._set_poison(
            np.repeat(self.atoms_, self.counts_, axis=0),
            np.repeat(self.atom_labels_, self.counts_),
        )
        self.history_ = np.asarray(history, dtype=float)
        self.residual_measure_ = float(self.history_[-1])
        self.gradient_norm_ = self.analyzer_.gradient_norm(self.X_poison_, self.y_poison_)
        self.n_iter_ = len(history)
        self.converged_ = bool(converged)

    @with_autograd
    def gradient_norm(self, X_poison=None, y_poison=None):
        """Relative gradient norm of a poison set (default: the fitted one)."""
        check_is_fitted(self)
        if X_poison is None:
            X_poison, y_poison = self.X_poison_, self.y_poison_
        return self.analyzer_.gradient_norm(X_poison, y_poison)
