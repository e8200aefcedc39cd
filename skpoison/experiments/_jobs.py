"""The named jobs of the command line: the poisonability report and the attack table.

Each takes names from the registry (:data:`DATASETS`, :data:`MODELS`, :data:`TARGETS`,
:data:`DEFENSES`), runs the protocol and returns a plain dict that
:mod:`skpoison.experiments` formats and writes.
"""

import time

from sklearn.frozen import FrozenEstimator

from ..targets import scale_to_threshold
from ._protocol import PoisoningProtocol, evaluate_attack, evaluate_defense
from ._registry import default_epsilon_w, load_dataset, make_defense, make_model, make_target

__all__ = ["analyze_poisonability", "attack_report"]


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
    epsilon_w = default_epsilon_w(model, dataset) if epsilon_w is None else float(epsilon_w)
    recipe = make_target(
        target, victim, random_state=random_state, epsilon_w=epsilon_w, device=device
    )
    protocol = PoisoningProtocol(
        X_train, y_train, X_test, y_test, victim, recipe, device=device
    ).fit()
    analyzer = protocol.analyzer()
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
        "clean_accuracy": protocol.clean_accuracy_,
        "target_accuracy": protocol.target_accuracy_,
        "threshold": analyzer.threshold_,
        "threshold_binary": analyzer.threshold_binary_,
        "exact": analyzer.exact_,
        "inner_product": analyzer.inner_product_,
        "budgets": budgets,
        "seconds": time.perf_counter() - start,
    }


def attack_report(
    dataset="digits",
    model="logreg",
    *,
    target="gradpc",
    epsilon_w=None,
    target_threshold=None,
    epsilon_d=(0.03, 0.1, 1.0, 3.0, "tau"),
    max_iter=300,
    clip=None,
    defense=None,
    random_state=0,
    data_home=None,
    n_train=None,
    n_test=None,
    device="auto",
    progress=None,
    verbose=0,
):
    """Run the paper's protocol on a named dataset and return the attack table.

    Clean fit, target (GradPC with the paper's ``epsilon_w`` by default), threshold,
    Gradient Canceling at each ``eps_d``, retraining of the victim on clean plus
    poison, test accuracy.

    Parameters
    ----------
    dataset, model, target : str
        Names from :data:`DATASETS`, :data:`MODELS`, :data:`TARGETS`.
    epsilon_w : float or None
        Parameter budget of the GradPC/RandomPC target; ``None`` uses
        :func:`default_epsilon_w` (the paper's protocol on MNIST).
    target_threshold : float or None
        When set, the target is scaled down (same predictions) until its tau is at
        most this value, with :func:`~skpoison.targets.scale_to_threshold` (appendix C.8 of the paper).
    epsilon_d : sequence of float or "tau", default=(0.03, 0.1, 1.0, 3.0, "tau")
        Poison budgets.
    max_iter : int, default=300
        Gradient Canceling steps per budget (the attack's own default is 1000; 300
        keeps the main job to seconds and changes its accuracies by a few points).
    clip : {"data"} or None
        ``"data"`` runs GC-c (poison clipped to the clean data's range).
    defense : {"sever", "influence"} or None
        The defense table instead (paper, Tables 3 and 10): GC and GC-c at each
        budget, each also after the named filter (GC-d, GC-cd), which removes as many
        rows as there are poison points; ``clip`` must then be ``None``.  See
        :func:`evaluate_defense` for the rows.
    random_state : int, default=0
    data_home : str or None
        Folder of the MNIST or CIFAR-10 files.
    n_train, n_test : int or None
        Keep a seeded stratified subsample of that many training (attacked) and
        test rows, see :func:`load_dataset`; None keeps them all.
    device : str, default="auto"
    progress : callable or None
        Called with a message at each stage.
    verbose : int, default=0
        Passed to :class:`~skpoison.attacks.GradientCanceling`: when positive, a
        progress bar over the steps of each attack.

    Returns
    -------
    report : dict
        The settings, ``clean_accuracy``, ``target_accuracy``, ``threshold``,
        ``threshold_binary``, ``rows`` and ``histories`` (see
        :func:`evaluate_attack`) and the total ``seconds``.

    Examples
    --------
    >>> from skpoison.experiments import attack_report
    >>> report = attack_report("or", "logreg", epsilon_d=[1.0], max_iter=100)
    >>> sorted(report["rows"][0])[:3]
    ['accuracy', 'accuracy_drop', 'converged']
    """
    start = time.perf_counter()
    epsilon_w = default_epsilon_w(model, dataset) if epsilon_w is None else float(epsilon_w)
    if progress is not None:
        progress(f"loading {dataset}")
    X_train, X_test, y_train, y_test = load_dataset(
        dataset, random_state=random_state, data_home=data_home, n_train=n_train, n_test=n_test
    )
    victim = make_model(model, random_state=random_state, device=device)
    recipe = make_target(
        target, victim, random_state=random_state, epsilon_w=epsilon_w, device=device
    )
    scale = 1.0
    if target_threshold is not None:
        if progress is not None:
            progress(f"scaling the target to tau <= {target_threshold:g}")
        scaled, scale = scale_to_threshold(
            recipe, X_train, y_train, target_threshold, device=device
        )
        recipe = FrozenEstimator(scaled)
    attack_params = {"max_iter": max_iter, "clip": clip, "device": device, "verbose": verbose}
    if defense is None:
        result = evaluate_attack(
            X_train, y_train, X_test, y_test, victim, recipe,
            epsilon_d=epsilon_d, attack_params=attack_params,
            random_state=random_state, progress=progress,
        )
    else:
        if clip is not None:
            raise ValueError(
                "clip and defense: the defense table runs GC both without and with "
                "clipping; leave clip=None."
            )
        filt = make_defense(defense, victim, random_state=random_state, device=device)
        result = evaluate_defense(
            X_train, y_train, X_test, y_test, victim, recipe, filt,
            epsilon_d=epsilon_d, attack_params=attack_params,
            random_state=random_state, progress=progress,
        )
    result.update(
        dataset=dataset,
        model=model,
        target=target,
        epsilon_w=epsilon_w,
        target_scale=scale,
        clip=clip,
        defense=defense,
        n_train=int(len(X_train)),
        n_test=int(len(X_test)),
        seconds=time.perf_counter() - start,
    )
    return result
