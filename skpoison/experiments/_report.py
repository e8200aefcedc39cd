"""The main job: the attack table for a named dataset, model and target."""

import json
import time
from pathlib import Path

from ..utils import atomic_write
from ._attack import evaluate_attack
from ._registry import default_epsilon_w, load_dataset, make_model, make_target

__all__ = ["attack_report", "format_attack_table", "write_attack_report"]


def attack_report(
    dataset="digits",
    model="logreg",
    *,
    target="gradpc",
    epsilon_w=None,
    epsilon_d=(0.03, 0.1, 1.0, "tau"),
    max_iter=1000,
    clip=None,
    random_state=0,
    data_home=None,
    device="auto",
    progress=None,
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
    epsilon_d : sequence of float or "tau", default=(0.03, 0.1, 1.0, "tau")
        Poison budgets.
    max_iter : int, default=1000
        Gradient Canceling steps per budget.
    clip : {"data"} or None
        ``"data"`` runs GC-c (poison clipped to the clean data's range).
    random_state : int, default=0
    data_home : str or None
        Folder of the MNIST files.
    device : str, default="auto"
    progress : callable or None
        Called with a message at each stage.

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
        dataset, random_state=random_state, data_home=data_home
    )
    victim = make_model(model, random_state=random_state)
    recipe = make_target(
        target, victim, random_state=random_state, epsilon_w=epsilon_w, device=device
    )
    result = evaluate_attack(
        X_train,
        y_train,
        X_test,
        y_test,
        victim,
        recipe,
        epsilon_d=epsilon_d,
        attack_params={"max_iter": max_iter, "clip": clip, "device": device},
        random_state=random_state,
        progress=progress,
    )
    result.update(
        dataset=dataset,
        model=model,
        target=target,
        epsilon_w=epsilon_w,
        clip=clip,
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
    head = (
        f"{report['dataset']} / {report['model']} / target {report['target']} "
        f"(eps_w = {report['epsilon_w']:g}): clean accuracy {100 * report['clean_accuracy']:.2f}%, "
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


def write_attack_report(report, folder):
    """Write ``results.json``, ``table.md`` and ``gradient_norms.png`` into ``folder``.

    Every file is written atomically.  The plot needs matplotlib; without it the plot
    is skipped and the returned list says so.

    Returns
    -------
    written : list of str
        Paths written.
    """
    folder = Path(folder)
    written = []
    atomic_write(folder / "results.json", json.dumps(report, indent=2))
    written.append(str(folder / "results.json"))
    atomic_write(folder / "table.md", format_attack_table(report, markdown=True) + "\n")
    written.append(str(folder / "table.md"))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover - matplotlib is optional
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
