"""The defense table of the protocol: evaluate_defense, attack_report(defense=...), the CLI."""

import json

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression

from skpoison import GradientCanceling
from skpoison.cli import main
from skpoison.defenses import InfluenceFilter, SeverFilter
from skpoison.experiments import (
    DEFENSES,
    attack_report,
    evaluate_attack,
    evaluate_defense,
    format_attack_table,
    load_dataset,
    make_defense,
)
from skpoison.targets import LabelFlipTarget, resolve_target


def _split():
    X_train, X_test, y_train, y_test = load_dataset("gaussian", random_state=0)
    return X_train[:200], X_test[:100], y_train[:200], y_test[:100]


def _flip_target():
    return LabelFlipTarget(LogisticRegression(), flip_fraction=0.5, random_state=0)


def test_evaluate_attack_with_a_defense_follows_the_protocol():
    X_train, X_test, y_train, y_test = _split()
    victim = LogisticRegression()
    frozen = FrozenEstimator(resolve_target(_flip_target(), X_train, y_train))
    params = {"max_iter": 50, "device": "cpu"}
    result = evaluate_attack(
        X_train, y_train, X_test, y_test, victim, frozen, epsilon_d=[0.2],
        attack_params=params, defense=SeverFilter(LogisticRegression()),
    )
    row = result["rows"][0]
    # the same poison, then Sever removing as many rows as there are poison points
    attack = GradientCanceling(frozen, epsilon_d=0.2, random_state=0, **params)
    attack.fit(X_train, y_train)
    X_mixed = np.vstack([X_train, attack.X_poison_])
    y_mixed = np.concatenate([y_train, attack.y_poison_])
    sever = SeverFilter(LogisticRegression(), removal_fraction=40 / 240).fit(X_mixed, y_mixed)
    assert sever.n_removed_ == row["n_poison"] == 40
    kept = sever.sample_indices_
    expected = clone(victim).fit(X_mixed[kept], y_mixed[kept]).score(X_test, y_test)
    assert row["accuracy_defended"] == pytest.approx(expected)
    assert row["accuracy_drop_defended"] == pytest.approx(result["clean_accuracy"] - expected)
    assert row["poison_removed"] == pytest.approx(np.mean(sever.removed_indices_ >= 200))


def test_evaluate_defense_has_the_four_columns():
    X_train, X_test, y_train, y_test = _split()
    params = {"max_iter": 30, "device": "cpu", "clip": "ignored"}
    result = evaluate_defense(
        X_train, y_train, X_test, y_test, LogisticRegression(), _flip_target(),
        InfluenceFilter(LogisticRegression()), epsilon_d=[0.1, 0.5], attack_params=params,
    )
    assert [r["epsilon_d"] for r in result["rows"]] == [0.1, 0.5]
    for row in result["rows"]:
        for key in ("gc", "gc_c", "gc_d", "gc_cd"):
            assert 0 <= row[key] <= 1
            assert row["drop_" + key] == pytest.approx(result["clean_accuracy"] - row[key])
        assert 0 <= row["poison_removed_d"] <= 1 and 0 <= row["poison_removed_cd"] <= 1
    assert set(result["histories"]) == {"0.1", "0.5", "0.1 (clipped)", "0.5 (clipped)"}
    # GC-c is GC with clip="data"
    plain = evaluate_attack(
        X_train, y_train, X_test, y_test, LogisticRegression(), _flip_target(),
        epsilon_d=[0.1], attack_params={"max_iter": 30, "device": "cpu", "clip": "data"},
    )
    assert result["rows"][0]["gc_c"] == pytest.approx(plain["rows"][0]["accuracy"])


def test_attack_report_with_defense_and_its_table():
    report = attack_report("or", "logreg", epsilon_d=[0.5], max_iter=30, defense="sever",
                           device="cpu")
    assert report["defense"] == "sever"
    table = format_attack_table(report).splitlines()
    assert "against sever" in table[0]
    assert table[2].split()[:6] == ["eps_d", "n_poison", "GC", "GC-c", "GC-d", "GC-cd"]
    assert len(table) == 4
    json.dumps(report)  # JSON-serialisable
    empty = format_attack_table(dict(report, rows=[])).splitlines()
    assert len(empty) == 3 and "GC-cd" in empty[2]
    with pytest.raises(ValueError, match="clip"):
        attack_report("or", "logreg", epsilon_d=[0.5], max_iter=5, defense="sever", clip="data")
    with pytest.raises(ValueError, match="Unknown defense"):
        attack_report("or", "logreg", epsilon_d=[0.5], max_iter=5, defense="maxup")


def test_make_defense():
    assert DEFENSES == ("sever", "influence")
    assert isinstance(make_defense("sever", LogisticRegression()), SeverFilter)
    assert isinstance(make_defense("influence", LogisticRegression()), InfluenceFilter)


def test_cli_attack_defense(capsys):
    argv = ["attack", "--dataset", "or", "--max-iter", "20", "--epsilon-d", "0.3",
            "--defense", "influence", "--device", "cpu", "--json"]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["defense"] == "influence" and {"gc", "gc_cd"} <= set(report["rows"][0])
    with pytest.raises(SystemExit):
        main(argv[:-1] + ["--clip", "data"])
    assert "drop --clip" in capsys.readouterr().err
