"""MNIST-17 logistic regression: Gradient Canceling against the attacks it is compared with.

Protocol (paper, appendix C.6), run by :func:`skpoison.experiments.comparison_report`
(the job of ``skpoison compare``): MNIST digits 1 and 7 (a seeded 70% of the official
training set, the official test set), pixels in [0, 1], the victim is
``LogisticRegression``.  The target is either the victim retrained on clean data plus
adversarially label-flipped copies (``--target labelflip``, the protocol of Suya et
al.) or ``GradPC`` (``--target gradpc``).  Each attack runs at each ``eps_d`` with its
poison in the clean data's range; the victim is retrained from scratch on clean plus
poison and scored on the MNIST-17 test set.  Printed: the comparison table (test
accuracy, its drop from the clean model, the relative gradient norm at the target, the
relative distance of the retrained model to the target, the attack's seconds) and
each attack's seconds per ``eps_d``.

Usage::

    SKPOISON_DATA=../shared/data python benchmarks/bench_attack_comparison.py
    python benchmarks/bench_attack_comparison.py --n-train 1000 --epsilon-d 0.03 0.1 \
        --attacks gc kkt fw mt labelflip --target gradpc

Not a test: the numbers depend on the machine.
"""

import argparse

from skpoison._choices import ATTACKS, COMPARE_TARGETS
from skpoison.experiments import comparison_report, format_comparison_table, format_table


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-train", type=int, default=None, help="clean rows (default all)")
    parser.add_argument("--epsilon-d", type=float, nargs="+", default=[0.03, 0.1, 1.0])
    parser.add_argument("--attacks", nargs="+", default=list(ATTACKS), choices=ATTACKS)
    parser.add_argument("--target", choices=COMPARE_TARGETS, default="labelflip")
    parser.add_argument("--max-iter", type=int, default=1000, help="GC steps per budget")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    report = comparison_report(
        "mnist17", "logreg", target=args.target, attacks=args.attacks,
        epsilon_d=args.epsilon_d, max_iter=args.max_iter, random_state=args.seed,
        n_train=args.n_train, device="cpu",
    )
    print(format_comparison_table(report))
    budgets = sorted({row["epsilon_d"] for row in report["rows"]})
    seconds = {(row["attack"], row["epsilon_d"]): row["seconds"] for row in report["rows"]}
    print("\nseconds per attack and eps_d")
    print(format_table(
        ["attack", *(f"eps_d={eps:g}" for eps in budgets)],
        [[name, *(seconds[name, eps] for eps in budgets)] for name in args.attacks],
    ))
    print(f"\ntotal {report['seconds']:.1f} s")


if __name__ == "__main__":
    main()
