"""CIFAR-10 row of the paper's main table (Lu, Kamath and Yu 2023, Table 2): ResNet-18.

Protocol (paper, section 5.1 and appendix C.1):

1. CIFAR-10 from its official binary release (:func:`skpoison.datasets.fetch_cifar10`),
   the training set split 70/30 into a training and a validation part, the test set
   for accuracies (:func:`skpoison.experiments.load_dataset`, with ``--n-train`` and
   ``--n-test`` seeded stratified subsamples on a CPU).
2. Clean victim: ResNet-18 from :func:`skpoison.models.make_net`, trained from scratch.
3. Target: :class:`~skpoison.targets.GradPC` with ``epsilon_w = 0.5`` from the clean
   net (frozen).
4. tau and tau(2) of the target on the training part.
5. Gradient Canceling at each ``eps_d`` (0.03, 0.1, 1), then a fresh ResNet-18
   retrained from scratch on clean plus poison; its test accuracy, and GC's relative
   gradient norm from start to end.

Presets: ``--gpu`` is the paper's setting (all 35000 training rows attacked, the full
test set, width-64 ResNet-18 trained 30 epochs, 1000 GC steps in batches of 1000 rows,
the batch size the paper used for CIFAR-10) on ``--device cuda``; the CPU preset
(default) keeps 500 training and 500 test rows, a width-16 ResNet-18 trained 5 epochs
and 50 GC steps, so that it runs in minutes on two cores.  Any option overrides the
preset.

Usage::

    SKPOISON_DATA=/path/to/data python benchmarks/bench_cifar10.py            # CPU preset
    SKPOISON_DATA=/path/to/data python benchmarks/bench_cifar10.py --gpu      # paper's row

The archive ``cifar-10-binary.tar.gz`` goes in ``$SKPOISON_DATA/cifar10`` (it is
downloaded there when missing and the machine is online).  Not yet measured on the
real data: the machines this was written on had neither the archive nor a GPU; the
test suite runs the CPU path end to end on generated files in the same binary layout.
"""

import argparse
import json
import sys
import time

import numpy as np
from sklearn.base import clone
from sklearn.frozen import FrozenEstimator

from skpoison import GradientCanceling, PoisonabilityAnalyzer
from skpoison.experiments import load_dataset
from skpoison.models import make_net
from skpoison.targets import GradPC

PRESETS = {
    "cpu": dict(n_train=500, n_test=500, width=16, epochs=5, max_iter=50, gradpc_iter=10,
                gc_batch_size=None, device="cpu"),
    "gpu": dict(n_train=None, n_test=None, width=64, epochs=30, max_iter=1000,
                gradpc_iter=100, gc_batch_size=1000, device="cuda"),
}


def _accuracy(model, X, y):
    return float(np.mean(model.predict(X) == y))


def run(settings, *, epsilon_d=(0.03, 0.1, 1.0), epsilon_w=0.5, seed=0, data_home=None,
        log=None):
    """The CIFAR-10 row: accuracies, thresholds and one result per budget."""
    log = log or (lambda message: None)
    X_train, X_test, y_train, y_test = load_dataset(
        "cifar10", random_state=seed, data_home=data_home,
        n_train=settings["n_train"], n_test=settings["n_test"],
    )
    device = settings["device"]
    victim = make_net("resnet18", width=settings["width"], max_epochs=settings["epochs"],
                      random_state=seed, device=device)
    log(f"training the clean ResNet-18 on {len(X_train)} rows")
    clean = clone(victim).fit(X_train, y_train)
    log(f"GradPC target (epsilon_w={epsilon_w})")
    gpc = GradPC(FrozenEstimator(clean), epsilon_w=epsilon_w, max_iter=settings["gradpc_iter"],
                 random_state=seed, device=device).fit(X_train, y_train)
    target = FrozenEstimator(gpc.target_)
    analyzer = PoisonabilityAnalyzer(target, batch_size=settings["gc_batch_size"],
                                     device=device).fit(X_train, y_train)
    result = {
        "settings": dict(settings),
        "epsilon_w": epsilon_w,
        "n_train": int(len(X_train)),
        "n_test": int(len(X_test)),
        "clean_accuracy": _accuracy(clean, X_test, y_test),
        "target_accuracy": _accuracy(gpc.target_, X_test, y_test),
        "tau": float(analyzer.threshold_),
        "tau2": float(analyzer.threshold_binary_),
        "attacks": [],
    }
    for eps in epsilon_d:
        log(f"Gradient Canceling at eps_d={eps:g} ({settings['max_iter']} steps)")
        start = time.perf_counter()
        gc = GradientCanceling(target, epsilon_d=eps, max_iter=settings["max_iter"],
                               batch_size=settings["gc_batch_size"], random_state=seed,
                               device=device).fit(X_train, y_train)
        seconds = time.perf_counter() - start
        log(f"retraining on {len(X_train)} + {gc.n_poison_} rows")
        retrained = clone(victim).fit(
            np.vstack([X_train, gc.X_poison_.astype(X_train.dtype)]),
            np.concatenate([y_train, gc.y_poison_]),
        )
        result["attacks"].append({
            "epsilon_d": eps,
            "n_poison": int(gc.n_poison_),
            "accuracy": _accuracy(retrained, X_test, y_test),
            "gradient_norm": float(gc.gradient_norm_),
            "lower_bound": float(analyzer.residual_lower_bound(gc.n_poison_ / len(X_train))),
            "history_start": float(gc.history_[0]),
            "history_end": float(gc.history_[-1]),
            "gc_seconds": seconds,
        })
    return result


def format_row(result):
    """The table line and the gradient-norm summary, as text."""
    headers = [f"GC {a['epsilon_d']:g} %" for a in result["attacks"]]
    lines = ["clean %  target %        tau     tau(2)  " + "  ".join(headers)]
    values = "  ".join(
        f"{100 * a['accuracy']:>{len(h)}.2f}" for a, h in zip(result["attacks"], headers)
    )
    lines.append(
        f"{100 * result['clean_accuracy']:>7.2f}  {100 * result['target_accuracy']:>8.2f}  "
        f"{result['tau']:>9.4g}  {result['tau2']:>9.4g}  {values}"
    )
    lines.append("relative gradient norm after GC (initial -> final):")
    lines.append("  " + "; ".join(
        f"eps_d {a['epsilon_d']:g}: {a['history_start']:.3f} -> {a['history_end']:.3f}"
        for a in result["attacks"]
    ))
    lines.append(f"({result['n_train']} attacked rows, {result['n_test']} test rows)")
    return "\n".join(lines)


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpu", action="store_true", help="the paper's sizes, on CUDA")
    for name, kind in (("n-train", int), ("n-test", int), ("width", int), ("epochs", int),
                       ("max-iter", int), ("gradpc-iter", int), ("gc-batch-size", int),
                       ("device", str)):
        parser.add_argument(f"--{name}", type=kind, default=None,
                            help="override the preset")
    parser.add_argument("--epsilon-d", type=float, nargs="+", default=[0.03, 0.1, 1.0])
    parser.add_argument("--epsilon-w", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-home", default=None,
                        help="folder holding cifar-10-binary.tar.gz (default: "
                        "$SKPOISON_DATA/cifar10)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    return parser


def settings_from(args):
    """The preset chosen by ``--gpu``, with the options given on the command line."""
    settings = dict(PRESETS["gpu" if args.gpu else "cpu"])
    for key in settings:
        value = getattr(args, key)
        if value is not None:
            settings[key] = value
    return settings


def main(argv=None):
    args = build_parser().parse_args(argv)
    settings = settings_from(args)

    def log(message):
        print(f"[bench_cifar10] {message}", file=sys.stderr, flush=True)

    result = run(settings, epsilon_d=args.epsilon_d, epsilon_w=args.epsilon_w, seed=args.seed,
                 data_home=args.data_home, log=None if args.json else log)
    print(json.dumps(result, indent=2) if args.json else format_row(result))
    return result


if __name__ == "__main__":
    main()
