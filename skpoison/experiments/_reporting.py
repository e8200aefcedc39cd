"""Reporting: the protocol's results as tables (text and Markdown, via ``tabulate``),
strict JSON, files and figures."""

import io
import json
import math
from pathlib import Path

from tabulate import tabulate

from .._utils import atomic_write

__all__ = [
    "format_analyze",
    "format_attack_table",
    "format_defense_table",
    "format_table",
    "phase_transition_figure",
    "report_to_json",
    "write_attack_report",
]


def format_table(columns, cells, *, markdown=False):
    """Rows of cells (strings, or numbers shown to 4 significant digits) as a
    right-aligned text table or a Markdown table.

    Examples
    --------
    >>> from skpoison.experiments import format_table
    >>> print(format_table(["eps_d", "accuracy"], [["0.1", "95.2"], ["1", "80.0"]]))
    eps_d    accuracy
      0.1        95.2
        1        80.0
    """
    cells = [[f"{v:.4g}" if isinstance(v, float) else str(v) for v in row] for row in cells]
    return tabulate(
        cells,
        headers=list(columns),
        tablefmt="pipe" if markdown else "plain",
        stralign="right",
        disable_numparse=True,
    )


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
    return head + "\n\n" + format_table(columns, cells, markdown=markdown)


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
    return head + "\n\n" + format_table(columns, cells, markdown=markdown)


def _png(fig, plt):
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def _mark_thresholds(ax, report, *, label=True):
    """Vertical lines at tau and tau(2) (when finite and positive)."""
    for key, name, style in (("threshold", "tau", "--"), ("threshold_binary", "tau(2)", ":")):
        value = report.get(key)
        if value is not None and 0 < value < math.inf:
            ax.axvline(value, color="tab:red", ls=style, lw=1.5,
                       label=f"{name} = {value:.3g}" if label else None)


def plot_phase_transition(top, bottom, report, *, title=None):
    """Draw the phase transition of ``report`` on two matplotlib axes (see
    :func:`phase_transition_figure`)."""
    import matplotlib.ticker

    rows = sorted(report["rows"], key=lambda r: r["epsilon_d"])
    eps = [r["epsilon_d"] for r in rows]
    accuracies = [100 * r["accuracy"] for r in rows]
    clean, target = 100 * report["clean_accuracy"], 100 * report["target_accuracy"]
    top.plot(eps, accuracies, "o-", color="tab:blue", label="victim retrained on clean + poison")
    top.axhline(clean, color="tab:green", ls="-.", lw=1, label=f"clean model ({clean:.1f}%)")
    top.axhline(target, color="gray", ls="-.", lw=1, label=f"target model ({target:.1f}%)")
    # at least 5 points of accuracy on the axis, so that noise does not look like a drop
    low, high = min(accuracies + [clean, target]), max(accuracies + [clean, target])
    middle, half = (low + high) / 2, max(high - low, 5.0) / 2 * 1.15
    top.set_ylim(middle - half, middle + half)
    _mark_thresholds(top, report)
    top.set_ylabel("test accuracy (%)")
    top.set_title(title or f"{report['dataset']} / {report['model']}: accuracy and "
                  "gradient left after poisoning")
    top.legend(fontsize="small", loc="best")
    bottom.plot(eps, [r["gradient_norm"] for r in rows], "o-", color="tab:blue",
                label="left by Gradient Canceling")
    _mark_thresholds(bottom, report, label=False)
    bottom.set_yscale("log")
    bottom.set_xscale("log")
    bottom.set_xticks(eps, [f"{e:.3g}" for e in eps])
    bottom.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    bottom.set_xlabel("poison budget eps_d (poison points per clean point)")
    bottom.set_ylabel("gradient norm at the target\n(relative to the clean data's)")
    bottom.legend(fontsize="small", loc="best")
    for ax in (top, bottom):
        ax.grid(True, which="major", alpha=0.3)


def phase_transition_figure(report):
    """The phase transition of an attack report: test accuracy after retraining (top)
    and the relative gradient norm Gradient Canceling leaves (bottom) against
    ``eps_d`` on a log scale, with tau and tau(2) as vertical lines.

    Returns a matplotlib figure.
    """
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(6.4, 6.4), sharex=True)
    plot_phase_transition(top, bottom, report)
    fig.tight_layout()
    return fig


def write_attack_report(report, folder):
    """Write ``results.json``, ``table.md``, ``gradient_norms.png`` and (for an attack
    table) ``phase_transition.png`` into ``folder``.

    Every file is written atomically, with the permissions of an ordinary new file.
    ``results.json`` is strict JSON (see ``report_to_json``: an infinite threshold is
    the string ``"inf"``).  ``phase_transition.png`` is
    :func:`phase_transition_figure`; the defense table has no such figure.  The plots
    need matplotlib (``pip install skpoison[plot]``); without it they are not written
    and the returned list says so.

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
        names = ["gradient_norms.png"] + (["phase_transition.png"] if _is_attack(report) else [])
        written.extend(
            f"{folder / name} (not written: matplotlib is not installed; "
            "pip install 'skpoison[plot]')"
            for name in names
        )
        return written
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, curve in report["histories"].items():
        ax.semilogy(range(1, len(curve) + 1), curve, label=f"eps_d = {label}")
    ax.set_xlabel("Gradient Canceling iteration")
    ax.set_ylabel("||g(chi)|| / ||g(mu)||")
    ax.set_title(f"{report['dataset']} / {report['model']}: tau = {report['threshold']:.3g}")
    ax.legend()
    atomic_write(folder / "gradient_norms.png", _png(fig, plt))
    written.append(str(folder / "gradient_norms.png"))
    if _is_attack(report):
        atomic_write(folder / "phase_transition.png", _png(phase_transition_figure(report), plt))
        written.append(str(folder / "phase_transition.png"))
    return written


def _is_attack(report):
    """Whether ``report`` is an attack table with rows (not a defense table)."""
    return not report.get("defense") and bool(report.get("rows"))


def format_analyze(report):
    """The poisonability report of :func:`analyze_poisonability` as text.

    Examples
    --------
    >>> from skpoison.experiments import format_analyze
    >>> report = {"dataset": "or", "model": "logreg", "target": "gradpc", "n_train": 140,
    ...           "n_test": 60, "clean_accuracy": 1.0, "target_accuracy": 0.5,
    ...           "threshold": 0.5, "exact": True, "threshold_binary": 0.5,
    ...           "budgets": [{"epsilon_d": 1.0, "poisonable": True,
    ...                        "residual_lower_bound": 0.0}]}
    >>> print(format_analyze(report).splitlines()[-1])
        1                 yes                       0
    """
    head = [
        f"dataset {report['dataset']} (train {report['n_train']}, test {report['n_test']}), "
        f"model {report['model']}, target {report['target']}",
        f"clean accuracy   {report['clean_accuracy']:.4f}",
        f"target accuracy  {report['target_accuracy']:.4f}",
        f"tau              {report['threshold']:.6g}"
        + ("  (necessary and sufficient)" if report["exact"] else "  (necessary condition)"),
        f"tau(2)           {report['threshold_binary']:.6g}",
        "",
    ]
    cells = [
        [f"{b['epsilon_d']:g}", "yes" if b["poisonable"] else "no",
         f"{b['residual_lower_bound']:.4g}"]
        for b in report["budgets"]
    ]
    table = format_table(["eps_d", "can reach target", "residual lower bound"], cells)
    return "\n".join(head) + "\n" + table
