r"""
==================================================
Gradient Canceling against a small neural network
==================================================

Gradient Canceling (GC) works on neural networks exactly as on linear models:
the victim is a skorch net from :func:`skpoison.models.make_net`, the target a
:class:`~skpoison.targets.GradPC` recipe built from it, and the attack the same
:class:`~skpoison.attacks.GradientCanceling` estimator.  This example poisons a
three-layer MLP (hidden size 32, leaky ReLU) on scikit-learn's digits.

For a net, the threshold :math:`\tau` of
:class:`~skpoison.PoisonabilityAnalyzer` is computed on the logits of the last
linear layer (Theorem 4 of Lu, Kamath and Yu, 2023): it is a *necessary*
condition, so below :math:`\tau` no poison set, however crafted, makes the
target a stationary point of retraining.
"""

# %%
# Data, victim and target
# -----------------------
# We keep 300 training digits (64 pixels in [0, 1], 10 classes) so that the
# poison has more degrees of freedom (``n_poison x 64``) than the net has
# parameters (3466) at ``eps_d = 1``. The target is the clean net corrupted by
# GradPC within a relative budget ``epsilon_w = 0.03`` (``relative=True``: 3%
# of the norm of all its parameters; by default the radius is absolute), which
# lowers its test accuracy from 0.902 to 0.752 and gives tau = 0.46. Larger
# budgets give far more confident, wrong targets whose threshold exceeds 1
# (at 5% tau is already 1.8, out of reach of ``eps_d = 1``).

import matplotlib.pyplot as plt
import numpy as np
from sklearn.base import clone
from sklearn.frozen import FrozenEstimator

from skpoison import GradientCanceling, PoisonabilityAnalyzer
from skpoison.datasets import load_digits, train_validation_split
from skpoison.models import make_net
from skpoison.targets import GradPC

X, y = load_digits(return_X_y=True)
X_train, X_test, y_train, y_test = train_validation_split(
    X, y, validation_fraction=0.3, random_state=0
)
X_train, y_train = X_train[:300], y_train[:300]

victim = make_net("mlp", hidden_size=32, max_epochs=30, random_state=0, device="cpu")
recipe = GradPC(victim, epsilon_w=0.03, relative=True, random_state=0, device="cpu")
recipe.fit(X_train, y_train)
clean, target = recipe.estimator_, recipe.target_

analyzer = PoisonabilityAnalyzer(FrozenEstimator(target), device="cpu").fit(X_train, y_train)
print(f"clean accuracy  {clean.score(X_test, y_test):.3f}")
print(f"target accuracy {target.score(X_test, y_test):.3f}")
print(f"tau = {analyzer.threshold_:.3f}, tau(2) = {analyzer.threshold_binary_:.3f}")

# %%
# Gradient Canceling at several poisoning ratios
# ----------------------------------------------
# For each ``eps_d`` GC optimises the poison features so that the target's
# gradient on clean plus poison data vanishes; ``history_`` records the relative
# gradient norm :math:`\|g(\chi)\| / \|g(\mu)\|`. A fresh net is then retrained
# from scratch on clean plus poison.

budgets = [0.1, 0.5, 1.0]
attacks, accuracies = {}, {}
for eps in budgets:
    gc = GradientCanceling(
        FrozenEstimator(target), epsilon_d=eps, max_iter=500, random_state=0, device="cpu"
    ).fit(X_train, y_train)
    retrained = clone(victim).fit(
        np.vstack([X_train, gc.X_poison_]), np.concatenate([y_train, gc.y_poison_])
    )
    attacks[eps] = gc
    accuracies[eps] = retrained.score(X_test, y_test)
    print(
        f"eps_d = {eps:g}: {gc.n_poison_} poison points, relative gradient norm "
        f"{gc.history_[0]:.3f} -> {gc.gradient_norm_:.4f}, retrained accuracy "
        f"{accuracies[eps]:.3f}"
    )

# %%
# Gradient norm and accuracy
# --------------------------
# Above the threshold (``eps_d = 0.5`` and ``1``) the gradient norm drops
# about ten- and seventeen-fold (to 0.11 and 0.06), and the net retrained on
# the poisoned data loses two points of accuracy (0.878 and 0.883), a small
# step toward the target (0.752): 500 steps on a non-convex net stop well
# short of cancelling the gradient. Below it (``eps_d = 0.1 < tau``) the
# residual cannot reach zero: :meth:`~skpoison.PoisonabilityAnalyzer.residual_lower_bound`
# gives the floor no poison set can beat (dotted, 0.016; the attack stops at
# 0.31), and the retrained net keeps its clean accuracy (0.900).

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
for eps, gc in attacks.items():
    line = ax1.semilogy(gc.history_, label=f"eps_d = {eps:g}")[0]
    bound = analyzer.residual_lower_bound(eps)
    if bound > 0:
        ax1.axhline(bound, color=line.get_color(), linestyle=":")
ax1.set_xlabel("GC iteration")
ax1.set_ylabel(r"$\|g(\chi)\| / \|g(\mu)\|$")
ax1.set_title(f"MLP on digits: tau = {analyzer.threshold_:.2f}")
ax1.legend()

names = ["clean", "target"] + [f"GC {eps:g}" for eps in budgets]
values = [clean.score(X_test, y_test), target.score(X_test, y_test)]
values += [accuracies[eps] for eps in budgets]
ax2.bar(names, values, color=["tab:green", "tab:red"] + ["tab:blue"] * len(budgets))
ax2.set_ylim(min(values) - 0.1, 1.0)
ax2.set_ylabel("test accuracy")
ax2.set_title("retrained on clean + poison")
fig.tight_layout()
plt.show()
