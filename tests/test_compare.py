"""Several attacks against one target: compare_attacks, its registry and ``skpoison compare``."""

import json

import numpy as np
import pytest
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

from skpoison import PoisonabilityAnalyzer
from skpoison._choices import ATTACKS
from skpoison.attacks import LabelFlipAttack
from skpoison.cli import main
from skpoison.datasets import make_gaussian
from skpoison.experiments import (
    PoisoningProtocol,
    compare_attacks,
    format_comparison_table,
    label_flip_target,
    make_attack,
)
from skpoison.experiments._registry import _ATTACKS

# fast settings: the contract is the table, not how far each attack gets
FAST = {
    "gc": {"max_iter": 60},
    "kkt": {"max_iter": 40},
    "fw": {"max_iter": 4, "n_starts": 3, "search_iter": 10},
    "mt": {"n_starts": 2, "search_iter": 5},
    "gm": {"max_iter": 20},
    "tgda": {"max_iter": 3, "follower_steps": 2, "cg_max_iter": 5},
}


@pytest.fixture(scope="module")
def data():
    X, y = make_gaussian(n_samples=120, random_state=0)
    return train_test_split(X, y, test_size=0.3, stratify=y, random_state=0)


@pytest.fixture(scope="module")
def compared(data):
    X_train, X_test, y_train, y_test = data
    target = label_flip_target(LogisticRegression(), X_train, y_train, epsilon_d=0.3,
                               device="cpu")
    result = compare_attacks(
        X_train, y_train, X_test, y_test, LogisticRegression(), target,
        attacks=list(ATTACKS), epsilon_d=[0.1, 0.3], attack_params=FAST, device="cpu",
        return_fitted=True,
    )
    return target, result


def _flat(model):
    return np.concatenate([model.coef_.ravel(), model.intercept_])


def test_registry_names_match_the_choices():
    assert tuple(_ATTACKS) == ATTACKS


def test_one_row_per_attack_and_budget(compared):
    _, result = compared
    assert [(r["attack"], r["epsilon_d"]) for r in result["rows"]] == [
        (name, eps) for name in ATTACKS for eps in (0.1, 0.3)
    ]
    assert len(result["fitted"]) == len(result["rows"])


def test_values_match_independent_computations(data, compared):
    X_train, X_test, y_train, y_test = data
    target, result = compared
    clean_accuracy = LogisticRegression().fit(X_train, y_train).score(X_test, y_test)
    assert result["clean_accuracy"] == pytest.approx(clean_accuracy)
    assert result["target_accuracy"] == pytest.approx(target.score(X_test, y_test))
    w_target = _flat(target.estimator)
    analyzer = PoisonabilityAnalyzer(target, device="cpu").fit(X_train, y_train)
    for row, (sampler, retrained) in zip(result["rows"], result["fitted"]):
        # the victim retrained by hand on clean data plus the attack's poison
        X_mixed = np.vstack([X_train, sampler.X_poison_])
        y_mixed = np.concatenate([y_train, sampler.y_poison_])
        model = LogisticRegression().fit(X_mixed, y_mixed)
        assert row["accuracy"] == pytest.approx(model.score(X_test, y_test))
        assert row["accuracy_drop"] == pytest.approx(clean_accuracy - row["accuracy"])
        distance = np.linalg.norm(_flat(model) - w_target) / np.linalg.norm(w_target)
        assert row["distance"] == pytest.approx(distance, rel=1e-6, abs=1e-9)
        assert row["n_poison"] == len(sampler.y_poison_)
        if row["attack"] != "mt":  # MT may stop early; the others spend the budget
            assert row["n_poison"] == round(row["epsilon_d"] * len(X_train))
        expected = analyzer.gradient_norm(sampler.X_poison_, sampler.y_poison_)
        assert row["gradient_norm"] == pytest.approx(expected, rel=1e-3, abs=1e-6)
        assert row["gradient_norm"] >= row["lower_bound"] - 1e-6
        assert row["seconds"] >= 0


def test_every_boxed_attack_keeps_to_the_data_range(data, compared):
    X_train = data[0]
    _, result = compared
    low, high = X_train.min(axis=0), X_train.max(axis=0)
    for row, (sampler, _) in zip(result["rows"], result["fitted"]):
        assert np.all(sampler.X_poison_ >= low - 1e-6), row["attack"]
        assert np.all(sampler.X_poison_ <= high + 1e-6), row["attack"]


def test_label_flip_at_the_target_budget_reaches_the_target(compared):
    # the labelflip target is the victim retrained on these very copies: the attack
    # at that budget rebuilds it exactly, with a vanishing gradient
    _, result = compared
    row = next(r for r in result["rows"] if r["attack"] == "labelflip" and r["epsilon_d"] == 0.3)
    assert row["distance"] < 1e-6
    assert row["gradient_norm"] < 1e-3


def test_label_flip_target_is_the_flip_attack_retrained(data):
    X_train, _, y_train, _ = data
    target = label_flip_target(LogisticRegression(), X_train, y_train, epsilon_d=0.4,
                               strategy="random", random_state=3, device="cpu")
    flip = LabelFlipAttack(LogisticRegression(), epsilon_d=0.4, random_state=3, device="cpu")
    model = LogisticRegression().fit(*flip.fit_resample(X_train, y_train))
    np.testing.assert_allclose(_flat(target.estimator), _flat(model))


def test_run_sampler_passes_the_clean_gradient_only_where_taken(data, monkeypatch):
    X_train, X_test, y_train, y_test = data
    target = FrozenEstimator(LogisticRegression(C=0.1).fit(X_train, y_train))
    protocol = PoisoningProtocol(X_train, y_train, X_test, y_test, LogisticRegression(),
                                 target, device="cpu").fit()
    protocol.analyzer()  # cached before counting
    # the analyzer must not recompute g(mu) for GC: fail if it is asked to
    from skpoison import _poisonability

    calls = []
    original = _poisonability.PoisonabilityAnalyzer.fit

    def spy(self, X, y, clean_gradient=None):
        calls.append(clean_gradient is not None)
        return original(self, X, y, clean_gradient=clean_gradient)

    monkeypatch.setattr(_poisonability.PoisonabilityAnalyzer, "fit", spy)
    for name in ("gc", "kkt"):
        rows = protocol.run_sampler(
            lambda t, eps, seed, name=name: make_attack(
                name, t, LogisticRegression(), epsilon_d=eps, random_state=seed,
                device="cpu", **FAST[name]),
            [0.2],
        )
        assert len(rows) == 1
    assert calls == [True, False]  # GC reuses g(mu); KKT computes its own


def test_distance_needs_the_targets_family(data):
    X_train, X_test, y_train, y_test = data
    target = FrozenEstimator(LogisticRegression().fit(X_train, y_train))
    protocol = PoisoningProtocol(X_train, y_train, X_test, y_test, LogisticRegression(),
                                 target, device="cpu").fit()
    other = LogisticRegression(fit_intercept=False).fit(X_train, y_train)
    with pytest.raises(ValueError, match="target's model family"):
        protocol.distance_to_target(other)
    assert protocol.distance_to_target(target.estimator) == 0.0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"attacks": ["gc", "nope"]}, "Unknown attacks \\['nope'\\]"),
        ({"attacks": []}, "choose among"),
        ({"attacks": ["gc"], "attack_params": {"kkt": {}}}, "not compared"),
    ],
)
def test_bad_attack_arguments(data, kwargs, match):
    X_train, X_test, y_train, y_test = data
    target = FrozenEstimator(LogisticRegression().fit(X_train, y_train))
    with pytest.raises(ValueError, match=match):
        compare_attacks(X_train, y_train, X_test, y_test, LogisticRegression(), target,
                        device="cpu", **kwargs)


def test_unknown_attack_name_in_make_attack():
    with pytest.raises(ValueError, match="Unknown attack 'pgd'"):
        make_attack("pgd", None, None, epsilon_d=0.1)


def test_table_has_one_line_per_row(compared):
    _, result = compared
    lines = format_comparison_table(result).splitlines()
    assert lines[1] == "" and lines[2].split()[0] == "attack"
    assert len(lines) == 3 + len(result["rows"])
    first = result["rows"][0]
    assert lines[3].split()[:3] == [first["attack"], f"{first['epsilon_d']:.4g}",
                                    str(first["n_poison"])]
    assert lines[3].split()[6] == f"{first['distance']:.3f}"


# ----------------------------------------------------------------------------- CLI
COMPARE_OR = ["compare", "--dataset", "or", "--attack", "labelflip", "gc", "--max-iter", "20",
              "--epsilon-d", "0.1", "0.2", "--flip-epsilon", "0.2"]


def test_cli_compare_json_matches_the_function(capsys):
    from skpoison.experiments import comparison_report

    assert main(COMPARE_OR + ["--json", "--device", "cpu"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [(r["attack"], r["epsilon_d"]) for r in report["rows"]] == [
        ("labelflip", 0.1), ("labelflip", 0.2), ("gc", 0.1), ("gc", 0.2)
    ]
    expected = comparison_report("or", attacks=["labelflip", "gc"], epsilon_d=[0.1, 0.2],
                                 flip_epsilon=0.2, max_iter=20, device="cpu")
    for got, want in zip(report["rows"], expected["rows"]):
        assert got["accuracy"] == pytest.approx(want["accuracy"])
        assert got["distance"] == pytest.approx(want["distance"], rel=1e-5, abs=1e-9)
    # the label flips of the target's own budget rebuild the target
    assert report["rows"][1]["distance"] < 1e-6


def test_cli_compare_table(capsys):
    assert main(COMPARE_OR + ["--device", "cpu"]) == 0
    captured = capsys.readouterr()
    lines = captured.out.strip().splitlines()
    assert lines[0].startswith("or (train 140, test 60) / logreg / target labelflip")
    assert [line.split()[:2] for line in lines[3:]] == [
        ["labelflip", "0.1"], ["labelflip", "0.2"], ["gc", "0.1"], ["gc", "0.2"]
    ]
    assert captured.err == ""  # progress only on a terminal


@pytest.mark.parametrize(
    "argv, message",
    [
        (["compare", "--attack", "gc", "pgd"], "argument --attack: invalid choice: 'pgd'"),
        (["compare", "--target", "randompc"], "argument --target: invalid choice"),
        (["compare", "--epsilon-d", "0"], "argument --epsilon-d"),
    ],
)
def test_cli_compare_usage_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: skpoison compare")
    assert message in err


def test_cli_compare_failure_is_one_line(capsys):
    # a budget of less than one poison point: one line that says what to do
    assert main(["compare", "--dataset", "or", "--attack", "kkt", "--epsilon-d", "0.001",
                 "--device", "cpu"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("skpoison: error:") and err.count("\n") == 1
    assert "raise epsilon_d" in err


def test_compare_help_imports_no_heavy_library(heavy_imports_of_cli):
    done = heavy_imports_of_cli(["compare", "--help"], ["compare", "--attack", "pgd"])
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_tau_budget_is_the_threshold_in_the_box(data, compared):
    X_train, X_test, y_train, y_test = data
    target, _ = compared
    box = (X_train.min(axis=0), X_train.max(axis=0))
    tau = PoisonabilityAnalyzer(target, feature_range=box, device="cpu").fit(
        X_train, y_train).threshold_
    assert 0 < tau < 10  # so that the "tau" budget is run
    result = compare_attacks(X_train, y_train, X_test, y_test, LogisticRegression(), target,
                             attacks=["labelflip"], epsilon_d=["tau", 0.5], device="cpu")
    assert result["threshold"] == pytest.approx(tau, rel=1e-5)
    assert [r["epsilon_d"] for r in result["rows"]] == [pytest.approx(tau, rel=1e-5), 0.5]
