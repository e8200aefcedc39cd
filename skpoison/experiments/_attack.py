"""The paper's protocol: clean fit -> target -> tau -> GC at each eps_d -> retrain -> table."""

import math
import time

import numpy as np
from sklearn.base import clone
from sklearn.frozen import FrozenEstimator

from .._poisonability import PoisonabilityAnalyzer
from ..attacks import GradientCanceling
from ..targets import resolve_target
from ._registry import accuracy

__all__ = ["evaluate_attack"]


def _budgets(epsilon_d, threshold):
    """The requested eps_d values, with ``"tau"`` replaced by the threshold (when finite)."""
    values = []
    for eps in epsilon_d:
        if isinstance(eps, str):
            if eps != "tau":
                raise ValueError(f"epsilon_d entries are numbers or 'tau', got {eps!r}.")
            if not (math.isfinite(threshold) and threshold > 0):
                continue
            eps = threshold
        eps = float(eps)
        if eps <= 0:
            raise ValueError(f"epsilon_d must be positive, got {eps}.")
        if eps not in values:
            values.append(eps)
    return values


def evaluate_attack(
    X_train,
    y_train,
    X_test,
    y_test,
    victim,
    target,
    *,
    epsilon_d=(0.03, 0.1, 1.0, "tau"),
    attack_params=None,
    random_state=0,
    progress=None,
):
    """Run Gradient Canceling at each budget and measure the victim retrained on the result.

    For each ``eps_d``: build the poison for the target with
    :class:`~skpoison.attacks.GradientCanceling`, retrain a clone of ``victim`` from
    scratch on the clean data plus the poison, and record its test accuracy.

    Parameters
    ----------
    X_train, y_train : array-like
        Clean training data (what the attacker and the victim see).
    X_test, y_test : array-like
        Held-out data for the accuracies.
    victim : estimator
        Unfitted victim, refitted on clean data and on each poisoned set.
    target : estimator
        Target recipe (e.g. :class:`~skpoison.targets.GradPC`) or a frozen fitted model.
    epsilon_d : sequence of float or "tau", default=(0.03, 0.1, 1.0, "tau")
        Budgets; ``"tau"`` stands for the target's threshold (skipped when 0 or inf).
    attack_params : dict or None
        Further parameters of :class:`~skpoison.attacks.GradientCanceling`.
    random_state : int, default=0
        Seed of the attack.
    progress : callable or None
        Called with a message before each attack.

    Returns
    -------
    result : dict
        ``clean_accuracy``, ``target_accuracy``, ``threshold``, ``threshold_binary``,
        ``rows`` (one dict per budget: ``epsilon_d``, ``n_poison``, ``accuracy``,
        ``accuracy_drop``, ``gradient_norm``, ``lower_bound``, ``converged``,
        ``seconds``) and ``histories`` (the relative gradient norm curve per budget).

    Examples
    --------
    >>> from sklearn.linear_model import LogisticRegression
    >>> from skpoison.experiments import evaluate_attack, load_dataset
    >>> from skpoison.targets import LabelFlipTarget
    >>> X_train, X_test, y_train, y_test = load_dataset("gaussian")
    >>> result = evaluate_attack(
    ...     X_train, y_train, X_test, y_test, LogisticRegression(),
    ...     LabelFlipTarget(LogisticRegression(), flip_fraction=0.5, random_state=0),
    ...     epsilon_d=[1.0], attack_params={"max_iter": 200})
    >>> row = result["rows"][0]
    >>> row["accuracy"] < result["clean_accuracy"]
    True
    """
    attack_params = dict(attack_params or {})
    clean = clone(victim).fit(X_train, y_train)
    clean_accuracy = accuracy(clean, X_test, y_test)
    # the target is built once and frozen, so every budget attacks the same model
    target_model = resolve_target(target, X_train, y_train)
    frozen = FrozenEstimator(target_model)
    analyzer = PoisonabilityAnalyzer(
        frozen, **{k: attack_params[k] for k in ("device", "dtype") if k in attack_params}
    ).fit(X_train, y_train)
    rows, histories = [], {}
    for eps in _budgets(epsilon_d, analyzer.threshold_):
        if progress is not None:
            progress(f"Gradient Canceling at eps_d = {eps:.4g}")
        start = time.perf_counter()
        attack = GradientCanceling(
            frozen, epsilon_d=eps, random_state=random_state, **attack_params
        ).fit(X_train, y_train)
        retrained = clone(victim).fit(
            np.vstack([X_train, attack.X_poison_.astype(X_train.dtype)]),
            np.concatenate([y_train, attack.y_poison_]),
        )
        acc = accuracy(retrained, X_test, y_test)
        rows.append(
            {
                "epsilon_d": eps,
                "n_poison": attack.n_poison_,
                "accuracy": acc,
                "accuracy_drop": clean_accuracy - acc,
                "gradient_norm": attack.gradient_norm_,
                "lower_bound": float(
                    attack.analyzer_.residual_lower_bound(attack.n_poison_ / len(X_train))
                ),
                "converged": attack.converged_,
                "seconds": time.perf_counter() - start,
            }
        )
        histories[f"{eps:.4g}"] = attack.history_.tolist()
    return {
        "clean_accuracy": clean_accuracy,
        "target_accuracy": accuracy(target_model, X_test, y_test),
        "threshold": analyzer.threshold_,
        "threshold_binary": analyzer.threshold_binary_,
        "exact": analyzer.exact_,
        "rows": rows,
        "histories": histories,
    }
