"""Scaling a target until its threshold fits a budget (paper, appendix C.8)."""

import math

from sklearn.frozen import FrozenEstimator
from sklearn.utils import check_array

from ..objectives import CleanGradient, as_objective
from ._base import resolve_target
from ._scaled import ScaledTarget

__all__ = ["scale_to_threshold"]


def scale_to_threshold(
    target, X, y, threshold, *, min_scale=1e-4, n_steps=20, device="auto", dtype="float32"
):
    """The most confident scaled copy of a target whose tau is at most ``threshold``.

    Scaling the output layer by ``s`` keeps the target's predictions and lowers its
    threshold (appendix C.8 of the paper).  This bisects ``s`` in log-scale on
    ``[min_scale, 1]`` for the largest ``s`` with ``tau(s) <= threshold``, so a budget
    ``eps_d = threshold`` can reach the scaled target's necessary condition.

    Parameters
    ----------
    target : estimator
        A recipe, a frozen model or a fitted model (see
        :func:`~skpoison.targets.resolve_target`).
    X, y : array-like
        Clean training data.
    threshold : float
        The tau to fit under.
    min_scale : float, default=1e-4
        Smallest scale tried.
    n_steps : int, default=20
        Bisection steps.
    device, dtype : str
        Torch device and precision of the threshold computations.

    Returns
    -------
    model : estimator
        The scaled target (a fitted copy; the original is unchanged).
    scale : float
        The factor applied (1.0 when the target already fits).

    Examples
    --------
    >>> from sklearn.linear_model import LogisticRegression
    >>> from skpoison import PoisonabilityAnalyzer
    >>> from skpoison.datasets import load_digits
    >>> from skpoison.targets import GradPC, scale_to_threshold
    >>> X, y = load_digits(return_X_y=True)
    >>> recipe = GradPC(LogisticRegression(max_iter=1000), epsilon_w=0.5, relative=True,
    ...                 random_state=0)
    >>> model, scale = scale_to_threshold(recipe, X, y, 0.1, n_steps=6, device="cpu")
    >>> tau = PoisonabilityAnalyzer(FrozenEstimator(model), device="cpu").fit(X, y).threshold_
    >>> bool(tau <= 0.1), bool(0 < scale < 1)
    (True, True)
    """
    if not threshold > 0:
        raise ValueError(f"threshold must be positive, got {threshold!r}.")
    X = check_array(X, dtype=[float, "float32"])
    model = resolve_target(target, X, y)

    def scaled(s):
        return ScaledTarget(FrozenEstimator(model), scale=s).fit(X, y).target_

    def tau(candidate):
        objective = as_objective(candidate, device=device, dtype=dtype)
        objective.check_n_features(X.shape[1])
        return CleanGradient(objective, X, y).threshold()

    if tau(model) <= threshold:
        return model, 1.0
    low, high = math.log(min_scale), 0.0
    if tau(scaled(min_scale)) > threshold:
        raise ValueError(
            f"Even scaled by {min_scale} the target's tau exceeds {threshold}; lower "
            "min_scale or raise the threshold."
        )
    for _ in range(n_steps):
        middle = 0.5 * (low + high)
        if tau(scaled(math.exp(middle))) <= threshold:
            low = middle
        else:
            high = middle
    return scaled(math.exp(low)), math.exp(low)
