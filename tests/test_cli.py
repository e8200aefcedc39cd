"""The ``skpoison`` command: analyze and attack, their outputs and their errors."""

import json
import os
import subprocess
import sys

import pytest

from skpoison.cli import main
from skpoison.experiments import analyze_poisonability

ANALYZE_OR = ["analyze", "--dataset", "or", "--epsilon-w", "0.5", "--epsilon-d", "0.05", "20"]
ATTACK_OR = [
    "attack", "--dataset", "or", "--epsilon-w", "0.5", "--max-iter", "20",
    "--epsilon-d", "0.05", "3", "tau",
]


@pytest.fixture
def offline_mnist(monkeypatch):
    """Make MNIST downloads fail at once (no network use, no waiting)."""
    from skpoison.datasets import _mnist

    monkeypatch.setattr(_mnist, "_MIRRORS", ("file:///nonexistent-skpoison-mirror/",))


# ------------------------------------------------------------------------- analyze


def test_analyze_prints_the_report(capsys):
    assert main(ANALYZE_OR) == 0
    out = capsys.readouterr().out
    expected = analyze_poisonability("or", "logreg", epsilon_w=0.5, epsilon_d=[0.05, 20.0])
    assert f"{expected['threshold']:.6g}" in out
    assert "tau" in out and "clean accuracy" in out
    lines = out.strip().splitlines()
    # one line per budget, at the end: below tau "no", far above "yes"
    assert lines[-2].split()[:2] == ["0.05", "no"]
    assert lines[-1].split()[:2] == ["20", "yes"]


def test_analyze_json(capsys):
    assert main(ANALYZE_OR + ["--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert {
        "dataset", "model", "target", "epsilon_w", "clean_accuracy", "target_accuracy",
        "threshold", "threshold_binary", "exact", "inner_product", "budgets",
    } <= set(report)
    assert report["dataset"] == "or" and report["epsilon_w"] == 0.5
    expected = analyze_poisonability("or", "logreg", epsilon_w=0.5, epsilon_d=[0.05, 20.0])
    assert report["threshold"] == pytest.approx(expected["threshold"], rel=1e-6)
    assert [b["poisonable"] for b in report["budgets"]] == [False, True]


# -------------------------------------------------------------------------- attack


def test_attack_prints_the_table(capsys):
    assert main(ATTACK_OR) == 0
    captured = capsys.readouterr()
    lines = captured.out.strip().splitlines()
    assert lines[0].startswith("or / logreg / target gradpc")
    assert "eps_d" in lines[2]
    assert len(lines) == 3 + 3  # header, blank, columns, one line per budget
    assert [line.split()[0] for line in lines[3:5]] == ["0.05", "3"]
    assert [line.split()[1] for line in lines[3:5]] == ["7", "420"]
    # progress goes to stderr, never to stdout
    assert "[skpoison]" in captured.err and "[skpoison]" not in captured.out


def test_attack_quiet_has_no_progress(capsys):
    assert main(ATTACK_OR + ["--quiet"]) == 0
    assert capsys.readouterr().err == ""


def test_attack_json(capsys):
    assert main(ATTACK_OR + ["--json"]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert {"clean_accuracy", "target_accuracy", "threshold", "rows", "histories"} <= set(report)
    assert [r["n_poison"] for r in report["rows"][:2]] == [7, 420]
    assert report["rows"][2]["epsilon_d"] == pytest.approx(report["threshold"])
    assert report["rows"][1]["accuracy_drop"] == pytest.approx(
        report["clean_accuracy"] - report["rows"][1]["accuracy"]
    )
    assert captured.err == ""  # --json implies no progress


def test_attack_output_writes_the_files(tmp_path, capsys):
    folder = tmp_path / "run"
    assert main(ATTACK_OR + ["--json", "--output", str(folder)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert set(os.listdir(folder)) == {"results.json", "table.md", "gradient_norms.png"}
    assert json.loads((folder / "results.json").read_text()) == printed
    table = (folder / "table.md").read_text().splitlines()
    assert len(table) == 4 + len(printed["rows"])


def test_attack_with_skipped_tau_budget_succeeds(capsys):
    assert main(["attack", "--dataset", "or", "--epsilon-d", "tau", "--max-iter", "2"]) == 0


# -------------------------------------------------------------------------- errors


@pytest.mark.parametrize("command", ["analyze", "attack"])
def test_unknown_dataset_is_a_usage_error(command, capsys):
    with pytest.raises(SystemExit) as info:
        main([command, "--dataset", "cifar100"])
    assert info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["analyze", "attack"])
@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "abc"])
def test_non_positive_epsilon_d_is_a_usage_error(command, value, capsys):
    with pytest.raises(SystemExit) as info:
        main([command, "--dataset", "or", "--epsilon-d", "0.1", value])
    assert info.value.code == 2
    assert "--epsilon-d" in capsys.readouterr().err


def test_non_positive_max_iter_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        main(["attack", "--dataset", "or", "--max-iter", "0"])
    assert info.value.code == 2
    assert "--max-iter" in capsys.readouterr().err


def test_missing_command_is_a_usage_error():
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2


@pytest.mark.parametrize(
    "command, extra",
    [("analyze", []), ("attack", ["--max-iter", "1", "--quiet"]), ("attack", ["--max-iter", "1"])],
    ids=["analyze", "attack-quiet", "attack-progress"],
)
def test_missing_mnist_is_one_clear_line(command, extra, tmp_path, offline_mnist, capsys):
    empty = tmp_path / "no-mnist-here"
    empty.mkdir()
    argv = [command, "--dataset", "mnist17", "--data-home", str(empty)] + extra
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    err_lines = captured.err.strip().splitlines()
    errors = [line for line in err_lines if line.startswith("skpoison: error:")]
    assert len(errors) == 1 and err_lines[-1] == errors[0]
    # only progress lines besides the error
    assert all(line.startswith("[skpoison]") for line in err_lines[:-1])
    assert len(err_lines) == (1 if command == "analyze" or "--quiet" in extra else 2)
    assert str(empty) in errors[0]
    assert "Traceback" not in captured.err
    assert os.listdir(empty) == []  # no partial downloads left behind


def test_python_m_skpoison_help():
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run(
        [sys.executable, "-m", "skpoison", "--help"],
        capture_output=True, text=True, timeout=120, env=env,
    )
    assert done.returncode == 0, done.stderr
    assert "analyze" in done.stdout and "attack" in done.stdout
    assert done.stdout.startswith("usage: skpoison")
