"""TGDA (Lu, Kamath and Yu, TMLR 2022): the Stackelberg poisoning game, as a sampler."""

import warnings
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import _fit_context, clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.frozen import FrozenEstimator
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import HasMethods
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import validate_data
from tqdm.auto import tqdm

from ..objectives import as_objective, conjugate_gradient, loss_hessian_products
from ..objectives._curvature import penalty_hessian_diagonal
from ..targets import TargetRecipe
from .._utils import (
    NumberInterval,
    batch_slices,
    check_feature_names,
    clean_batch_rows,
    user_stacklevel,
    with_autograd,
)
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

__all__ = ["TGDA"]


class _Rows:
    """The rows ``X[index]`` sliced lazily, so no copy of the clean data is made."""

    def __init__(self, X, index):
        self.X, self.index = X, index

    def __len__(self):
        return len(self.index)

    def __getitem__(self, sl):
        return self.X[self.index[sl]]


def _split(y, fraction, rng, classification):
    """Seeded indices ``(train, validation)``, stratified when every class allows it."""
    n = len(y)
    n_val = int(round(fraction * n))
    if n_val < 1 or n - n_val < 2:
        raise ValueError(
            f"validation_fraction={fraction} leaves {n_val} validation and {n - n_val} "
            f"training rows of {n}; both need at least one (training: two). Change "
            "validation_fraction or pass more rows."
        )
    stratify = None
    if classification:
        _, counts = np.unique(y, return_counts=True)
        if counts.min() >= 2 and n_val >= len(counts) and n - n_val >= len(counts):
            stratify = y
    seed = rng.randint(np.iinfo(np.int32).max)
    train, val = train_test_split(np.arange(n), test_size=n_val, random_state=seed,
                                  stratify=stratify)
    return np.sort(train), np.sort(val)


class _Game:
    """The follower's objective and the leader's total gradient at parameters ``w``.

    The follower minimises the mean training objective over the clean training rows
    plus the poison, ``F(w, X_p) = (sum_train l + sum_poison l + kappa(N) R(w)) / N``;
    the leader maximises the mean validation loss ``L(w)``.  At a minimiser ``w*(X_p)``
    of ``F``, ``dL/dX_p = -(d/dX_p grad_w F)^T (H_ww F)^{-1} grad_w L``.
    """

    def __init__(self, objective, train, val, y_poison, *, rows, batch_size, damping,
                 cg_max_iter, cg_tol):
        self.objective = objective
        self.train, self.val = train, val  # (rows, encoded labels)
        self.y_poison = y_poison
        self.rows, self.batch_size = rows, batch_size
        self.damping, self.cg_max_iter, self.cg_tol = damping, cg_max_iter, cg_tol
        self.N = len(train[0]) + len(y_poison)
        self.penalty = penalty_hessian_diagonal(objective, self.N)

    def _sum(self, data, w):
        X, y = data
        params = self.objective.unflatten(w)
        return sum(
            self.objective.loss_gradient_sum(X[sl], y[sl], encoded=True, params=params)
            for sl in batch_slices(len(X), self.rows, even=True)
        )

    def train_gradient(self, w, X_p):
        """``grad_w F(w, X_p)``."""
        poison = self.objective.loss_gradient_sum(
            X_p, self.y_poison, batch_size=self.batch_size, encoded=True,
            params=self.objective.unflatten(w),
        )
        return (self._sum(self.train, w) + poison + self.penalty * w) / self.N

    def validation_loss(self, w):
        """``L(w)``: the mean loss on the validation rows."""
        X, y = self.val
        params = self.objective.unflatten(w)
        with torch.no_grad():
            total = sum(
                float(self.objective.sample_losses(X[sl], y[sl], params, encoded=True).sum())
                for sl in batch_slices(len(X), self.rows, even=True)
            )
        return total / len(X)

    def total_gradient(self, w, X_p, start=None):
        """``(dL/dX_p, s, n_unsolved)`` with ``s = (H + damping I)^{-1} grad_w L``.

        ``start`` warm-starts conjugate gradients (the previous step's ``s``).
        """
        objective = self.objective
        v = self._sum(self.val, w) / len(self.val[0])
        clean = loss_hessian_products(objective, *self.train, self.rows, params=w)
        poison = loss_hessian_products(
            objective, X_p, self.y_poison, self.batch_size, params=w
        )

        def matmul(V):
            return (clean(V) + poison(V) + self.penalty[:, None] * V) / self.N + self.damping * V

        s, unsolved = conjugate_gradient(
            matmul, v[:, None], max_iter=self.cg_max_iter, tol=self.cg_tol,
            x0=None if start is None else start[:, None],
        )
        s = s[:, 0]
        params = objective.unflatten(w)
        grad_x = torch.cat(
            [
                objective.poison_feature_gradient(
                    X_p[b], self.y_poison[b], s, encoded=True, params=params
                )[0]
                for b in batch_slices(len(X_p), self.batch_size, even=True)
            ]
        )
        return grad_x.mul_(-1.0 / self.N), s, unsolved


class TGDA(PoisonSampler):
    """TGDA: poison from the total-gradient Stackelberg game of Lu, Kamath and Yu (2022).

    Poisoning as a game: the attacker (*leader*) chooses the poison features ``X_p``
    to maximise the victim's loss on held-out clean data, ``L(w)``; the victim
    (*follower*) answers by minimising its training objective on the clean training
    rows plus the poison, ``F(w, X_p)`` (the mean of the victim's own loss with its
    own penalty, :mod:`skpoison.objectives`).  Each step, the leader ascends the
    *total* gradient of its objective through the follower's best response,

        ``dL/dX_p = -(d/dX_p grad_w F)^T (H + damping I)^{-1} grad_w L``

    with ``H`` the Hessian of ``F`` in ``w``: the inverse-Hessian-vector product is
    solved by conjugate gradients on Hessian-vector products (forward-over-reverse,
    :func:`skpoison.objectives.hessian_vector_products`), warm-started from the
    previous step's solution, and the mixed derivative is one backward pass through
    the poison's gradient.  Then the follower takes ``follower_steps`` gradient-descent
    steps on ``F``.  The poison points are optimised directly (the paper's
    autoencoder generator is not used).

    A seeded ``validation_fraction`` of the clean rows is held out as the leader's
    validation data, as in the paper's 70/30 split; the follower trains on the other
    rows plus the poison.  Poison starts from a seeded random subsample of the
    training rows, keeps their labels, and ``round(epsilon_d * n)`` points are made
    for the ``n`` clean rows given (what :meth:`fit_resample` adds).  The follower
    starts as the victim fitted on the training rows plus that initial poison, so the
    first total gradient is exact for a convex victim.

    Parameters
    ----------
    estimator : estimator
        The victim: an unfitted model supported by
        :func:`skpoison.objectives.as_objective` (cloned and fitted as said above), or
        a :class:`~sklearn.frozen.FrozenEstimator` of a fitted one, the follower's
        starting point as given.
    epsilon_d : float, default=0.1
        Poison points per clean point.
    max_iter : int, default=100
        Leader steps.
    leader_lr : float, default=0.1
        Step size of the leader's Adam ascent, in units of the clean data's mean
        per-feature standard deviation.
    follower_lr : float, default=0.1
        Step size of the follower's gradient descent on the mean objective ``F``.
    follower_steps : int, default=5
        Follower steps after each leader step.
    validation_fraction : float, default=0.3
        Fraction of the clean rows held out for the leader's objective (stratified
        for classifiers when every class allows it).
    damping : float, default=0.01
        ``lambda >= 0`` added to the Hessian's diagonal (in units of the mean
        objective's curvature); nets, whose Hessian need not be positive definite,
        need it positive.
    cg_max_iter : int, default=20
        Conjugate-gradient iterations per leader step.
    cg_tol : float, default=1e-4
        Relative residual at which conjugate gradients stop; a
        :class:`~sklearn.exceptions.ConvergenceWarning` says in how many steps it was
        not reached.
    batch_size : int or None, default=None
        Rows per batch of every pass (clean, validation and poison), so memory is
        bounded by it; ``None``: the poison in one pass and the clean rows in
        batches of about 2 million input elements.  Results do not depend on it.
    feature_range : (low, high) or None, default=None
        Box the poison features are projected onto after each step.
    clip : {"data"} or None, default=None
        ``"data"`` clips poison to the clean data's per-feature range; combined with
        ``feature_range`` the intersection is used.
    random_state : int, RandomState instance or None, default=None
        Seed of the validation split and the initial subsample.
    device : str or torch.device, default="auto"
        Torch device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``...
    dtype : {"float32", "float64"}, default="float32"
        Precision of the game.
    verbose : int, default=0
        Show a progress bar with the follower's validation loss when positive.

    Attributes
    ----------
    X_poison_ : ndarray of shape (n_poison, n_features)
        The poison features after the last leader step.
    y_poison_ : ndarray of shape (n_poison,)
        The poison labels (those of the initial subsample).
    init_indices_ : ndarray of shape (n_poison,)
        Rows of the clean data the poison started from.
    validation_indices_ : ndarray of shape (n_validation,)
        Rows held out as the leader's validation data.
    n_poison_ : int
        Number of poison points.
    sampling_strategy_ : dict
        Poison points added per class label (imbalanced-learn's attribute).
    estimator_ : estimator
        The follower's starting model.
    objective_ : Objective
        Its training objective (the follower's parameters vary, not these).
    history_ : ndarray of shape (n_iter_,)
        The follower's validation loss ``L(w)`` before each leader step.
    leader_gradient_ : ndarray of shape (n_poison, n_features)
        The total gradient ``dL/dX_p`` of the last leader step.
    n_iter_ : int
        Leader steps taken.
    n_features_in_ : int
        Number of features seen during fit.

    See Also
    --------
    skpoison.attacks.GradientCanceling : Poison that makes a chosen target stationary.
    skpoison.attacks.GradientMatching : Poison that matches a reversed-loss gradient.

    Notes
    -----
    Cost per leader step, with ``n_t`` training rows, ``n_v`` validation rows and
    ``m`` poison rows: one gradient pass over the validation rows; at most
    ``cg_max_iter`` Hessian-vector products over the ``n_t + m`` rows (each a
    forward-over-reverse pass, about two to three gradient passes); one pass over the
    poison with a second-order backward (the mixed derivative); and
    ``follower_steps`` gradient passes over the ``n_t + m`` rows.  In epochs of
    gradient work over the training data, about ``2.5 * cg_max_iter +
    follower_steps`` (55 with the defaults), against about 2 poison passes for a
    Gradient Canceling step: TGDA is one to two orders of magnitude slower per step.
    Memory is that of one batch plus a few parameter-sized vectors.

    References
    ----------
    .. [1] Lu, Kamath and Yu, "Indiscriminate data poisoning attacks on neural
       networks", Transactions on Machine Learning Research, 2022.

    Examples
    --------
    >>> from sklearn.linear_model import LogisticRegression
    >>> from skpoison.attacks import TGDA
    >>> from skpoison.datasets import make_gaussian
    >>> X, y = make_gaussian(n_samples=200, random_state=0)
    >>> tgda = TGDA(LogisticRegression(), epsilon_d=0.1, max_iter=10, random_state=0)
    >>> X_mixed, y_mixed = tgda.fit_resample(X, y)
    >>> X_mixed.shape
    (220, 10)
    >>> bool(tgda.history_[-1] > tgda.history_[0])  # the follower's validation loss
    True
    """

    _parameter_constraints = {
        **COMMON_CONSTRAINTS,
        **BOX_CONSTRAINTS,
        **BATCH_CONSTRAINT,
        "estimator": [HasMethods(["fit"])],
        "max_iter": [NumberInterval(Integral, 1, None, closed="left")],
        "leader_lr": [NumberInterval(Real, 0, None, closed="neither")],
        "follower_lr": [NumberInterval(Real, 0, None, closed="neither")],
        "follower_steps": [NumberInterval(Integral, 0, None, closed="left")],
        "validation_fraction": [NumberInterval(Real, 0, 1, closed="neither")],
        "damping": [NumberInterval(Real, 0, None, closed="left")],
        "cg_max_iter": [NumberInterval(Integral, 1, None, closed="left")],
        "cg_tol": [NumberInterval(Real, 0, None, closed="neither")],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        estimator,
        *,
        epsilon_d=0.1,
        max_iter=100,
        leader_lr=0.1,
        follower_lr=0.1,
        follower_steps=5,
        validation_fraction=0.3,
        damping=0.01,
        cg_max_iter=20,
        cg_tol=1e-4,
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
        self.leader_lr = leader_lr
        self.follower_lr = follower_lr
        self.follower_steps = follower_steps
        self.validation_fraction = validation_fraction
        self.damping = damping
        self.cg_max_iter = cg_max_iter
        self.cg_tol = cg_tol
        self.batch_size = batch_size
        self.feature_range = feature_range
        self.clip = clip
        self.random_state = random_state
        self.device = device
        self.dtype = dtype
        self.verbose = verbose

    def _initial_follower(self, X_given, X_fit, y_fit):
        """The follower's starting model: a frozen one as given, others fitted."""
        if isinstance(self.estimator, FrozenEstimator):
            check_feature_names(self.estimator.estimator, X_given)
            return self.estimator.estimator
        if isinstance(self.estimator, TargetRecipe):
            raise ValueError(
                "TGDA's estimator is the victim that retrains on the poison; pass an "
                "unfitted model (or a FrozenEstimator of a fitted one), not the recipe "
                f"{type(self.estimator).__name__}."
            )
        return clone(self.estimator).fit(X_fit, y_fit)

    @with_autograd
    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y):
        """Play the game on the clean data ``(X, y)`` and keep the leader's poison.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Clean training data.
        y : array-like of shape (n_samples,)
            Clean labels.

        Returns
        -------
        self : TGDA
        """
        X_given = X
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32])
        classification = not is_regressor_target(self.estimator)
        if classification:
            check_classification_targets(y)
        n = len(X)
        n_poison = n_poison_points(self.epsilon_d, n)
        box = clean_in_box(X, self.feature_range, self.clip)
        rng = check_random_state(self.random_state)
        train, val = _split(y, self.validation_fraction, rng, classification)
        indices = rng.choice(train, size=n_poison, replace=n_poison > len(train))
        y_poison = y[indices]
        self.validation_indices_ = val
        self.init_indices_ = indices

        follower = self._initial_follower(
            X_given, np.vstack([X[train], X[indices]]), np.concatenate([y[train], y_poison])
        )
        objective = as_objective(follower, device=self.device, dtype=self.dtype)
        objective.check_n_features(X.shape[1])
        self.estimator_, self.objective_ = follower, objective
        rows = clean_batch_rows(n, X.shape[1], self.batch_size)
        game = _Game(
            objective,
            (_Rows(X, train), objective.encode_labels(y[train])),
            (_Rows(X, val), objective.encode_labels(y[val])),
            objective.encode_labels(y_poison),
            rows=rows, batch_size=self.batch_size, damping=self.damping,
            cg_max_iter=self.cg_max_iter, cg_tol=self.cg_tol,
        )

        X_p = objective.as_features(X[indices]).clone()
        low = high = None
        if box is not None:
            low, high = objective.as_features(box[0]), objective.as_features(box[1])
        leader = torch.optim.Adam(
            [X_p], lr=self.leader_lr * (_mean_feature_std(X) or 1.0), maximize=True
        )
        w = objective.flat_params().clone()
        follower_optimizer = torch.optim.SGD([w], lr=self.follower_lr)

        history, unsolved_steps, s = [], 0, None
        progress = tqdm(range(self.max_iter), disable=not self.verbose, desc="TGDA",
                        leave=False)
        for step in progress:
            history.append(game.validation_loss(w))
            if self.verbose:
                progress.set_postfix(validation_loss=f"{history[-1]:.4g}")
            grad_x, s, unsolved = game.total_gradient(w, X_p.detach(), s)
            if not bool(torch.isfinite(grad_x).all()):
                self._store(X_p, y_poison, history, grad_x, step)
                raise FloatingPointError(
                    f"TGDA hit a non-finite total gradient at leader step {step}; the "
                    "poison so far is kept in X_poison_. Raise damping, lower the step "
                    "sizes or use dtype='float64'."
                )
            unsolved_steps += unsolved > 0
            X_p.grad = grad_x
            leader.step()
            if low is not None:
                with torch.no_grad():
                    torch.maximum(torch.minimum(X_p, high), low, out=X_p)
            if step + 1 < self.max_iter:
                for _ in range(self.follower_steps):
                    w.grad = game.train_gradient(w.detach(), X_p.detach())
                    follower_optimizer.step()
        progress.close()
        if unsolved_steps:
            warnings.warn(
                f"TGDA: conjugate gradients did not reach cg_tol={self.cg_tol} in "
                f"cg_max_iter={self.cg_max_iter} iterations in {unsolved_steps} of "
                f"{self.max_iter} leader steps; raise cg_max_iter or damping.",
                ConvergenceWarning,
                stacklevel=user_stacklevel(),
            )
        self._store(X_p, y_poison, history, grad_x, self.max_iter)
        return self

    def _store(self, X_p, y_poison, history, grad_x, n_iter):
        self._set_poison(X_p.detach().cpu().numpy(), y_poison)
        self.history_ = np.asarray(history, dtype=float)
        self.leader_gradient_ = grad_x.detach().cpu().numpy().astype(np.float64)
        self.n_iter_ = int(n_iter)
