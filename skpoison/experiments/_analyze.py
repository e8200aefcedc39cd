"""The poisonability report: clean model, target, tau and reachable budgets."""

import time

from sklearn.base import clone
from sklearn.frozen import FrozenEstimator

from .._poisonability import PoisonabilityAnalyzer
from ._registry import accuracy, default_epsilon_w, load_dataset, make_model, make_target

__all__ = ["analyze_poisonability"]


def analyze_poisonability(
    dataset="digits",
    model="logreg",
    *,
    target="gradpc",
    epsilon_d=(0.03, 0.1, 1.0),
    epsilon_w=None,
    random_state=0,
    data_home=None,
    device="auto",
):
    """Fit the clean model and a target, and report tau and which budgets can reach it.

    Parameters
    ----------
    dataset : str, default="digits"
        A name from :data:`skpoison.experiments.DATASETS`.
    model : str, default="logreg"
        A name from :data:`skpoison.experiments.MODELS`.
    target : str, default="gradpc"
        A name from :data:`skpoison.experiments.TARGETS`.
    epsilon_d : sequence of float, default=(0.03, 0.1, 1.0)
        Poisoning ratios to check against the threshold.
    epsilon_w : float or None
        Parameter budget of the GradPC/RandomPC target; ``None`` uses
        :func:`default_epsilon_w`.
    random_state : int, default=0
        Seed of the split, the victim and the target.
    data_home : str or None
        Folder of the MNIST files.
    device : str, default="auto"
        Torch device of the analyzer.

    Returns
    -------
    report : dict
        ``clean_accuracy``, ``target_accuracy`` (test set), ``threshold``,
        ``threshold_binary``, ``exact``, ``inner_product`` and ``budgets``: a list of
        ``{"epsilon_d", "poisonable", "residual_lower_bound"}``.

    Examples
    --------
    >>> from skpoison.experiments import analyze_poisonability
    >>> report = analyze_poisonability("or", "logreg", epsilon_w=0.5, epsilon_d=[0.1, 10.0])
    >>> report["target_accuracy"] < report["clean_accuracy"]
    True
    >>> [b["poisonable"] for b in report["budgets"]]
    [False, True]
    """
    start = time.perf_counter()
    X_train, X_test, y_train, y_test = load_dataset(
        dataset, random_state=random_state, data_home=data_home
    )
    victim = make_model(model, random_state=random_state, device=device)
    clean = clone(victim).fit(X_train, y_train)
    epsilon_w = default_epsilon_w(model, dataset) if epsilon_w is None else float(epsilon_w)
    recipe = make_target(
        target, victim, random_state=random_state, epsilon_w=epsilon_w, device=device
    ).fit(X_train, y_train)
    analyzer = PoisonabilityAnalyzer(FrozenEstimator(recipe.target_), device=device).fit(
        X_train, y_train
    )
    budgets = [
        {
            "epsilon_d": float(eps),
            "poisonable": bool(analyzer.is_poisonable(eps)),
            "residual_lower_bound": float(analyzer.residual_lower_bound(eps)),
        }
        for eps in epsilon_d
    ]
    return {
        "dataset": dataset,
        "model": model,
        "target": target,
        "epsilon_w": epsilon_w,
        "n_train": int(len(X_train)),
        "n_test": int(len(X_test)),
        "clean_accuracy": accuracy(clean, X_test, y_test),
        "target_accuracy": accuracy(recipe.target_, X_test, y_test),
        "threshold": analyzer.threshold_,
        "threshold_binary": analyzer.threshold_binary_,
        "exact": analyzer.exact_,
        "inner_product": analyzer.inner_product_,
        "budgets": budgets,
        "seconds": time.perf_counter() - start,
    }
