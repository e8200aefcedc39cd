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
