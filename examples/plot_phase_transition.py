r"""
==========================================================
The phase transition at tau (Figures 1 and 2)
==========================================================

Lu, Kamath and Yu (ICML 2023) show that a target model ``w`` can be made a
stationary point of retraining only if the attacker adds at least
``tau * n`` poison points to the ``n`` clean ones. For a binary linear margin
classifier without intercept the bound is also sufficient, so there is a
sharp *phase transition*: below ``tau`` no poison set, however crafted, makes
the gradient of the target vanish on the mixed data; above it, Gradient
Canceling finds one.

This example reproduces the middle and right panels of the paper's Figure 1
(the OR data) and the left and middle panels of Figure 2 (a 10-dimensional
Gaussian data set): for a fixed malicious target it runs
:class:`~skpoison.attacks.GradientCanceling` over a grid of budgets
``epsilon_d`` around ``tau``, retrains the victim on clean plus poison data,
and plots

* the test accuracy of the retrained victim, and
* the gradient norm that the poison leaves at the target,
  :math:`\lVert \mathbf{g}(\chi) \rVert / \lVert \mathbf{g}(\mu) \rVert`,
  together with the smallest value that *any* poison set of that size can
  reach (:meth:`~skpoison.PoisonabilityAnalyzer.residual_lower_bound`).
"""

# %%
# Victims, targets and thresholds
# -------------------------------
# On both data sets the victim is a logistic regression without intercept,
# so a model is a weight vector ``w`` and the threshold is exact. As target
# we take the clean model turned around and shrunk, ``w = -c * w_clean``: it
# gets almost every test point wrong, and the factor ``c`` sets how much
# poison it needs (the longer the target, the larger ``tau``; see the OR
# threshold example). The target is a copy of the clean model with new
# coefficients, wrapped in :class:`~sklearn.frozen.FrozenEstimator` so that
# nothing refits or modifies it.
#
# The OR victim is unregularised (``C=np.inf``), as in the paper; the
# Gaussian victim keeps scikit-learn's default ``C=1``, whose penalty the
# analyzer and the attack include in the victim's objective.

import copy
import time

import matplotlib.pyplot as plt
import matplotlib.ticker as ticker
import numpy as np
from sklearn.base import clone
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression

from skpoison import GradientCanceling, PoisonabilityAnalyzer
from skpoison.datasets import make_gaussian, make_or, train_validation_split


def reversed_target(clean, c):
    """A frozen copy of ``clean`` whose coefficients are ``-c`` times the clean ones."""
    target = copy.deepcopy(clean)
    target.coef_ = -c * clean.coef_
    return FrozenEstimator(target)


X_or, y_or = make_or(random_state=0)
X_or_test, y_or_test = make_or(random_state=1)  # a fresh draw as test data
X_g, X_g_test, y_g, y_g_test = train_validation_split(
    *make_gaussian(random_state=0), validation_fraction=0.3, random_state=0
)

problems = {
    "OR data (Figure 1)": dict(
        data=(X_or, y_or, X_or_test, y_or_test),
        victim=LogisticRegression(fit_intercept=False, C=np.inf),
        c=0.2,
    ),
    "10-d Gaussian data (Figure 2)": dict(
        data=(X_g, y_g, X_g_test, y_g_test),
        victim=LogisticRegression(fit_intercept=False),
        c=0.1,
    ),
}

for name, problem in problems.items():
    X, y, X_test, y_test = problem["data"]
    clean = clone(problem["victim"]).fit(X, y)
    target = reversed_target(clean, problem["c"])
    analyzer = PoisonabilityAnalyzer(target).fit(X, y)
    problem.update(clean=clean, target=target, analyzer=analyzer)
    print(
        f"{name}: n = {len(X)}, clean accuracy {clean.score(X_test, y_test):.3f}, "
        f"target accuracy {target.score(X_test, y_test):.3f}, "
        f"tau = {analyzer.threshold_:.3f} (exact: {analyzer.exact_})"
    )

# %%
# Gradient Canceling over a grid of budgets
# -----------------------------------------
# For each budget, :class:`~skpoison.attacks.GradientCanceling` starts from a random
# subsample of the clean data and moves the features of these points so that
# their gradient at the target cancels the clean one. The victim is then
# retrained from scratch on the clean data followed by the poison, which is
# exactly what :meth:`~skpoison.attacks.GradientCanceling.fit_resample` returns. We
# also record how far the retrained model ends up from the target.
#
# The grid runs from a fifth of ``tau`` to four times ``tau``. Above ``tau``
# the attack meets its tolerance in a few hundred steps; below it no poison
# can, and the attack runs all its steps. We give it 500 (the ``steps``
# column): below ``tau`` it reaches the lower bound to the three digits
# printed by then, so more steps would only cost time.

ratios = np.geomspace(0.2, 4.0, 11)  # budgets as multiples of tau

for name, problem in problems.items():
    X, y, X_test, y_test = problem["data"]
    tau = problem["analyzer"].threshold_
    w_target = problem["target"].estimator.coef_
    rows = []
    for eps in ratios * tau:
        start = time.perf_counter()
        attack = GradientCanceling(
            problem["target"], epsilon_d=eps, max_iter=500, random_state=0
        )
        X_mixed, y_mixed = attack.fit_resample(X, y)
        retrained = clone(problem["victim"]).fit(X_mixed, y_mixed)
        distance = np.linalg.norm(retrained.coef_ - w_target) / np.linalg.norm(w_target)
        # the budget actually used: round(eps * n) points
        used = attack.n_poison_ / len(X)
        rows.append(
            dict(
                epsilon_d=used,
                n_poison=attack.n_poison_,
                accuracy=retrained.score(X_test, y_test),
                gradient_norm=attack.gradient_norm_,
                lower_bound=problem["analyzer"].residual_lower_bound(used),
                distance=distance,
                steps=attack.n_iter_,
                seconds=time.perf_counter() - start,
            )
        )
    problem["rows"] = rows
    print(f"\n{name}, tau = {tau:.3f}")
    print(" eps_d  n_poison  accuracy  grad norm  lower bound  ||w' - w||/||w||  steps")
    for r in rows:
        print(
            f"{r['epsilon_d']:6.3f}  {r['n_poison']:8d}  {r['accuracy']:8.3f}  "
            f"{r['gradient_norm']:9.2e}  {r['lower_bound']:11.2e}  {r['distance']:16.3f}"
            f"  {r['steps']:5d}"
        )

# %%
# Below ``tau`` the attack's gradient norm sits on the lower bound: Gradient
# Canceling finds the best poison there is, and it is not good enough. Above
# ``tau`` the norm falls to the attack's tolerance (``tol=1e-6``) in a few
# hundred steps (just above ``tau`` on the OR data, at 2.96, the 500 steps
# leave it at 6e-5) and the retrained victim lands on the target, to within
# a few percent of its norm.

# %%
# The plots
# ---------
# The dashed vertical line marks ``tau``. In the accuracy panels the dotted
# horizontal lines are the accuracies of the clean model and of the target.
# In the gradient-norm panels the grey curve is the lower bound on the
# gradient norm of any poison set of that size; it is positive exactly below
# ``tau`` (on a log scale, zero is not drawn).

fig, axes = plt.subplots(2, 2, figsize=(10, 7.5), layout="constrained")
for (name, problem), (ax_acc, ax_norm) in zip(problems.items(), axes):
    X, y, X_test, y_test = problem["data"]
    tau = problem["analyzer"].threshold_
    rows = problem["rows"]
    eps = np.array([r["epsilon_d"] for r in rows])

    ax_acc.plot(eps, [r["accuracy"] for r in rows], "o-", label="retrained on clean + GC poison")
    ax_acc.axhline(problem["clean"].score(X_test, y_test), color="tab:green", ls=":",
                   label="clean model")
    ax_acc.axhline(problem["target"].score(X_test, y_test), color="tab:red", ls=":",
                   label="target model")
    ax_acc.set_ylabel("test accuracy")
    ax_acc.set_ylim(-0.02, 1.02)

    fine = np.geomspace(eps.min(), eps.max(), 400)
    bound = problem["analyzer"].residual_lower_bound(fine)
    ax_norm.plot(fine[bound > 0], bound[bound > 0], color="0.5", lw=3, alpha=0.6,
                 label="lower bound (any poison)")
    ax_norm.plot(eps, [r["gradient_norm"] for r in rows], "o-", label="Gradient Canceling")
    ax_norm.set_yscale("log")
    ax_norm.set_ylabel(r"$\|g(\chi)\| \,/\, \|g(\mu)\|$")

    for ax in (ax_acc, ax_norm):
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(ticker.FormatStrFormatter("%g"))
        ax.xaxis.set_minor_formatter(ticker.NullFormatter())
        ax.axvline(tau, color="k", ls="--", label=rf"$\tau = {tau:.2f}$")
        ax.set_xlabel(r"poison budget $\varepsilon_d$")
        ax.set_title(name)
        ax.legend(fontsize=8, loc="center right" if ax is ax_acc else "upper right")
plt.show()

# %%
# What the accuracy does and does not say
# ---------------------------------------
# The accuracy falls *before* ``tau``: below the threshold the retrained
# model cannot be the target, but it is pulled towards it, and on these
# problems a model half-way between the clean model and the reversed target
# already points the wrong way. The threshold is about reaching the target
# itself, which the gradient norm and the distance ``||w' - w|| / ||w||`` in
# the table measure: both stay positive below ``tau``, shrinking as the budget
# nears it, and (nearly) vanish above it.
