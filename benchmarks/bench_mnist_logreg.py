"""MNIST logistic regression under Gradient Canceling: the paper's LR row, and GC cost.

Protocol (paper, section 5.1 and appendix C.1): a seeded 70% of MNIST's training set is
the clean data ``n``; the victim is ``LogisticRegression``; the target is
``GradPC(epsilon_w=1)``; Gradient Canceling runs at each ``eps_d`` and the victim is
retrained from scratch on clean plus poison and scored on MNIST's test set.  A second
table scales the same target (same predictions) until its tau is at most 0.1
(appendix C.8), the budget that a 10% poison can reach.

It also prints a ratio measured in the same run: the time of one GC iteration over
``m`` poison points divided by the time of one full-batch gradient of the victim's
objective (one training epoch) over ``m`` points.

Usage::

    SKPOISON_DATA=../shared/data python benchmarks/bench_mnist_logreg.py
    python benchmarks/bench_mnist_logreg.py --epsilon-d 0.1 --max-iter 300 --n-train 10000

Measured on a shared 2-core CPU (OMP_NUM_THREADS=1, torch 2.13, float32, seed 0) with
``skpoison attack --dataset mnist --target-tau 0.1 --epsilon-d 0.03 0.1 --max-iter 500``
(the second table): clean 92.43%, GradPC target 9.74% (tau 174 unscaled; scaled by
0.0044 to tau 0.1, tau(2) 0.40); after GC at eps_d 0.03: 70.51% (-21.9 points), at
0.1: 37.26% (-55.2 points), about a minute per budget.  The unscaled paper target
(tau 174) at eps_d 0.1 and 300 steps: 90.73% (-1.75 points): far below its tau, no
attack can reach it.  One GC step over 4200 points took 1.3 times one full-batch
gradient of the victim over the same points.

Not a test: the numbers depend on the machine.
"""

import argparse
import time

import torch

from skpoison.objectives import as_objective
from skpoison.experiments import attack_report, format_attack_table, load_dataset, make_model, make_target


def gc_step_ratio(target, X, y, m, device, repeats=5):
    """Seconds of one GC step over m points / seconds of one objective gradient over m."""
    objective = as_objective(target, device=device)
    Xm = objective.as_features(X[:m])
    ym = objective.encode_labels(y[:m])
    base = torch.zeros(objective.n_params, device=objective.device, dtype=objective.dtype)

    def timed(fn):
        fn()
        if objective.device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(repeats):
            fn()
        if objective.device.type == "cuda":
            torch.cuda.synchronize()
        return (time.perf_counter() - start) / repeats

    epoch = timed(lambda: objective.loss_gradient_sum(Xm, ym, encoded=True))
    step = timed(
        lambda: objective.poison_feature_gradient(Xm, ym, lambda s: base + s / m, encoded=True)
    )
    return step / epoch, step, epoch


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epsilon-d", type=float, nargs="+", default=[0.03, 0.1, 1.0])
    parser.add_argument("--epsilon-w", type=float, default=1.0)
    parser.add_argument(
        "--target-tau", type=float, nargs="*", default=[None, 0.1],
        help="rows: the paper's GradPC target (None) and the same target scaled to tau <= value",
    )
    parser.add_argument("--max-iter", type=int, default=500)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--random-state", type=int, default=0)
    args = parser.parse_args(argv)

    start = time.perf_counter()
    for target_tau in args.target_tau:
        report = attack_report(
            "mnist",
            "logreg",
            target="gradpc",
            epsilon_w=args.epsilon_w,
            target_threshold=None if target_tau in (None, "None") else float(target_tau),
            epsilon_d=args.epsilon_d,
            max_iter=args.max_iter,
            random_state=args.random_state,
            device=args.device,
            progress=lambda message: print(f"[bench] {message}", flush=True),
        )
        print(format_attack_table(report) + "\n", flush=True)

    X_train, _, y_train, _ = load_dataset("mnist", random_state=args.random_state)
    m = 4200
    target = make_target(
        "gradpc", make_model("logreg"), epsilon_w=args.epsilon_w, device=args.device
    ).fit(X_train[:m], y_train[:m]).target_
    ratio, step, epoch = gc_step_ratio(target, X_train, y_train, m, args.device)
    print(
        f"one GC iteration over m={m} points: {1000 * step:.1f} ms; one objective "
        f"gradient (training epoch) over m: {1000 * epoch:.1f} ms; ratio {ratio:.2f}"
    )
    print(f"total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
