"""Influence functions (Koh and Liang 2017): remove the rows of highest influence."""

import warnings
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import is_regressor
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.utils._param_validation import StrOptions

from ..objectives import conjugate_gradient, exact_hessian, hessian_vector_products
from .._utils import NumberInterval, batch_slices, rows_within, user_stacklevel
from ._filter_base import BaseGradientFilter

__all__ = ["InfluenceFilter"]

# solver="auto" uses the exact Hessian up to this many parameters, CG above.
_MAX_EXACT_PARAMS = 5000
# Elements (rows x parameters) per block of rows scored together, bounding the
# per-sample gradient matrix.
_HESSIAN_CHUNK_ELEMENTS = 2**22  # as skpoison.objectives' curvature products


class InfluenceFilter(BaseGradientFilter):
    """Remove the rows of highest influence (Koh and Liang 2017).

    The influence of up-weighting a training row ``z_i`` on the fitted parameters is
    ``-H^{-1} g_i``, where ``g_i = grad_w l(z_i; w)`` is its loss gradient and ``H``
    the Hessian of the training objective, both at the fitted parameters.  Two scores
    rank the rows, higher meaning more harmful; the highest-scoring
    ``round(removal_fraction * n_samples)`` rows are removed:

    - ``influence="self"`` (default): the self-influence ``g_i^T (H + damping I)^{-1} g_i``,
      how much a row's own loss would drop if it were up-weighted, i.e. how much the
      model bends to fit it.  This is how Koh and Liang find mislabeled training points
      (they rank by the magnitude of ``I_up,loss(z_i, z_i) = -g_i^T H^{-1} g_i``), and
      it is the influence defense of Lu, Kamath and Yu (2023, appendix C.10).
    - ``influence="validation"``: a seeded ``validation_fraction`` of the rows is held out,
      the estimator is fitted on the rest, and each row is scored by its influence on
      the mean validation loss ``L_val``: ``score_i = -g_i^T s`` with
      ``s = (H + damping I)^{-1} grad L_val``.  That is ``I_up,loss(z_i, val)``, the
      first-order *increase* of the validation loss when ``z_i`` is up-weighted, so
      positive scores are harmful rows.  Every row is scored, held-out ones included
      (their gradient at the fitted model), and any of them can be removed.  The
      held-out rows come from the same, possibly poisoned, data: poison among them,
      whose losses are large, dominates ``grad L_val`` and makes rows like it look
      *helpful*, so with far-away poison prefer ``"self"``.

    ``H`` is the Hessian of the *mean* objective, ``(sum_i l(z_i; w) + kappa(N) R(w)) /
    N`` with the victim's own penalty (:class:`skpoison.objectives.Objective`), so
    ``damping`` is in units of the average per-sample curvature, whatever ``N``.  With
    ``solver="exact"`` ``H`` is formed with :func:`torch.func.hessian` and the systems
    are solved directly; with ``solver="cg"`` only Hessian-vector products
    (forward-over-reverse) are used, in conjugate gradients, one system per row for
    ``influence="self"`` (solved ``batch_size`` at a time) and one in all for
    ``influence="validation"``.  For nets ``H`` need not be positive definite: use a
    positive ``damping``.

    Parameters
    ----------
    estimator : estimator
        The unfitted victim, one supported by :func:`skpoison.objectives.as_objective`
        (cloned before fitting).
    removal_fraction : float, default=0.1
        Fraction of the rows to remove, in ``[0, 1)``.
    influence : {"self", "validation"}, default="self"
        The influence that ranks the rows (see above).  (Not named ``score``, which
        scikit-learn reserves for the scoring method.)
    validation_fraction : float, default=0.2
        Fraction of the rows held out for ``influence="validation"`` (stratified for
        classifiers when every class allows it).
    damping : float, default=0.01
        ``lambda >= 0`` added to the diagonal of ``H``.
    solver : {"auto", "exact", "cg"}, default="auto"
        ``"auto"``: ``"exact"`` up to 5000 parameters (all the linear models of the
        paper but MNIST's), ``"cg"`` above.
    cg_max_iter : int, default=100
        Conjugate-gradient iterations per system.
    cg_tol : float, default=1e-6
        Relative residual at which a conjugate-gradient system is solved; a
        :class:`~sklearn.exceptions.ConvergenceWarning` says how many were not.
    batch_size : int or None, default=None
        Rows per chunk for gradients and Hessian products, and rows scored (systems
        solved) together; ``None`` picks sizes that bound memory.  The gradient matrix
        is never held whole.
    random_state : int, RandomState instance or None, default=None
        Seed of the validation split.
    device : str, default="auto"
        Torch device for skorch nets (``"auto"``: CUDA when available).  Linear models
        are always handled on the CPU in float64.

    Attributes
    ----------
    scores_ : ndarray of shape (n_samples,)
        Influence score of each row; higher is more harmful.
    sample_indices_ : ndarray of shape (n_kept,)
        Indices of the kept rows, ascending.
    removed_indices_ : ndarray of shape (n_removed,)
        Indices of the removed rows, ascending.
    validation_indices_ : ndarray of shape (n_validation,)
        Rows held out for ``influence="validation"`` (empty for ``influence="self"``).
    solver_ : str
        The solver used, ``"exact"`` or ``"cg"``.
    n_removed_ : int
        Number of rows removed.
    n_rounds_ : int
        Always 1.
    sampling_strategy_ : dict
        Rows removed per class label (imbalanced-learn's attribute; empty for a
        regressor).
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of the features seen during fit, when ``X`` has string column names.

    See Also
    --------
    SeverFilter : Remove the rows whose gradients are outliers.

    Notes
    -----
    ``fit_predict`` requires ``y`` (its default only keeps
    :class:`sklearn.base.OutlierMixin`'s signature).  Self-influence with
    ``solver="cg"`` solves one system per row, each iteration a pass over the data, so
    it costs about ``cg_max_iter`` epochs of gradient work per row block: prefer the
    exact solver or ``influence="validation"`` (one system) on large data.

    References
    ----------
    P. W. Koh and P. Liang (2017). Understanding Black-box Predictions via Influence
    Functions. ICML.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> from skpoison.datasets import make_gaussian
    >>> from skpoison.defenses import InfluenceFilter
    >>> X, y = make_gaussian(n_samples=200, n_features=5, random_state=0)
    >>> far = np.tile([0.0, 0.0, -3.0, -3.0, 3.0], (10, 1))  # deep in class 1 ...
    >>> X_bad = np.vstack([X, far])
    >>> y_bad = np.concatenate([y, np.zeros(10, dtype=y.dtype)])  # ... labelled 0
    >>> influence = InfluenceFilter(LogisticRegression(), removal_fraction=0.05)
    >>> labels = influence.fit_predict(X_bad, y_bad)
    >>> int(np.sum(labels == -1)), int(np.sum(labels[200:] == -1))
    (10, 9)
    """

    _parameter_constraints = {
        **BaseGradientFilter._parameter_constraints,
        "influence": [StrOptions({"self", "validation"})],
        "validation_fraction": [NumberInterval(Real, 0, 1, closed="neither")],
        "damping": [NumberInterval(Real, 0, None, closed="left")],
        "solver": [StrOptions({"auto", "exact", "cg"})],
        "cg_max_iter": [NumberInterval(Integral, 1, None, closed="left")],
        "cg_tol": [NumberInterval(Real, 0, None, closed="neither")],
    }

    def __init__(
        self,
        estimator,
        *,
        removal_fraction=0.1,
        influence="self",
        validation_fraction=0.2,
        damping=0.01,
        solver="auto",
        cg_max_iter=100,
        cg_tol=1e-6,
        batch_size=None,
        random_state=None,
        device="auto",
    ):
        self.estimator = estimator
        self.removal_fraction = removal_fraction
        self.influence = influence
        self.validation_fraction = validation_fraction
        self.damping = damping
        self.solver = solver
        self.cg_max_iter = cg_max_iter
        self.cg_tol = cg_tol
        self.batch_size = batch_size
        self.random_state = random_state
        self.device = device

    # ------------------------------------------------------------------ helpers
    def _split(self, X, y, rng):
        """Indices ``(train, validation)`` of the seeded validation split."""
        n = len(X)
        indices = np.arange(n)
        n_val = int(round(self.validation_fraction * n))
        if n_val < 1 or n - n_val < 2:
            raise ValueError(
                f"validation_fraction={self.validation_fraction} leaves {n_val} validation "
                f"and {n - n_val} training rows of {n}; both need at least one (training: "
                "two)."
            )
        seed = rng.randint(np.iinfo(np.int32).max)
        stratify = None
        if self._is_classification(y):
            _, counts = np.unique(y, return_counts=True)
            if counts.min() >= 2 and n_val >= len(counts) and n - n_val >= len(counts):
                stratify = y
        train, val = train_test_split(
            indices, test_size=n_val, random_state=seed, stratify=stratify
        )
        return np.sort(train), np.sort(val)

    def _is_classification(self, y):
        return not is_regressor(self.estimator)

    def _solver(self, objective, X, y):
        """``B -> ((H + damping I)^{-1} B, n_unsolved)``, ``B`` of shape ``(n_params, k)``.

        The exact solver factors ``H + damping I`` once; the CG solver keeps only
        Hessian-vector products and reports how many systems missed ``cg_tol``.
        """
        p = objective.n_params
        if self.solver_ == "exact":
            H = exact_hessian(objective, X, y, self.batch_size)
            A = H + self.damping * torch.eye(p, device=H.device, dtype=H.dtype)
            factor, info = torch.linalg.cholesky_ex(A)
            if int(info) == 0:
                return lambda B: (torch.cholesky_solve(B, factor), 0)
            # not positive definite (a net's Hessian): LU, unless A is singular
            lu, pivots, info = torch.linalg.lu_factor_ex(A)
            if int(info) != 0 or not bool(torch.isfinite(lu).all()):
                raise ValueError(
                    f"The Hessian of the fitted {type(objective.estimator).__name__} plus "
                    f"damping={self.damping} is singular; raise damping."
                )
            return lambda B: (torch.linalg.lu_solve(lu, pivots, B), 0)
        product = hessian_vector_products(objective, X, y, self.batch_size)

        def matmul(V):
            return product(V) + self.damping * V

        return lambda B: conjugate_gradient(matmul, B, max_iter=self.cg_max_iter, tol=self.cg_tol)

    def _score_round(self, X, y, rng):
        if self.influence == "validation":
            train, val = self._split(X, y, rng)
        else:
            train, val = np.arange(len(X)), np.arange(0)
        self.validation_indices_ = val
        objective = self._objective(self._fit_estimator(X[train], y[train]))
        p = objective.n_params
        if self.solver == "auto":
            self.solver_ = "exact" if p <= _MAX_EXACT_PARAMS else "cg"
        else:
            self.solver_ = self.solver
        solve = self._solver(
            objective, objective.as_features(X[train]), objective.encode_labels(y[train])
        )
        if self.influence == "validation":
            val_gradient = objective.loss_gradient_sum(X[val], y[val]) / len(val)
            s_test, failed = solve(val_gradient[:, None])
            s_test = s_test[:, 0]
        else:
            failed = 0
        # rows in blocks: the gradient matrix is never held whole
        block = rows_within(len(X), p, _HESSIAN_CHUNK_ELEMENTS, self.batch_size)
        scores = []
        for rows in batch_slices(len(X), block, even=True):
            grads = self._per_sample_gradients(objective, X[rows], y[rows])
            if self.influence == "self":
                solved, n_failed = solve(grads.T)
                failed += n_failed
                scores.append((grads * solved.T).sum(dim=1))
            else:
                scores.append(-(grads @ s_test))
        n_systems = len(X) if self.influence == "self" else 1
        if failed:
            warnings.warn(
                f"InfluenceFilter: conjugate gradients did not reach cg_tol={self.cg_tol} "
                f"in cg_max_iter={self.cg_max_iter} iterations for {failed} of "
                f"{n_systems} systems; raise cg_max_iter or damping.",
                ConvergenceWarning,
                stacklevel=user_stacklevel(),
            )
        return torch.cat(scores).cpu().numpy()
