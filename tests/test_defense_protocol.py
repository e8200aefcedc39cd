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
    defense = InfluenceFilter(LogisticRegression())
    result = evaluate_defense(
        X_train, y_train, X_test, y_test, LogisticRegression(), _flip_target(),
        defense, epsilon_d=[0.1, 0.5], attack_params=params,
    )
    assert [r["epsilon_d"] for r in result["rows"]] == [0.1, 0.5]
    assert set(result["histories"]) == {"0.1", "0.5", "0.1 (clipped)", "0.5 (clipped)"}
    # GC is GC with clip=None and GC-c is GC with clip="data" (the "clip" given is
    # replaced); -d is the same run with the filter before retraining
    runs = {
        clip: evaluate_attack(
            X_train, y_train, X_test, y_test, LogisticRegression(), _flip_target(),
            epsilon_d=[0.1, 0.5], attack_params={"max_iter": 30, "device": "cpu", "clip": clip},
            defense=defense,
        )
        for clip in (None, "data")
    }
    assert result["clean_accuracy"] == pytest.approx(runs[None]["clean_accuracy"])
    for row, plain, clipped in zip(result["rows"], runs[None]["rows"], runs["data"]["rows"]):
        expected = {
            "gc": plain["accuracy"], "gc_c": clipped["accuracy"],
            "gc_d": plain["accuracy_defended"], "gc_cd": clipped["accuracy_defended"],
        }
        for key, value in expected.items():
            assert row[key] == pytest.approx(value), key
            assert row["drop_" + key] == pytest.approx(result["clean_accuracy"] - value), key
        assert row["poison_removed_d"] == pytest.approx(plain["poison_removed"])
        assert row["poison_removed_cd"] == pytest.approx(clipped["poison_removed"])
    # clipping changes the poison: the two histories differ
    assert not np.allclose(result["histories"]["0.5"][-1], result["histories"]["0.5 (clipped)"][-1])


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
    model = LogisticRegression(C=3.0)
    for name, cls in (("sever", SeverFilter), ("influence", InfluenceFilter)):
        filt = make_defense(name, model, random_state=4, device="cpu")
        assert type(filt) is cls
        # scores with the victim given, and leaves removal_fraction to the protocol
        assert filt.estimator is model
        params = filt.get_params(deep=False)
        assert params["random_state"] == 4 and params["device"] == "cpu"
        assert params["removal_fraction"] == cls(model).removal_fraction


def test_cli_attack_defense(capsys):
    argv = ["attack", "--dataset", "or", "--max-iter", "20", "--epsilon-d", "0.3",
            "--defense", "influence", "--device", "cpu", "--json"]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["defense"] == "influence" and {"gc", "gc_cd"} <= set(report["rows"][0])
    with pytest.raises(SystemExit):
        main(argv[:-1] + ["--clip", "data"])
    assert "drop --clip" in capsys.readouterr().err
