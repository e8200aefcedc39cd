"""The paper's protocol: clean fit -> target -> tau -> attack at each eps_d -> retrain.

:class:`PoisoningProtocol` fits the clean victim, the target and the clean gradient
``g(mu)`` once, and runs Gradient Canceling (and a defense) against them at as many
budgets and boxes as asked; :func:`evaluate_attack` and :func:`evaluate_defense` are its
two tables.
"""

import inspect
import os
import time

import numpy as np
import torch
from sklearn.base import clone
from sklearn.frozen import FrozenEstimator
from sklearn.utils import check_array

from .._poisonability import PoisonabilityAnalyzer
from ..attacks import GradientCanceling
from ..objectives import as_objective
from ..targets import resolve_target
from .._utils import projection_box
from ._registry import accuracy

__all__ = ["MAX_TAU_BUDGET", "PoisoningProtocol", "evaluate_attack", "evaluate_defense"]

#: The "tau" budget is skipped above this ratio: the poison would outnumber the clean
#: data tenfold (and need that much memory), far from a poisoning attack.
MAX_TAU_BUDGET = 10.0

# Working memory per poison entry (row x feature), a rough upper estimate: the poison
# and its optimizer state in torch, its numpy copy and the stacked training set.
_BYTES_PER_POISON_ENTRY = 32


def _available_memory():
    """Bytes of memory available to a new allocation, or None when unknown."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):
        return None


def _check_poison_fits(eps, X):
    """Raise a ValueError, before anything is allocated, when the poison of budget
    ``eps`` for the data ``X`` would not fit in memory."""
    n_samples, n_features = np.shape(X)[0], int(np.prod(np.shape(X)[1:]))
    n_poison = int(round(eps * n_samples))
    needed = n_poison * n_features * _BYTES_PER_POISON_ENTRY
    available = _available_memory()
    if available is not None and needed > available:
        raise ValueError(
            f"epsilon_d = {eps:g} asks for {n_poison} poison points of {n_features} "
            f"features, about {needed / 1e9:.3g} GB of working memory, more than the "
            f"{available / 1e9:.3g} GB available; use a smaller epsilon_d."
        )


def _budgets(epsilon_d, threshold):
    """The requested eps_d values, with ``"tau"`` replaced by the threshold (when finite)."""
    values = []
    for eps in epsilon_d:
        if isinstance(eps, str):
            if eps != "tau":
                raise ValueError(f"epsilon_d entries are numbers or 'tau', got {eps!r}.")
            if not (0 < threshold <= MAX_TAU_BUDGET):
                continue
            eps = threshold
        eps = float(eps)
        if eps <= 0:
            raise ValueError(f"epsilon_d must be positive, got {eps}.")
        # a threshold equal to a listed budget (to display precision) is that budget
        if not any(abs(eps - v) <= 1e-4 * v for v in values):
            values.append(eps)
    return values


class PoisoningProtocol:
    """The clean model, the target and ``g(mu)``, fitted once; attacks run against them.

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
    device, dtype, batch_size
        Of the threshold computations (and of every attack, which must use the same).
    progress : callable or None
        Called with a message at the start of each stage.

    Attributes
    ----------
    clean_model_ : estimator
        The victim fitted on the clean data.
    clean_accuracy_, target_accuracy_ : float
        Test accuracies of the clean model and of the target.
    target_ : estimator
        The fitted target model (frozen for the attacks).
    clean_ : CleanGradient
        The clean side of the target on the clean data, shared by every attack.

    Examples
    --------
    >>> from sklearn.linear_model import LogisticRegression
    >>> from skpoison.experiments import PoisoningProtocol, load_dataset
    >>> from skpoison.targets import LabelFlipTarget
    >>> X_train, X_test, y_train, y_test = load_dataset("gaussian")
    >>> protocol = PoisoningProtocol(
    ...     X_train, y_train, X_test, y_test, LogisticRegression(),
    ...     LabelFlipTarget(LogisticRegression(), flip_fraction=0.5, random_state=0),
    ...     device="cpu").fit()
    >>> result = protocol.attack([1.0], attack_params={"max_iter": 200})
    >>> result["rows"][0]["accuracy"] < protocol.clean_accuracy_
    True
    """

    def __init__(
        self, X_train, y_train, X_test, y_test, victim, target, *,
        device="auto", dtype="float32", batch_size=None, progress=None,
    ):
        self.X_train, self.y_train = X_train, y_train
        self.X_test, self.y_test = X_test, y_test
        self.victim = victim
        self.target = target
        self.device, self.dtype, self.batch_size = device, dtype, batch_size
        self.progress = progress

    def _stage(self, message):
        if self.progress is not None:
            self.progress(message)

    def _analyzer_params(self):
        return {"device": self.device, "dtype": self.dtype, "batch_size": self.batch_size}

    def fit(self):
        """Fit the clean victim, build the target and compute ``g(mu)``; returns self."""
        self._stage("fitting the clean victim")
        self.clean_model_ = clone(self.victim).fit(self.X_train, self.y_train)
        self.clean_accuracy_ = accuracy(self.clean_model_, self.X_test, self.y_test)
        # the target is built once and frozen, so every budget attacks the same model
        self._stage("building the target")
        self.target_ = resolve_target(self.target, self.X_train, self.y_train)
        self.target_accuracy_ = accuracy(self.target_, self.X_test, self.y_test)
        self._frozen = FrozenEstimator(self.target_)
        self._stage("computing tau")
        analyzer = PoisonabilityAnalyzer(self._frozen, **self._analyzer_params())
        self.clean_ = analyzer.fit(self.X_train, self.y_train).clean_
        self._analyzers = {}
        self._target_params = None
        return self

    def analyzer(self, feature_range=None, clip=None):
        """The fitted analyzer for poison in the box ``feature_range``/``clip`` (the
        attacks' own box), sharing the protocol's ``g(mu)``."""
        X = check_array(self.X_train, dtype=[np.float64, np.float32])
        box = projection_box(X, feature_range, clip)
        key = None if box is None else (box[0].tobytes(), box[1].tobytes())
        if key not in self._analyzers:
            self._analyzers[key] = PoisonabilityAnalyzer(
                self._frozen, feature_range=box, **self._analyzer_params()
            ).fit(self.X_train, self.y_train, clean_gradient=self.clean_)
        return self._analyzers[key]

    def attack(self, epsilon_d=(0.03, 0.1, 1.0, "tau"), *, attack_params=None, defense=None,
               random_state=0):
        """Gradient Canceling at each budget, the victim retrained on each poisoned set.

        Parameters are those of :func:`evaluate_attack`, which returns the same dict.
        """
        attack_params = dict(attack_params or {})
        for name, value in self._analyzer_params().items():
            attack_params.setdefault(name, value)
        # numeric budgets are checked before anything runs; "tau" once it is known
        for eps in _budgets([e for e in epsilon_d if not isinstance(e, str)], np.inf):
            _check_poison_fits(eps, self.X_train)
        analyzer = self.analyzer(attack_params.get("feature_range"), attack_params.get("clip"))
        rows, histories = [], {}
        for eps in _budgets(epsilon_d, analyzer.threshold_):
            _check_poison_fits(eps, self.X_train)
            rows.append(self._attack_one(eps, attack_params, defense, random_state, histories))
        return {
            "clean_accuracy": self.clean_accuracy_,
            "target_accuracy": self.target_accuracy_,
            "threshold": analyzer.threshold_,
            "threshold_binary": analyzer.threshold_binary_,
            "exact": analyzer.exact_,
            "rows": rows,
            "histories": histories,
        }

    def _attack_one(self, eps, attack_params, defense, random_state, histories):
        X_train, y_train = self.X_train, self.y_train
        self._stage(f"Gradient Canceling at eps_d = {eps:.4g}")
        start = time.perf_counter()
        attack = GradientCanceling(
            self._frozen, epsilon_d=eps, random_state=random_state, **attack_params
        )
        X_mixed, y_mixed = attack.fit_resample(X_train, y_train, clean_gradient=self.clean_)
        self._stage(f"retraining the victim at eps_d = {eps:.4g}")
        retrained = clone(self.victim).fit(X_mixed, y_mixed)
        acc = accuracy(retrained, self.X_test, self.y_test)
        defended = {}
        if defense is not None:
            self._stage(f"filtering and retraining at eps_d = {eps:.4g}")
            # as many rows removed as there are poison points (the paper's protocol)
            filt = clone(defense).set_params(removal_fraction=attack.n_poison_ / len(X_mixed))
            X_kept, y_kept = filt.fit_resample(X_mixed, y_mixed)
            acc_defended = accuracy(clone(self.victim).fit(X_kept, y_kept), self.X_test,
                                    self.y_test)
            defended = {
                "accuracy_defended": acc_defended,
                "accuracy_drop_defended": self.clean_accuracy_ - acc_defended,
                "poison_removed": float(np.mean(filt.removed_indices_ >= len(X_train))),
            }
        histories[f"{eps:.4g}"] = attack.history_.tolist()
        return {
            "epsilon_d": eps,
            "n_poison": attack.n_poison_,
            "accuracy": acc,
            "accuracy_drop": self.clean_accuracy_ - acc,
            "gradient_norm": attack.gradient_norm_,
            "lower_bound": float(
                attack.analyzer_.residual_lower_bound(attack.n_poison_ / len(X_train))
            ),
            "converged": attack.converged_,
            **defended,
            "seconds": time.perf_counter() - start,
        }


    def run_sampler(self, make_sampler, epsilon_d, *, random_state=0, name="attack",
                    return_fitted=False):
        """Any poisoning sampler at each budget, the victim retrained on each poisoned set.

        ``make_sampler(target, epsilon_d, random_state)`` returns an unfitted sampler
        (e.g. from :func:`~skpoison.experiments.make_attack`) for the protocol's frozen
        target; where its ``fit_resample`` takes ``clean_gradient=``, the protocol's
        ``g(mu)`` is passed, so it is not computed again.

        Parameters
        ----------
        make_sampler : callable
            ``(target, epsilon_d, random_state) -> sampler``.
        epsilon_d : sequence of float or "tau"
            Budgets; ``"tau"`` is the target's threshold for unboxed poison.
        random_state : int, default=0
            Seed of every sampler.
        name : str, default="attack"
            Shown in the progress messages.
        return_fitted : bool, default=False
            Also return the fitted samplers and the retrained victims, one per row.

        Returns
        -------
        rows : list of dict
            Per budget: ``epsilon_d``, ``n_poison``, ``accuracy``, ``accuracy_drop``,
            ``gradient_norm`` (the sampler's, relative, at the target),
            ``lower_bound`` (the sampler's analyzer's residual bound at its budget),
            ``distance`` (L2 distance of the retrained parameters to the target's,
            divided by the norm of the target's) and ``seconds`` (of the attack).
        fitted : list of (sampler, retrained victim)
            Only with ``return_fitted=True``.
        """
        rows, fitted = [], []
        for eps in _budgets(epsilon_d, self.analyzer().threshold_):
            _check_poison_fits(eps, self.X_train)
            sampler = make_sampler(self._frozen, eps, random_state)
            self._stage(f"{name} at eps_d = {eps:.4g}")
            takes_clean = "clean_gradient" in inspect.signature(sampler.fit_resample).parameters
            start = time.perf_counter()
            if takes_clean:
                X_mixed, y_mixed = sampler.fit_resample(
                    self.X_train, self.y_train, clean_gradient=self.clean_
                )
            else:
                X_mixed, y_mixed = sampler.fit_resample(self.X_train, self.y_train)
            seconds = time.perf_counter() - start
            self._stage(f"retraining the victim on {name} at eps_d = {eps:.4g}")
            retrained = clone(self.victim).fit(X_mixed, y_mixed)
            acc = accuracy(retrained, self.X_test, self.y_test)
            analyzer = getattr(sampler, "analyzer_", None) or self.analyzer()
            n_poison = len(X_mixed) - len(self.X_train)
            rows.append({
                "epsilon_d": eps,
                "n_poison": n_poison,
                "accuracy": acc,
                "accuracy_drop": self.clean_accuracy_ - acc,
                # attacks without a target (TGDA, Gradient Matching): measured here
                "gradient_norm": float(
                    sampler.gradient_norm_ if hasattr(sampler, "gradient_norm_")
                    else analyzer.gradient_norm(sampler.X_poison_, sampler.y_poison_)
                ),
                "lower_bound": float(
                    analyzer.residual_lower_bound(max(n_poison, 1) / len(self.X_train))
                ),
                "distance": self.distance_to_target(retrained),
                "seconds": seconds,
            })
            fitted.append((sampler, retrained))
        return (rows, fitted) if return_fitted else rows

    def distance_to_target(self, model):
        """``||w - w_target|| / ||w_target||`` over all parameters (intercepts included)
        of a fitted model of the target's family."""
        w = as_objective(model, device="cpu", dtype="float64").flat_params()
        if self._target_params is None:
            self._target_params = as_objective(
                self.target_, device="cpu", dtype="float64"
            ).flat_params()
        w_target = self._target_params
        if w.shape != w_target.shape:
            raise ValueError(
                f"The model has {w.numel()} parameters and the target {w_target.numel()}; "
                "retrain the target's model family."
            )
        norm = float(torch.linalg.vector_norm(w_target))
        return float(torch.linalg.vector_norm(w - w_target)) / (norm or 1.0)


def _protocol(X_train, y_train, X_test, y_test, victim, target, attack_params, progress):
    params = {k: attack_params[k] for k in ("device", "dtype", "batch_size") if k in attack_params}
    return PoisoningProtocol(
        X_train, y_train, X_test, y_test, victim, target, progress=progress, **params
    ).fit()


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
    defense=None,
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
        Budgets; ``"tau"`` stands for the target's threshold (skipped when it is 0
        or above ``MAX_TAU_BUDGET = 10``).
    attack_params : dict or None
        Further parameters of :class:`~skpoison.attacks.GradientCanceling`.
    defense : estimator or None
        An unfitted data filter (e.g. :class:`~skpoison.defenses.SeverFilter`).  When
        given, each budget also retrains the victim on the rows the filter keeps of the
        clean data plus the poison, the filter removing as many rows as there are
        poison points (``removal_fraction = n_poison / (n + n_poison)``).
    random_state : int, default=0
        Seed of the attack.
    progress : callable or None
        Called with a message at the start of each stage: the clean fit, the
        target, tau, and per budget the attack and the retraining.

    Returns
    -------
    result : dict
        ``clean_accuracy``, ``target_accuracy``, ``threshold``, ``threshold_binary``,
        ``rows`` (one dict per budget: ``epsilon_d``, ``n_poison``, ``accuracy``,
        ``accuracy_drop``, ``gradient_norm``, ``lower_bound``, ``converged``,
        ``seconds``; with a ``defense`` also ``accuracy_defended``,
        ``accuracy_drop_defended`` and ``poison_removed``, the share of poison among
        the removed rows) and ``histories`` (the relative gradient norm curve per budget).

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
    # numeric budgets are checked before anything runs
    for eps in _budgets([e for e in epsilon_d if not isinstance(e, str)], np.inf):
        _check_poison_fits(eps, X_train)
    protocol = _protocol(
        X_train, y_train, X_test, y_test, victim, target, attack_params, progress
    )
    return protocol.attack(
        epsilon_d, attack_params=attack_params, defense=defense, random_state=random_state
    )


def evaluate_defense(
    X_train,
    y_train,
    X_test,
    y_test,
    victim,
    target,
    defense,
    *,
    epsilon_d=(0.03, 0.1, 1.0, "tau"),
    attack_params=None,
    random_state=0,
    progress=None,
):
    """The paper's defense table (Tables 3 and 10): GC and GC-c, each without and after a filter.

    At each budget, Gradient Canceling builds poison for the target without clipping
    (GC) and clipped to the clean data's range (GC-c); the victim is retrained on the
    clean data plus each poison set, and again on the rows ``defense`` keeps of it
    (GC-d, GC-cd), the filter removing as many rows as there are poison points.

    Parameters
    ----------
    X_train, y_train, X_test, y_test : array-like
        Clean training data and held-out data.
    victim : estimator
        Unfitted victim.
    target : estimator
        Target recipe or frozen fitted model (built once, shared by every attack).
    defense : estimator
        Unfitted data filter, e.g. :class:`~skpoison.defenses.SeverFilter`.
    epsilon_d : sequence of float or "tau", default=(0.03, 0.1, 1.0, "tau")
        Budgets.
    attack_params : dict or None
        Further parameters of :class:`~skpoison.attacks.GradientCanceling` (``clip``
        is set by the protocol).
    random_state : int, default=0
    progress : callable or None

    Returns
    -------
    result : dict
        ``clean_accuracy``, ``target_accuracy``, ``threshold``, ``threshold_binary``,
        ``exact``, ``rows`` (per budget: ``epsilon_d``, ``n_poison`` (also the number
        of rows the filter removes), the accuracies ``gc``, ``gc_c``, ``gc_d``,
        ``gc_cd``, their drops ``drop_gc``, ``drop_gc_c``, ``drop_gc_d``,
        ``drop_gc_cd``, the share of poison among the removed rows
        ``poison_removed_d`` and ``poison_removed_cd``, ``seconds``) and
        ``histories`` (GC-c curves under keys ending in ``" (clipped)"``).

    Examples
    --------
    >>> from sklearn.linear_model import LogisticRegression
    >>> from skpoison.defenses import SeverFilter
    >>> from skpoison.experiments import evaluate_defense, load_dataset
    >>> from skpoison.targets import LabelFlipTarget
    >>> X_train, X_test, y_train, y_test = load_dataset("gaussian")
    >>> result = evaluate_defense(
    ...     X_train, y_train, X_test, y_test, LogisticRegression(),
    ...     LabelFlipTarget(LogisticRegression(), flip_fraction=0.5, random_state=0),
    ...     SeverFilter(LogisticRegression()), epsilon_d=[0.3],
    ...     attack_params={"max_iter": 100, "device": "cpu"})
    >>> sorted(k for k in result["rows"][0] if k.startswith("gc"))
    ['gc', 'gc_c', 'gc_cd', 'gc_d']
    """
    attack_params = {k: v for k, v in (attack_params or {}).items() if k != "clip"}
    for eps in _budgets([e for e in epsilon_d if not isinstance(e, str)], np.inf):
        _check_poison_fits(eps, X_train)
    protocol = _protocol(
        X_train, y_train, X_test, y_test, victim, target, attack_params, progress
    )
    # one list of budgets for both runs: "tau" is the threshold of unclipped poison
    budgets = _budgets(
        epsilon_d, protocol.analyzer(attack_params.get("feature_range")).threshold_
    )
    runs = {}
    for clip in (None, "data"):
        if progress is not None:
            progress("GC-c (clipped to the data range)" if clip else "GC (no clipping)")
        runs[clip] = protocol.attack(
            budgets, attack_params={**attack_params, "clip": clip}, defense=defense,
            random_state=random_state,
        )
    plain, clipped = runs[None], runs["data"]
    rows = []
    for a, c in zip(plain["rows"], clipped["rows"]):
        row = {"epsilon_d": a["epsilon_d"], "n_poison": a["n_poison"]}
        for key, r, field in (
            ("gc", a, "accuracy"), ("gc_c", c, "accuracy"),
            ("gc_d", a, "accuracy_defended"), ("gc_cd", c, "accuracy_defended"),
        ):
            row[key] = r[field]
            row["drop_" + key] = plain["clean_accuracy"] - r[field]
        row["poison_removed_d"] = a["poison_removed"]
        row["poison_removed_cd"] = c["poison_removed"]
        row["seconds"] = a["seconds"] + c["seconds"]
        rows.append(row)
    histories = dict(plain["histories"])
    histories.update({f"{k} (clipped)": v for k, v in clipped["histories"].items()})
    result = {k: v for k, v in plain.items() if k not in ("rows", "histories")}
    result.update(rows=rows, histories=histories)
    return result
