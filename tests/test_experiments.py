"""The paper's protocol as code: evaluate_attack, reports, tables, files, registry."""

import copy
import functools
import json
import math
import os

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.svm import LinearSVC

from skpoison import GradientCanceling, PoisonabilityAnalyzer
from skpoison.experiments import (
    DATASETS,
    MODELS,
    TARGETS,
    analyze_poisonability,
    attack_report,
    default_epsilon_w,
    evaluate_attack,
    format_attack_table,
    load_dataset,
    make_model,
    make_target,
    write_attack_report,
)
from skpoison.targets import GradPC, LabelFlipTarget, RandomPC, ScaledTarget

ROW_KEYS = {
    "epsilon_d",
    "n_poison",
    "accuracy",
    "accuracy_drop",
    "gradient_norm",
    "lower_bound",
    "converged",
    "seconds",
}


@functools.lru_cache(maxsize=None)
def _gaussian_split():
    X_train, X_test, y_train, y_test = load_dataset("gaussian", random_state=0)
    # 200 training rows are plenty for the protocol checks
    return X_train[:200], X_test[:100], y_train[:200], y_test[:100]


@pytest.fixture
def split():
    return tuple(a.copy() for a in _gaussian_split())


def _flip_target():
    return LabelFlipTarget(LogisticRegression(), flip_fraction=0.5, random_state=0)


# -------------------------------------------------------------------- evaluate_attack


def test_evaluate_attack_rows_follow_the_protocol(split):
    X_train, X_test, y_train, y_test = split
    victim = LogisticRegression()
    messages = []
    result = evaluate_attack(
        X_train, y_train, X_test, y_test, victim, _flip_target(),
        epsilon_d=[0.1, 1.0], attack_params={"max_iter": 40}, progress=messages.append,
    )
    assert set(result) >= {
        "clean_accuracy", "target_accuracy", "threshold", "threshold_binary", "exact",
        "rows", "histories",
    }
    attacks = [m for m in messages if m.startswith("Gradient Canceling")]
    assert len(attacks) == 2 and "0.1" in attacks[0] and "1" in attacks[1]
    clean = clone(victim).fit(X_train, y_train)
    assert result["clean_accuracy"] == pytest.approx(clean.score(X_test, y_test))
    target = _flip_target().fit(X_train, y_train).target_
    assert result["target_accuracy"] == pytest.approx(target.score(X_test, y_test))
    analyzer = PoisonabilityAnalyzer(FrozenEstimator(target)).fit(X_train, y_train)
    assert result["threshold"] == pytest.approx(analyzer.threshold_)
    assert result["exact"] == analyzer.exact_

    assert [r["epsilon_d"] for r in result["rows"]] == [0.1, 1.0]
    for row in result["rows"]:
        assert set(row) == ROW_KEYS
        eps = row["epsilon_d"]
        assert row["n_poison"] == round(eps * len(X_train))
        assert row["accuracy_drop"] == pytest.approx(result["clean_accuracy"] - row["accuracy"])
        assert 0.0 <= row["accuracy"] <= 1.0
        history = result["histories"][f"{eps:.4g}"]
        assert row["gradient_norm"] == pytest.approx(min(history))
        assert row["lower_bound"] == pytest.approx(
            analyzer.residual_lower_bound(row["n_poison"] / len(X_train)), rel=1e-5, abs=1e-12
        )
        assert isinstance(row["converged"], bool) and row["seconds"] >= 0
        # the reported accuracy is that of the victim retrained on clean + this poison
        gc = GradientCanceling(
            FrozenEstimator(target), epsilon_d=eps, max_iter=40, random_state=0
        ).fit(X_train, y_train)
        retrained = clone(victim).fit(
            np.vstack([X_train, gc.X_poison_]), np.concatenate([y_train, gc.y_poison_])
        )
        assert row["accuracy"] == pytest.approx(retrained.score(X_test, y_test))
        assert row["gradient_norm"] == pytest.approx(gc.gradient_norm_, rel=1e-6)


def test_tau_budget_is_replaced_by_the_threshold(split):
    X_train, X_test, y_train, y_test = split
    result = evaluate_attack(
        X_train, y_train, X_test, y_test, LogisticRegression(), _flip_target(),
        epsilon_d=[0.5, "tau"], attack_params={"max_iter": 5},
    )
    tau = result["threshold"]
    assert 0 < tau < math.inf
    assert [r["epsilon_d"] for r in result["rows"]] == [0.5, tau]
    assert result["rows"][1]["n_poison"] == round(tau * len(X_train))
    assert f"{tau:.4g}" in result["histories"]


def test_tau_budget_is_skipped_when_threshold_is_zero(split):
    X_train, X_test, y_train, y_test = split
    # a less confident copy of the clean model is reachable at any budget: tau = 0
    target = ScaledTarget(LogisticRegression(), scale=0.5)
    result = evaluate_attack(
        X_train, y_train, X_test, y_test, LogisticRegression(), target,
        epsilon_d=[0.2, "tau"], attack_params={"max_iter": 5},
    )
    assert result["threshold"] == 0.0
    assert [r["epsilon_d"] for r in result["rows"]] == [0.2]


def test_tau_budget_is_skipped_when_threshold_is_infinite(split):
    X_train, X_test, y_train, y_test = split
    sgd = SGDClassifier(loss="log_loss", alpha=1e-4, random_state=0).fit(X_train, y_train)
    huge = copy.deepcopy(sgd)
    # with a mean-form penalty, A <= alpha * ||w||^2 makes the target unreachable
    huge.coef_ = sgd.coef_ * (100.0 / np.linalg.norm(sgd.coef_))
    result = evaluate_attack(
        X_train, y_train, X_test, y_test, clone(sgd), FrozenEstimator(huge),
        epsilon_d=["tau", 0.3], attack_params={"max_iter": 5},
    )
    assert result["threshold"] == math.inf
    assert [r["epsilon_d"] for r in result["rows"]] == [0.3]


@pytest.mark.parametrize("bad", ["tau2", "TAU", "0.1", "", 0.0, -1.0])
def test_bad_budgets_raise(split, bad):
    X_train, X_test, y_train, y_test = split
    with pytest.raises(ValueError, match="epsilon_d"):
        evaluate_attack(
            X_train, y_train, X_test, y_test, LogisticRegression(), _flip_target(),
            epsilon_d=[0.1, bad], attack_params={"max_iter": 2},
        )


def test_evaluate_attack_does_not_modify_inputs(split):
    X_train, X_test, y_train, y_test = split
    copies = [a.copy() for a in split]
    evaluate_attack(
        X_train, y_train, X_test, y_test, LogisticRegression(), _flip_target(),
        epsilon_d=[0.2], attack_params={"max_iter": 5},
    )
    for before, after in zip(copies, (X_train, X_test, y_train, y_test)):
        np.testing.assert_array_equal(before, after)


# ----------------------------------------------------------------------- attack_report


@functools.lru_cache(maxsize=None)
def _or_report():
    return attack_report("or", "logreg", epsilon_w=0.5, epsilon_d=[0.05, 3.0, "tau"], max_iter=60)


def test_attack_report_on_or():
    report = _or_report()
    assert report["dataset"] == "or" and report["model"] == "logreg"
    assert report["target"] == "gradpc" and report["epsilon_w"] == 0.5
    assert report["clip"] is None
    assert (report["n_train"], report["n_test"]) == (140, 60)
    assert report["seconds"] > 0
    X_train, X_test, y_train, y_test = load_dataset("or", random_state=0)
    recipe = make_target("gradpc", make_model("logreg"), epsilon_w=0.5, random_state=0)
    target = recipe.fit(X_train, y_train).target_
    assert report["target_accuracy"] == pytest.approx(target.score(X_test, y_test))
    analyzer = PoisonabilityAnalyzer(FrozenEstimator(target)).fit(X_train, y_train)
    tau = analyzer.threshold_
    assert report["threshold"] == pytest.approx(tau, rel=1e-6)
    assert report["target_accuracy"] < report["clean_accuracy"]
    budgets = [r["epsilon_d"] for r in report["rows"]]
    assert budgets[:2] == [0.05, 3.0] and budgets[2] == pytest.approx(tau, rel=1e-6)
    for row in report["rows"]:
        assert set(row) == ROW_KEYS
        assert row["n_poison"] == round(row["epsilon_d"] * 140)
    small, large = report["rows"][0], report["rows"][1]
    # a budget far above tau hurts; a budget far below it does nothing
    assert small["accuracy"] == report["clean_accuracy"]
    assert large["accuracy"] < report["clean_accuracy"] - 0.1
    assert large["gradient_norm"] < small["gradient_norm"]
    assert small["lower_bound"] > 0 and large["lower_bound"] == 0
    assert list(report["histories"]) == [f"{eps:.4g}" for eps in budgets]
    for row in report["rows"]:
        history = report["histories"][f"{row['epsilon_d']:.4g}"]
        assert 1 <= len(history) <= 60
        assert row["gradient_norm"] == pytest.approx(min(history))


def test_attack_report_defaults_and_clip():
    report = attack_report(
        "gaussian", "logreg", target="labelflip", epsilon_d=[0.5], max_iter=10, clip="data"
    )
    assert report["clip"] == "data"
    assert report["epsilon_w"] == default_epsilon_w("logreg", "gaussian")
    assert (report["n_train"], report["n_test"]) == (700, 300)
    assert [r["n_poison"] for r in report["rows"]] == [350]


def test_attack_report_unknown_names_raise():
    with pytest.raises(ValueError, match="Unknown dataset"):
        attack_report("cifar", "logreg", epsilon_d=[0.1], max_iter=1)
    with pytest.raises(ValueError, match="Unknown model"):
        attack_report("or", "resnet", epsilon_d=[0.1], max_iter=1)
    with pytest.raises(ValueError, match="Unknown target"):
        attack_report("or", "logreg", target="magic", epsilon_d=[0.1], max_iter=1)


# ----------------------------------------------------------------- tables and files


def test_format_attack_table_has_one_line_per_row():
    report = _or_report()
    n_rows = len(report["rows"])
    text = format_attack_table(report).splitlines()
    assert len(text) == 3 + n_rows
    assert "tau" in text[0] and "or / logreg" in text[0]
    assert "eps_d" in text[2]
    for line, row in zip(text[3:], report["rows"]):
        cells = line.split()
        assert cells[0] == f"{row['epsilon_d']:.4g}"
        assert cells[1] == str(row["n_poison"])
        assert cells[2] == f"{100 * row['accuracy']:.2f}"
    md = format_attack_table(report, markdown=True).splitlines()
    assert len(md) == 4 + n_rows
    assert md[3].startswith("|") and set(md[3]) <= set("|-:")
    for line, row in zip(md[4:], report["rows"]):
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert len(cells) == 7
        assert cells[1] == str(row["n_poison"])
        assert cells[3] == f"{100 * row['accuracy_drop']:.2f}"


def test_format_attack_table_without_rows_markdown():
    report = dict(_or_report(), rows=[])
    assert len(format_attack_table(report, markdown=True).splitlines()) == 4


def test_format_attack_table_without_rows_text():
    report = dict(_or_report(), rows=[])
    lines = format_attack_table(report).splitlines()
    assert len(lines) == 3 and "eps_d" in lines[2]


def test_only_tau_budget_with_zero_threshold_formats():
    # a GradPC target on OR with epsilon_w = 0.1 has tau = 0: the tau row is skipped
    report = attack_report("or", "logreg", epsilon_w=0.1, epsilon_d=["tau"], max_iter=2)
    assert report["threshold"] == 0.0 and report["rows"] == []
    assert len(format_attack_table(report).splitlines()) == 3


def test_write_attack_report(tmp_path):
    report = _or_report()
    folder = tmp_path / "nested" / "out"
    written = write_attack_report(report, folder)
    names = {"results.json", "table.md", "gradient_norms.png", "phase_transition.png"}
    assert {os.path.basename(p) for p in written} == names
    # nothing else, in particular no temporary files
    assert set(os.listdir(folder)) == names
    assert json.loads((folder / "results.json").read_text()) == report
    assert (folder / "table.md").read_text() == format_attack_table(report, markdown=True) + "\n"
    for name in ("gradient_norms.png", "phase_transition.png"):
        png = (folder / name).read_bytes()
        assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 1000
    # writing again replaces the files, still without leftovers
    changed = dict(report, dataset="or-again")
    write_attack_report(changed, folder)
    assert set(os.listdir(folder)) == names
    assert json.loads((folder / "results.json").read_text())["dataset"] == "or-again"


# ------------------------------------------------------------ analyze_poisonability


def test_analyze_poisonability_matches_the_analyzer():
    budgets = [0.05, 0.5, 2.0, 20.0]
    report = analyze_poisonability("or", "logreg", epsilon_w=0.5, epsilon_d=budgets)
    X_train, X_test, y_train, y_test = load_dataset("or", random_state=0)
    target = make_target("gradpc", make_model("logreg"), epsilon_w=0.5, random_state=0)
    target = target.fit(X_train, y_train).target_
    analyzer = PoisonabilityAnalyzer(FrozenEstimator(target)).fit(X_train, y_train)
    assert report["threshold"] == pytest.approx(analyzer.threshold_, rel=1e-6)
    assert report["threshold_binary"] == pytest.approx(analyzer.threshold_binary_, rel=1e-6)
    assert report["inner_product"] == pytest.approx(analyzer.inner_product_, rel=1e-5)
    assert report["exact"] == analyzer.exact_
    assert report["epsilon_w"] == 0.5
    assert (report["n_train"], report["n_test"]) == (140, 60)
    clean = make_model("logreg").fit(X_train, y_train)
    assert report["clean_accuracy"] == pytest.approx(clean.score(X_test, y_test))
    assert report["target_accuracy"] == pytest.approx(target.score(X_test, y_test))
    tau = report["threshold"]
    assert 0.05 < tau < 20.0
    assert [b["epsilon_d"] for b in report["budgets"]] == budgets
    for b in report["budgets"]:
        assert b["poisonable"] == bool(analyzer.is_poisonable(b["epsilon_d"]))
        assert b["poisonable"] == (b["epsilon_d"] >= tau)
        assert b["residual_lower_bound"] == pytest.approx(
            analyzer.residual_lower_bound(b["epsilon_d"]), rel=1e-6, abs=1e-12
        )
        assert (b["residual_lower_bound"] > 0) == (not b["poisonable"])
    json.dumps(report)  # plain types only


def test_analyze_poisonability_default_epsilon_w():
    report = analyze_poisonability("gaussian", "sgd", epsilon_d=[1.0])
    assert report["epsilon_w"] == default_epsilon_w("sgd", "gaussian") == 0.1
    assert report["model"] == "sgd" and report["target"] == "gradpc"


# ------------------------------------------------------------------------ registry


def test_registry_names():
    assert set(DATASETS) == {"digits", "or", "gaussian", "mnist", "mnist17", "cifar10"}
    assert set(MODELS) == {
        "logreg", "linear-svc", "sgd", "nn", "cnn", "resnet18", "resnet34"
    }
    assert set(TARGETS) == {"gradpc", "randompc", "labelflip", "scaled-gradpc"}


@pytest.mark.parametrize(
    "name, n_train, n_test, n_features",
    [("digits", 1257, 540, 64), ("or", 140, 60, 2), ("gaussian", 700, 300, 10)],
)
def test_load_dataset_splits(name, n_train, n_test, n_features):
    X_train, X_test, y_train, y_test = load_dataset(name, random_state=0)
    assert X_train.shape == (n_train, n_features) and X_test.shape == (n_test, n_features)
    assert y_train.shape == (n_train,) and y_test.shape == (n_test,)
    # stratified: class proportions agree between the parts
    for c in np.unique(y_train):
        assert abs(np.mean(y_train == c) - np.mean(y_test == c)) < 0.03
    again = load_dataset(name, random_state=0)
    np.testing.assert_array_equal(again[0], X_train)


def test_load_dataset_digits_in_unit_range_and_seeded_split():
    X_train, X_test, _, _ = load_dataset("digits", random_state=0)
    assert X_train.min() >= 0 and X_train.max() <= 1
    other = load_dataset("digits", random_state=1)[0]
    assert not np.array_equal(other, X_train)


def test_load_dataset_unknown_raises():
    with pytest.raises(ValueError, match="Unknown dataset 'cifar'"):
        load_dataset("cifar")


def test_load_dataset_mnist_missing_names_folder(tmp_path, monkeypatch):
    from skpoison.datasets import _mnist

    monkeypatch.setattr(_mnist, "_MIRRORS", ("file:///nonexistent-skpoison-mirror/",))
    with pytest.raises(FileNotFoundError, match="not found in folder") as info:
        load_dataset("mnist17", data_home=tmp_path)
    assert str(tmp_path) in str(info.value)


def test_make_model():
    lr = make_model("logreg")
    assert isinstance(lr, LogisticRegression) and lr.max_iter == 1000
    svc = make_model("linear-svc", random_state=3)
    assert isinstance(svc, LinearSVC) and svc.random_state == 3
    sgd = make_model("sgd", random_state=4)
    assert isinstance(sgd, SGDClassifier)
    assert sgd.loss == "log_loss" and sgd.random_state == 4
    # unfitted, fresh objects
    assert not hasattr(lr, "coef_") and make_model("logreg") is not lr
    with pytest.raises(ValueError, match="Unknown model"):
        make_model("mlp")


def test_make_target():
    victim = LogisticRegression()
    gradpc = make_target("gradpc", victim, epsilon_w=0.7, random_state=2, device="cpu")
    assert isinstance(gradpc, GradPC)
    assert gradpc.epsilon_w == 0.7 and gradpc.random_state == 2 and gradpc.device == "cpu"
    randompc = make_target("randompc", victim, epsilon_w=0.3)
    assert isinstance(randompc, RandomPC) and randompc.epsilon_w == 0.3
    flip = make_target("labelflip", victim, flip_fraction=0.25)
    assert isinstance(flip, LabelFlipTarget) and flip.flip_fraction == 0.25
    scaled = make_target("scaled-gradpc", victim, epsilon_w=0.7, scale=0.25)
    assert isinstance(scaled, ScaledTarget) and scaled.scale == 0.25
    assert isinstance(scaled.estimator, GradPC) and scaled.estimator.epsilon_w == 0.7
    with pytest.raises(ValueError, match="Unknown target"):
        make_target("kkt", victim)


@pytest.mark.parametrize(
    "model, dataset, expected",
    [
        ("logreg", "mnist", 1.0),
        ("logreg", "mnist17", 1.0),
        ("sgd", "mnist", 0.5),
        ("linear-svc", "mnist17", 0.5),
        ("logreg", "digits", 0.07),
        ("nn", "digits", 0.01),
        ("sgd", "or", 0.5),
        ("logreg", "gaussian", 0.1),
    ],
)
def test_default_epsilon_w(model, dataset, expected):
    assert default_epsilon_w(model, dataset) == expected


def test_phase_transition_figure_marks_tau_on_a_log_axis():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from skpoison.experiments import phase_transition_figure

    rows = [{"epsilon_d": e, "accuracy": a, "gradient_norm": g}
            for e, a, g in ((3.0, 0.8, 0.01), (0.1, 0.95, 0.6), (1.0, 0.94, 0.1))]
    report = {"dataset": "digits", "model": "logreg", "clean_accuracy": 0.97,
              "target_accuracy": 0.77, "threshold": 0.3, "threshold_binary": 1.2,
              "rows": rows}
    fig = phase_transition_figure(report)
    top, bottom = fig.axes
    assert bottom.get_xscale() == "log" and bottom.get_yscale() == "log"
    assert top.get_ylabel() and bottom.get_ylabel() and bottom.get_xlabel()
    # the curves are sorted by budget, accuracy in percent
    (acc,) = [line for line in top.lines if len(line.get_xdata()) == 3]
    assert list(acc.get_xdata()) == [0.1, 1.0, 3.0]
    assert list(acc.get_ydata()) == pytest.approx([95.0, 94.0, 80.0])
    (grad,) = [line for line in bottom.lines if len(line.get_xdata()) == 3]
    assert list(grad.get_ydata()) == [0.6, 0.1, 0.01]
    # tau and tau(2) as vertical lines on both panels, named in the legend
    for ax in (top, bottom):
        vertical = {line.get_xdata()[0] for line in ax.lines
                    if len(set(line.get_xdata())) == 1 and len(line.get_xdata()) == 2}
        assert vertical == {0.3, 1.2}
    legend = [t.get_text() for t in top.get_legend().get_texts()]
    assert "tau = 0.3" in legend and "tau(2) = 1.2" in legend
    plt.close(fig)
