r"""
=======================================================
The poisonability threshold on the OR data (Figure 1)
=======================================================

How much poison does an attacker need to make logistic regression learn a
given model? For a linear margin classifier without intercept, Corollary 2 of
Lu, Kamath and Yu (ICML 2023) gives the exact answer: the target model ``w``
can be induced by adding a fraction ``epsilon_d`` of poisoned points to the
clean training set if and only if ``epsilon_d >= tau(w)``, where

.. math::

    \tau(\mathbf{w}) = \frac{\max\bigl(0, \langle \mathbf{w},
                       \mathbf{g}(\mu) \rangle\bigr)}{\mathcal{W}(1/e)},

Here :math:`\mathbf{g}(\mu)` is the average gradient of the clean loss at
``w``, :math:`\mathcal{W}` is Lambert's W function, and a penalty term is
added when the victim is regularised.

This example reproduces the left panel of the paper's Figure 1: on the
two-dimensional OR data it computes ``tau`` with
:class:`~skpoison.PoisonabilityAnalyzer` for every target model on a grid of
weight vectors ``w = (w1, w2)`` and draws the result as a heat map.
"""

# %%
# The clean data and the clean model
# ----------------------------------
# The OR data are the four corners of the unit square, labelled with the
# logical OR of their coordinates and perturbed by a little Gaussian noise.
# As in the paper, the victim trains an unregularised logistic regression
# (``C=np.inf``) without intercept, so a model is just a vector ``w`` in the
# plane and the threshold is exact (``exact_`` is True). With the default
# ``C=1`` the analyzer would add the penalty term ``||w||^2 / (C n)`` to the
# numerator of ``tau``.

import copy

import matplotlib.pyplot as plt
import numpy as np
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression

from skpoison import PoisonabilityAnalyzer
from skpoison.datasets import make_or

X, y = make_or(random_state=0)
clean = LogisticRegression(fit_intercept=False, C=np.inf).fit(X, y)
w_clean = clean.coef_.ravel()
print(f"{X.shape[0]} clean points, clean model w = {np.round(w_clean, 3)}")
print(f"clean training accuracy: {clean.score(X, y):.3f}")

# %%
# The threshold of one target model
# ---------------------------------
# Any fitted estimator can serve as a target. To use parameters of our own
# choosing, we copy the clean model, overwrite its coefficients, and wrap the
# copy in :class:`~sklearn.frozen.FrozenEstimator` so that nothing refits it.
# The analyzer never modifies the target.


def target_with(w):
    """A frozen copy of the clean model with coefficients ``w``."""
    model = copy.deepcopy(clean)
    model.coef_ = np.asarray(w, dtype=np.float64).reshape(1, -1)
    return FrozenEstimator(model)


target = target_with([-2.0, -2.0])
analyzer = PoisonabilityAnalyzer(target=target).fit(X, y)
print(f"target w = (-2, -2): training accuracy {target.score(X, y):.3f}")
print(f"tau = {analyzer.threshold_:.3f}, exact: {analyzer.exact_}")
for eps in (0.1, 1.0, 10.0):
    print(f"  poisonable with epsilon_d = {eps:>4}: {analyzer.is_poisonable(eps)}")

# %%
# Turning a good model into this bad one takes more than six poison points
# per clean point. The clean model itself, by contrast, has ``tau = 0``: its
# clean gradient vanishes, so there is nothing to cancel.

clean_analyzer = PoisonabilityAnalyzer(target=clean).fit(X, y)
print(f"tau(clean model) = {clean_analyzer.threshold_:.3f}")

# %%
# The threshold over a grid of target models
# ------------------------------------------
# We now repeat this for 51 x 51 target models on [-5, 5] x [-5, 5], and
# record each target's training accuracy as well. Computing ``tau`` needs a
# single pass over the clean data per target, so the whole grid takes a few
# seconds.

grid = np.linspace(-5, 5, 51)
tau = np.empty((grid.size, grid.size))
accuracy = np.empty_like(tau)
for i, w2 in enumerate(grid):
    for j, w1 in enumerate(grid):
        target = target_with([w1, w2])
        tau[i, j] = PoisonabilityAnalyzer(target=target).fit(X, y).threshold_
        accuracy[i, j] = target.score(X, y)

print(f"tau ranges from {tau.min():.3f} to {tau.max():.3f}")
print(f"targets reachable with 10% poison: {np.mean(tau <= 0.1):.0%} of the grid")
print(f"targets with training accuracy below 50%: {np.mean(accuracy < 0.5):.0%}")

# %%
# The heat map
# ------------
# Dark regions are targets that a little poison can reach; bright regions
# need a lot. The threshold is zero wherever ``<w, g(mu)> <= 0``, that is,
# wherever the clean loss would *decrease* if ``w`` were scaled up: for
# instance on the segment from the origin to the clean model (the red star),
# which sits on the edge of that region. The white contours mark budgets of
# 10%, 50% and 100% poison. Below the dashed line lie the harmful targets,
# those with a training accuracy under 50%. Once their norm exceeds about 2,
# every one of them needs roughly as much poison as there is clean data, or
# more.

fig, ax = plt.subplots(figsize=(6.4, 5.2), layout="constrained")
mesh = ax.pcolormesh(grid, grid, tau, shading="nearest", cmap="viridis")
fig.colorbar(mesh, ax=ax, label=r"$\tau$ (poison points per clean point)")
contours = ax.contour(
    grid, grid, tau, levels=[0.1, 0.5, 1.0], colors="white", linewidths=1
)
ax.clabel(contours, fmt={0.1: "10%", 0.5: "50%", 1.0: "100%"}, fontsize=8)
ax.contour(
    grid, grid, accuracy, levels=[0.5], colors="black", linewidths=1.5,
    linestyles="dashed",
)
ax.plot([], [], color="black", linewidth=1.5, linestyle="dashed",
        label="training accuracy 50%")
ax.plot(*w_clean, marker="*", markersize=16, color="red", markeredgecolor="k",
        linestyle="none", label="clean model")
ax.set_xlabel(r"$w_1$")
ax.set_ylabel(r"$w_2$")
ax.set_title(r"Poisonability threshold $\tau(\mathbf{w})$ on the OR data")
ax.legend(loc="lower right")
ax.set_aspect("equal")
plt.show()

# %%
# Direction decides harm, length decides cost
# -------------------------------------------
# Whether a linear target classifies badly depends only on its direction,
# but its threshold grows with its length. Along the ray through
# ``w = (-1, -1)`` every target makes the same predictions, yet the poison
# needed grows from a fifth of the clean set to fourteen times it. This is
# why shrinking a target model, as the :class:`~skpoison.targets.ScaledTarget`
# recipe does, can make the same predictions much cheaper to poison.

for scale in (0.1, 0.5, 1.0, 2.0, 4.0):
    target = target_with([-scale, -scale])
    t = PoisonabilityAnalyzer(target=target).fit(X, y).threshold_
    acc = target.score(X, y)
    print(f"w = {scale:>3} * (-1, -1): accuracy {acc:.3f}, tau = {t:.3f}")
