"""
===============================================
Five attacks, one target: where the poison goes
===============================================

Gradient Canceling (GC) is one of several attacks that take a *target model*
and build poison whose retraining lands on it. The paper compares it with the
KKT attack of Koh, Steinhardt and Liang and the Model-Targeted attack of Suya
et al. (its appendix C.6). :func:`skpoison.experiments.compare_attacks` runs
such attacks on one split, one target and the same budgets, retrains the
victim on each poisoned set and reports one row per attack and budget.

This example does it on a small two-dimensional problem, so that the poison
can be drawn: each panel shows the clean data, the poison of one attack, the
clean model's decision boundary, the target's, and the boundary of the victim
retrained on clean data plus that poison.
"""

# %%
# Data, victim and target
# -----------------------
# Two Gaussian blobs, a logistic regression victim, and a GradPC target: the
# clean model's parameters pushed by projected gradient ascent of the loss
# within an L2 ball of radius 2, which shifts and turns its decision boundary
# so that it misclassifies a wide band of points the clean model gets right.
# (:func:`~skpoison.experiments.label_flip_target` builds the other target of
# the paper's comparison, Suya et al.'s label-flip model.)

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import make_blobs
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

from skpoison.experiments import compare_attacks, format_comparison_table
from skpoison.targets import GradPC

X, y = make_blobs(n_samples=160, centers=[(-1.0, -0.5), (1.0, 0.5)], cluster_std=0.8,
                  random_state=0)
X_train, X_test, y_train, y_test = train_test_split(
    X, y, test_size=0.3, stratify=y, random_state=0
)
victim = LogisticRegression()
target = GradPC(victim, epsilon_w=2.0, random_state=0, device="cpu").fit(X_train, y_train)

# %%
# Five attacks at one budget
# --------------------------
# All attacks keep their poison within the clean data's range (``clip="data"``,
# the default of :func:`~skpoison.experiments.compare_attacks`) and add
# ``epsilon_d * n`` points. ``distance`` is the distance of the retrained
# model's parameters to the target's, relative to the target's norm.

result = compare_attacks(
    X_train, y_train, X_test, y_test, victim, target,
    attacks=["gc", "kkt", "mt", "fw", "labelflip"], epsilon_d=[0.3],
    attack_params={"gc": {"max_iter": 200}, "kkt": {"max_iter": 200},
                   "mt": {"n_starts": 3, "search_iter": 15}, "fw": {"max_iter": 15}},
    device="cpu", return_fitted=True,
)
print(format_comparison_table(result))

# %%
# Where the poison goes
# ---------------------
# GC moves ``epsilon_d * n`` points that keep the labels of the clean points
# they start from; KKT puts all its poison on one point per class, repeated;
# the Model-Targeted attack adds the point of largest loss gap one at a time;
# Frank-Wolfe canceling spreads the poison over a few weighted atoms; label
# flipping, which ignores the target, copies clean points with the other
# label. The table's ``grad norm`` says how close each poison set comes to
# making the target stationary; tau, the target's threshold, is below the
# budget, so the target-based attacks can reach it.

names = {"gc": "Gradient Canceling", "kkt": "KKT", "mt": "Model-Targeted",
         "fw": "Frank-Wolfe canceling", "labelflip": "label flip (adversarial)"}
colors = np.array(["tab:blue", "tab:orange"])
low, high = X_train.min(axis=0) - 0.5, X_train.max(axis=0) + 0.5
xs = np.linspace(low[0], high[0], 2)


def boundary(ax, model, **style):
    """Draw the line ``w . x + b = 0`` of a fitted binary linear model."""
    (w1, w2), b = model.coef_[0], model.intercept_[0]
    return ax.plot(xs, -(w1 * xs + b) / w2, **style)[0]


clean = LogisticRegression().fit(X_train, y_train)
fig, axes = plt.subplots(2, 3, figsize=(12, 8), sharex=True, sharey=True)
axes = axes.ravel()
for ax, row, (sampler, retrained) in zip(axes, result["rows"], result["fitted"]):
    ax.scatter(*X_train.T, c=colors[y_train], s=10, alpha=0.25)
    ax.scatter(*sampler.X_poison_.T, c=colors[sampler.y_poison_], s=60, marker="X",
               edgecolors="black", linewidths=0.6)
    lines = [
        boundary(ax, clean, color="gray", ls="--", label="clean model"),
        boundary(ax, target.target_, color="crimson", lw=2, label="target"),
        boundary(ax, retrained, color="black", lw=1.2, label="retrained on poison"),
    ]
    ax.set_title(f"{names[row['attack']]}\naccuracy {100 * row['accuracy']:.0f}%, "
                 f"distance {row['distance']:.2f}", fontsize=10)
    ax.set_xlim(low[0], high[0])
    ax.set_ylim(low[1], high[1])
axes[2].tick_params(labelbottom=True)  # above the legend panel
for ax in axes[2:5]:
    ax.set_xlabel("feature 1")
for ax in axes[::3]:
    ax.set_ylabel("feature 2")
# the last panel holds the legend
axes[-1].axis("off")
poison = axes[-1].scatter([], [], c="white", s=60, marker="X", edgecolors="black",
                          label="poison (colour: its label)")
axes[-1].legend(handles=[poison, *lines], loc="center", frameon=False)
fig.suptitle(f"Poison at eps_d = {result['rows'][0]['epsilon_d']:g}: test accuracy of the "
             f"clean model {100 * result['clean_accuracy']:.0f}%, of the target "
             f"{100 * result['target_accuracy']:.0f}%")
fig.tight_layout()
plt.show()
