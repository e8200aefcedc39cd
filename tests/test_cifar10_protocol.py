"""CIFAR-10 through the protocol: the registry, ``skpoison attack`` and the benchmark's CPU path.

The data are generated files in the exact binary layout of the official release
(the module's known sums are replaced by theirs), so nothing needs the real archive.
"""

import hashlib
import importlib.util
import json
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from skpoison.cli import main
from skpoison.datasets import _cifar10
from skpoison.experiments import default_epsilon_w, load_dataset

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_cifar10.py"


def _offline(*args, **kwargs):
    raise URLError("offline")


@pytest.fixture
def cifar_home(tmp_path, monkeypatch):
    """An extracted CIFAR-10 folder: 5 x 16 training and 30 test records of random pixels."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "cifar10" / _cifar10.BATCH_FOLDER
    folder.mkdir(parents=True)
    sums = {}
    for name, n in [(f"data_batch_{i}.bin", 16) for i in range(1, 6)] + [("test_batch.bin", 30)]:
        labels = np.arange(n) % 10
        rng.shuffle(labels)
        records = []
        for label in labels:
            pixels = rng.integers(0, 256, 3072, dtype=np.uint8)
            records.append(bytes([int(label)]) + pixels.tobytes())
        content = b"".join(records)
        (folder / name).write_bytes(content)
        sums[name] = hashlib.sha256(content).hexdigest()
    monkeypatch.setattr(_cifar10, "SHA256", sums)
    monkeypatch.setattr(_cifar10, "urlopen", _offline)
    return tmp_path / "cifar10"


def test_load_dataset_cifar10_follows_the_paper_split(cifar_home):
    X_train, X_test, y_train, y_test = load_dataset("cifar10", data_home=cifar_home)
    assert X_train.shape == (56, 3072) and X_test.shape == (30, 3072)  # 70% of 80 rows
    counts = np.bincount(y_train)  # 10 rows of classes 0-5, 5 of classes 6-9; 70% of each
    assert counts[:6].tolist() == [7] * 6 and set(counts[6:].tolist()) <= {3, 4}
    sub = load_dataset("cifar10", data_home=cifar_home, n_train=20, n_test=10)
    assert sub[0].shape == (20, 3072) and sub[1].shape == (10, 3072)
    assert set(sub[2].tolist()) == set(range(10))  # stratified: every class kept
    # the subsample rows are rows of the full training part
    full = {row.tobytes() for row in X_train}
    assert all(row.tobytes() in full for row in sub[0])
    with pytest.raises(ValueError, match="at least 10 rows"):
        load_dataset("cifar10", data_home=cifar_home, n_train=5)
    with pytest.raises(ValueError, match="n_test must be a positive int"):
        load_dataset("cifar10", data_home=cifar_home, n_test=0)


def test_default_epsilon_w_cifar10_is_the_papers():
    assert default_epsilon_w("resnet18", "cifar10") == 0.5
    assert default_epsilon_w("logreg", "cifar10") == 0.5
    assert default_epsilon_w("logreg", "mnist") == 1.0


def test_cli_attack_cifar10(cifar_home, capsys):
    status = main([
        "attack", "--dataset", "cifar10", "--model", "logreg", "--data-home", str(cifar_home),
        "--n-train", "40", "--n-test", "20", "--epsilon-d", "0.1", "1", "--max-iter", "5",
        "--json", "--quiet",
    ])
    assert status == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["dataset"], report["n_train"], report["n_test"]) == ("cifar10", 40, 20)
    assert report["epsilon_w"] == 0.5
    assert [row["n_poison"] for row in report["rows"]] == [4, 40]
    # the clean accuracy is that of the same victim on the same subsample
    X_train, X_test, y_train, y_test = load_dataset(
        "cifar10", data_home=cifar_home, n_train=40, n_test=20
    )
    clean = LogisticRegression(max_iter=1000).fit(X_train, y_train)
    assert report["clean_accuracy"] == float(np.mean(clean.predict(X_test) == y_test))


def test_cli_attack_cifar10_missing_data_says_where(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(_cifar10, "urlopen", _offline)
    status = main(["attack", "--dataset", "cifar10", "--data-home", str(tmp_path / "none")])
    err = capsys.readouterr().err
    assert status == 1
    assert str(tmp_path / "none") in err and "--data-home" in err and "SKPOISON_DATA" in err


def _bench():
    spec = importlib.util.spec_from_file_location("bench_cifar10", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_cifar10_presets():
    bench = _bench()
    gpu = bench.settings_from(bench.build_parser().parse_args(["--gpu"]))
    assert gpu == dict(n_train=None, n_test=None, width=64, epochs=30, max_iter=1000,
                       gradpc_iter=100, gc_batch_size=1000, device="cuda")
    cpu = bench.settings_from(bench.build_parser().parse_args(["--n-train", "30"]))
    assert cpu["n_train"] == 30 and cpu["device"] == "cpu" and cpu["n_test"] == 500


def test_bench_cifar10_cpu_path_end_to_end(cifar_home, capsys):
    bench = _bench()
    result = bench.main([
        "--data-home", str(cifar_home), "--n-train", "30", "--n-test", "20", "--width", "4",
        "--epochs", "1", "--max-iter", "3", "--gradpc-iter", "2", "--json",
    ])
    assert json.loads(capsys.readouterr().out) == json.loads(json.dumps(result))
    assert (result["n_train"], result["n_test"]) == (30, 20)
    assert [a["epsilon_d"] for a in result["attacks"]] == [0.03, 0.1, 1.0]
    assert [a["n_poison"] for a in result["attacks"]] == [1, 3, 30]
    assert result["tau2"] >= result["tau"] > 0
    for attack in result["attacks"]:
        assert attack["accuracy"] * 20 == pytest.approx(round(attack["accuracy"] * 20))
        # no poison set beats the residual lower bound (the analyzer's theory)
        assert attack["gradient_norm"] >= attack["lower_bound"] * (1 - 1e-6)
    text = bench.format_row(result)
    assert "GC 0.03 %" in text and "(30 attacked rows, 20 test rows)" in text
