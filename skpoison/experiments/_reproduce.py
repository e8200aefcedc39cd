"""The paper's MNIST experiments as functions: Table 2, Figures 2 and 3, Table 6.

Each function runs the paper's protocol (its released code's victims and GradPC
schedule, see :func:`skpoison.models.paper_victim`), returns a dict of plain Python
values and, with ``output=``, writes ``<name>.json``, ``<name>.md``, ``<name>.txt``
and (figures) ``<name>.png`` into that folder, atomically.  ``preset="cpu"`` shrinks
the sizes so that a row finishes on a laptop; ``preset="gpu"`` uses the paper's.
"""

import io
import json
from pathlib import Path

import numpy as np
from sklearn.base import clone
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression

from .._poisonability import PoisonabilityAnalyzer
from ..attacks import GradientCanceling
from ..datasets import fetch_mnist, make_gaussian, normalize_mnist, train_validation_split
from ..models import paper_victim
from ..targets import GradPC, LabelFlipTarget
from .._utils import atomic_write
from ._reporting import format_table, plot_phase_transition

__all__ = ["PRESETS", "figure2", "figure3", "format_result", "table2", "table6"]

#: Sizes of the runs: training rows (``None``: all 60000), GC steps and retraining
#: epochs.  ``"gpu"`` is the paper's protocol; ``"cpu"`` a subset that runs here.
PRESETS = {
    "cpu": dict(n_train=5000, gc_iter=200, retrain_epochs=30),
    "gpu": dict(n_train=None, gc_iter=1000, retrain_epochs=100),
}
# GradPC budget of the paper per victim (absolute radius, as its released code)
_EPSILON_W = {"lr": 1.0, "nn": 0.5, "cnn": 0.5}


def _settings(preset, **overrides):
    if preset not in PRESETS:
        raise ValueError(f"Unknown preset {preset!r}; choose one of {tuple(PRESETS)}.")
    settings = dict(PRESETS[preset])
    settings.update({k: v for k, v in overrides.items() if v is not None})
    return settings


def _mnist(data_home, n_train, seed, digits=None):
    """Normalised MNIST: a seeded subset of ``n_train`` training rows and the test set."""
    X, y = fetch_mnist(data_home, subset="train", digits=digits, return_X_y=True)
    X_test, y_test = fetch_mnist(data_home, subset="test", digits=digits, return_X_y=True)
    if n_train is not None and n_train < len(X):
        rows = np.sort(np.random.RandomState(seed).choice(len(X), n_train, replace=False))
        X, y = X[rows], y[rows]
    return normalize_mnist(X), y, normalize_mnist(X_test), y_test


def _accuracy(model, X, y):
    return float(np.mean(model.predict(X) == y))


# ----------------------------------------------------------------------- tables
def _table(result, *, markdown=False):
    columns = result["columns"]
    cells = [[row.get(c, "") for c in columns] for row in result["rows"]]
    return format_table(columns, cells, markdown=markdown)


def _setting(value):
    if isinstance(value, (list, tuple)):
        return " ".join(_setting(v) for v in value)
    if value is None:
        return "all"
    return f"{value:g}" if isinstance(value, float) else str(value)


def format_result(result, *, markdown=False):
    """The table of a result of :func:`table2`, :func:`figure2`, :func:`figure3` or
    :func:`table6`, under a line naming the experiment and its settings.

    Examples
    --------
    >>> from skpoison.experiments._reproduce import format_result
    >>> result = {"experiment": "table6", "columns": ["flip_fraction", "tau"],
    ...           "rows": [{"flip_fraction": 0.1, "tau": 0.25}],
    ...           "settings": {"preset": "cpu", "n_train": 5000}}
    >>> print(format_result(result))
    table6 (preset cpu, n_train 5000)
    <BLANKLINE>
      flip_fraction     tau
                0.1    0.25
    """
    name = result["experiment"] + (f" {result['model']}" if "model" in result else "")
    settings = ", ".join(f"{k} {_setting(v)}" for k, v in result["settings"].items())
    return f"{name} ({settings})\n\n" + _table(result, markdown=markdown)


def _write(result, output, name, figure=None):
    """Write the JSON, the two tables and the figure of ``result``; return the paths."""
    if output is None:
        return []
    folder = Path(output)
    paths = [folder / f"{name}.json", folder / f"{name}.md", folder / f"{name}.txt"]
    atomic_write(paths[0], json.dumps(result, indent=2, default=float) + "\n")
    atomic_write(paths[1], _table(result, markdown=True) + "\n")
    atomic_write(paths[2], _table(result) + "\n")
    if figure is not None:
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
        import matplotlib.pyplot as plt

        plt.close(figure)
        atomic_write(folder / f"{name}.png", buffer.getvalue())
        paths.append(folder / f"{name}.png")
    return [str(p) for p in paths]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# ------------------------------------------------------------------------ Table 2
def table2(
    model="lr",
    *,
    preset="cpu",
    n_train=None,
    seeds=(0, 1, 2),
    epsilon_d=(0.03, 0.1, 1.0),
    epsilon_w=None,
    gc_iter=None,
    retrain_epochs=None,
    data_home=None,
    device="auto",
    output=None,
    progress=None,
):
    """Table 2 of the paper on MNIST: GradPC targets, tau and GC's accuracy per budget.

    For each seed: train the source model (:func:`~skpoison.models.paper_victim`,
    stage "source") on normalised MNIST training rows, corrupt it with
    :class:`~skpoison.targets.GradPC` (absolute radius ``epsilon_w``: 1 for LR, 0.5
    for the nets; the released schedule), compute tau(2) and tau(c) with
    :class:`~skpoison.PoisonabilityAnalyzer`, run
    :class:`~skpoison.attacks.GradientCanceling` (full gradient, Adam, no box) at
    each ``epsilon_d`` and retrain the "retrain" victim on clean plus poison; report
    test accuracies on MNIST's 10000 test images.

    Parameters
    ----------
    model : {"lr", "nn", "cnn"}, default="lr"
    preset : {"cpu", "gpu"}, default="cpu"
        Sizes from :data:`PRESETS`; the arguments below override them.
    n_train : int or None, default=None
        Training rows (a seeded subset); ``None`` uses the preset's.
    seeds : sequence of int, default=(0, 1, 2)
    epsilon_d : sequence of float, default=(0.03, 0.1, 1.0)
    epsilon_w : float or None, default=None
        GradPC radius; ``None`` uses the paper's for ``model``.
    gc_iter, retrain_epochs : int or None, default=None
        Gradient Canceling steps and retraining epochs; ``None`` uses the preset's.
    data_home : str or None, default=None
        Folder of the MNIST files (default ``$SKPOISON_DATA/mnist``).
    device : str, default="auto"
    output : str or path or None, default=None
        Folder for ``table2_<model>.json/.md/.txt``.
    progress : callable or None, default=None
        Called with a message at each stage (this and the other experiments).

    Returns
    -------
    result : dict
        ``columns``, ``rows`` (one per seed, then ``mean`` and ``std``), ``settings``
        and ``files`` (paths written).
    """
    if model not in _EPSILON_W:
        raise ValueError(f"Unknown model {model!r}; choose one of {tuple(_EPSILON_W)}.")
    settings = _settings(preset, n_train=n_train, gc_iter=gc_iter, retrain_epochs=retrain_epochs)
    eps_w = _EPSILON_W[model] if epsilon_w is None else float(epsilon_w)
    gc_columns = [f"gc_accuracy@{eps:g}" for eps in epsilon_d]
    columns = ["seed", "clean_accuracy", "gradpc_accuracy", "tau2", "tau", *gc_columns]
    rows = []
    progress = progress or (lambda message: None)
    for seed in seeds:
        progress(f"seed {seed}: source model, GradPC target and tau")
        X, y, X_test, y_test = _mnist(data_home, settings["n_train"], seed)
        source = paper_victim(model, random_state=seed, device=device).fit(X, y)
        gpc = GradPC(FrozenEstimator(source), epsilon_w=eps_w, random_state=seed,
                     device=device).fit(X, y)
        target = FrozenEstimator(gpc.target_)
        analyzer = PoisonabilityAnalyzer(target, device=device).fit(X, y)
        row = {
            "seed": int(seed),
            "clean_accuracy": _accuracy(source, X_test, y_test),
            "gradpc_accuracy": _accuracy(gpc.target_, X_test, y_test),
            "tau2": float(analyzer.threshold_binary_),
            "tau": float(analyzer.threshold_),
        }
        for eps, column in zip(epsilon_d, gc_columns):
            progress(f"seed {seed}: Gradient Canceling and retraining at eps_d = {eps:g}")
            gc = GradientCanceling(target, epsilon_d=eps, max_iter=settings["gc_iter"],
                                   random_state=seed, device=device)
            X_mixed, y_mixed = gc.fit_resample(X, y, clean_gradient=analyzer.clean_)
            victim = paper_victim(model, stage="retrain", random_state=seed, device=device,
                                  max_epochs=settings["retrain_epochs"]).fit(X_mixed, y_mixed)
            row[column] = _accuracy(victim, X_test, y_test)
        rows.append(row)
    values = {c: np.array([r[c] for r in rows], dtype=float) for c in columns[1:]}
    rows.append({"seed": "mean", **{c: float(v.mean()) for c, v in values.items()}})
    rows.append({"seed": "std", **{c: float(v.std()) for c, v in values.items()}})
    result = {
        "experiment": "table2",
        "model": model,
        "columns": columns,
        "rows": rows,
        "settings": {**settings, "preset": preset, "epsilon_w": eps_w,
                     "epsilon_d": list(epsilon_d), "seeds": list(seeds)},
    }
    result["files"] = _write(result, output, f"table2_{model}")
    return result


# ------------------------------------------------------------------------ Figure 2
def _gaussian_data(seed):
    X, y = make_gaussian(random_state=seed)
    return train_validation_split(X, y, validation_fraction=0.3, random_state=seed)


def _mnist17_data(seed, data_home, n_train):
    X, y, X_test, y_test = _mnist(data_home, n_train, seed, digits=(1, 7))
    return X, X_test, y, y_test


def figure2(
    *,
    datasets=("gaussian", "mnist17"),
    epsilon_d=(0.01, 0.03, 0.1, 0.3, 1.0, 3.0),
    epsilon_w=1.0,
    preset="cpu",
    n_train=None,
    gc_iter=None,
    seed=0,
    data_home=None,
    device="auto",
    output=None,
    progress=None,
):
    """Figure 2: the phase transition of GC at tau, on the 10-D Gaussian data and MNIST-17.

    Logistic regression (scikit-learn, ``C=1``) is the victim; the target is
    :class:`~skpoison.targets.GradPC` with absolute radius ``epsilon_w``.  For each
    ``epsilon_d``: GC's relative gradient norm and the test accuracy of the victim
    retrained on clean plus poison.  The figure has one column per dataset (accuracy
    on top, gradient norm below, log-scale ``epsilon_d``, tau as a vertical line).

    Returns
    -------
    result : dict
        ``columns``, ``rows`` (dataset, epsilon_d, accuracy, gradient_norm, tau,
        target_accuracy, clean_accuracy) and ``files``.
    """
    settings = _settings(preset, n_train=n_train, gc_iter=gc_iter)
    del settings["retrain_epochs"]  # no epoch-trained victim here
    loaders = {
        "gaussian": lambda: _gaussian_data(seed),
        "mnist17": lambda: _mnist17_data(seed, data_home, settings["n_train"]),
    }
    unknown = [d for d in datasets if d not in loaders]
    if unknown:
        raise ValueError(f"Unknown datasets {unknown}; choose among {tuple(loaders)}.")
    rows, taus = [], {}
    progress = progress or (lambda message: None)
    for name in datasets:
        progress(f"{name}: target and tau")
        X, X_test, y, y_test = loaders[name]()
        victim = LogisticRegression(max_iter=1000)
        gpc = GradPC(victim, epsilon_w=epsilon_w, random_state=seed, device=device).fit(X, y)
        target = FrozenEstimator(gpc.target_)
        analyzer = PoisonabilityAnalyzer(target, device=device).fit(X, y)
        taus[name] = float(analyzer.threshold_)
        for eps in epsilon_d:
            progress(f"{name}: Gradient Canceling and retraining at eps_d = {eps:g}")
            gc = GradientCanceling(target, epsilon_d=eps, max_iter=settings["gc_iter"],
                                   random_state=seed, device=device)
            X_mixed, y_mixed = gc.fit_resample(X, y, clean_gradient=analyzer.clean_)
            retrained = clone(victim).fit(X_mixed, y_mixed)
            rows.append({
                "dataset": name, "epsilon_d": float(eps),
                "accuracy": _accuracy(retrained, X_test, y_test),
                "gradient_norm": float(gc.gradient_norm_), "tau": taus[name],
                "target_accuracy": _accuracy(gpc.target_, X_test, y_test),
                "clean_accuracy": _accuracy(gpc.estimator_, X_test, y_test),
            })
    columns = ["dataset", "epsilon_d", "accuracy", "gradient_norm", "tau",
               "target_accuracy", "clean_accuracy"]
    result = {"experiment": "figure2", "columns": columns, "rows": rows,
              "settings": {**settings, "preset": preset, "epsilon_w": epsilon_w, "seed": seed}}
    figure = None
    if output is not None:
        plt = _pyplot()
        figure, axes = plt.subplots(2, len(datasets), figsize=(6.4 * len(datasets), 6.4),
                                    squeeze=False, sharex="col")
        for j, name in enumerate(datasets):
            part = [r for r in rows if r["dataset"] == name]
            report = {"clean_accuracy": part[0]["clean_accuracy"],
                      "target_accuracy": part[0]["target_accuracy"],
                      "threshold": taus[name], "rows": part}
            plot_phase_transition(axes[0, j], axes[1, j], report,
                                  title=f"{name}, logistic regression (eps_w = {epsilon_w:g})")
        figure.tight_layout()
    result["files"] = _write(result, output, "figure2", figure)
    return result


# ------------------------------------------------------------------------ Figure 3
def figure3(
    model="lr",
    *,
    epsilon_w=(0.25, 0.5, 1.0, 2.0),
    epsilon_d=1.0,
    preset="cpu",
    n_train=None,
    gc_iter=None,
    seed=0,
    data_home=None,
    device="auto",
    output=None,
    progress=None,
):
    """Figure 3: GC's relative gradient norm per step at ``epsilon_d`` for several eps_w.

    On normalised MNIST with the paper's source model for ``model`` and GradPC
    targets of absolute radius ``epsilon_w``.

    Returns
    -------
    result : dict
        ``columns``, ``rows`` (epsilon_w, tau, final gradient_norm), ``histories``
        (eps_w -> list of gradient norms per step) and ``files``.
    """
    settings = _settings(preset, n_train=n_train, gc_iter=gc_iter)
    del settings["retrain_epochs"]  # no epoch-trained victim here
    X, y, _, _ = _mnist(data_home, settings["n_train"], seed)
    source = paper_victim(model, random_state=seed, device=device).fit(X, y)
    rows, histories = [], {}
    progress = progress or (lambda message: None)
    for eps_w in epsilon_w:
        progress(f"eps_w = {eps_w:g}: GradPC target and Gradient Canceling")
        gpc = GradPC(FrozenEstimator(source), epsilon_w=eps_w, random_state=seed,
                     device=device).fit(X, y)
        gc = GradientCanceling(FrozenEstimator(gpc.target_), epsilon_d=epsilon_d,
                               max_iter=settings["gc_iter"], random_state=seed,
                               device=device).fit(X, y)
        histories[f"{eps_w:g}"] = [float(v) for v in gc.history_]
        rows.append({"epsilon_w": float(eps_w), "tau": float(gc.threshold_),
                     "gradient_norm": float(gc.gradient_norm_)})
    result = {"experiment": "figure3", "model": model,
              "columns": ["epsilon_w", "tau", "gradient_norm"], "rows": rows,
              "histories": histories,
              "settings": {**settings, "preset": preset, "epsilon_d": epsilon_d, "seed": seed}}
    figure = None
    if output is not None:
        plt = _pyplot()
        figure, ax = plt.subplots(figsize=(6, 4))
        for row in rows:
            curve = histories[f"{row['epsilon_w']:g}"]
            ax.semilogy(range(1, len(curve) + 1), curve,
                        label=f"eps_w = {row['epsilon_w']:g} (tau = {row['tau']:.3g})")
        ax.set_xlabel("Gradient Canceling iteration")
        ax.set_ylabel("||g(chi)|| / ||g(mu)||")
        ax.set_title(f"MNIST {model}, eps_d = {epsilon_d:g}")
        ax.legend()
    result["files"] = _write(result, output, f"figure3_{model}", figure)
    return result


# ------------------------------------------------------------------------ Table 6
def table6(
    *,
    flip_fractions=(0.1, 0.2, 0.3, 0.4, 0.5),
    preset="cpu",
    n_train=None,
    seed=0,
    data_home=None,
    device="auto",
    output=None,
    progress=None,
):
    """Table 6: tau of label-flip targets on MNIST-17 with logistic regression.

    Returns
    -------
    result : dict
        ``columns``, ``rows`` (flip_fraction, target_accuracy, tau, tau2) and ``files``.
    """
    settings = {"n_train": _settings(preset, n_train=n_train)["n_train"]}
    X, X_test, y, y_test = _mnist17_data(seed, data_home, settings["n_train"])
    rows = []
    progress = progress or (lambda message: None)
    for fraction in flip_fractions:
        progress(f"flip fraction {fraction:g}: target and tau")
        flip = LabelFlipTarget(LogisticRegression(max_iter=1000), flip_fraction=fraction,
                               random_state=seed).fit(X, y)
        analyzer = PoisonabilityAnalyzer(FrozenEstimator(flip.target_), device=device).fit(X, y)
        rows.append({"flip_fraction": float(fraction),
                     "target_accuracy": _accuracy(flip.target_, X_test, y_test),
                     "tau": float(analyzer.threshold_),
                     "tau2": float(analyzer.threshold_binary_)})
    result = {"experiment": "table6",
              "columns": ["flip_fraction", "target_accuracy", "tau", "tau2"], "rows": rows,
              "settings": {**settings, "preset": preset, "seed": seed}}
    result["files"] = _write(result, output, "table6")
    return result
