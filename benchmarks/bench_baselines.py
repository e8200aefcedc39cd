"""Gradient Canceling against the paper's baselines, TGDA and Gradient Matching.

Protocol (paper, section 5 and Table 2, logistic regression): the victim is
``LogisticRegression`` trained on the clean training rows.  GC's target starts from
the model fitted on every label flipped (``LabelFlipTarget(flip_fraction=1)``, the
default) or from ``GradPC(victim, epsilon_w)`` (``--target gradpc``; the paper uses
``epsilon_w = 1`` on MNIST), and for each budget it is scaled down until its tau is at
most ``eps_d`` (``scale_to_threshold``, paper appendix C.8), so that the budget can
reach it; its tau is in the table.  TGDA and Gradient Matching need no target.
Every attack runs
at each ``eps_d`` on the same split with the same seed and poison box
(``feature_range=(0, 1)``, pixels; ``--no-box`` lifts it), the victim is retrained from
scratch on clean plus poison, and one table reports its test accuracy, the drop from
the clean model and the attack's seconds.  
Data: scikit-learn's digits (default; 1257 training and 540 test rows) or, with
``--mnist``, MNIST (``$SKPOISON_DATA/mnist``), its training set subsampled with
``--n-train`` and its 10,000 test images.

Usage::

    python benchmarks/bench_baselines.py
    SKPOISON_DATA=../shared/data python benchmarks/bench_baselines.py --mnist \
        --n-train 5000 --tgda-iter 20

Not a test: the numbers depend on the machine.
"""

import argparse
import time
import warnings

import numpy as np
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

from skpoison import PoisonabilityAnalyzer
from skpoison.attacks import TGDA, GradientCanceling, GradientMatching
from skpoison.datasets import fetch_mnist, load_digits
from skpoison.targets import GradPC, LabelFlipTarget, scale_to_threshold


def load(args):
    if not args.mnist:
        X, y = load_digits(return_X_y=True)
        return train_test_split(X, y, test_size=0.3, random_state=args.seed, stratify=y)
    X, y = fetch_mnist(return_X_y=True)
    X_test, y_test = fetch_mnist(subset="test", return_X_y=True)
    if args.n_train is not None:
        rows = np.random.RandomState(args.seed).choice(len(X), args.n_train, replace=False)
        X, y = X[rows], y[rows]
    return X.astype(np.float64), X_test.astype(np.float64), y, y_test


def make_attack(name, victim, target, eps, args):
    common = dict(epsilon_d=eps, random_state=args.seed)
    if not args.no_box:
        common["feature_range"] = (0.0, 1.0)
    if name == "gc":
        return GradientCanceling(target, max_iter=args.gc_iter, **common)
    if name == "tgda":
        return TGDA(victim, max_iter=args.tgda_iter, **common)
    return GradientMatching(victim, max_iter=args.gm_iter, **common)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mnist", action="store_true", help="MNIST instead of digits")
    parser.add_argument("--n-train", type=int, default=None, help="MNIST training rows")
    parser.add_argument("--epsilon-d", type=float, nargs="+", default=[0.03, 0.1, 1.0])
    parser.add_argument("--target", choices=["labelflip", "gradpc"], default="labelflip")
    parser.add_argument("--epsilon-w", type=float, default=1.0, help="GradPC radius")
    parser.add_argument("--attacks", nargs="+", default=["gc", "tgda", "gm"],
                        choices=["gc", "tgda", "gm"])
    parser.add_argument("--gc-iter", type=int, default=500)
    parser.add_argument("--tgda-iter", type=int, default=50)
    parser.add_argument("--gm-iter", type=int, default=250)
    parser.add_argument("--no-box", action="store_true", help="unconstrained poison")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    warnings.simplefilter("ignore", ConvergenceWarning)

    X, X_test, y, y_test = load(args)
    victim = LogisticRegression(max_iter=1000)
    clean_acc = clone(victim).fit(X, y).score(X_test, y_test)
    if args.target == "gradpc":
        recipe = GradPC(victim, epsilon_w=args.epsilon_w, random_state=args.seed)
    else:
        recipe = LabelFlipTarget(victim, flip_fraction=1.0, random_state=args.seed)
    start = time.perf_counter()
    base = recipe.fit(X, y).target_
    tau = PoisonabilityAnalyzer(FrozenEstimator(base)).fit(X, y).threshold_
    print(
        f"{'MNIST' if args.mnist else 'digits'}: {len(X)} train, {len(X_test)} test rows; "
        f"clean accuracy {clean_acc:.4f}; {args.target} target accuracy "
        f"{base.score(X_test, y_test):.4f}, tau {tau:.3f} "
        f"({time.perf_counter() - start:.1f} s); box {'none' if args.no_box else '[0, 1]'}"
    )
    print(f"{'attack':<6} {'eps_d':>6} {'tau':>6} {'accuracy':>9} {'drop':>7} {'seconds':>8}")
    for eps in args.epsilon_d:
        for name in args.attacks:
            start = time.perf_counter()
            tau_column = "-"
            target = None
            if name == "gc":
                scaled, _ = scale_to_threshold(FrozenEstimator(base), X, y, eps)
                target = FrozenEstimator(scaled)
                tau_column = f"{PoisonabilityAnalyzer(target).fit(X, y).threshold_:.3f}"
            attack = make_attack(name, victim, target, eps, args)
            X_mixed, y_mixed = attack.fit_resample(X, y)
            seconds = time.perf_counter() - start
            acc = clone(victim).fit(X_mixed, y_mixed).score(X_test, y_test)
            print(
                f"{name:<6} {eps:>6.2f} {tau_column:>6} {acc:>9.4f} {clean_acc - acc:>7.4f} "
                f"{seconds:>8.1f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
