"""Gradient Matching (Geiping et al. 2021) in its indiscriminate form, as a sampler."""

import math
from collections import OrderedDict
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import _fit_context
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import HasMethods
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import validate_data
from tqdm.auto import tqdm

from ..objectives import as_objective
from ..targets._base import fit_source_estimator
from .._utils import NumberInterval, batch_slices, clean_batch_rows, with_autograd
from ._base import (
    BATCH_CONSTRAINT,
    BOX_CONSTRAINTS,
    COMMON_CONSTRAINTS,
    PoisonSampler,
    clean_in_box,
    is_regressor_target,
    n_poison_points,
)
from ._gradient_canceling import _mean_feature_std

__all__ = ["GradientMatching"]


def reversed_gradient(objective, X, y, *, batch_size=None):
    """``grad_w J(mu; w)``: the mean gradient of the reversed loss over ``(X, y)``.

    Streamed over the rows in bounded batches; ``y`` is encoded.
    """
    n = len(X)
    params = OrderedDict(
        (k, v.detach().clone().requires_grad_(True)) for k, v in objective.params.items()
    )
    total = torch.zeros(objective.n_params, device=objective.device, dtype=objective.dtype)
    for sl in batch_slices(n, clean_batch_rows(n, X.shape[1], batch_size), even=True):
        outputs = objective.outputs(X[sl], params)
        losses = objective.loss.reversed_per_sample(outputs, y[sl])
        grads = torch.autograd.grad(losses.sum(), list(params.values()), materialize_grads=True)
        total += torch.cat([g.reshape(-1) for g in grads])
    return total / n


def _dissimilarity_direction(unit_target):
    """``b -> grad_b (1 - cos(a, b))`` for the unit target ``a / ||a||``."""

    def direction(b):
        norm = b.norm()
        if not bool(norm > 0):
            return torch.zeros_like(b)
        cosine = unit_target @ b / norm
        return -(unit_target - cosine * b / norm) / norm

    return direction


def _dissimilarity(unit_target, b):
    norm = float(b.norm())
    return 1.0 - float(unit_target @ b) / norm if norm > 0 else 1.0


class GradientMatching(PoisonSampler):
    """Gradient Matching: poison whose training gradient points where a reversed loss goes.

    The indiscriminate Gradient Matching of the paper (section 4, equations (35) and
    (36)), after Witches' Brew (Geiping et al. 2021) with the reversed cross-entropy of
    Fowl et al. (2021).  At the victim's model ``w`` (fitted on the clean data, or
    given), the *reversed* loss ``J`` is small when the model does not predict the
    label (for cross-entropy ``J = -log(1 - p_y)``); its mean gradient over the clean
    data, ``grad_w J(mu; w)``, is where training should go to unlearn the data.  The
    poison features minimise the cosine dissimilarity

        ``S = 1 - cos(grad_w J(mu; w), sum_j grad_w l(z_j; w))``

    between that direction and the training-loss gradient of the poison, so that a
    victim trained on clean plus poison data is pushed the same way.  Poison starts
    from a seeded random subsample of the clean data; labels are kept and features
    are optimised with *signed* Adam steps (Adam on the sign of the gradient) and the
    step-size drops by 10 at 3/8, 5/8 and 7/8 of the steps, as in Witches' Brew.
    Each of ``restarts`` restarts draws its own subsample; the poison of lowest
    dissimilarity over all restarts and steps is kept.

    Reversed losses: cross-entropy ``-log(1 - p_y)`` (logits, log-probabilities or
    probabilities); binary and one-vs-rest margin losses, the loss of the other sign
    ``l(-y h)`` (for the logistic loss it is exactly ``-log(1 - p_y)``); squared
    loss (regression), ``-l``.

    Parameters
    ----------
    estimator : estimator
        The victim: an unfitted model supported by
        :func:`skpoison.objectives.as_objective` (cloned and fitted on the clean
        data), a :class:`~sklearn.frozen.FrozenEstimator` of a fitted one (used as
        given), or a recipe from :mod:`skpoison.targets` (its target model is used).
    epsilon_d : float, default=0.1
        Poison points per clean point.
    max_iter : int, default=250
        Signed-Adam steps per restart.
    restarts : int, default=1
        Independent restarts, each from its own seeded subsample.
    lr : float, default=1.0
        Initial step size, in units of the clean data's mean per-feature standard
        deviation (a signed-Adam step moves each feature by about ``lr`` of them).
        Smaller steps (Witches' Brew's 0.1) also match the direction, but nearer the
        clean data, where the poison's gradient is small: the cosine ignores the
        magnitude, and the retrained victim then barely moves (paper, section 4).
    perturbation_bound : float or None, default=None
        The paper's proximity: each poison point stays within this L-infinity
        distance (in feature units) of the clean point it started from.  ``None``:
        unbounded.
    batch_size : int or None, default=None
        ``None``: one pass over the poison per step.  An integer: two exact passes
        (the poison gradient sum without a graph, then the feature gradient per
        batch), so memory is bounded by the batch and the result equals the one-pass
        one.  Also used to stream the clean data.
    feature_range : (low, high) or None, default=None
        Box the poison features are projected onto after each step (scalars or
        per-feature arrays).
    clip : {"data"} or None, default=None
        ``"data"`` clips poison to the clean data's per-feature range; combined with
        ``feature_range`` the intersection is used.
    random_state : int, RandomState instance or None, default=None
        Seed of the subsamples.
    device : str or torch.device, default="auto"
        Torch device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``...
    dtype : {"float32", "float64"}, default="float32"
        Precision of the optimisation.
    verbose : int, default=0
        Show a progress bar with the dissimilarity when positive.

    Attributes
    ----------
    X_poison_ : ndarray of shape (n_poison, n_features)
        The poison features (the best iterate).
    y_poison_ : ndarray of shape (n_poison,)
        The poison labels (those of the best restart's subsample).
    init_indices_ : ndarray of shape (n_poison,)
        Rows of the clean data the kept poison started from.
    n_poison_ : int
        Number of poison points.
    sampling_strategy_ : dict
        Poison points added per class label (imbalanced-learn's attribute).
    estimator_ : estimator
        The victim's model the gradients are taken at.
    objective_ : Objective
        Its training objective.
    reversed_gradient_ : ndarray of shape (n_params,)
        ``grad_w J(mu; w)``, the gradient the poison matches.
    history_ : ndarray of shape (max_iter + 1,)
        Cosine dissimilarity of the kept restart's poison at the start and after each
        step.
    dissimilarity_ : float
        Cosine dissimilarity of ``X_poison_`` (in ``[0, 2]``; 0 is a perfect match).
    restart_dissimilarities_ : ndarray of shape (restarts,)
        Best dissimilarity of each restart.
    n_iter_ : int
        Steps taken per restart.
    n_features_in_ : int
        Number of features seen during fit.

    See Also
    --------
    skpoison.attacks.GradientCanceling : Poison that makes a chosen target stationary.
    skpoison.attacks.TGDA : Poison that maximises the retrained victim's validation loss.

    Notes
    -----
    A step costs about two passes of gradient work over the poison (the gradient sum,
    then the feature gradient through it), like a Gradient Canceling step; the
    reversed gradient over the clean data is computed once.  With losses that are flat
    beyond a margin (hinge, squared hinge, modified Huber), poison rows beyond it have
    no gradient and do not move; when all of them are, the dissimilarity stays 1.

    References
    ----------
    .. [1] Geiping, Fowl, Huang, Czaja, Taylor, Moeller and Goldstein, "Witches' Brew:
       industrial scale data poisoning via gradient matching", ICLR 2021.
    .. [2] Fowl, Chiang, Goldblum, Geiping, Bansal, Czaja and Goldstein, "Preventing
       unauthorized use of proprietary data: poisoning for secure dataset release",
       arXiv:2103.02683, 2021.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> from skpoison.attacks import GradientMatching
    >>> from skpoison.datasets import make_gaussian
    >>> X, y = make_gaussian(n_samples=200, random_state=0)
    >>> gm = GradientMatching(LogisticRegression(), epsilon_d=0.1, max_iter=50,
    ...                       random_state=0)
    >>> X_mixed, y_mixed = gm.fit_resample(X, y)
    >>> X_mixed.shape
    (220, 10)
    >>> bool(gm.dissimilarity_ < 0.1 * gm.history_[0])
    True
    """

    _parameter_constraints = {
        **COMMON_CONSTRAINTS,
        **BOX_CONSTRAINTS,
        **BATCH_CONSTRAINT,
        "estimator": [HasMethods(["fit"])],
        "max_iter": [NumberInterval(Integral, 0, None, closed="left")],
        "restarts": [NumberInterval(Integral, 1, None, closed="left")],
        "lr": [NumberInterval(Real, 0, None, closed="neither")],
        "perturbation_bound": [NumberInterval(Real, 0, None, closed="neither"), None],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        estimator,
        *,
        epsilon_d=0.1,
        max_iter=250,
        restarts=1,
        lr=1.0,
        perturbation_bound=None,
        batch_size=None,
        feature_range=None,
        clip=None,
        random_state=None,
        device="auto",
        dtype="float32",
        verbose=0,
    ):
        self.estimator = estimator
        self.epsilon_d = epsilon_d
        self.max_iter = max_iter
        self.restarts = restarts
        self.lr = lr
        self.perturbation_bound = perturbation_bound
        self.batch_size = batch_size
        self.feature_range = feature_range
        self.clip = clip
        self.random_state = random_state
        self.device = device
        self.dtype = dtype
        self.verbose = verbose

    def _matching_step(self, objective, X_p, y_p, unit_target):
        """Dissimilarity ``S`` and ``grad_X S`` at poison ``X_p`` (exact, batched or not)."""
        direction = _dissimilarity_direction(unit_target)
        if self.batch_size is None or self.batch_size >= len(X_p):
            grad_x, total = objective.poison_feature_gradient(X_p, y_p, direction, encoded=True)
            return _dissimilarity(unit_target, total), grad_x
        # pass 1: the poison gradient sum, no graph kept; pass 2: per batch
        total = objective.loss_gradient_sum(X_p, y_p, batch_size=self.batch_size, encoded=True)
        d = direction(total)
        grad_x = torch.cat(
            [
                objective.poison_feature_gradient(X_p[b], y_p[b], d, encoded=True)[0]
                for b in batch_slices(len(X_p), self.batch_size, even=True)
            ]
        )
        return _dissimilarity(unit_target, total), grad_x

    def _bounds(self, objective, X0, box):
        """Per-entry ``(low, high)`` tensors of the projection, or ``(None, None)``."""
        low = high = None
        if box is not None:
            low = objective.as_features(np.broadcast_to(box[0], X0.shape))
            high = objective.as_features(np.broadcast_to(box[1], X0.shape))
        if self.perturbation_bound is not None:
            start = objective.as_features(X0)
            ball_low, ball_high = start - self.perturbation_bound, start + self.perturbation_bound
            low = ball_low if low is None else torch.maximum(low, ball_low)
            high = ball_high if high is None else torch.minimum(high, ball_high)
        return low, high

    def _restart(self, objective, X0, y_encoded, unit_target, lr, box, progress):
        """One signed-Adam run from ``X0``; returns (best value, best X, history)."""
        low, high = self._bounds(objective, X0, box)
        X_p = objective.as_features(X0).clone()
        if low is not None:
            X_p = torch.minimum(torch.maximum(X_p, low), high)
        optimizer = torch.optim.Adam([X_p], lr=lr)
        milestones = sorted({max(1, int(self.max_iter * f)) for f in (3 / 8, 5 / 8, 7 / 8)})
        scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones, gamma=0.1)
        history, best_value, best_X = [], math.inf, X_p.detach().clone()
        for step in range(self.max_iter + 1):
            value, grad_x = self._matching_step(objective, X_p.detach(), y_encoded, unit_target)
            if not (math.isfinite(value) and bool(torch.isfinite(grad_x).all())):
                raise FloatingPointError(
                    f"GradientMatching hit a non-finite dissimilarity or gradient at step "
                    f"{step}; use dtype='float64', a smaller lr or a perturbation_bound."
                )
            history.append(value)
            if value < best_value:
                best_value, best_X = value, X_p.detach().clone()
            progress.update()
            if self.verbose:
                progress.set_postfix(dissimilarity=f"{value:.3e}")
            if step == self.max_iter:
                break
            X_p.grad = torch.sign(grad_x)
            optimizer.step()
            scheduler.step()
            if low is not None:
                with torch.no_grad():
                    torch.clamp(X_p, low, high, out=X_p)
        return best_value, best_X, history

    @with_autograd
    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y):
        """Build the poison for the clean data ``(X, y)``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Clean training data.
        y : array-like of shape (n_samples,)
            Clean labels.

        Returns
        -------
        self : GradientMatching
        """
        X_given = X
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32])
        if not is_regressor_target(self.estimator):
            check_classification_targets(y)
        n = len(X)
        n_poison = n_poison_points(self.epsilon_d, n)
        box = clean_in_box(X, self.feature_range, self.clip)
        rng = check_random_state(self.random_state)
        torch.manual_seed(rng.randint(np.iinfo(np.int32).max))

        self.estimator_ = fit_source_estimator(self.estimator, X_given, y)
        objective = as_objective(self.estimator_, device=self.device, dtype=self.dtype)
        objective.check_n_features(X.shape[1])
        self.objective_ = objective
        target = reversed_gradient(
            objective, X, objective.encode_labels(y), batch_size=self.batch_size
        )
        self.reversed_gradient_ = target.cpu().numpy().astype(np.float64)
        norm = float(target.norm())
        if not (math.isfinite(norm) and norm > 0):
            raise ValueError(
                f"The reversed-loss gradient of {type(self.estimator_).__name__} on the "
                f"clean data is {norm}: there is no direction to match. Check that the "
                "model is not degenerate, or use dtype='float64'."
            )
        unit_target = target / norm
        lr = self.lr * (_mean_feature_std(X) or 1.0)

        best = (math.inf, None, None, None, None)
        per_restart = []
        progress = tqdm(
            total=self.restarts * (self.max_iter + 1), disable=not self.verbose,
            desc="GradientMatching", leave=False,
        )
        for _ in range(self.restarts):
            indices = rng.choice(n, size=n_poison, replace=n_poison > n)
            y_poison = y[indices]
            value, X_best, history = self._restart(
                objective, X[indices], objective.encode_labels(y_poison), unit_target, lr,
                box, progress,
            )
            per_restart.append(value)
            if value < best[0]:
                best = (value, X_best, y_poison, indices, history)
        progress.close()
        value, X_best, y_poison, indices, history = best
        self._set_poison(X_best.cpu().numpy(), y_poison)
        self.init_indices_ = indices
        self.history_ = np.asarray(history, dtype=float)
        self.dissimilarity_ = float(value)
        self.restart_dissimilarities_ = np.asarray(per_restart, dtype=float)
        self.n_iter_ = int(self.max_iter)
        return self

