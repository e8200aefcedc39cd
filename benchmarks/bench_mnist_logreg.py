"""MNIST logistic regression under Gradient Canceling: the paper's LR row, and GC cost.

Protocol (paper, section 5.1 and appendix C.1): a seeded 70% of MNIST's training set is
the clean data ``n``; the victim is ``LogisticRegression``; the target is
``GradPC(epsilon_w=1)``; Gradient Canceling runs at each ``eps_d`` and the victim is
retrained from scratch on clean plus poison and scored on MNIST's test set.

It also prints a ratio measured in the same run: the time of one GC iteration over
``m`` poison points divided by the time of one full-batch gradient of the victim's
objective (one training epoch) over ``m`` points.

Usage::

    SKPOISON_DATA=../shared/data python benchmarks/bench_mnist_logreg.py
    python benchmarks/bench_mnist_logreg.py --epsilon-d 0.1 --max-iter 300 --n-train 10000

Not a test: the numbers depend on the machine.
"""

import argparse
import time

import numpy as np
import torch
from sklearn.frozen import FrozenEstimator

from skpoison.objectives import as_objective
from skpoison.experiments import (
    evaluate_attack,
    format_attack_table,
    load_dataset,
    make_model,
    make_target,
)


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

    epoch = timed(lambda: objective.loss_gradient_sum(Xm, ym))
    step = timed(lambda: objective.poison_feature_gradient(Xm, ym, lambda s: base + s / m))
    return step / epoch, step, epoch


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epsilon-d", type=float, nargs="+", default=[0.03, 0.1, 1.0])
    parser.add_argument("--epsilon-w", type=float, default=1.0)
    parser.add_argument("--max-iter", type=int, default=1000)
    parser.add_argument("--n-train", type=int, default=None, help="subsample the clean data")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--random-state", type=int, default=0)
    args = parser.parse_args(argv)

    start = time.perf_counter()
    X_train, X_test, y_train, y_test = load_dataset("mnist", random_state=args.random_state)
    if args.n_train is not None and args.n_train < len(X_train):
        keep = np.random.RandomState(args.random_state).choice(len(X_train), args.n_train, False)
        X_train, y_train = X_train[keep], y_train[keep]
    victim = make_model("logreg", random_state=args.random_state)
    target = make_target(
        "gradpc", victim, epsilon_w=args.epsilon_w, random_state=args.random_state,
        device=args.device,
    ).fit(X_train, y_train).target_
    result = evaluate_attack(
        X_train, y_train, X_test, y_test, victim, FrozenEstimator(target),
        epsilon_d=args.epsilon_d,
        attack_params={"max_iter": args.max_iter, "device": args.device},
        random_state=args.random_state,
        progress=lambda message: print(f"[bench] {message}", flush=True),
    )
    result.update(dataset="mnist", model="logreg", target="gradpc", epsilon_w=args.epsilon_w)
    print(format_attack_table(result))
    m = min(len(X_train), 4200)
    ratio, step, epoch = gc_step_ratio(target, X_train, y_train, m, args.device)
    print(
        f"\none GC iteration over m={m} points: {1000 * step:.1f} ms; one objective "
        f"gradient (training epoch) over m: {1000 * epoch:.1f} ms; ratio {ratio:.2f}"
    )
    print(f"total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
