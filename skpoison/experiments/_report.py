"""The main job: the attack table for a named dataset, model and target."""

import json
import math
import time
from pathlib import Path

from sklearn.frozen import FrozenEstimator

from ..utils import atomic_write
from ._attack import evaluate_attack, evaluate_defense
from ._registry import default_epsilon_w, load_dataset, make_defense, make_model, make_target
from ..targets import scale_to_threshold

__all__ = ["attack_report", "format_attack_table", "format_defense_table", "write_attack_report"]


def _strict(value):
    """``value`` with every non-finite float replaced by its name ("inf", "-inf",
    "nan"), so that it serializes as strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {key: _strict(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(item) for item in value]
    return value


def report_to_json(report, **kwargs):
    """The report as strict JSON: infinite or undefined numbers (a threshold of
    ``inf``: no budget reaches the target) are written as the strings ``"inf"``,
    ``"-inf"`` and ``"nan"``, never as the non-standard ``Infinity`` or ``NaN``."""
    return json.dumps(_strict(report), allow_nan=False, **kwargs)


def attack_report(
    dataset="digits",
    model="logreg",
    *,
    target="gradpc",
    epsilon_w=None,
    target_threshold=None,
    epsilon_d=(0.03, 0.1, 1.0, "tau"),
    max_iter=1000,
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
        most this value, with :func:`scale_to_threshold` (appendix C.8 of the paper).
    epsilon_d : sequence of float or "tau", default=(0.03, 0.1, 1.0, "tau")
        Poison budgets.
    max_iter : int, default=1000
        Gradient Canceling steps per budget.
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


def format_attack_table(report, *, markdown=False):
    """The attack table as text (or a Markdown table).

    Examples
    --------
    >>> from skpoison.experiments import format_attack_table
    >>> report = {"dataset": "or", "model": "logreg", "target": "gradpc", "epsilon_w": 1.0,
    ...           "clean_accuracy": 1.0, "target_accuracy": 0.0, "threshold": 0.5,
    ...           "threshold_binary": 0.5, "rows": [{"epsilon_d": 1.0, "n_poison": 140,
    ...           "accuracy": 0.1, "accuracy_drop": 0.9, "gradient_norm": 1e-6,
    ...           "lower_bound": 0.0, "seconds": 1.0}]}
    >>> print(format_attack_table(report, markdown=True).splitlines()[-1])
    | 1 | 140 | 10.00 | 90.00 | 1.00e-06 | 0.00e+00 | 1.0 |
    """
    if report.get("defense"):
        return format_defense_table(report, markdown=markdown)
    scale = report.get("target_scale", 1.0)
    head = (
        f"{report['dataset']} / {report['model']} / target {report['target']} "
        f"(eps_w = {report['epsilon_w']:g}"
        + (f", scaled by {scale:.3g}" if scale != 1.0 else "")
        + f"): clean accuracy {100 * report['clean_accuracy']:.2f}%, "
        f"target accuracy {100 * report['target_accuracy']:.2f}%, "
        f"tau = {report['threshold']:.4g}, tau(2) = {report['threshold_binary']:.4g}"
    )
    columns = ["eps_d", "n_poison", "accuracy %", "drop %", "grad norm", "lower bound", "s"]
    cells = [
        [
            f"{r['epsilon_d']:.4g}",
            str(r["n_poison"]),
            f"{100 * r['accuracy']:.2f}",
            f"{100 * r['accuracy_drop']:.2f}",
            f"{r['gradient_norm']:.2e}",
            f"{r['lower_bound']:.2e}",
            f"{r['seconds']:.1f}",
        ]
        for r in report["rows"]
    ]
    if markdown:
        lines = [head, "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        lines += ["| " + " | ".join(c) + " |" for c in cells]
        return "\n".join(lines)
    widths = [max([len(col)] + [len(c[i]) for c in cells]) for i, col in enumerate(columns)]
    lines = [head, "", "  ".join(col.rjust(w) for col, w in zip(columns, widths))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(cell, widths)) for cell in cells]
    return "\n".join(lines)


def _defense_cells(report):
    """Columns and cells of the defense table: accuracy drops in % (negative: the
    accuracy rose, the paper's "+"), and the share of poison among the removed rows."""
    columns = ["eps_d", "n_poison", "GC", "GC-c", "GC-d", "GC-cd",
               "poison removed d", "poison removed cd", "s"]
    cells = [
        [
            f"{r['epsilon_d']:.4g}",
            str(r["n_poison"]),
            *(f"{100 * r['drop_' + k]:.2f}" for k in ("gc", "gc_c", "gc_d", "gc_cd")),
            f"{100 * r['poison_removed_d']:.1f}%",
            f"{100 * r['poison_removed_cd']:.1f}%",
            f"{r['seconds']:.1f}",
        ]
        for r in report["rows"]
    ]
    return columns, cells


def format_defense_table(report, *, markdown=False):
    """The defense table (paper, Tables 3 and 10) as text (or a Markdown table).

    Accuracy drops in % of GC, GC-c (clipped to the data range), GC-d and GC-cd
    (after the defense); a negative drop means the accuracy rose.

    Examples
    --------
    >>> from skpoison.experiments import format_defense_table
    >>> report = {"dataset": "digits", "model": "logreg", "target": "gradpc",
    ...           "epsilon_w": 0.1, "defense": "sever", "clean_accuracy": 0.97,
    ...           "target_accuracy": 0.5, "threshold": 1.0, "threshold_binary": 1.0,
    ...           "rows": [{"epsilon_d": 0.3, "n_poison": 377, "drop_gc": 0.03,
    ...           "drop_gc_c": 0.02, "drop_gc_d": 0.05, "drop_gc_cd": -0.01,
    ...           "poison_removed_d": 0.1, "poison_removed_cd": 0.2, "seconds": 4.0}]}
    >>> print(format_defense_table(report, markdown=True).splitlines()[-1])
    | 0.3 | 377 | 3.00 | 2.00 | 5.00 | -1.00 | 10.0% | 20.0% | 4.0 |
    """
    head = (
        f"{report['dataset']} / {report['model']} / target {report['target']} "
        f"(eps_w = {report['epsilon_w']:g}) against {report['defense']}: clean accuracy "
        f"{100 * report['clean_accuracy']:.2f}%, target accuracy "
        f"{100 * report['target_accuracy']:.2f}%, tau = {report['threshold']:.4g}; "
        "accuracy drop in % (negative: the accuracy rose)"
    )
    columns, cells = _defense_cells(report)
    if markdown:
        lines = [head, "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        lines += ["| " + " | ".join(c) + " |" for c in cells]
        return "\n".join(lines)
    widths = [max([len(col)] + [len(c[i]) for c in cells]) for i, col in enumerate(columns)]
    lines = [head, "", "  ".join(col.rjust(w) for col, w in zip(columns, widths))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(cell, widths)) for cell in cells]
    return "\n".join(lines)


def write_attack_report(report, folder):
    """Write ``results.json``, ``table.md`` and ``gradient_norms.png`` into ``folder``.

    Every file is written atomically, with the permissions of an ordinary new file.
    ``results.json`` is strict JSON (see ``report_to_json``: an infinite threshold is
    the string ``"inf"``).  The plot needs matplotlib (``pip install skpoison[plot]``);
    without it the plot is not written and the returned list says so.

    Returns
    -------
    written : list of str
        Paths written, and for a file that could not be written its name followed by
        the reason in parentheses.
    """
    folder = Path(folder)
    written = []
    atomic_write(folder / "results.json", report_to_json(report, indent=2) + "\n")
    written.append(str(folder / "results.json"))
    atomic_write(folder / "table.md", format_attack_table(report, markdown=True) + "\n")
    written.append(str(folder / "table.md"))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        written.append(
            f"{folder / 'gradient_norms.png'} (not written: matplotlib is not installed; "
            "pip install 'skpoison[plot]')"
        )
        return written
    import io

    fig, ax = plt.subplots(figsize=(6, 4))
    for label, curve in report["histories"].items():
        ax.semilogy(range(1, len(curve) + 1), curve, label=f"eps_d = {label}")
    ax.set_xlabel("Gradient Canceling iteration")
    ax.set_ylabel("||g(chi)|| / ||g(mu)||")
    ax.set_title(f"{report['dataset']} / {report['model']}: tau = {report['threshold']:.3g}")
    ax.legend()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    atomic_write(folder / "gradient_norms.png", buffer.getvalue())
    written.append(str(folder / "gradient_norms.png"))
    return written
