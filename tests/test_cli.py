"""The ``skpoison`` command: analyze and attack, their outputs and their errors."""

import io
import json
import os
import stat
import subprocess
import sys
import warnings

import pytest
import torch
from threadpoolctl import threadpool_info

import skpoison
import skpoison.experiments
from skpoison.cli import build_parser, main
from skpoison.experiments import analyze_poisonability, write_attack_report

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
    # progress only on a terminal: nothing on a captured stderr
    assert captured.err == ""


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
    assert set(os.listdir(folder)) == {
        "results.json", "table.md", "gradient_norms.png", "phase_transition.png"
    }
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
    ids=["analyze", "attack-quiet", "attack"],
)
def test_missing_mnist_is_one_clear_line(command, extra, tmp_path, offline_mnist, capsys):
    empty = tmp_path / "no-mnist-here"
    empty.mkdir()
    argv = [command, "--dataset", "mnist17", "--data-home", str(empty)] + extra
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    err_lines = captured.err.strip().splitlines()
    assert len(err_lines) == 1 and err_lines[0].startswith("skpoison: error:")
    # the advice speaks the command line's language
    assert str(empty) in err_lines[0]
    assert "--data-home" in err_lines[0] and "SKPOISON_DATA" in err_lines[0]
    assert "data_home=" not in err_lines[0]
    assert os.listdir(empty) == []  # no partial downloads left behind


def test_failed_download_leaves_no_folder(tmp_path, offline_mnist, capsys):
    folder = tmp_path / "new" / "mnist"
    assert main(["analyze", "--dataset", "mnist17", "--data-home", str(folder)]) == 1
    assert "--data-home" in capsys.readouterr().err
    assert os.listdir(tmp_path) == []  # neither new/mnist nor new/ stays behind


def test_python_m_skpoison_help():
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run(
        [sys.executable, "-m", "skpoison", "--help"],
        capture_output=True, text=True, timeout=120, env=env,
    )
    assert done.returncode == 0, done.stderr
    assert "analyze" in done.stdout and "attack" in done.stdout
    assert done.stdout.startswith("usage: skpoison")


# ----------------------------------------------------------- startup, help, usage


def test_importing_the_cli_imports_no_heavy_library(heavy_imports_of_cli):
    # --help and argument errors answer at once: nothing imports torch before the
    # arguments are valid
    done = heavy_imports_of_cli(["attack", "--help"], ["attack", "--max-iter", "0"])
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"skpoison {skpoison.__version__}"


def _subcommands():
    parser = build_parser()
    (action,) = [a for a in parser._actions if a.choices and "attack" in a.choices]
    return action.choices


@pytest.mark.parametrize("command", ["analyze", "attack"])
def test_every_option_has_help_and_shows_its_default(command):
    sub = _subcommands()[command]
    options = [a for a in sub._actions if a.option_strings and a.dest != "help"]
    assert options
    for action in options:
        assert action.help, f"{action.option_strings} has no help text"
    text = sub.format_help()
    assert text.count("(default:") == len(options)


@pytest.mark.parametrize(
    "argv, option",
    [
        (["attack", "--epsilon-d", "0.1", "abc"], "--epsilon-d"),
        (["attack", "--max-iter", "0"], "--max-iter"),
        (["attack", "--device", "bogus"], "--device"),
        (["analyze", "--device", "mps"], "--device"),
        (["attack", "--threads", "0"], "--threads"),
        (["attack", "--defense", "sever", "--clip", "data"], "--defense"),
    ],
)
def test_bad_value_prints_the_subcommand_usage(argv, option, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"usage: skpoison {argv[0]} ")
    assert f"skpoison {argv[0]}: error: argument {option}" in err


# ------------------------------------------------------- failures are one line


def _one_error_line(err):
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("skpoison: error: ")
    return lines[0]


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a torch without CUDA")
@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_cuda_without_cuda_is_one_line(device, capsys):
    assert main(["analyze", "--dataset", "or", "--device", device]) == 1
    line = _one_error_line(capsys.readouterr().err)
    assert f"--device {device}" in line and "--device cpu" in line


@pytest.fixture
def no_attack(monkeypatch):
    """Record (and refuse) any start of the protocol's work."""
    calls = []

    def refuse(*args, **kwargs):
        calls.append(args)
        raise RuntimeError("the protocol should not have started")

    from skpoison.experiments import _protocol as _attack

    monkeypatch.setattr(_attack, "GradientCanceling", refuse)
    monkeypatch.setattr(skpoison.experiments, "attack_report", refuse)
    return calls


def test_budget_too_large_for_memory_fails_before_allocating(monkeypatch, capsys):
    from skpoison.experiments import _protocol as _attack

    calls = []
    monkeypatch.setattr(_attack, "GradientCanceling", lambda *a, **k: calls.append(a))
    monkeypatch.setattr(_attack, "clone", lambda *a, **k: calls.append(a))
    argv = ["attack", "--dataset", "digits", "--epsilon-d", "1e6", "--max-iter", "1"]
    assert main(argv) == 1
    line = _one_error_line(capsys.readouterr().err)
    assert "epsilon_d = 1e+06" in line and "memory" in line
    assert calls == []  # nothing was fitted, nothing allocated


def test_existing_file_as_output_fails_before_the_attack(tmp_path, no_attack, capsys):
    path = tmp_path / "results.txt"
    path.write_text("keep me")
    with pytest.raises(SystemExit) as info:
        main(ATTACK_OR + ["--output", str(path)])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: skpoison attack ") and "--output" in err
    assert no_attack == [] and path.read_text() == "keep me"


def test_ctrl_c_exits_130_with_one_line(monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(skpoison.experiments, "attack_report", interrupted)
    assert main(ATTACK_OR) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["skpoison: interrupted"]


def test_warnings_are_one_line_each(monkeypatch, capsys):
    from sklearn.exceptions import ConvergenceWarning

    def warns_then_stops(*args, **kwargs):
        warnings.warn("TGDA: conjugate gradients did not\n converge", ConvergenceWarning)
        raise KeyboardInterrupt

    monkeypatch.setattr(skpoison.experiments, "attack_report", warns_then_stops)
    shown = warnings.showwarning
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        assert main(ATTACK_OR) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "skpoison: warning: TGDA: conjugate gradients did not converge (ConvergenceWarning)",
        "skpoison: interrupted",
    ]
    assert warnings.showwarning is shown  # the caller's display is back


# ------------------------------------------------------------------ threads


@pytest.mark.parametrize("extra, expected", [([], 1), (["--threads", "2"], 2)])
def test_the_command_sets_its_own_thread_pools(extra, expected, monkeypatch, capsys):
    seen = {}
    real = skpoison.experiments.attack_report

    def spy(*args, **kwargs):
        seen["torch"] = torch.get_num_threads()
        seen["blas"] = {p["num_threads"] for p in threadpool_info()}
        return real(*args, **kwargs)

    monkeypatch.setattr(skpoison.experiments, "attack_report", spy)
    before = torch.get_num_threads()
    assert main(ATTACK_OR + extra) == 0
    assert seen["torch"] == expected
    assert seen["blas"] <= {expected}
    assert torch.get_num_threads() == before  # restored for an in-process caller


def _without_seconds(value):
    if isinstance(value, dict):
        return {k: _without_seconds(v) for k, v in value.items() if k != "seconds"}
    if isinstance(value, list):
        return [_without_seconds(v) for v in value]
    return value


def test_main_job_is_bitwise_reproducible(capsys):
    argv = ["attack", "--dataset", "digits", "--max-iter", "50", "--epsilon-d", "0.1", "tau",
            "--json"]
    runs = []
    for _ in range(2):
        assert main(argv) == 0
        runs.append(_without_seconds(json.loads(capsys.readouterr().out)))
    assert runs[0] == runs[1]  # == on floats: bitwise equal numbers


# ----------------------------------------------------------------- progress


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_shows_every_stage_on_a_terminal(monkeypatch, capsys):
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert main(ATTACK_OR) == 0
    err = terminal.getvalue()
    for stage in ("loading or", "fitting the clean victim", "building the target",
                  "computing tau", "Gradient Canceling at eps_d = 0.05",
                  "retraining the victim at eps_d = 3", "GradientCanceling"):
        assert stage in err, stage
    assert "[skpoison]" not in capsys.readouterr().out


def test_quiet_silences_progress_on_a_terminal(monkeypatch):
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert main(ATTACK_OR + ["--quiet"]) == 0
    assert terminal.getvalue() == ""


# ------------------------------------------------------------------- output


def test_output_files_have_ordinary_permissions(tmp_path, capsys):
    folder = tmp_path / "run"
    old = os.umask(0o022)
    try:
        assert main(ATTACK_OR + ["--output", str(folder), "--quiet"]) == 0
    finally:
        os.umask(old)
    for name in ("results.json", "table.md", "gradient_norms.png", "phase_transition.png"):
        assert stat.S_IMODE(os.stat(folder / name).st_mode) == 0o644, name


def _strict_loads(text):
    def refuse(constant):
        raise ValueError(f"non-standard JSON constant {constant}")

    return json.loads(text, parse_constant=refuse)


def _unreachable_report():
    return {
        "dataset": "or", "model": "logreg", "target": "gradpc", "epsilon_w": 0.5,
        "clean_accuracy": 1.0, "target_accuracy": 0.5, "threshold": float("inf"),
        "threshold_binary": float("inf"), "exact": False, "rows": [],
        "histories": {"1": [1.0, float("nan")]},
    }


def test_results_json_is_strict_json(tmp_path):
    write_attack_report(_unreachable_report(), tmp_path)
    saved = _strict_loads((tmp_path / "results.json").read_text())
    assert saved["threshold"] == "inf" and float(saved["threshold"]) == float("inf")
    assert saved["histories"]["1"] == [1.0, "nan"]


def test_printed_json_is_strict_json(monkeypatch, capsys):
    monkeypatch.setattr(
        skpoison.experiments, "attack_report", lambda *a, **k: _unreachable_report()
    )
    assert main(ATTACK_OR + ["--json"]) == 0
    assert _strict_loads(capsys.readouterr().out)["threshold"] == "inf"


def test_missing_matplotlib_is_reported(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib fails
    folder = tmp_path / "run"
    assert main(ATTACK_OR + ["--output", str(folder)]) == 0
    err = capsys.readouterr().err
    warning = [line for line in err.splitlines() if line.startswith("skpoison: warning:")]
    assert len(warning) == 2  # the gradient curves and the phase transition
    assert all("matplotlib" in w and "skpoison[plot]" in w for w in warning)
    written = [line for line in err.splitlines() if line.startswith("skpoison: wrote")]
    assert "gradient_norms.png (not written: matplotlib" in written[0]
    assert "phase_transition.png (not written: matplotlib" in written[0]
    assert sorted(os.listdir(folder)) == ["results.json", "table.md"]


def test_a_warning_on_a_terminal_takes_its_own_line(monkeypatch):
    # with a stage's progress line open, the warning goes on a line of its own
    # (tqdm clears the open line, prints the warning and draws the stage again)
    from sklearn.exceptions import ConvergenceWarning

    def warns_in_a_stage(*args, progress=None, **kwargs):
        progress("running the attack")
        warnings.warn("did not converge", ConvergenceWarning)
        raise KeyboardInterrupt

    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    monkeypatch.setattr(skpoison.experiments, "attack_report", warns_in_a_stage)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        assert main(ATTACK_OR) == 130
    segments = [s.strip() for s in terminal.getvalue().replace("\r", "\n").split("\n")]
    assert "skpoison: warning: did not converge (ConvergenceWarning)" in segments
    assert any(s.startswith("[skpoison] running the attack") for s in segments)
