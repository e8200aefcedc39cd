"""Several attacks on one split, one target and the same budgets: the comparison of the
paper's appendix C.6 (Gradient Canceling against the KKT and Model-Targeted attacks).

:func:`compare_attacks` runs named attacks from :func:`make_attack` against one fitted
:class:`PoisoningProtocol`; :func:`comparison_report` is the named job of
``skpoison compare`` (a dataset, a victim and a target protocol by name) and
:func:`format_comparison_table` its table.
"""

import time

from sklearn.base import clone
from sklearn.frozen import FrozenEstimator

from .._choices import ATTACKS, COMPARE_TARGETS
from ..attacks import LabelFlipAttack
from ._protocol import PoisoningProtocol, _budgets
from ._registry import default_epsilon_w, load_dataset, make_attack, make_model, make_target
from ._reporting import format_table

__all__ = [
    "compare_attacks",
    "comparison_report",
    "format_comparison_table",
    "label_flip_target",
]

#: Budgets of the comparison: the paper's eps_d of Table 2, used in its appendix C.6.
COMPARE_EPSILON_D = (0.03, 0.1, 1.0)


def label_flip_target(victim, X, y, *, epsilon_d=0.2, strategy="adversarial",
                      random_state=0, device="auto"):
    """The target of Suya et al.'s protocol: the victim retrained on clean data plus
    label-flipped copies of clean rows.

    The copies are those of :class:`~skpoison.attacks.LabelFlipAttack` at budget
    ``epsilon_d`` (adversarial by default: the rows and labels of largest loss at the
    clean model).  On MNIST-17 with logistic regression, ``epsilon_d`` of 0.1, 0.2
    and 0.3 give targets with roughly the 5%, 10% and 15% test error of Suya et al.'s
    targets.

    Returns
    -------
    target : FrozenEstimator
        The fitted victim, frozen (so that the attacks never refit it).

    Examples
    --------
    >>> from sklearn.linear_model import LogisticRegression
    >>> from skpoison.datasets import make_gaussian
    >>> from skpoison.experiments import label_flip_target
    >>> X, y = make_gaussian(random_state=0)
    >>> target = label_flip_target(LogisticRegression(), X, y, epsilon_d=0.3, device="cpu")
    >>> bool(target.score(X, y) < LogisticRegression().fit(X, y).score(X, y))
    True
    """
    flip = LabelFlipAttack(
        victim, epsilon_d=epsilon_d, strategy=strategy, random_state=random_state,
        device=device,
    )
    X_mixed, y_mixed = flip.fit_resample(X, y)
    return FrozenEstimator(clone(victim).fit(X_mixed, y_mixed))


def compare_attacks(
    X_train,
    y_train,
    X_test,
    y_test,
    victim,
    target,
    *,
    attacks=("gc", "kkt", "mt"),
    epsilon_d=COMPARE_EPSILON_D,
    feature_range=None,
    clip="data",
    attack_params=None,
    random_state=0,
    device="auto",
    dtype="float32",
    progress=None,
    return_fitted=False,
):
    """Run several attacks against one target at the same budgets; one row per pair.

    The clean victim, the target and the clean gradient ``g(mu)`` are fitted once
    (:class:`PoisoningProtocol`); each attack builds its poison at each budget, a
    clone of ``victim`` is retrained from scratch on the clean data plus that poison
    and measured on the test data.

    Parameters
    ----------
    X_train, y_train, X_test, y_test : array-like
        Clean training data (attacked) and held-out data (accuracies).
    victim : estimator
        Unfitted victim; also the model the Model-Targeted attack retrains.
    target : estimator
        Target recipe (e.g. :class:`~skpoison.targets.GradPC`) or a frozen fitted
        model (e.g. from :func:`label_flip_target`).
    attacks : sequence of str, default=("gc", "kkt", "mt")
        Names from :data:`skpoison.experiments.ATTACKS`.
    epsilon_d : sequence of float or "tau", default=(0.03, 0.1, 1.0)
        Budgets (poison points per clean point); ``"tau"`` is the target's threshold
        for poison in the box (skipped when 0 or above 10).
    feature_range : (low, high) or None, default=None
        Box of every attack's poison features.
    clip : {"data"} or None, default="data"
        ``"data"``: every attack keeps its poison within the clean data's per-feature
        range (what the Model-Targeted and Frank-Wolfe attacks use when given no box),
        so that all search the same feasible set.
    attack_params : dict or None
        Attack name -> dict of further parameters of that attack (e.g.
        ``{"gc": {"max_iter": 500}}``).
    random_state : int, default=0
        Seed of every attack.
    device : str, default="auto"
    dtype : {"float32", "float64"}, default="float32"
    progress : callable or None
        Called with a message at the start of each stage.
    return_fitted : bool, default=False
        Also return, under ``"fitted"``, the fitted sampler and retrained victim of
        each row.

    Returns
    -------
    result : dict
        ``clean_accuracy``, ``target_accuracy``, ``threshold`` (tau of the target
        for poison in the box), ``threshold_binary``, ``attacks`` and ``rows``: per
        attack and budget ``attack``, ``epsilon_d``, ``n_poison``, ``accuracy``,
        ``accuracy_drop``, ``gradient_norm``, ``lower_bound``, ``distance``
        (``||w_retrained - w_target|| / ||w_target||``) and ``seconds`` (of the attack).

    Examples
    --------
    >>> from sklearn.linear_model import LogisticRegression
    >>> from skpoison.experiments import compare_attacks, label_flip_target, load_dataset
    >>> X_train, X_test, y_train, y_test = load_dataset("gaussian")
    >>> target = label_flip_target(LogisticRegression(), X_train, y_train, epsilon_d=0.5,
    ...                            device="cpu")
    >>> result = compare_attacks(
    ...     X_train, y_train, X_test, y_test, LogisticRegression(), target,
    ...     attacks=["gc", "labelflip"], epsilon_d=[0.5], device="cpu",
    ...     attack_params={"gc": {"max_iter": 200}})
    >>> [(row["attack"], row["epsilon_d"]) for row in result["rows"]]
    [('gc', 0.5), ('labelflip', 0.5)]
    >>> bool(result["rows"][1]["distance"] < 1e-6)  # the target's own flips
    True
    """
    attacks = list(attacks)
    unknown = [name for name in attacks if name not in ATTACKS]
    if unknown or not attacks:
        raise ValueError(f"Unknown attacks {unknown}; choose among {ATTACKS}.")
    attack_params = dict(attack_params or {})
    extra = sorted(set(attack_params) - set(attacks))
    if extra:
        raise ValueError(
            f"attack_params names attacks {extra} that are not compared; compare them "
            "or drop their parameters."
        )
    protocol = PoisoningProtocol(
        X_train, y_train, X_test, y_test, victim, target, device=device, dtype=dtype,
        progress=progress,
    ).fit()
    analyzer = protocol.analyzer(feature_range, clip)
    # "tau" is the threshold for poison in the attacks' box, the one reported
    budgets = _budgets(epsilon_d, analyzer.threshold_)
    rows, fitted = [], []
    for name in attacks:
        params = attack_params.get(name, {})

        def make_sampler(frozen, eps, seed, name=name, params=params):
            return make_attack(
                name, frozen, victim, epsilon_d=eps, feature_range=feature_range, clip=clip,
                random_state=seed, device=device, dtype=dtype, **params,
            )

        result = protocol.run_sampler(
            make_sampler, budgets, random_state=random_state, name=name,
            return_fitted=return_fitted,
        )
        if return_fitted:
            result, pairs = result
            fitted.extend(pairs)
        rows.extend({"attack": name, **row} for row in result)
    out = {
        "clean_accuracy": protocol.clean_accuracy_,
        "target_accuracy": protocol.target_accuracy_,
        "threshold": analyzer.threshold_,
        "threshold_binary": analyzer.threshold_binary_,
        "attacks": attacks,
        "rows": rows,
    }
    if return_fitted:
        out["fitted"] = fitted
    return out


def comparison_report(
    dataset="mnist17",
    model="logreg",
    *,
    target="labelflip",
    attacks=("gc", "kkt", "mt"),
    epsilon_d=COMPARE_EPSILON_D,
    epsilon_w=None,
    flip_epsilon=0.2,
    max_iter=1000,
    random_state=0,
    data_home=None,
    n_train=None,
    n_test=None,
    device="auto",
    progress=None,
):
    """The comparison of the paper's appendix C.6 on a named dataset: the job of
    ``skpoison compare``.

    Two target protocols: ``"labelflip"`` (Suya et al.'s: the victim retrained on
    clean data plus ``flip_epsilon * n`` adversarially label-flipped copies, see
    :func:`label_flip_target`) and ``"gradpc"`` (:class:`~skpoison.targets.GradPC`
    with the paper's ``epsilon_w``, absolute radius and released schedule).  Every
    attack keeps its poison in the clean data's per-feature range.

    Parameters
    ----------
    dataset, model : str
        Names from :data:`DATASETS` and :data:`MODELS` (the KKT attack needs a linear
        model).
    target : {"labelflip", "gradpc"}, default="labelflip"
    attacks : sequence of str, default=("gc", "kkt", "mt")
        Names from :data:`ATTACKS`.
    epsilon_d : sequence of float, default=(0.03, 0.1, 1.0)
    epsilon_w : float or None
        GradPC radius; ``None`` uses :func:`default_epsilon_w`.
    flip_epsilon : float, default=0.2
        Budget of the label-flipped copies that make the ``labelflip`` target.
    max_iter : int, default=1000
        Gradient Canceling steps per budget.
    random_state : int, default=0
    data_home : str or None
    n_train, n_test : int or None
        Seeded stratified subsamples (see :func:`load_dataset`).
    device : str, default="auto"
    progress : callable or None

    Returns
    -------
    report : dict
        The settings and the result of :func:`compare_attacks`, with the total
        ``seconds``.

    Examples
    --------
    >>> from skpoison.experiments import comparison_report
    >>> report = comparison_report("or", attacks=["labelflip"], epsilon_d=[0.2],
    ...                            flip_epsilon=0.2, device="cpu")
    >>> len(report["rows"]), report["rows"][0]["distance"] < 1e-6
    (1, True)
    """
    if target not in COMPARE_TARGETS:
        raise ValueError(f"Unknown comparison target {target!r}; choose one of "
                         f"{COMPARE_TARGETS}.")
    start = time.perf_counter()
    if progress is not None:
        progress(f"loading {dataset}")
    X_train, X_test, y_train, y_test = load_dataset(
        dataset, random_state=random_state, data_home=data_home, n_train=n_train,
        n_test=n_test,
    )
    victim = make_model(model, random_state=random_state, device=device)
    if target == "labelflip":
        if progress is not None:
            progress(f"building the label-flip target (flip eps_d = {flip_epsilon:g})")
        recipe = label_flip_target(
            victim, X_train, y_train, epsilon_d=flip_epsilon, random_state=random_state,
            device=device,
        )
        epsilon_w = None
    else:
        epsilon_w = default_epsilon_w(model, dataset) if epsilon_w is None else float(epsilon_w)
        recipe = make_target(
            "gradpc", victim, random_state=random_state, epsilon_w=epsilon_w, device=device,
            protocol="paper",
        )
    result = compare_attacks(
        X_train, y_train, X_test, y_test, victim, recipe, attacks=attacks,
        epsilon_d=epsilon_d, attack_params={"gc": {"max_iter": max_iter}} if "gc" in attacks
        else None, random_state=random_state, device=device, progress=progress,
    )
    result.update(
        dataset=dataset,
        model=model,
        target=target,
        epsilon_w=epsilon_w,
        flip_epsilon=flip_epsilon if target == "labelflip" else None,
        n_train=int(len(X_train)),
        n_test=int(len(X_test)),
        seconds=time.perf_counter() - start,
    )
    return result


def format_comparison_table(report, *, markdown=False):
    """The comparison as text (or a Markdown table): one row per attack and budget.

    Examples
    --------
    >>> from skpoison.experiments import format_comparison_table
    >>> report = {"clean_accuracy": 0.99, "target_accuracy": 0.9, "threshold": 0.2,
    ...           "rows": [{"attack": "gc", "epsilon_d": 0.1, "n_poison": 100,
    ...           "accuracy": 0.95, "accuracy_drop": 0.04, "gradient_norm": 0.1,
    ...           "distance": 0.25, "seconds": 3.0}]}
    >>> print(format_comparison_table(report, markdown=True).splitlines()[-1])
    | gc | 0.1 | 100 | 95.00 | 4.00 | 1.00e-01 | 0.250 | 3.0 |
    """
    head = []
    if "dataset" in report:
        what = (f"flip eps_d = {report['flip_epsilon']:g}" if report.get("flip_epsilon")
                else f"eps_w = {report['epsilon_w']:g}")
        head.append(
            f"{report['dataset']} (train {report['n_train']}, test {report['n_test']}) / "
            f"{report['model']} / target {report['target']} ({what}): "
        )
    head.append(
        f"clean accuracy {100 * report['clean_accuracy']:.2f}%, target accuracy "
        f"{100 * report['target_accuracy']:.2f}%, tau = {report['threshold']:.4g}"
    )
    columns = ["attack", "eps_d", "n_poison", "accuracy %", "drop %", "grad norm",
               "distance", "s"]
    cells = [
        [
            r["attack"],
            f"{r['epsilon_d']:.4g}",
            str(r["n_poison"]),
            f"{100 * r['accuracy']:.2f}",
            f"{100 * r['accuracy_drop']:.2f}",
            f"{r['gradient_norm']:.2e}",
            f"{r['distance']:.3f}",
            f"{r['seconds']:.1f}",
        ]
        for r in report["rows"]
    ]
    return "".join(head) + "\n\n" + format_table(columns, cells, markdown=markdown)
