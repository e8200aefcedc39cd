"""Gradient Canceling (Lu, Kamath and Yu 2023, Algorithm 1) as an imbalanced-learn sampler."""

import math
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import _fit_context
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import HasMethods, StrOptions
from sklearn.utils.multiclass import type_of_target
from sklearn.utils.validation import check_is_fitted, validate_data
from tqdm.auto import tqdm

from .._poisonability import PoisonabilityAnalyzer
from .._utils import NumberInterval, all_finite, batch_slices, projection_box, with_autograd
from .._utils._allocator import keep_freed_memory
from .._utils._distributed import (
    all_gather_rows,
    all_reduce_sum,
    any_rank,
    shard_counts,
    shard_slice,
    world,
)
from ._base import (
    BATCH_CONSTRAINT,
    BOX_CONSTRAINTS,
    COMMON_CONSTRAINTS,
    PoisonSampler,
    is_regressor_target,
    n_poison_points,
)
from ._least_squares import ResidualMap, lbfgs, levenberg_marquardt

__all__ = ["GradientCanceling"]


def _optimizer(name, X_p, lr, *, schedule, max_iter):
    """A ``torch.optim`` optimizer on the poison features, and its step-size schedule."""
    if name == "adam":
        optimizer = torch.optim.Adam([X_p], lr=lr)
    elif name == "gd":  # the released code's plain gradient descent
        optimizer = torch.optim.SGD([X_p], lr=lr)
    else:  # the paper's SGD with momentum 0.9
        optimizer = torch.optim.SGD([X_p], lr=lr, momentum=0.9)
    scheduler = None
    if schedule == "cosine":
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(max_iter, 1))
    return optimizer, scheduler


class GradientCanceling(PoisonSampler):
    """Gradient Canceling: poison that makes the target a stationary point of retraining.

    Builds ``n_poison = round(epsilon_d * n)`` poison points so that the target model
    ``w`` has (near) vanishing gradient on the clean data plus the poison, i.e. it
    minimises ``0.5 * ||r||^2`` with ``r = g_hat(mu) + (1/n) sum_j grad_w l(z_j; w)``,
    where ``g_hat(mu)`` is the clean gradient per clean sample with the penalty of the
    mixed objective (paper, Algorithm 1 and equation (34)).  Poison starts from a
    seeded random subsample of the clean data; labels are kept and features are
    optimised.  ``g(mu)`` is computed once, since the target is fixed.

    It is a *sampler* in the imbalanced-learn sense: :meth:`fit_resample` returns the
    clean data followed by the poison, so inside :class:`imblearn.pipeline.Pipeline`
    the poison is injected at fit time only and prediction sees clean data.

    Under ``torch.distributed`` (a process group initialised, e.g. by ``torchrun``),
    every rank calls :meth:`fit` on the same data: the clean and poison rows are
    split into one block per rank, the gradient sums are all-reduced and the poison
    blocks all-gathered, so each rank ends with the single-process ``X_poison_`` up
    to summation order (every optimizer but ``"gauss-newton"``; see :ref:`scaling`).

    Parameters
    ----------
    target : estimator
        Target model: a recipe from :mod:`skpoison.targets` (fitted on the data seen
        by :meth:`fit`), a :class:`~sklearn.frozen.FrozenEstimator` of a fitted model,
        or a fitted model (not clone-safe: use one of the first two in GridSearchCV).
    epsilon_d : float, default=0.1
        Poison points per clean point.
    max_iter : int, default=1000
        Number of optimisation steps; for ``"lbfgs"``, evaluations of the residual
        and its gradient (line-search trials included), each costing one
        first-order step.
    optimizer : {"adam", "sgd", "gd", "lbfgs", "gauss-newton"}, default="adam"
        ``"adam"``, ``"sgd"``, ``"lbfgs"`` and ``"gauss-newton"`` descend
        ``0.5 * ||r||^2 / ||g_hat(mu)||^2`` (the residual normalised by the clean
        gradient).

        - ``"adam"`` (default): Adam on the poison features, invariant to the scale
          of the gradient, with its step ``lr`` in units of the clean data's feature
          scale (the mean per-feature standard deviation), so the default converges
          without retuning across datasets, feature scales and sizes.
        - ``"sgd"``: the paper's SGD with momentum 0.9.
        - ``"gd"``: the paper's released code, plain gradient descent (no
          momentum) on the norm of the *summed*-loss gradient ``||n * r||`` (not
          normalised; in the units of the features), usually with
          ``schedule="cosine"`` and no box.
        - ``"lbfgs"``: projected L-BFGS (10 curvature pairs, Adam's per-feature
          scaling as the initial inverse Hessian) with a weak-Wolfe line search:
          the quasi-Newton direction on the features the box does not hold,
          projected onto the box, so no step size needs tuning and the objective
          never rises.  On seven of the nine benchmark problems it reaches the
          norm Adam reaches after 1000 steps in 22 to 123 evaluations, and in
          140 on MNIST logistic regression where the target is reachable; at a
          budget above tau that the poison's labels cannot reach it needs about
          350, each costing about four Adam steps on a linear model
          (:doc:`/performance` says why Adam stays the default).
        - ``"gauss-newton"``: Levenberg-Marquardt on the least-squares problem
          ``0.5 * ||r(X)||^2``, each step solving the damped Gauss-Newton system by
          conjugate gradients on Jacobian-vector products (``torch.func``); a step
          costs about 20 first-order steps.  One process only.

        ``lr`` and ``schedule`` apply to the first-order optimizers (``"adam"``,
        ``"sgd"``, ``"gd"``) only.
    lr : float or None, default=None
        Initial step size; ``None`` means 0.2 for ``"adam"``, 0.5 (the paper's
        value) for ``"sgd"`` and 10 (the released code's) for ``"gd"``.
    schedule : {"cosine", "constant"}, default="cosine"
        Step-size schedule over ``max_iter`` steps (first-order optimizers).
    tol : float, default=1e-6
        Stop when the relative gradient norm ``||g(chi)|| / ||g(mu)||`` is at or
        below ``tol``.
    batch_size : int or None, default=None
        ``None``: one pass over the poison per step.  An integer: two exact passes
        (first the poison gradient sum without a graph, then per batch the feature
        gradient), so memory is bounded by the batch and the result equals the
        one-pass one.  Also used to stream the clean gradient.  The rows are split
        into ``ceil(m / batch_size)`` batches of equal size (within one row), so
        1800 rows in batches of 256 make 8 of 225, not a last batch of 8.
    lagged_residual : bool, default=False
        With an integer ``batch_size`` and a target that is not affine (a net),
        one pass over the poison per step instead of two: each step's feature
        gradient uses the residual of the previous step (the first step is
        exact), so the result no longer equals the one-pass one.  It saves
        half a training step to one per step over two exact passes (on MNIST with
        batches of 256: MLP 3.3-3.4 to 2.4-2.5 training steps, CNN on 1800 rows
        2.4-2.9 to 1.8-2.2; :doc:`/performance`).  The result does not depend on
        the integer ``batch_size`` (the direction lags even when the poison fits
        one batch) or on the number of ``torch.distributed`` ranks.  The residual,
        ``history_``, ``gradient_norm_`` and the choice of ``X_poison_`` stay
        exact; only the descent direction lags.  Only for ``"adam"`` and
        ``"sgd"``: the other optimizers raise a ``ValueError`` (``"gd"``'s large
        fixed steps overshoot with a lagging direction; ``"lbfgs"``'s line search
        and ``"gauss-newton"`` need exact gradients).  No effect with
        ``batch_size=None`` or for affine targets, where one pass is exact
        already.
    feature_range : (low, high) or None, default=None
        Box the poison features are projected onto after each step (scalars or
        per-feature arrays), e.g. ``(0, 1)`` for pixels.
    clip : {"data"} or None, default=None
        ``"data"`` clips poison to the clean data's per-feature range (the paper's
        GC-c); combined with ``feature_range`` the intersection is used.
    warm_start : bool, default=False
        Continue from the last ``X_poison_`` when its shape still fits.
    random_state : int, RandomState instance or None, default=None
        Seed of the initial subsample (and of torch).
    device : str or torch.device, default="auto"
        Torch device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"`` or
        ``"cuda:N"``.
    dtype : {"float32", "float64"}, default="float32"
        Precision of the optimisation.
    parameters : list of str or None, default=None
        Blocks of the target's gradient to cancel: ``None`` cancels all of it; a
        list of parameter names (keys of ``objective_.params``, e.g. ``["fc1.weight"]``
        for the first layer of a net, ``["coef"]`` for a linear model) cancels only
        those blocks, as the paper's released code does with the first weight
        tensor.  The residual, ``history_`` and ``gradient_norm_`` then are the norm
        of those blocks relative to the clean gradient on the same blocks.
    verbose : int, default=0
        Show a progress bar with the relative gradient norm when positive.

    Attributes
    ----------
    X_poison_ : ndarray of shape (n_poison, n_features)
        The poison features (the best iterate).
    y_poison_ : ndarray of shape (n_poison,)
        The poison labels (those of the initial subsample).
    init_indices_ : ndarray of shape (n_poison,)
        Rows of the clean data the poison started from.
    n_poison_ : int
        Number of poison points.
    sampling_strategy_ : dict
        Poison points added per class label (imbalanced-learn's attribute).
    target_ : estimator
        The fitted target model.
    objective_ : Objective
        The target's training objective.
    analyzer_ : PoisonabilityAnalyzer
        The analyzer of the target on the clean data (holds ``g(mu)``).
    threshold_ : float
        tau of the target on the clean data (``analyzer_.threshold_``), for poison
        within the projection box and, for regression targets, with labels in the
        clean labels' range (poison keeps clean labels).
    history_ : ndarray of shape (n_iter_,)
        Relative gradient norm ``||g(chi)|| / ||g(mu)||`` at each step, in the units of
        :meth:`~skpoison.PoisonabilityAnalyzer.gradient_norm` (on the ``parameters``
        blocks).
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
    skpoison.PoisonabilityAnalyzer : The threshold below which no poison succeeds.

    Examples
    --------
    >>> from sklearn.linear_model import LogisticRegression
    >>> from skpoison.attacks import GradientCanceling
    >>> from skpoison.datasets import make_gaussian
    >>> from skpoison.targets import LabelFlipTarget
    >>> X, y = make_gaussian(random_state=0)
    >>> target = LabelFlipTarget(LogisticRegression(), flip_fraction=0.5, random_state=0)
    >>> gc = GradientCanceling(target, epsilon_d=1.0, max_iter=300, random_state=0)
    >>> X_mixed, y_mixed = gc.fit_resample(X, y)
    >>> X_mixed.shape
    (2000, 10)
    >>> bool(gc.gradient_norm_ < 0.05 * gc.history_[0])
    True
    """

    _parameter_constraints = {
        **COMMON_CONSTRAINTS,
        **BOX_CONSTRAINTS,
        **BATCH_CONSTRAINT,
        "target": [HasMethods(["fit"])],
        "max_iter": [NumberInterval(Integral, 1, None, closed="left")],
        "optimizer": [StrOptions({"adam", "sgd", "gd", "gauss-newton", "lbfgs"})],
        "lr": [NumberInterval(Real, 0, None, closed="neither"), None],
        "schedule": [StrOptions({"cosine", "constant"})],
        "tol": [NumberInterval(Real, 0, None, closed="left")],
        "lagged_residual": ["boolean"],
        "warm_start": ["boolean"],
        "verbose": ["verbose"],
        "parameters": [list, tuple, None],
    }

    def __init__(
        self,
        target,
        *,
        epsilon_d=0.1,
        max_iter=1000,
        optimizer="adam",
        lr=None,
        schedule="cosine",
        tol=1e-6,
        batch_size=None,
        lagged_residual=False,
        feature_range=None,
        clip=None,
        warm_start=False,
        random_state=None,
        device="auto",
        dtype="float32",
        verbose=0,
        parameters=None,
    ):
        self.target = target
        self.epsilon_d = epsilon_d
        self.max_iter = max_iter
        self.optimizer = optimizer
        self.lr = lr
        self.schedule = schedule
        self.tol = tol
        self.batch_size = batch_size
        self.lagged_residual = lagged_residual
        self.feature_range = feature_range
        self.clip = clip
        self.warm_start = warm_start
        self.random_state = random_state
        self.device = device
        self.dtype = dtype
        self.verbose = verbose
        self.parameters = parameters

    # ------------------------------------------------------------------ helpers
    def _box(self, X):
        """Projection box ``(low, high)`` per feature, or ``None``."""
        return projection_box(X, self.feature_range, self.clip)

    def _initial_poison(self, X, y, n_poison, rng):
        if (
            self.warm_start
            and hasattr(self, "X_poison_")
            and self.X_poison_.shape == (n_poison, X.shape[1])
        ):
            return self.init_indices_, self.X_poison_.copy(), self.y_poison_.copy()
        indices = rng.choice(len(X), size=n_poison, replace=n_poison > len(X))
        return indices, X[indices].copy(), y[indices].copy()

    def _block_mask(self, objective):
        """0/1 mask over the flat parameters of the ``parameters`` blocks (None: all)."""
        if self.parameters is None:
            return None
        names = list(objective.params)
        unknown = [p for p in self.parameters if p not in names]
        if unknown or not len(self.parameters):
            raise ValueError(
                f"parameters={list(self.parameters)!r}: choose a non-empty list among the "
                f"target's parameter names {names}."
            )
        flat = objective.unflatten(torch.zeros_like(objective.flat_params()))
        for name in self.parameters:
            flat[name].fill_(1.0)
        return torch.cat([v.reshape(-1) for v in flat.values()])

    # ---------------------------------------------------------------------- fit
    @with_autograd
    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y, clean_gradient=None):
        """Build the poison for the clean data ``(X, y)``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Clean training data.
        y : array-like of shape (n_samples,)
            Clean labels.
        clean_gradient : CleanGradient or None, default=None
            The clean side already computed for this target on this ``(X, y)`` in
            this ``dtype`` (for example ``clean_`` of a fitted
            :class:`~skpoison.PoisonabilityAnalyzer`), so that several budgets on the
            same data compute ``g(mu)`` once; ``None`` computes it.

        Returns
        -------
        self : GradientCanceling
        """
        # every step allocates and frees large autograd buffers: keep them for reuse
        keep_freed_memory()
        X_given = X
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32], y_numeric=False)
        if type_of_target(y) == "continuous" and not is_regressor_target(self.target):
            raise ValueError(
                "Unknown label type: continuous. GradientCanceling attacks classifiers "
                "unless its target is a regressor."
            )
        if world().size > 1 and self.optimizer == "gauss-newton":
            raise ValueError(
                "optimizer='gauss-newton' runs in one process; under torch.distributed "
                f"(a process group of {world().size} ranks is initialised) choose "
                "optimizer='lbfgs', 'adam', 'sgd' or 'gd', or run without torchrun."
            )
        if self.lagged_residual and self.optimizer not in ("adam", "sgd"):
            why = ("overshoots with a lagging direction" if self.optimizer == "gd"
                   else "needs exact gradients")
            raise ValueError(
                f"lagged_residual=True is for optimizer='adam' or 'sgd'; optimizer="
                f"{self.optimizer!r} {why}. Choose one of those, or lagged_residual=False."
            )
        n = X.shape[0]
        n_poison = n_poison_points(self.epsilon_d, n)
        box = self._box(X)
        rng = check_random_state(self.random_state)
        analyzer = PoisonabilityAnalyzer(
            self.target,
            feature_range=None if box is None else (box[0], box[1]),
            # poison keeps clean labels: for regression they stay in the clean range
            label_range=(y.min(), y.max()) if is_regressor_target(self.target) else None,
            batch_size=self.batch_size,
            device=self.device,
            dtype=self.dtype,
        ).fit(X_given, y, clean_gradient=clean_gradient)  # as given: feature names checked
        objective = analyzer.objective_
        clean = analyzer.clean_
        self.analyzer_ = analyzer
        self.target_ = analyzer.target_
        self.objective_ = objective
        self.threshold_ = analyzer.threshold_

        # the same draw on every rank; each rank then optimises its own block of rows
        indices, X_init, y_poison = self._initial_poison(X, y, n_poison, rng)
        own = shard_slice(n_poison)
        y_encoded = objective.encode_labels(y_poison)[own]
        base = clean.canceling_base(n_poison)
        mask = self._block_mask(objective)
        clean_norm = clean.norm if mask is None else float((clean.gradient * mask).norm())
        to_relative = n / ((n + n_poison) * max(clean_norm, np.finfo(float).tiny))

        X_p = objective.as_features(X_init[own]).clone()
        low = high = None
        if box is not None:
            low = objective.as_features(box[0])
            high = objective.as_features(box[1])
            X_p = torch.maximum(torch.minimum(X_p, high), low)
        residual_map = ResidualMap(
            objective, y_encoded, base, n, self.batch_size, mask, lagged=self.lagged_residual
        )
        if self.optimizer in ("gauss-newton", "lbfgs"):
            self._fit_least_squares(
                residual_map, X_p, (y_poison, indices), to_relative, low, high
            )
            return self
        if self.optimizer == "adam":
            scale = _mean_feature_std(X) or 1.0
            lr = (0.2 if self.lr is None else self.lr) * scale
        elif self.optimizer == "gd":
            lr = 10.0 if self.lr is None else self.lr
        else:
            lr = 0.5 if self.lr is None else self.lr
        optimizer, scheduler = _optimizer(
            self.optimizer, X_p, lr, schedule=self.schedule, max_iter=self.max_iter
        )
        # the gradient of 0.5 ||r||^2 / ||g_hat(mu)||^2: scale-free in the gradient's units
        base_norm = float(residual_map.base.norm())  # of the chosen blocks
        grad_scale = 1.0 / base_norm**2 if base_norm > 0 else 1.0

        history = []
        best_value, best_X = math.inf, X_p.detach().clone()
        converged = False
        progress = tqdm(
            range(self.max_iter), disable=not self.verbose or world().rank != 0,
            desc="GradientCanceling", leave=False,
        )
        for step in progress:
            residual, grad_x = residual_map.residual_and_gradient(X_p.detach())
            value = float(residual.norm()) * to_relative
            if not math.isfinite(value) or any_rank(not all_finite(grad_x)):
                self._store(best_X, y_poison, indices, history, best_value, step, False)
                raise _non_finite_error(step, best_value, self.dtype)
            history.append(value)
            if value < best_value:
                best_value, best_X = value, X_p.detach().clone()
            if self.verbose:
                progress.set_postfix(gradient_norm=f"{value:.3e}")
            if value <= self.tol:
                converged = True
                break
            if self.optimizer == "gd":  # gradient of ||n r||, the summed loss's gradient
                X_p.grad = grad_x.mul_(n / max(float(residual.norm()), np.finfo(float).tiny))
            else:
                X_p.grad = grad_x.mul_(grad_scale)
            try:
                optimizer.step()
            except RuntimeError as error:  # a step size beyond the dtype's range
                if "overflow" not in str(error):
                    raise
                self._store(best_X, y_poison, indices, history, best_value, step + 1, False)
                raise _non_finite_error(step + 1, best_value, self.dtype) from error
            if scheduler is not None:
                scheduler.step()
            if low is not None:
                with torch.no_grad():
                    torch.clamp(X_p, low, high, out=X_p)
        progress.close()
        self._store(best_X, y_poison, indices, history, best_value, len(history), converged)
        return self

    def _fit_least_squares(self, residual_map, X_p, labels, to_relative, low, high):
        """The second-order optimizers (``"gauss-newton"``, ``"lbfgs"``) from ``X_p``."""
        progress = tqdm(
            total=self.max_iter, disable=not self.verbose or world().rank != 0,
            desc="GradientCanceling", leave=False,
        )

        best = [math.inf]

        def report(value):  # the best so far: line-search trials may be worse
            best[0] = min(best[0], value)
            progress.update()
            progress.set_postfix(gradient_norm=f"{best[0]:.3e}")

        options = dict(
            max_iter=self.max_iter, tol=self.tol, to_relative=to_relative, low=low,
            high=high, callback=report if self.verbose else None,
        )
        if self.optimizer == "gauss-newton":
            result = levenberg_marquardt(residual_map, X_p, **options)
        else:  # inner products over every rank's rows under torch.distributed
            result = lbfgs(residual_map, X_p, inner=_global_inner, **options)
        progress.close()
        self._store(result.X, *labels, result.history, result.best, result.n_iter,
                    result.converged)
        if result.non_finite:  # the first non-finite evaluation was not recorded
            raise _non_finite_error(result.n_iter, result.best, self.dtype)

    def _store(self, X_p, y_poison, indices, history, best, n_iter, converged):
        # every rank gets every rank's poison rows (X_p itself in one process)
        X_p = all_gather_rows(X_p.detach(), shard_counts(len(y_poison)))
        self._set_poison(X_p.cpu().numpy(), y_poison)
        self.init_indices_ = indices
        self.history_ = np.asarray(history, dtype=float)
        self.gradient_norm_ = float(best)
        self.n_iter_ = int(n_iter)
        self.converged_ = bool(converged)

    def fit_resample(self, X, y, clean_gradient=None):
        """Build the poison and return the clean data followed by it.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Clean training data.
        y : array-like of shape (n_samples,)
            Clean labels.
        clean_gradient : CleanGradient or None, default=None
            See :meth:`fit`.

        Returns
        -------
        X_resampled : array-like of shape (n_samples + n_poison, n_features)
            In the container ``X`` came in (a list stays a list, a DataFrame keeps its
            columns).
        y_resampled : array-like of shape (n_samples + n_poison,)
        """
        return super().fit_resample(X, y, clean_gradient=clean_gradient)

    @with_autograd
    def gradient_norm(self, X_poison=None, y_poison=None):
        """Relative gradient norm of a poison set (default: the fitted one).

        Over the whole gradient, whatever ``parameters`` says (``history_`` holds the
        norm of the chosen blocks).
        """
        check_is_fitted(self)
        if X_poison is None:
            X_poison, y_poison = self.X_poison_, self.y_poison_
        return self.analyzer_.gradient_norm(X_poison, y_poison)


def _non_finite_error(step, best_value, dtype):
    if step == 0:  # no step taken yet: the target, not the step size
        return FloatingPointError(
            "GradientCanceling: the target's gradient is not finite on the initial "
            f"poison (rows of the clean data) in {dtype}; its parameters are too large "
            "for this data. Use dtype='float64' or a target with smaller parameters."
        )
    return FloatingPointError(
        f"GradientCanceling hit a non-finite residual or gradient at iteration "
        f"{step}; the best finite poison so far (relative gradient norm "
        f"{best_value:.3g}) is kept in X_poison_. Lower lr (first-order optimizers) or "
        "use dtype='float64'."
    )


def _global_inner(a, b):
    """``<a, b>`` over every rank's rows (this process's alone without a group)."""
    return float(all_reduce_sum(torch.vdot(a.reshape(-1), b.reshape(-1)).reshape(1)))


def _mean_feature_std(X, rows=4096):
    """Mean over features of the per-feature standard deviation, streamed over rows.

    Two passes in row chunks (means, then squared deviations), so no temporary the
    size of ``X`` is made.  Under ``torch.distributed`` each rank reads its own block
    of rows and the sums are all-reduced, so every rank gets the global value.
    """
    n = len(X)
    own = X[shard_slice(n)]

    def global_sum(partial):
        return all_reduce_sum(torch.from_numpy(partial)).numpy()

    total = np.zeros(X.shape[1])
    for sl in batch_slices(len(own), rows, even=True) if len(own) else ():
        total += own[sl].sum(axis=0, dtype=np.float64)
    mean = global_sum(total) / n
    squares = np.zeros(X.shape[1])
    for sl in batch_slices(len(own), rows, even=True) if len(own) else ():
        squares += np.square(own[sl] - mean).sum(axis=0)
    return float(np.mean(np.sqrt(global_sum(squares) / n)))
