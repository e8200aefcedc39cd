"""MNIST-17 logistic regression: Gradient Canceling against the attacks it is compared with.

Protocol (paper, appendix C.6): MNIST digits 1 and 7, pixels in [0, 1], the victim is
``LogisticRegression``.  The target is either the model retrained on clean data plus
label-flipped copies (``--target labelflip``, the protocol of Suya et al.) or
``GradPC`` (``--target gradpc``).  Each attack runs at each ``eps_d`` with
``feature_range=(0, 1)``; the victim is retrained from scratch on clean plus poison and
scored on the MNIST-17 test set.  One table per run: test accuracy, its drop from the
clean model, the relative gradient norm at the target, the distance of the retrained
model to the target and the attack's seconds.

Usage::

    SKPOISON_DATA=../shared/data python benchmarks/bench_attack_comparison.py
    python benchmarks/bench_attack_comparison.py --n-train 2000 --epsilon-d 0.03 0.1 \
        --attacks gc kkt fw mt flip --target gradpc

Not a test: the numbers depend on the machine.
"""

import argparse
import time

import numpy as np
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression

from skpoison.attacks import (
    FrankWolfeCanceling,
    GradientCanceling,
    KKTAttack,
    LabelFlipAttack,
    ModelTargetedAttack,
)
from skpoison.datasets import fetch_mnist
from skpoison.targets import GradPC, LabelFlipTarget


def victim():
    return LogisticRegression(max_iter=1000)


def make_attack(name, target, eps, seed):
    box = dict(feature_range=(0.0, 1.0), random_state=seed)
    if name == "gc":
        return GradientCanceling(target, epsilon_d=eps, max_iter=500, **box)
    if name == "fw":
        return FrankWolfeCanceling(target, epsilon_d=eps, max_iter=50, **box)
    if name == "kkt":
        return KKTAttack(target, epsilon_d=eps, max_iter=400, **box)
    if name == "mt":
        return ModelTargetedAttack(target, victim(), epsilon_d=eps, **box)
    return LabelFlipAttack(victim(), epsilon_d=eps, target=target, random_state=seed)


def flat(model):
    return np.concatenate([model.coef_.ravel(), model.intercept_])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-train", type=int, default=None, help="clean rows (default all)")
    parser.add_argument("--epsilon-d", type=float, nargs="+", default=[0.03, 0.1, 1.0])
    parser.add_argument("--attacks", nargs="+", default=["gc", "kkt", "fw", "mt", "flip"],
                        choices=["gc", "kkt", "fw", "mt", "flip"])
    parser.add_argument("--target", choices=["labelflip", "gradpc"], default="labelflip")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    X, y = fetch_mnist(digits=(1, 7), return_X_y=True)
    X_test, y_test = fetch_mnist(subset="test", digits=(1, 7), return_X_y=True)
    X, y = X.astype(np.float64), y
    if args.n_train is not None:
        rows = np.random.RandomState(args.seed).choice(len(X), args.n_train, replace=False)
        X, y = X[rows], y[rows]
    clean = victim().fit(X, y)
    clean_acc = clean.score(X_test, y_test)
    if args.target == "labelflip":
        recipe = LabelFlipTarget(victim(), flip_fraction=1.0, random_state=args.seed)
    else:
        recipe = GradPC(victim(), epsilon_w=1.0, random_state=args.seed)
    target = recipe.fit(X, y).target_
    w = flat(target)
    print(f"n={len(X)} clean test accuracy {100 * clean_acc:.2f}%; {args.target} target "
          f"{100 * target.score(X_test, y_test):.2f}%")
    header = f"{'attack':<6} {'eps_d':>6} {'acc %':>7} {'drop':>6} {'grad':>8} {'dist':>8} {'s':>7}"
    print(header)
    print("-" * len(header))
    for name in args.attacks:
        for eps in args.epsilon_d:
            attack = make_attack(name, FrozenEstimator(target), eps, args.seed)
            start = time.perf_counter()
            X_mixed, y_mixed = attack.fit_resample(X, y)
            seconds = time.perf_counter() - start
            retrained = victim().fit(X_mixed, y_mixed)
            acc = retrained.score(X_test, y_test)
            distance = np.linalg.norm(flat(retrained) - w) / np.linalg.norm(w)
            print(f"{name:<6} {eps:>6.3g} {100 * acc:>7.2f} {100 * (clean_acc - acc):>6.2f} "
                  f"{attack.gradient_norm_:>8.3g} {distance:>8.3g} {seconds:>7.1f}")


if __name__ == "__main__":
    main()
