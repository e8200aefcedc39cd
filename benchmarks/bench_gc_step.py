"""Gradient Canceling at the speed limit: step cost, memory, steps to converge, tau's cost.

Prints, in one run (issue 11):

1. seconds of one GC step over ``m`` poison rows divided by one plain torch training
   step (forward, backward, SGD update) over the same rows, for logistic regression,
   an MLP and the CNN, with ``batch_size=None``, in batches (two exact passes) and in
   batches with ``lagged_residual=True`` (one pass), all timed in turn, round after
   round; and the lagged pass divided by a training step that accumulates its
   gradient over the same batches;
2. the attack's peak resident memory above the data (Linux: ``VmHWM`` after resetting
   it through ``/proc/self/clear_refs``) at two clean sizes and both batch modes;
3. steps and seconds each optimizer needs to reach the relative gradient norm that
   Adam (the default) reaches after ``--adam-steps`` steps, above and below tau, on
   MNIST logistic regression (a GradPC target scaled to tau <= 0.1), a digits MLP,
   digits pixels in the box [0, 1] and the nearly separable digits 1 and 7, with
   the analyzer's lower bound and, for cross-entropy with an intercept, the floor
   that the poison's fixed labels leave (``label_floor``: MNIST LR at eps_d 0.1 is
   above tau but not reachable with GC's labels, floor 0.133; eps_d 3 is);
4. the analyzer's cost: seconds of ``PoisonabilityAnalyzer.fit`` divided by one pass of
   the clean loss gradient;
5. only with ``--sections 5``: the peak memory of a whole CNN run on all 60000 MNIST
   rows (minutes, several GB);
6. the largest poison feature, the residual and the retrained victim's accuracy of
   Adam against L-BFGS on the digits MLP target, with and without a box (unboxed,
   L-BFGS's poison leaves the data's range and the victim's training diverges).

Usage::

    SKPOISON_DATA=../shared/data OMP_NUM_THREADS=1 python benchmarks/bench_gc_step.py
    python benchmarks/bench_gc_step.py --preset issue      # the issue's sizes (slow)

Sections 1 and 4 measured on the shared, loaded 2-core CPU (float32, torch 2.13,
seed 0, default preset; CPU seconds, best of 5), with ``OMP_NUM_THREADS=1``
(docs/performance.rst also has a run with torch's default threads)::

    1. GC step / training step   one pass     two passes    one lagged pass   (batch)
                                                        [lagged / batched training]
       logreg  m=1800             1.77-1.80    1.72-1.77     1.58-1.70 [0.75-0.77] 256
       mlp     m=1800 (hidden 256) 2.25-2.30    3.32-3.48     2.39-2.46 [1.99-2.01] 256
       cnn     m=120              2.21         3.02-3.30     2.28-2.53 [2.18-2.34] 30
       (two one-thread runs, the mlp's five of a later session with its
       activations computed in place; before, 2.26-2.37 / 3.66-3.92 /
       2.62-2.75 [1.92-1.99]; malloc tuned as GradientCanceling.fit does; batches
       of at most min(--batch-size, m / 4) rows, split evenly, so the CNN takes
       several; the first version of this table ran it in one batch of 256)
       --preset issue (MLP hidden 784, CNN m=1800, 8 batches of 225, one thread,
       two runs): logreg 1.78 / 1.74-1.77 / 1.75-1.82 [0.88-1.03], mlp 2.22-2.43 /
       3.27-3.43 / 2.44-2.54 [2.13-2.23] (five later runs; nine runs of a later
       session on a busier machine: 2.36-2.63 / 3.24-3.80 / 2.41-2.77
       [2.12-2.54]; seven runs of the next: 2.32-2.49 / 3.22-3.49 / 2.35-2.57
       [2.12-2.25]; with its activations computed in place and its feature
       gradient written into the result's rows, eight runs of the next:
       2.22-2.42 / 3.17-3.31 / 2.36-2.42 [2.09-2.22], where the cnn, code
       unchanged, gave 2.12-2.20 / 2.84-2.94 / 2.14-2.22 [2.19-2.33]), cnn 2.14-2.22 / 2.89-2.98 / 2.18-2.23 [2.23-2.27] (four runs,
       its one pass's 1800 rows in blocks of at most 227, the batches of 225 one
       block each as before; in one block, four runs of the previous
       session gave 2.11-2.37 / 2.40-2.93 / 1.83-2.24 [2.15-2.35], and two of this
       one 2.46 and 2.85 in one pass, when a step freed more than glibc's trim
       threshold and the next faulted its buffers in again)
       (the mlp and cnn rows are with their feature gradients written out; with
       autograd's double backward the mlp read 2.53-2.55 / 4.58-4.59 / 3.03-3.15
       [2.38-2.42] and, issue preset, 2.62-2.80 / 3.88-4.22 / 2.90-2.95
       [2.42-2.73]; the cnn 2.34-2.44 / 3.51-3.83 / 2.29-2.44 [2.23-2.53] and,
       issue preset, 2.28-2.44 / 3.02-3.44 / 2.04-2.45 [2.43-2.48])
       (before convolutions recorded their gradients as separate ops, the CNN took
       3.36 / 4.02 / 2.99 there and 3.12-3.18 / 4.25-4.35 / 3.11-3.22 at m=120)
    2. peak RSS above the data (LR, MNIST float32, default threads): n=4000: +1.9 MiB
       (None), +0.0 (batch 256); n=16000: +0.0, +0.0 (the allocator reuses memory
       kept from the previous runs, so these are lower bounds)
    4. analyzer fit / one clean pass (LR, n=42000): 1.03 to 1.12 over seven runs (it was
       1.25 to 1.30 before the linear targets' finiteness check moved into the pass)

Section 3 (projected L-BFGS with Adam's diagonal, 250 evaluations; Gauss-Newton 30
steps; "-": not reached, with the norm it ended at; a quieter machine than section 1)::

    3. steps (CPU s) to Adam's norm after 1000 steps   Adam         L-BFGS           Gauss-Newton
       MNIST LR n=6000 above tau (0.083, eps_d 0.1)     994 (5.2)    - (0.200, 7.1)   - (0.565)
       MNIST LR below tau (eps_d 0.041; goal 0.491)      993 (2.2)    57 (0.3)         - (0.660)
       MNIST LR reachable (eps_d 3; goal 0.00532)        990 (133)    140 (74)         - (0.0080)
       digits MLP above tau (0.083, 0.2; goal 0.195)     983 (1.8)    106 (0.2)        - (0.330)
       digits MLP below tau (0.042; goal 0.594)          985 (1.5)    22 (0.04)        30 (0.6)
       digits LR in [0, 1] below tau (3.94, 0.5)         902 (0.5)    123 (0.1)        - (0.557)
       digits LR in [0, 1] below tau (3.94, 0.1)         490 (0.2)    112 (0.1)        - (0.868)
       digits 1/7 LR below tau (9.89, 3; goal 0.0558)    972 (1.1)    23 (0.04)        - (0.0901)
       digits 1/7 LR above tau (12; goal 0.00916)        992 (2.5)    28 (0.3)         - (0.0279)

Section 5 (``--sections 5``; the paper's CNN, all 60000 MNIST rows, eps_d 0.03, each
run in a fresh process; peak RSS above the 180 MiB of data)::

    clean pass, batch_size=None: +354 MiB (51 CPU s);  whole run (2 Adam steps): +1533 MiB
    clean pass, batch_size=256:  +369 MiB (48 CPU s);  whole run: +547 MiB
    (whole runs, 56 and 59 CPU s, with the CNN's written-out feature gradient, its
    1800-row batch in blocks of at most 227 rows (batches of 256 split 1800 rows into
    one-block batches of 225: that run's code did not change); in one block: +2720 MiB
    in 65 CPU s and +599 MiB in 63; with autograd's double backward instead of the written-out feature
    gradient: +2820 MiB in 70 CPU s and +590 MiB in 65; before
    convolutions recorded their gradients as separate ops: +3307 MiB in 79 CPU s
    and +615 MiB in 72)
    (the clean pass's default batches hold 217 CNN rows, sized by the net's layer
    outputs; with 2674-row batches sized by the input alone it peaked at +3163 MiB in
    68 CPU s; see docs/performance.rst)

Section 6 (digits MLP target, tau 0.0833, clean net 97.2%, target 51.3%; 100 steps or
evaluations; victims retrained with 3 seeds)::

    eps_d 0.042 no box      adam:  largest feature 3.46, norm 0.923, retrained 96.4%
    eps_d 0.042 no box      lbfgs: largest feature 215,  norm 0.451, retrained 10.0%
                                   (non-finite weights)
    eps_d 0.042 clip=data   adam:  1, 0.945, 96.7%;  lbfgs: 1, 0.943, 96.3%
    eps_d 0.2   clip=data   adam:  1, 0.776, 95.7%;  lbfgs: 1, 0.770, 95.5%

Not a test: the numbers depend on the machine and its load.
"""

import argparse
import copy
import math
import os
import time

import numpy as np
import torch
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression

from skpoison import GradientCanceling, PoisonabilityAnalyzer
from skpoison._utils import batch_slices
from skpoison._utils._allocator import keep_freed_memory
from skpoison.attacks._least_squares import ResidualMap
from skpoison.datasets import load_digits
from skpoison.experiments import load_dataset
from skpoison.models import make_net
from skpoison.objectives import as_objective
from skpoison.targets import GradPC, scale_to_threshold

PRESETS = {
    # rows m per model for the step ratios, clean sizes for memory, MNIST rows for LR,
    # and a budget where the LR target is reachable with GC's labels (None: skip it)
    "small": dict(m={"logreg": 1800, "mlp": 1800, "cnn": 120}, mlp_hidden=256,
                  memory_n=(4000, 16000), lr_n=6000, lr_reachable_eps=3.0, repeats=5),
    "issue": dict(m={"logreg": 1800, "mlp": 1800, "cnn": 1800}, mlp_hidden=784,
                  memory_n=(10000, 60000), lr_n=42000, lr_reachable_eps=None, repeats=5),
}


def timed(fn, repeats):
    """Best of ``repeats`` calls (after a warm-up), in process CPU seconds.

    CPU time (all threads, kernel time included) and the best of several calls make
    the ratios stable on a shared, loaded machine, where wall time mostly measures
    the other processes.
    """
    return timed_together({"fn": fn}, repeats)["fn"]


def timed_together(fns, repeats):
    """:func:`timed` for several functions, called in turn round after round.

    Interleaved, a change in the machine's load during the run moves every
    function's time alike, so the ratios between them hold.
    """
    for fn in fns.values():
        fn()
    best = dict.fromkeys(fns, math.inf)
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.process_time()
            fn()
            best[name] = min(best[name], time.process_time() - start)
    return best


# ------------------------------------------------------------------ 1. step ratios
def step_ratios(X, y, preset, batch_size):
    # as GradientCanceling.fit does first: freed buffers are reused instead of being
    # mapped and zeroed again (for the training step too, so the ratio compares like
    # with like; without it the CNN's large buffers are page-faulted every step)
    keep_freed_memory()
    print("1. GC step / training step over the same m rows (seconds per step); batched: "
          f"batches of at most min({batch_size}, m / 4) rows, two exact passes or one "
          "lagged pass; last: the lagged pass / a training step that accumulates the "
          "gradient over the same batches")
    print(f"   {'model':8s} {'m':>5s} {'batch':>5s} {'train':>9s} {'GC one pass':>12s} "
          f"{'ratio':>6s} {'GC batched':>11s} {'ratio':>6s} {'GC lagged':>10s} {'ratio':>6s} "
          f"{'train batched':>13s} {'lagged/it':>9s}")
    for name in ("logreg", "mlp", "cnn"):
        m = preset["m"][name]
        batch = min(batch_size, max(1, m // 4))  # several batches, also for the CNN
        kwargs = {"hidden_size": preset["mlp_hidden"]} if name == "mlp" else {}
        net = make_net(name, max_epochs=1, random_state=0, device="cpu", **kwargs)
        net.fit(X[:256], y[:256])
        objective = as_objective(net, device="cpu", dtype="float32")
        Xm = objective.as_features(X[:m])
        ym = objective.encode_labels(y[:m])
        base = torch.zeros(objective.n_params)
        module = copy.deepcopy(objective.module).train()
        for p in module.parameters():
            p.requires_grad_(True)
        sgd = torch.optim.SGD(module.parameters(), lr=1e-6)

        def train_step():
            sgd.zero_grad()
            objective.loss.per_sample(module(Xm), ym).mean().backward()
            sgd.step()

        def train_step_batched(batch):
            # the same update, its gradient accumulated over GC's batches
            slices = list(batch_slices(m, batch, even=True))

            def step():
                sgd.zero_grad()
                for rows in slices:
                    (objective.loss.per_sample(module(Xm[rows]), ym[rows]).sum() / m).backward()
                sgd.step()

            return step

        def gc_step(batch, lagged=False):
            # what GradientCanceling computes per step: r and grad_X 0.5 ||r||^2 (the
            # lagged map's first call is exact: the warm-up of ``timed`` makes it)
            residual_map = ResidualMap(objective, ym, base, m, batch, lagged=lagged)
            return lambda: residual_map.residual_and_gradient(Xm)

        times = timed_together({
            "train": train_step, "one": gc_step(None), "batched": gc_step(batch),
            "lagged": gc_step(batch, lagged=True), "train_batched": train_step_batched(batch),
        }, preset["repeats"])
        train, one, batched, lagged, train_batched = (
            times[k] for k in ("train", "one", "batched", "lagged", "train_batched")
        )
        print(f"   {name:8s} {m:5d} {batch:5d} {train:9.4f} {one:12.4f} {one / train:6.2f} "
              f"{batched:11.4f} {batched / train:6.2f} {lagged:10.4f} {lagged / train:6.2f} "
              f"{train_batched:13.4f} {lagged / train_batched:9.2f}")


# --------------------------------------------------------------------- 2. memory
def _rss_kib(field):
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field):
                return int(line.split()[1])
    return None


def added_peak_mib(fn):
    """Peak RSS above the current RSS while ``fn`` runs, in MiB (Linux only)."""
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
    except OSError:
        return math.nan
    before = _rss_kib("VmRSS:")
    fn()
    return (_rss_kib("VmHWM:") - before) / 1024


def memory(X, y, preset, batch_size):
    print("2. GC's peak memory above the data (LR, 10 steps, eps_d 0.1, float32 data)")
    clf = LogisticRegression(max_iter=50).fit(X[:2000], y[:2000])
    target = FrozenEstimator(clf)
    for n in preset["memory_n"]:
        Xn = np.ascontiguousarray(X[:n], dtype=np.float32)
        for batch in (None, batch_size):
            gc = GradientCanceling(target, epsilon_d=0.1, max_iter=10, batch_size=batch,
                                   random_state=0, device="cpu")
            peak = added_peak_mib(lambda: gc.fit(Xn, y[:n]))
            print(f"   n={n:6d} ({Xn.nbytes / 2**20:6.1f} MiB of data) batch_size={batch!s:5s}: "
                  f"+{peak:7.1f} MiB")


# -------------------------------------------------------------- 3. convergence
def label_floor(analyzer, gc):
    """Relative norm the intercept block alone keeps with the poison's labels, or None.

    For cross-entropy with an intercept, row ``j`` adds ``p_j - e_{y_j}`` to the
    intercept's gradient sum, with ``p_j`` anywhere in the open simplex once the
    features are free: the poison's sum is ``S - counts`` for any ``S >= 0`` summing
    to ``m``.  The closest to cancelling ``n g_b`` is the projection of
    ``counts - n g_b`` onto that scaled simplex, so GC with the labels of its
    random subsample cannot go below this, whatever tau says (tau leaves the labels
    free).
    """
    objective = analyzer.objective_
    if objective.kind != "cross_entropy" or "intercept" not in objective.params:
        return None
    n, m = analyzer.clean_.n_samples, gc.n_poison_
    base = analyzer.clean_.canceling_base(m)
    g_b = objective.unflatten(base)["intercept"].double().cpu().numpy()
    counts = np.array([np.sum(gc.y_poison_ == c) for c in objective.classes], dtype=float)
    wanted = counts - n * g_b  # the sum S that would cancel the intercept block
    top = np.sort(wanted)[::-1]  # Euclidean projection onto {S >= 0, sum S = m}
    excess = np.cumsum(top) - m
    k = np.flatnonzero(top - excess / np.arange(1, len(top) + 1) > 0)[-1]
    S = np.maximum(wanted - excess[k] / (k + 1), 0.0)
    floor = np.linalg.norm(g_b + (S - counts) / n)
    return floor * n / ((n + m) * analyzer.clean_.norm)


def convergence(name, target, X, y, epsilon_d, adam_steps, gn_steps, tau, **params):
    box = params.get("feature_range")
    analyzer = PoisonabilityAnalyzer(target, device="cpu", feature_range=box).fit(X, y)
    runs = {}
    for optimizer, steps in (("adam", adam_steps), ("lbfgs", adam_steps // 4),
                             ("gauss-newton", gn_steps)):
        gc = GradientCanceling(target, epsilon_d=epsilon_d, max_iter=steps, optimizer=optimizer,
                               random_state=0, device="cpu", tol=0.0, **params)
        start = time.perf_counter()
        gc.fit(X, y, clean_gradient=analyzer.clean_)
        runs[optimizer] = (gc, time.perf_counter() - start)
    goal = runs["adam"][0].gradient_norm_
    bound = analyzer.residual_lower_bound(epsilon_d)
    floor = label_floor(analyzer, runs["adam"][0])
    floor = "" if floor is None else f", fixed-label floor {floor:.3g}"
    print(f"   {name}: n={len(X)}, tau={tau:.3g}, eps_d={epsilon_d}, lower bound {bound:.3g}"
          f"{floor}; goal = Adam after {adam_steps} steps: {goal:.3g}")
    for optimizer, (gc, seconds) in runs.items():
        hist = np.minimum.accumulate(gc.history_)
        hits = np.flatnonzero(hist <= goal * (1 + 1e-6))
        reach = int(hits[0]) + 1 if len(hits) else None
        share = seconds * (reach / gc.n_iter_) if reach else math.nan
        print(f"     {optimizer:12s}: {gc.n_iter_:4d} steps {seconds:7.1f} s, final "
              f"{gc.gradient_norm_:.3g}; reaches goal after "
              f"{reach if reach else '-'} steps (~{share:.1f} s)")


def digits_mlp_target(X, y):
    """The digits MLP victim (hidden 32), its GradPC target scaled to tau <= 0.1, tau."""
    net = make_net("mlp", hidden_size=32, max_epochs=30, random_state=0, device="cpu")
    recipe = GradPC(net, epsilon_w=0.5, random_state=0, device="cpu")
    model, _ = scale_to_threshold(recipe, X, y, 0.1, n_steps=8, device="cpu")
    tau = PoisonabilityAnalyzer(FrozenEstimator(model), device="cpu").fit(X, y).threshold_
    return net, model, tau


def convergence_all(X, y, preset, adam_steps, gn_steps):
    print("3. Steps to converge: Adam (default), L-BFGS, Gauss-Newton (Levenberg-Marquardt + CG)")
    n = preset["lr_n"]
    Xn, yn = X[:n], y[:n]
    recipe = GradPC(LogisticRegression(max_iter=200), epsilon_w=1.0, random_state=0,
                    device="cpu")
    model, _ = scale_to_threshold(recipe, Xn, yn, 0.1, n_steps=8, device="cpu")
    target = FrozenEstimator(model)
    tau = PoisonabilityAnalyzer(target, device="cpu").fit(Xn, yn).threshold_
    convergence("MNIST LR above tau", target, Xn, yn, 0.1, adam_steps, gn_steps, tau)
    convergence("MNIST LR below tau", target, Xn, yn, 0.5 * tau, adam_steps, gn_steps, tau)
    if preset["lr_reachable_eps"]:  # where GC's labels can cancel the intercept block
        convergence("MNIST LR above tau, reachable with GC's labels", target, Xn, yn,
                    preset["lr_reachable_eps"], adam_steps, gn_steps, tau)

    Xd, _, yd, _ = load_dataset("digits")
    _, model, tau = digits_mlp_target(Xd, yd)
    target = FrozenEstimator(model)
    convergence("digits MLP above tau", target, Xd, yd, 0.2, adam_steps, gn_steps, tau)
    convergence("digits MLP below tau", target, Xd, yd, 0.5 * tau, adam_steps, gn_steps, tau)

    # pixels in the box [0, 1]: many poison features sit at a bound
    Xp, yp = load_digits(return_X_y=True)
    Xp, yp = Xp[:300], yp[:300]
    model = LogisticRegression(max_iter=200).fit(Xp, yp)
    model.coef_ = -0.5 * model.coef_
    target = FrozenEstimator(model)
    box = dict(feature_range=(0, 1))
    tau = PoisonabilityAnalyzer(target, device="cpu", **box).fit(Xp, yp).threshold_
    for epsilon_d in (0.5, 0.1):
        convergence(f"digits LR in [0, 1], {'above' if epsilon_d > tau else 'below'} tau",
                    target, Xp, yp, epsilon_d, adam_steps, gn_steps, tau, **box)

    # digits 1 and 7, nearly separable, no box: where L-BFGS ends above Adam
    X17, y17 = load_digits(digits=(1, 7), return_X_y=True)
    recipe = GradPC(LogisticRegression(max_iter=1000), epsilon_w=0.5, relative=True,
                    validation_fraction=0.3, batch_size=None, max_iter=20, iterate="best",
                    random_state=0, device="cpu")
    target = FrozenEstimator(recipe.fit(X17, y17).target_)
    tau = PoisonabilityAnalyzer(target, device="cpu").fit(X17, y17).threshold_
    for epsilon_d in (3.0, 12.0):
        convergence(f"digits 1/7 LR, {'above' if epsilon_d > tau else 'below'} tau", target,
                    X17, y17, epsilon_d, adam_steps, gn_steps, tau)


# ------------------------------------------------------------------ 4. analyzer
def analyzer_cost(X, y, repeats):
    print("4. Analyzer: fit time / one clean loss-gradient pass")
    clf = LogisticRegression(max_iter=50).fit(X[:2000], y[:2000])
    objective = as_objective(clf, device="cpu", dtype="float32")
    one_pass = timed(lambda: objective.loss_gradient_sum(X, y, batch_size=4096), repeats)
    fit = timed(lambda: PoisonabilityAnalyzer(FrozenEstimator(clf), device="cpu").fit(X, y),
                repeats)
    print(f"   LR on n={len(X)}: analyzer {fit:.3f} s, one pass {one_pass:.3f} s, "
          f"ratio {fit / one_pass:.2f}")


# ------------------------------------------------ 5. the CNN on all of MNIST: memory
def _cnn_memory_child(queue, mode, target_bytes, batch_size, epsilon_d, max_iter, n):
    """In a fresh process: the added peak RSS of one clean pass or one whole GC run."""
    import pickle

    from skpoison.datasets import fetch_mnist, normalize_mnist

    torch.set_num_threads(1)
    X, y = fetch_mnist(return_X_y=True)
    X = np.ascontiguousarray(normalize_mnist(X[:n]), dtype=np.float32)
    y = y[:n]
    target = pickle.loads(target_bytes)
    # as GradientCanceling.fit does first; after loading, so the data's temporaries
    # are given back to the system and not kept in the heap below the baseline
    keep_freed_memory()
    if mode == "clean":
        estimator = PoisonabilityAnalyzer(target, batch_size=batch_size, device="cpu",
                                          dtype="float32")
    else:
        estimator = GradientCanceling(target, epsilon_d=epsilon_d, max_iter=max_iter,
                                      optimizer="adam", tol=0.0, batch_size=batch_size,
                                      random_state=0, device="cpu", dtype="float32")
    baseline = _rss_kib("VmRSS:") / 1024
    wall, cpu = time.perf_counter(), time.process_time()
    peak = added_peak_mib(lambda: estimator.fit(X, y))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    extra = {}
    if mode == "gc":
        extra = {"n_poison": estimator.n_poison_, "n_iter": estimator.n_iter_,
                 "norm": estimator.gradient_norm_}
    queue.put(dict(peak=peak, wall=wall, cpu=cpu, baseline=baseline,
                   data=(X.nbytes + y.nbytes) / 2**20, n=len(X), **extra))


def cnn_full_memory(batch_size, epsilon_d=0.03, max_iter=2, n=60000, fit_rows=2000):
    """Peak RSS above the data: the paper's CNN on ``n`` MNIST training rows, float32.

    Each measurement runs in a fresh process (one thread), so memory a previous run
    left in the allocator does not hide its peak: the clean pass alone
    (``PoisonabilityAnalyzer.fit``) and a whole ``GradientCanceling`` run (clean pass,
    then ``max_iter`` Adam steps over all the poison rows), each with
    ``batch_size=None`` and ``batch_size``.  Both run with the allocator setting
    ``GradientCanceling`` uses (``keep_freed_memory``: freed heap memory is kept, so
    fragmentation over many clean batches raises the peak); ``SKPOISON_KEEP_MALLOC=1``
    measures with the C library's defaults instead.
    """
    import multiprocessing
    import pickle

    from skpoison.datasets import fetch_mnist, normalize_mnist
    from skpoison.models import paper_victim

    X, y = fetch_mnist(return_X_y=True)
    n = min(n, len(X))
    print(f"5. The paper's CNN on {n} MNIST training rows: peak RSS above the data "
          f"(float32, one thread, eps_d {epsilon_d}, Adam, {max_iter} steps)")
    net = paper_victim("cnn", random_state=0, device="cpu")  # 1 epoch, Adadelta
    net.fit(normalize_mnist(X[:fit_rows]).astype(np.float32), y[:fit_rows])
    target_bytes = pickle.dumps(FrozenEstimator(net))
    del X, y
    context = multiprocessing.get_context("spawn")
    print(f"   {'run':10s} {'batch_size':>10s} {'peak MiB':>9s} {'wall s':>7s} {'CPU s':>7s}  "
          f"(data MiB, RSS before MiB)")
    for batch in (None, batch_size):
        for mode in ("clean", "gc"):
            queue = context.Queue()
            child = context.Process(
                target=_cnn_memory_child,
                args=(queue, mode, target_bytes, batch, epsilon_d, max_iter, n),
            )
            child.start()
            child.join()
            if child.exitcode != 0:
                print(f"   {mode:10s} {batch!s:>10s} failed (exit code {child.exitcode})")
                continue
            r = queue.get()
            label = "clean pass" if mode == "clean" else "whole GC"
            more = (f", {r['n_poison']} poison rows, {r['n_iter']} steps, norm {r['norm']:.3g}"
                    if mode == "gc" else "")
            print(f"   {label:10s} {batch!s:>10s} {r['peak']:+9.0f} {r['wall']:7.1f} "
                  f"{r['cpu']:7.1f}  ({r['data']:.0f}, {r['baseline']:.0f}{more})")


# ------------------------------------------ 6. what the poison does to the victim
def retrained_victims(steps=100, seeds=3):
    """Adam against L-BFGS on the digits MLP target, with and without a box.

    For each run: the largest poison feature (pixels are in [0, 1]), the relative
    gradient norm and the test accuracy of the victim retrained on clean + poison
    (mean over ``seeds`` training seeds; "nan" when its weights are not finite).
    """
    import warnings

    from sklearn.base import clone

    print(f"6. Retrained victims: digits MLP target, {steps} steps or evaluations, "
          f"{seeds} training seeds")
    X, X_test, y, y_test = load_dataset("digits")
    net, model, tau = digits_mlp_target(X, y)
    target = FrozenEstimator(model)
    clean = clone(net).fit(X, y).score(X_test, y_test)
    print(f"   tau {tau:.3g}; clean net {clean:.1%}, target {model.score(X_test, y_test):.1%}")
    for epsilon_d, clip in ((0.5 * tau, None), (0.5 * tau, "data"), (0.2, "data")):
        for optimizer in ("adam", "lbfgs"):
            gc = GradientCanceling(target, epsilon_d=epsilon_d, max_iter=steps, clip=clip,
                                   optimizer=optimizer, random_state=0, device="cpu")
            X_mixed, y_mixed = gc.fit_resample(X, y)
            scores, finite = [], True
            for seed in range(seeds):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # a diverging victim warns
                    victim = clone(net).set_params(random_state=seed).fit(X_mixed, y_mixed)
                finite &= all(bool(torch.isfinite(p).all()) for p in victim.module_.parameters())
                scores.append(victim.score(X_test, y_test))
            print(f"   eps_d {epsilon_d:.3f} clip={clip!s:5s} {optimizer:6s}: largest feature "
                  f"{np.abs(gc.X_poison_).max():7.3g}, norm {gc.gradient_norm_:.3f}, retrained "
                  f"{np.mean(scores):.1%}{'' if finite else ' (non-finite weights)'}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="small")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--adam-steps", type=int, default=1000)
    parser.add_argument("--gn-steps", type=int, default=30)
    parser.add_argument("--sections", default="12346")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    preset = PRESETS[args.preset]
    start = time.perf_counter()
    X, _, y, _ = load_dataset("mnist", random_state=0)
    X = np.ascontiguousarray(X, dtype=np.float32)
    print(f"threads: {torch.get_num_threads()}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}")
    if "1" in args.sections:
        step_ratios(X, y, preset, args.batch_size)
    if "2" in args.sections:
        memory(X, y, preset, args.batch_size)
    if "3" in args.sections:
        convergence_all(X, y, preset, args.adam_steps, args.gn_steps)
    if "4" in args.sections:
        analyzer_cost(X, y, preset["repeats"])
    if "5" in args.sections:  # only when asked: minutes, and several GB
        cnn_full_memory(args.batch_size)
    if "6" in args.sections:
        retrained_victims()
    print(f"total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
