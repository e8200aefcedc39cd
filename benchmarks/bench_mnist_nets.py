"""MNIST NN and CNN rows of the paper's main table (Lu, Kamath and Yu 2023, Table 2).

Protocol (paper, section 5.1 and appendix C.1), per model:

1. MNIST training images (a stratified subsample of ``--n-train`` of them on a CPU),
   split 70/30 into a training and a validation part; the MNIST test set (or
   ``--n-test`` of it) for every accuracy.
2. Clean victim: :func:`skpoison.models.make_net` (``nn``: the three-layer MLP with
   hidden size 784 and leaky ReLU 0.2; ``cnn``: two 3x3 convolutions, max-pooling,
   hidden size 128), trained from scratch on the training part.
3. Target: :class:`~skpoison.targets.GradPC` with ``epsilon_w = 0.5`` starting from
   the clean net (frozen), fitted on the training part; as implemented, it ascends
   the loss on its own seeded ``validation_fraction = 0.3`` of those rows.
4. tau and tau(2) of the target on the training part
   (:class:`~skpoison.PoisonabilityAnalyzer`, on the last linear layer's logits).
5. Gradient Canceling at each ``eps_d`` (0.03, 0.1, 1) on the training part, then a
   fresh victim retrained from scratch on clean plus poison; its test accuracy.
6. Timing ratio: one GC iteration over ``m`` poison points divided by one training
   epoch over the same ``m`` points (``m`` the largest poison set; medians of three
   timed repetitions each).

Presets: the CPU preset (default) subsamples so that both models finish in about ten
minutes on a two-core machine (nn: 5000 MNIST images, 10 epochs, 300 GC steps;
cnn: 1500 images, 15 epochs, 100 GC steps and 10 GradPC steps, because one GC step of
the CNN over m points costs several training epochs over m points); ``--gpu`` uses
the paper's sizes (all 60000 training images, 42000 of them attacked, 1000 GC steps,
GC in batches of 10000 rows, the full test set).  Any option overrides the preset.

Usage::

    SKPOISON_DATA=/path/to/data python benchmarks/bench_mnist_nets.py --model nn cnn
    python benchmarks/bench_mnist_nets.py --gpu --device cuda

Measured with the CPU preset on 2 CPU cores (lightly shared), torch 2.13, float32,
seed 0; about 6.7 minutes per run (earlier runs of the same preset took twice as long
while other jobs loaded the machine)::

    $ python benchmarks/bench_mnist_nets.py                 # the paper's eps_w = 0.5
    model  clean %  target %        tau     tau(2)  GC 0.03 %  GC 0.1 %  GC 1 %  iter/epoch
       nn    91.95     10.30       3140  1.242e+04      91.95     92.35   92.95  1.82 (m=3500)
      cnn    93.05     11.35  5.078e+04  2.008e+05      93.05     94.35   93.40  6.45 (m=1050)
    relative gradient norm after GC (initial -> final):
      nn: eps_d 0.03: 1.001 -> 0.971; eps_d 0.1: 1.002 -> 0.909; eps_d 1: 1.000 -> 0.500
      cnn: eps_d 0.03: 0.999 -> 0.971; eps_d 0.1: 0.997 -> 0.910; eps_d 1: 1.000 -> 0.514

    $ python benchmarks/bench_mnist_nets.py --epsilon-w 0.01
    model  clean %  target %      tau  tau(2)  GC 0.03 %  GC 0.1 %  GC 1 %  iter/epoch
       nn    91.95     84.60  0.08821  0.3488      92.65     91.15   91.00  1.67 (m=3500)
      cnn    93.05     90.10  0.06569  0.2597      92.65     93.45   93.10  5.91 (m=1050)
    relative gradient norm after GC (initial -> final):
      nn: eps_d 0.03: 0.994 -> 0.621; eps_d 0.1: 1.018 -> 0.366; eps_d 1: 1.000 -> 0.046
      cnn: eps_d 0.03: 0.971 -> 0.723; eps_d 0.1: 0.979 -> 0.431; eps_d 1: 1.000 -> 0.071

(3500 and 1050 attacked rows, 2000 test rows.)  GradPC with the paper's
``epsilon_w = 0.5`` over all parameters drives both nets to chance accuracy with tau
in the thousands: no ``eps_d <= 1`` can reach such a target (Theorem 4), GC's
residual stalls at half its start and retraining is unaffected.  With
``epsilon_w = 0.01`` tau < 0.1; GC cancels the target's gradient 14- to 22-fold at
``eps_d = 1`` (and below tau(2) = 0.35 only partly), yet the retrained nets lose at
most one accuracy point, against a target only 3 to 7 points below the clean net.
A GC step over m rows costs about 1.7 training epochs over m rows for the NN and 6
for the CNN.  Not run with ``--gpu``: no GPU was available.
"""

import argparse
import json
import sys
import time

import numpy as np
from sklearn.base import clone
from sklearn.frozen import FrozenEstimator
from sklearn.model_selection import train_test_split

from skpoison import GradientCanceling, PoisonabilityAnalyzer
from skpoison.datasets import fetch_mnist, train_validation_split
from skpoison.models import make_net
from skpoison.targets import GradPC
from skpoison._utils import resolve_device

# per-model settings of each preset
PRESETS = {
    "cpu": {
        "nn": dict(n_train=5000, n_test=2000, epochs=10, max_iter=300, gradpc_iter=100,
                   gc_batch_size=None),
        "cnn": dict(n_train=1500, n_test=2000, epochs=15, max_iter=100, gradpc_iter=10,
                    gc_batch_size=None),
    },
    "gpu": {
        "nn": dict(n_train=60000, n_test=None, epochs=20, max_iter=1000, gradpc_iter=100,
                   gc_batch_size=10000),
        "cnn": dict(n_train=60000, n_test=None, epochs=20, max_iter=1000, gradpc_iter=100,
                    gc_batch_size=10000),
    },
}
MODELS = {"nn": "mlp", "cnn": "cnn"}


def _subsample(X, y, n, seed):
    if n is None or n >= len(X):
        return X, y
    X_sub, _, y_sub, _ = train_test_split(X, y, train_size=n, stratify=y, random_state=seed)
    return X_sub, y_sub


def _accuracy(net, X, y):
    return float(np.mean(net.predict(X) == y))


def _median_seconds(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def timing_ratio(victim, objective, residual, X, y, batch_size=None, repeats=3):
    """Median time of one GC step over the rows ``(X, y)`` / one training epoch over them.

    The GC step is what :class:`~skpoison.attacks.GradientCanceling` does per
    iteration: one pass (``batch_size=None``) or two exact passes (gradient sum, then
    the feature gradient per batch) over the poison rows.
    """
    import torch

    from skpoison._utils import batch_slices

    y_enc = objective.encode_labels(y)
    X_t = objective.as_features(X)
    r = torch.as_tensor(residual, device=objective.device, dtype=objective.dtype)

    def gc_step():
        if batch_size is None or batch_size >= len(X):
            objective.poison_feature_gradient(X_t, y_enc, r, encoded=True)
            return
        objective.loss_gradient_sum(X_t, y_enc, batch_size=batch_size, encoded=True)
        for sl in batch_slices(len(X), batch_size):
            objective.poison_feature_gradient(X_t[sl], y_enc[sl], r, encoded=True)

    net = clone(victim).set_params(max_epochs=1)
    net.partial_fit(X, y)  # initialise (and warm up) before timing
    epoch = _median_seconds(lambda: net.partial_fit(X, y), repeats)
    step = _median_seconds(gc_step, repeats)
    return step / epoch


def run_model(model, settings, data, *, epsilon_d, epsilon_w, device, seed, log):
    """The table row of one model: accuracies, thresholds, GC results, timing."""
    X_all, y_all, X_test, y_test = data
    X_sub, y_sub = _subsample(X_all, y_all, settings["n_train"], seed)
    X_train, X_val, y_train, y_val = train_validation_split(
        X_sub, y_sub, validation_fraction=0.3, random_state=seed
    )
    X_test, y_test = _subsample(X_test, y_test, settings["n_test"], seed)
    victim = make_net(MODELS[model], max_epochs=settings["epochs"], random_state=seed,
                      device=device)

    log(f"{model}: training the clean net on {len(X_train)} rows")
    start = time.perf_counter()
    clean = clone(victim).fit(X_train, y_train)
    fit_seconds = time.perf_counter() - start
    n_params = sum(p.numel() for p in clean.module_.parameters())

    log(f"{model}: GradPC target (epsilon_w={epsilon_w})")
    gpc = GradPC(FrozenEstimator(clean), epsilon_w=epsilon_w, max_iter=settings["gradpc_iter"],
                 random_state=seed, device=device).fit(X_train, y_train)
    target = FrozenEstimator(gpc.target_)

    analyzer = PoisonabilityAnalyzer(target, batch_size=settings["gc_batch_size"],
                                     device=device).fit(X_train, y_train)

    row = {
        "model": model,
        "n_params": int(n_params),
        "n_train": int(len(X_train)),
        "n_val": int(len(X_val)),
        "n_test": int(len(X_test)),
        "clean_accuracy": _accuracy(clean, X_test, y_test),
        "clean_val_accuracy": _accuracy(clean, X_val, y_val),
        "target_accuracy": _accuracy(gpc.target_, X_test, y_test),
        "target_val_accuracy": _accuracy(gpc.target_, X_val, y_val),
        "tau": analyzer.threshold_,
        "tau2": analyzer.threshold_binary_,
        "epoch_seconds": fit_seconds / settings["epochs"],
        "attacks": [],
    }
    for eps in epsilon_d:
        log(f"{model}: Gradient Canceling at eps_d={eps:g} ({settings['max_iter']} steps)")
        start = time.perf_counter()
        gc = GradientCanceling(target, epsilon_d=eps, max_iter=settings["max_iter"],
                               batch_size=settings["gc_batch_size"], random_state=seed,
                               device=device).fit(X_train, y_train)
        gc_seconds = time.perf_counter() - start
        log(f"{model}: retraining on {len(X_train)} + {gc.n_poison_} rows")
        retrained = clone(victim).fit(
            np.vstack([X_train, gc.X_poison_.astype(X_train.dtype)]),
            np.concatenate([y_train, gc.y_poison_]),
        )
        row["attacks"].append({
            "epsilon_d": eps,
            "n_poison": int(gc.n_poison_),
            "accuracy": _accuracy(retrained, X_test, y_test),
            "gradient_norm": gc.gradient_norm_,
            "initial_gradient_norm": float(gc.history_[0]),
            "seconds": gc_seconds,
        })
    m = max(a["n_poison"] for a in row["attacks"])
    log(f"{model}: timing one GC step and one epoch over m={m} rows")
    idx = np.random.RandomState(seed).choice(len(X_train), size=m, replace=m > len(X_train))
    row["timing_ratio"] = timing_ratio(
        victim, analyzer.objective_, analyzer.clean_gradient_, X_train[idx], y_train[idx],
        batch_size=settings["gc_batch_size"],
    )
    row["timing_m"] = int(m)
    return row


def format_table(rows, epsilon_d):
    eps_cols = [f"GC {e:g}" for e in epsilon_d]
    head = ["model", "params", "n_train", "clean %", "target %", "tau", "tau(2)",
            *[c + " %" for c in eps_cols], "GC iter/epoch"]
    cells = []
    for r in rows:
        cells.append([
            r["model"], f"{r['n_params'] / 1e6:.2f}M", str(r["n_train"]),
            f"{100 * r['clean_accuracy']:.2f}", f"{100 * r['target_accuracy']:.2f}",
            f"{r['tau']:.4g}", f"{r['tau2']:.4g}",
            *[f"{100 * a['accuracy']:.2f}" for a in r["attacks"]],
            f"{r['timing_ratio']:.2f} (m={r['timing_m']})",
        ])
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(head)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(head, widths))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(cell, widths)) for cell in cells]
    lines.append("")
    lines.append("relative gradient norm ||g(chi)|| / ||g(mu)|| after GC (initial -> final):")
    for r in rows:
        parts = [f"eps_d {a['epsilon_d']:g}: {a['initial_gradient_norm']:.3f} -> "
                 f"{a['gradient_norm']:.3f}" for a in r["attacks"]]
        lines.append(f"  {r['model']}: " + "; ".join(parts))
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", nargs="+", choices=sorted(MODELS), default=["nn", "cnn"])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--gpu", action="store_true", help="the paper's sizes (use on a GPU)")
    parser.add_argument("--n-train", type=int, default=None,
                        help="MNIST training images used (70%% attacked, 30%% validation)")
    parser.add_argument("--n-test", type=int, default=None, help="MNIST test images used")
    parser.add_argument("--epochs", type=int, default=None, help="victim training epochs")
    parser.add_argument("--max-iter", type=int, default=None, help="GC steps per eps_d")
    parser.add_argument("--gradpc-iter", type=int, default=None, help="GradPC ascent steps")
    parser.add_argument("--gc-batch-size", type=int, default=None, help="GC rows per batch")
    parser.add_argument("--epsilon-d", type=float, nargs="+", default=[0.03, 0.1, 1.0])
    parser.add_argument("--epsilon-w", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-home", default=None, help="folder of the MNIST files")
    parser.add_argument("--json", default=None, help="also write the results to this file")
    args = parser.parse_args(argv)

    def log(message):
        print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    device = str(resolve_device(args.device))
    preset = "gpu" if args.gpu else "cpu"
    X_all, y_all = fetch_mnist(args.data_home, subset="train", return_X_y=True)
    X_test, y_test = fetch_mnist(args.data_home, subset="test", return_X_y=True)
    start = time.perf_counter()
    rows = []
    for model in args.model:
        settings = dict(PRESETS[preset][model])
        for key in ("n_train", "n_test", "epochs", "max_iter", "gradpc_iter", "gc_batch_size"):
            if getattr(args, key) is not None:
                settings[key] = getattr(args, key)
        row = run_model(model, settings, (X_all, y_all, X_test, y_test),
                        epsilon_d=args.epsilon_d, epsilon_w=args.epsilon_w, device=device,
                        seed=args.seed, log=log)
        row["settings"] = settings
        rows.append(row)
    seconds = time.perf_counter() - start
    print(f"MNIST, {preset} preset, device {device}, GradPC eps_w = {args.epsilon_w:g}, "
          f"{seconds / 60:.1f} min")
    for r in rows:
        s = r["settings"]
        print(f"  {r['model']}: {r['n_train']} attacked / {r['n_val']} validation / "
              f"{r['n_test']} test rows, {s['epochs']} epochs, {s['max_iter']} GC steps, "
              f"{s['gradpc_iter']} GradPC steps; validation accuracy clean "
              f"{100 * r['clean_val_accuracy']:.2f}%, target {100 * r['target_val_accuracy']:.2f}%")
    print(format_table(rows, args.epsilon_d))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"preset": preset, "device": device, "seconds": seconds, "rows": rows},
                      fh, indent=2, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
