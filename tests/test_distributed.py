"""Data parallelism over torch.distributed: 2 gloo processes give the one-process results.

Two CPU processes are spawned once per module (``torch.multiprocessing``, a ``file://``
rendezvous in a temporary folder); each runs the threshold and Gradient Canceling on
the same data and seeds, and the parent compares every rank's results with its own
single-process run.  float64 keeps the different summation order harmless.
"""

import os
import pickle
import subprocess
import sys
import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from sklearn.datasets import make_classification
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression

import skpoison
import skpoison.experiments
from skpoison import PoisonabilityAnalyzer, cli
from skpoison.attacks import GradientCanceling
from skpoison.cli import main
from skpoison.models import make_net
from skpoison._utils._distributed import (
    all_gather_rows,
    all_reduce_sum,
    any_rank,
    shard_counts,
    shard_slice,
    world,
)

WORLD_SIZE = 2
N_ROWS = 101  # odd: clean blocks of 51 and 50 rows

# name -> GradientCanceling parameters; the budgets give 7 poison rows (blocks of 4 and
# 3) and 1 poison row (rank 1 holds none)
CASES = {
    "adam": dict(epsilon_d=0.07, max_iter=15),
    "adam_multiclass": dict(epsilon_d=0.07, max_iter=15),
    "sgd_batches_clip": dict(epsilon_d=0.07, max_iter=12, optimizer="sgd", lr=0.05,
                             batch_size=2, clip="data"),
    "gd_box": dict(epsilon_d=0.07, max_iter=12, optimizer="gd", lr=0.5,
                   feature_range=(-6.0, 6.0)),
    "adam_one_poison": dict(epsilon_d=0.01, max_iter=10),
    "adam_parameters": dict(epsilon_d=0.07, max_iter=10, parameters=["intercept"]),
    "lbfgs_box": dict(epsilon_d=0.07, max_iter=12, optimizer="lbfgs", clip="data"),
    "lbfgs_batches_parameters": dict(epsilon_d=0.07, max_iter=12, optimizer="lbfgs",
                                     batch_size=2, parameters=["coef"]),
    # a net: one lagged pass per step (rank 0's 4 rows take two batches, rank 1's 3 rows
    # two, one process's 7 rows four), the same steps as one process
    "adam_lagged_net": dict(epsilon_d=0.07, max_iter=12, batch_size=2, lagged_residual=True),
    # one poison row: rank 1 holds none and still takes part in the lagged pass's reduce
    "adam_lagged_one_poison_net": dict(epsilon_d=0.01, max_iter=10, batch_size=2,
                                       lagged_residual=True),
}


def _data(n_classes):
    X, y = make_classification(
        n_samples=N_ROWS, n_features=5, n_informative=3, n_classes=n_classes,
        random_state=0,
    )
    clf = LogisticRegression(max_iter=500).fit(X, y)
    clf.coef_ = -clf.coef_  # a target far from the clean optimum
    return X, y, FrozenEstimator(clf)


def _results():
    """Everything compared between one process and each rank (run by both)."""
    out = {}
    for n_classes in (2, 3):
        X, y, target = _data(n_classes)
        tau = PoisonabilityAnalyzer(target, dtype="float64").fit(X, y)
        out[f"tau{n_classes}"] = (tau.threshold_, tau.threshold_binary_, tau.clean_gradient_)
    for name, params in CASES.items():
        X, y, target = _data(3 if "multiclass" in name else 2)
        if name.endswith("_net"):
            net = make_net("mlp", hidden_size=4, max_epochs=3, random_state=0, device="cpu")
            target = FrozenEstimator(net.fit(X.astype(np.float32), y))
        gc = GradientCanceling(target, random_state=0, dtype="float64", device="cpu", **params)
        X_mixed, y_mixed = gc.fit_resample(X, y)
        out[name] = dict(
            X_poison=gc.X_poison_, y_poison=gc.y_poison_, history=gc.history_,
            gradient_norm=gc.gradient_norm_, n_iter=gc.n_iter_, threshold=gc.threshold_,
            X_mixed=X_mixed, y_mixed=y_mixed,
        )
    # the helpers themselves, on blocks of 2 and 1 rows of a 3-row tensor
    rank, size = world()
    rows = torch.arange(6.0).reshape(3, 2)[shard_slice(3)]
    out["helpers"] = dict(
        world=(rank, size),
        gathered=all_gather_rows(rows * 10, shard_counts(3)).numpy(),
        summed=all_reduce_sum(torch.tensor([rank + 1.0])).numpy(),
        any_one=any_rank(rank == 1),
        any_none=any_rank(False),
    )
    X, y, target = _data(2)
    try:
        GradientCanceling(target, optimizer="gauss-newton", max_iter=2).fit(X, y)
        out["gauss_newton_error"] = None
    except ValueError as error:
        out["gauss_newton_error"] = str(error)
    return out


def _worker(rank, size, init_method, folder):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init_method, rank=rank, world_size=size)
    try:
        results = _results()
    finally:
        dist.destroy_process_group()
    with open(os.path.join(folder, f"rank{rank}.pkl"), "wb") as f:
        pickle.dump(results, f)


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    """The results of each of the 2 ranks."""
    folder = tmp_path_factory.mktemp("distributed")
    init = f"file://{folder / 'rendezvous'}"
    mp.spawn(_worker, args=(WORLD_SIZE, init, str(folder)), nprocs=WORLD_SIZE, join=True)
    out = []
    for rank in range(WORLD_SIZE):
        with open(folder / f"rank{rank}.pkl", "rb") as f:
            out.append(pickle.load(f))
    return out


@pytest.fixture(scope="module")
def single():
    assert not dist.is_initialized()
    return _results()


def test_helpers_without_a_process_group(single):
    assert single["gauss_newton_error"] is None  # one process: Gauss-Newton runs
    assert world() == (0, 1)
    assert shard_slice(5) == slice(0, 5)
    assert shard_counts(5, 2) == [3, 2]
    assert [shard_slice(5, r, 2) for r in range(2)] == [slice(0, 3), slice(3, 5)]
    assert shard_counts(1, 2) == [1, 0] and shard_slice(1, 1, 2) == slice(1, 1)
    t = torch.ones(3)
    assert all_reduce_sum(t) is t and all_gather_rows(t, [3]) is t
    assert any_rank(True) and not any_rank(False)


def test_collectives_over_two_ranks(ranks):
    for rank, result in enumerate(ranks):
        helpers = result["helpers"]
        assert helpers["world"] == (rank, WORLD_SIZE)
        np.testing.assert_array_equal(helpers["gathered"], np.arange(6.0).reshape(3, 2) * 10)
        np.testing.assert_array_equal(helpers["summed"], [3.0])
        assert helpers["any_one"] and not helpers["any_none"]
        assert "runs in one process" in result["gauss_newton_error"]


@pytest.mark.parametrize("key", ["tau2", "tau3"])
def test_threshold_equals_one_process(ranks, single, key):
    tau, tau_binary, clean = single[key]
    assert np.isfinite(tau) and tau > 0
    for result in ranks:
        got_tau, got_binary, got_clean = result[key]
        np.testing.assert_allclose(got_tau, tau, rtol=1e-6)
        np.testing.assert_allclose(got_binary, tau_binary, rtol=1e-6)
        np.testing.assert_allclose(got_clean, clean, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("case", list(CASES))
def test_gradient_canceling_equals_one_process(ranks, single, case):
    expected = single[case]
    # the run is not trivial: the poison moved and the residual fell
    assert expected["history"][-1] < expected["history"][0]
    n_poison = len(expected["y_poison"])
    assert n_poison == round(CASES[case]["epsilon_d"] * N_ROWS)
    for result in ranks:
        got = result[case]
        assert got["n_iter"] == expected["n_iter"]
        np.testing.assert_allclose(got["history"], expected["history"], rtol=1e-8)
        np.testing.assert_allclose(got["X_poison"], expected["X_poison"], rtol=1e-5, atol=1e-8)
        np.testing.assert_array_equal(got["y_poison"], expected["y_poison"])
        np.testing.assert_allclose(got["gradient_norm"], expected["gradient_norm"], rtol=1e-8)
        np.testing.assert_allclose(got["threshold"], expected["threshold"], rtol=1e-6)
        # fit_resample: clean rows then the full poison, on every rank
        assert got["X_mixed"].shape == (N_ROWS + n_poison, 5)
        np.testing.assert_allclose(got["X_mixed"], expected["X_mixed"], rtol=1e-5, atol=1e-8)
        np.testing.assert_array_equal(got["y_mixed"], expected["y_mixed"])


# ---------------------------------------------------------------- command line

DIGITS = ["attack", "--dataset", "digits", "--max-iter", "20", "--epsilon-d", "0.1", "--quiet"]


def test_torchrun_attack_prints_the_one_process_table(capsys):
    """``torchrun --nproc_per_node=2 -m skpoison attack``: one table, the same numbers.

    The command line runs in float32, where the two processes' sums round
    differently from one process's (relative 1e-7): the poison then differs in its
    last bits, and the retrained victim may classify one test point differently.  So
    the accuracy is compared to within one test point and every other printed number
    (tau, budget, poison count, gradient norm, lower bound) exactly; the seconds are
    wall time.
    """
    assert main(DIGITS) == 0
    expected = capsys.readouterr().out.splitlines()
    root = os.path.dirname(os.path.dirname(skpoison.__file__))
    env = dict(os.environ, OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]))
    env.pop("WORLD_SIZE", None)
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone",
         f"--nproc_per_node={WORLD_SIZE}", "-m", "skpoison", *DIGITS],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    got = done.stdout.splitlines()
    assert len(got) == len(expected) == 4  # rank 1 printed nothing
    assert got[:3] == expected[:3]  # the report line (tau, tau(2)) and the header
    one_point = 100 / 540 + 0.01  # one of the 540 test rows, in printed percent
    eps, n_poison, acc, drop, norm, bound, _ = got[3].split()
    eps1, n_poison1, acc1, drop1, norm1, bound1, _ = expected[3].split()
    assert (eps, n_poison, norm, bound) == (eps1, n_poison1, norm1, bound1)
    assert abs(float(acc) - float(acc1)) <= one_point
    assert abs(float(drop) - float(drop1)) <= one_point


def test_other_ranks_neither_print_nor_write(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(cli, "_init_distributed", lambda args: (1, False))
    folder = tmp_path / "run"
    argv = ["attack", "--dataset", "or", "--epsilon-w", "0.5", "--max-iter", "5",
            "--epsilon-d", "0.05", "--output", str(folder)]
    assert main(argv) == 0
    assert capsys.readouterr() == ("", "")
    assert not folder.exists()
    # rank 0 prints and writes
    monkeypatch.setattr(cli, "_init_distributed", lambda args: (0, False))
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert "0.05" in out and "wrote" in err and (folder / "results.json").exists()


def test_other_ranks_name_themselves_in_errors(monkeypatch, capsys):
    monkeypatch.setattr(cli, "_init_distributed", lambda args: (1, False))

    def failing(*args, **kwargs):
        raise ValueError("bad things")

    monkeypatch.setattr(skpoison.experiments, "attack_report", failing)
    assert main(DIGITS) == 1
    assert capsys.readouterr().err == "skpoison (rank 1): error: bad things\n"


def test_attack_help_says_how_to_launch_on_several_processes(capsys):
    with pytest.raises(SystemExit) as info:
        main(["attack", "--help"])
    assert info.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "torchrun --nproc_per_node=2 -m skpoison attack" in out
    assert "rank 0 alone prints" in out
