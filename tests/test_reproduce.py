"""The paper's MNIST experiments as functions (skpoison.experiments._reproduce)."""

import json
import os
from pathlib import Path

import numpy as np
import pytest

from skpoison.experiments import figure2, table2

_MNIST = Path(os.environ.get("SKPOISON_DATA", Path(__file__).parents[2] / "shared" / "data"))


def _have_mnist():
    return any((_MNIST / "mnist").glob("t10k-images*"))


@pytest.mark.skipif(not _have_mnist(), reason="MNIST files not found under $SKPOISON_DATA")
def test_table2_lr_small_subset_writes_every_column(tmp_path):
    result = table2("lr", n_train=500, seeds=(0, 1), gc_iter=3, retrain_epochs=2,
                    data_home=str(_MNIST / "mnist"), device="cpu", output=tmp_path)
    data = json.loads((tmp_path / "table2_lr.json").read_text())
    expected = ["seed", "clean_accuracy", "gradpc_accuracy", "tau2", "tau",
                "gc_accuracy@0.03", "gc_accuracy@0.1", "gc_accuracy@1"]
    assert data["columns"] == expected
    assert [r["seed"] for r in data["rows"]] == [0, 1, "mean", "std"]
    for row in data["rows"]:
        assert set(row) == set(expected)
    seeds = data["rows"][:2]
    for column in expected[1:]:
        values = np.array([r[column] for r in seeds])
        assert data["rows"][2][column] == pytest.approx(values.mean())
        assert data["rows"][3][column] == pytest.approx(values.std())
    for row in seeds:
        for column in expected[1:]:
            if "accuracy" in column:
                assert 0 <= row[column] <= 1
        # tau(2) divides by W(1/e), smaller than tau(c)'s W((c-1)/e) for c = 10
        assert 0 < row["tau"] < row["tau2"]
    assert data["settings"]["epsilon_w"] == 1.0 and data["settings"]["n_train"] == 500
    table = (tmp_path / "table2_lr.md").read_text()
    header = [c.strip() for c in table.splitlines()[0].strip("|").split("|")]
    assert header[:2] == ["seed", "clean_accuracy"]
    assert any(line.strip("| ").startswith("mean") for line in table.splitlines())
    assert result["rows"] == data["rows"]


def test_figure2_gaussian_marks_tau(tmp_path):
    result = figure2(datasets=("gaussian",), epsilon_d=(0.05, 2.0), gc_iter=100,
                     device="cpu", output=tmp_path)
    rows = result["rows"]
    assert [r["epsilon_d"] for r in rows] == [0.05, 2.0]
    tau = rows[0]["tau"]
    assert 0.05 < tau < 2.0  # the two budgets sit on either side of the threshold
    # below tau GC cannot cancel the gradient; above it it nearly does
    assert rows[1]["gradient_norm"] < rows[0]["gradient_norm"]
    assert (tmp_path / "figure2.png").read_bytes()[:4] == b"\x89PNG"


def test_bad_preset_and_model_raise():
    with pytest.raises(ValueError, match="preset"):
        table2("lr", preset="tpu")
    with pytest.raises(ValueError, match="model"):
        table2("svm")


# ------------------------------------------------------- skpoison reproduce (CLI)
def _experiments():
    from skpoison.cli import build_parser

    (reproduce,) = [a for a in build_parser()._actions if a.choices and "reproduce" in a.choices]
    (action,) = [a for a in reproduce.choices["reproduce"]._actions
                 if a.choices and "table2" in a.choices]
    return action.choices


@pytest.mark.skipif(not _have_mnist(), reason="MNIST files not found under $SKPOISON_DATA")
def test_cli_reproduce_table2_writes_every_column(tmp_path, capsys):
    from skpoison.cli import main

    argv = ["reproduce", "table2", "--model", "lr", "--preset", "cpu", "--n-train", "500",
            "--seeds", "0", "1", "--gc-iter", "3", "--retrain-epochs", "2",
            "--data-home", str(_MNIST / "mnist"), "--device", "cpu", "--output", str(tmp_path)]
    assert main(argv) == 0
    captured = capsys.readouterr()
    data = json.loads((tmp_path / "table2_lr.json").read_text())
    columns = ["seed", "clean_accuracy", "gradpc_accuracy", "tau2", "tau",
               "gc_accuracy@0.03", "gc_accuracy@0.1", "gc_accuracy@1"]
    assert data["columns"] == columns
    for row in data["rows"]:
        assert set(row) == set(columns)
    assert [r["seed"] for r in data["rows"]] == [0, 1, "mean", "std"]
    assert data["settings"] == {
        "n_train": 500, "gc_iter": 3, "retrain_epochs": 2, "preset": "cpu", "epsilon_w": 1.0,
        "epsilon_d": [0.03, 0.1, 1.0], "seeds": [0, 1],
    }
    # the files are listed on stderr; stdout is the text table, the same as table2_lr.txt
    assert captured.err.strip() == "skpoison: wrote " + ", ".join(
        str(tmp_path / f"table2_lr.{ext}") for ext in ("json", "md", "txt"))
    printed = captured.out.rstrip("\n").splitlines()
    assert printed[0].startswith("table2 lr (n_train 500, gc_iter 3, retrain_epochs 2")
    assert printed[2:] == (tmp_path / "table2_lr.txt").read_text().rstrip("\n").splitlines()
    assert printed[2].split() == columns


def test_cli_reproduce_figure2_gaussian_prints_the_table(capsys):
    from skpoison.cli import main

    argv = ["reproduce", "figure2", "--datasets", "gaussian", "--epsilon-d", "0.05", "2",
            "--gc-iter", "100", "--device", "cpu"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert captured.err == ""  # no --output: nothing written, nothing listed
    lines = captured.out.strip().splitlines()
    assert lines[2].split()[:3] == ["dataset", "epsilon_d", "accuracy"]
    rows = [line.split() for line in lines[3:]]
    assert [r[:2] for r in rows] == [["gaussian", "0.05"], ["gaussian", "2"]]
    # the API's numbers, printed to 4 significant digits
    expected = figure2(datasets=("gaussian",), epsilon_d=(0.05, 2.0), gc_iter=100,
                       device="cpu")["rows"]
    assert [float(r[3]) for r in rows] == pytest.approx(
        [r["gradient_norm"] for r in expected], rel=1e-3)


@pytest.mark.parametrize("experiment", ["table2", "figure2", "figure3", "table6"])
def test_cli_reproduce_every_option_has_help_and_shows_its_default(experiment):
    sub = _experiments()[experiment]
    options = [a for a in sub._actions if a.option_strings and a.dest != "help"]
    for option in ("--preset", "--n-train", "--output", "--data-home", "--device",
                   "--threads", "--quiet"):
        assert any(option in a.option_strings for a in options), option
    for action in options:
        assert action.help, f"{action.option_strings} has no help text"
    assert sub.format_help().count("(default:") == len(options)


@pytest.mark.parametrize(
    "argv, option",
    [
        (["table2", "--model", "svm"], "--model"),
        (["table2", "--preset", "tpu"], "--preset"),
        (["table2", "--n-train", "0"], "--n-train"),
        (["table2", "--seeds", "a"], "--seeds"),
        (["figure2", "--datasets", "cifar10"], "--datasets"),
        (["figure3", "--epsilon-w", "-1"], "--epsilon-w"),
        (["table6", "--flip-fractions", "1.5"], "--flip-fractions"),
        (["table6", "--device", "tpu"], "--device"),
    ],
)
def test_cli_reproduce_bad_value_prints_the_experiment_usage(argv, option, capsys):
    from skpoison.cli import main

    with pytest.raises(SystemExit) as info:
        main(["reproduce", *argv])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"usage: skpoison reproduce {argv[0]} ")
    assert f"skpoison reproduce {argv[0]}: error: argument {option}" in err


def test_cli_reproduce_missing_mnist_is_one_line(tmp_path, monkeypatch, capsys):
    from skpoison.cli import main
    from skpoison.datasets import _mnist

    monkeypatch.setattr(_mnist, "_MIRRORS", ("file:///nonexistent-skpoison-mirror/",))
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["reproduce", "table6", "--data-home", str(empty), "--device", "cpu"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    (line,) = captured.err.strip().splitlines()
    assert line.startswith("skpoison: error: MNIST file") and "--data-home" in line


def test_cli_reproduce_help_imports_no_heavy_library(heavy_imports_of_cli):
    done = heavy_imports_of_cli(
        ["reproduce", "table2", "--help"], ["reproduce", "table2", "--n-train", "0"]
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_cli_choices_match_the_experiments():
    from skpoison import _choices
    from skpoison.experiments import PRESETS
    from skpoison.models import PAPER_VICTIMS

    assert _choices.PRESET_NAMES == tuple(PRESETS)
    assert _choices.PAPER_MODELS == PAPER_VICTIMS


def test_cli_reproduce_progress_on_a_terminal(monkeypatch, capsys):
    import io
    import sys

    from skpoison.cli import main

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    argv = ["reproduce", "figure2", "--datasets", "gaussian", "--epsilon-d", "0.1", "2",
            "--gc-iter", "5", "--device", "cpu"]
    assert main(argv) == 0
    err = terminal.getvalue()
    for stage in ("figure2: gaussian: target and tau",
                  "figure2: gaussian: Gradient Canceling and retraining at eps_d = 0.1",
                  "figure2: gaussian: Gradient Canceling and retraining at eps_d = 2"):
        assert stage in err, stage
    assert "[skpoison]" not in capsys.readouterr().out
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert main(argv + ["--quiet"]) == 0
    assert terminal.getvalue() == ""
