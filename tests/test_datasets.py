"""Tests of skpoison.datasets: digits, OR, Gaussian, the split, and MNIST (IDX)."""

import gzip
import hashlib
import io
import os
import re
import struct
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
import sklearn.datasets

from skpoison.datasets import (
    fetch_mnist,
    load_digits,
    make_gaussian,
    make_or,
    train_validation_split,
)
from skpoison.datasets import _mnist

MNIST_NAMES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


# --------------------------------------------------------------------------- #
# helpers: a tiny, independent IDX writer and a synthetic MNIST folder
# --------------------------------------------------------------------------- #
_TYPE_CODES = {
    np.dtype(np.uint8): 0x08,
    np.dtype(np.int8): 0x09,
    np.dtype(">i2"): 0x0B,
    np.dtype(">i4"): 0x0C,
    np.dtype(">f4"): 0x0D,
    np.dtype(">f8"): 0x0E,
}


def idx_bytes(array):
    """Serialise ``array`` (whose dtype is big-endian or 1 byte) as IDX."""
    array = np.asarray(array)
    header = bytes([0, 0, _TYPE_CODES[array.dtype], array.ndim])
    header += struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.tobytes()


def write_mnist(folder, *, n_train=7, n_test=5, compress=True, seed=0):
    """Write four small MNIST-like IDX files; return arrays and their sums."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": (np.arange(n_train) % 10).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": ((np.arange(n_test) + 3) % 10).astype(np.uint8),
    }
    sums = {}
    payloads = {}
    for name, array in arrays.items():
        content = idx_bytes(array)
        sums[name] = hashlib.sha256(content).hexdigest()
        gz = gzip.compress(content, mtime=0)
        sums[name + ".gz"] = hashlib.sha256(gz).hexdigest()
        payloads[name + ".gz"] = gz
        if compress:
            (folder / (name + ".gz")).write_bytes(gz)
        else:
            (folder / name).write_bytes(content)
    return arrays, sums, payloads


def forbid_network(monkeypatch):
    def urlopen(*args, **kwargs):  # pragma: no cover - must not be called
        raise AssertionError("fetch_mnist tried to download")

    monkeypatch.setattr(_mnist, "urlopen", urlopen)


# --------------------------------------------------------------------------- #
# load_digits
# --------------------------------------------------------------------------- #
def test_load_digits_scaled_to_unit_interval():
    bunch = load_digits()
    raw = sklearn.datasets.load_digits()
    assert bunch.data.shape == (1797, 64)
    assert bunch.data.dtype == np.float64
    assert bunch.data.min() == 0.0 and bunch.data.max() == 1.0
    np.testing.assert_allclose(bunch.data, raw.data / 16.0)
    np.testing.assert_array_equal(bunch.target, raw.target)
    assert bunch.images.shape == (1797, 8, 8)
    np.testing.assert_array_equal(bunch.images.reshape(1797, 64), bunch.data)
    assert len(bunch.feature_names) == 64
    assert bunch.target_names.tolist() == list(range(10))
    X, y = load_digits(return_X_y=True)
    np.testing.assert_array_equal(X, bunch.data)
    np.testing.assert_array_equal(y, bunch.target)


def test_load_digits_class_subset_keeps_label_values():
    raw = sklearn.datasets.load_digits()
    X, y = load_digits(digits=(1, 7), return_X_y=True)
    mask = np.isin(raw.target, [1, 7])
    assert set(y.tolist()) == {1, 7}
    assert len(y) == mask.sum() == 361
    np.testing.assert_allclose(X, raw.data[mask] / 16.0)
    bunch = load_digits(digits=(7, 1))
    assert bunch.target_names.tolist() == [1, 7]
    assert bunch.images.shape == (361, 8, 8)


@pytest.mark.parametrize("digits", [(1, 12), (-1,), (1.5,), ()])
def test_load_digits_unknown_digits_raise(digits):
    with pytest.raises(ValueError, match=r"valid values are \[0, 1, 2"):
        load_digits(digits=digits)


# --------------------------------------------------------------------------- #
# make_or, make_gaussian
# --------------------------------------------------------------------------- #
def test_make_or_shapes_labels_and_corners():
    X, y = make_or(n_repeats=30, noise=0.0, random_state=0)
    assert X.shape == (120, 2) and X.dtype == np.float64
    assert y.shape == (120,) and np.issubdtype(y.dtype, np.integer)
    corners = {(0.0, 0.0): 0, (0.0, 1.0): 1, (1.0, 0.0): 1, (1.0, 1.0): 1}
    for point, label in zip(map(tuple, X), y):
        assert corners[point] == label
    assert np.bincount(y).tolist() == [30, 90]
    counts = {c: sum(1 for p in map(tuple, X) if p == c) for c in corners}
    assert set(counts.values()) == {30}


def test_make_or_reproducible_and_noise_std():
    X1, y1 = make_or(n_repeats=2500, noise=0.2, random_state=3)
    X2, y2 = make_or(n_repeats=2500, noise=0.2, random_state=3)
    X3, _ = make_or(n_repeats=2500, noise=0.2, random_state=4)
    np.testing.assert_array_equal(X1, X2)
    np.testing.assert_array_equal(y1, y2)
    assert not np.allclose(X1, X3)
    clean, _ = make_or(n_repeats=2500, noise=0.0)
    residual = X1 - clean
    assert residual.std() == pytest.approx(0.2, rel=0.03)
    assert abs(residual.mean()) < 0.01
    rng = np.random.RandomState(3)
    X4, _ = make_or(n_repeats=2500, noise=0.2, random_state=rng)
    np.testing.assert_array_equal(X1, X4)


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"n_repeats": 0}, ValueError),
        ({"n_repeats": -3}, ValueError),
        ({"n_repeats": 2.5}, TypeError),
        ({"noise": -0.1}, ValueError),
        ({"noise": float("nan")}, ValueError),
        ({"noise": "big"}, TypeError),
    ],
)
def test_make_or_validates(kwargs, error):
    with pytest.raises(error, match="n_repeats|noise"):
        make_or(**kwargs)


def test_make_gaussian_matches_make_classification():
    X, y = make_gaussian(random_state=0)
    assert X.shape == (1000, 10)
    assert set(y.tolist()) == {0, 1}
    Xr, yr = sklearn.datasets.make_classification(1000, 10, random_state=0)
    np.testing.assert_array_equal(X, Xr)
    np.testing.assert_array_equal(y, yr)
    X, y = make_gaussian(n_samples=50, n_features=6, random_state=1)
    assert X.shape == (50, 6) and y.shape == (50,)


# --------------------------------------------------------------------------- #
# train_validation_split
# --------------------------------------------------------------------------- #
def test_train_validation_split_seeded_stratified():
    X, y = load_digits(digits=(1, 7), return_X_y=True)
    X_tr, X_val, y_tr, y_val = train_validation_split(X, y)
    assert len(X_val) == int(np.ceil(0.3 * len(X)))
    assert len(X_tr) + len(X_val) == len(X)
    assert X_tr.shape[1] == X_val.shape[1] == 64
    for label in (1, 7):
        frac = np.mean(y == label)
        assert np.mean(y_val == label) == pytest.approx(frac, abs=0.02)
    again = train_validation_split(X, y)
    np.testing.assert_array_equal(again[1], X_val)
    other = train_validation_split(X, y, random_state=1)
    assert not np.array_equal(other[1], X_val)
    X_tr, X_val, *_ = train_validation_split(X, y, validation_fraction=0.5)
    assert abs(len(X_tr) - len(X_val)) <= 1


@pytest.mark.parametrize("fraction", [0, 1, 1.5, -0.2, float("nan")])
def test_train_validation_split_validates_fraction(fraction):
    X, y = make_or(n_repeats=5, random_state=0)
    with pytest.raises(ValueError, match="validation_fraction"):
        train_validation_split(X, y, validation_fraction=fraction)


# --------------------------------------------------------------------------- #
# IDX parser
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize(
    "array",
    [
        np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4),
        np.array([-5, 0, 7], dtype=np.int8),
        np.arange(-6, 6, dtype=">i2").reshape(3, 4),
        np.array([[1, -2**31], [2**31 - 1, 0]], dtype=">i4"),
        np.array([0.5, -1.25], dtype=">f4"),
        np.array([np.pi, -np.e], dtype=">f8"),
    ],
)
def test_parse_idx_round_trip(array):
    parsed = _mnist._parse_idx(idx_bytes(array))
    assert parsed.shape == array.shape
    np.testing.assert_array_equal(parsed, array)


@pytest.mark.parametrize(
    "content, match",
    [
        (b"\x00\x00", "fewer than the 4 bytes"),
        (b"\x01\x00\x08\x01" + struct.pack(">I", 1) + b"\x00", "magic"),
        (b"\x00\x00\x07\x01" + struct.pack(">I", 1) + b"\x00", "magic"),
        (b"\x00\x00\x08\x00", "0 dimensions"),
        (b"\x00\x00\x08\x03" + struct.pack(">I", 2), "truncated"),
        (b"\x00\x00\x08\x01" + struct.pack(">I", 4) + b"\x00\x01", "corrupt"),
        (b"\x00\x00\x08\x01" + struct.pack(">I", 1) + b"\x00\x01", "corrupt"),
    ],
)
def test_parse_idx_malformed_raises(content, match):
    with pytest.raises(ValueError, match=match):
        _mnist._parse_idx(content, "somefile")


# --------------------------------------------------------------------------- #
# fetch_mnist on synthetic files
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("compress", [True, False])
def test_fetch_mnist_reads_gz_and_raw(tmp_path, monkeypatch, compress):
    arrays, sums, _ = write_mnist(tmp_path, compress=compress)
    monkeypatch.setattr(_mnist, "_SHA256", sums)
    forbid_network(monkeypatch)

    bunch = fetch_mnist(tmp_path)
    train_images = arrays["train-images-idx3-ubyte"]
    assert bunch.data.shape == (7, 784) and bunch.data.dtype == np.float32
    assert bunch.target.dtype == np.int64
    np.testing.assert_allclose(bunch.data, train_images.reshape(7, 784) / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(bunch.target, arrays["train-labels-idx1-ubyte"])
    np.testing.assert_array_equal(bunch.images, bunch.data.reshape(7, 28, 28))
    assert len(bunch.feature_names) == 784

    X, y = fetch_mnist(str(tmp_path), subset="test", return_X_y=True)
    assert X.shape == (5, 784)
    np.testing.assert_array_equal(y, [3, 4, 5, 6, 7])

    X, y = fetch_mnist(tmp_path, subset="all", return_X_y=True)
    assert X.shape == (12, 784)
    np.testing.assert_array_equal(y, [0, 1, 2, 3, 4, 5, 6, 3, 4, 5, 6, 7])
    assert 0.0 <= X.min() and X.max() <= 1.0

    X, y = fetch_mnist(tmp_path, subset="all", digits=(3, 5), return_X_y=True)
    np.testing.assert_array_equal(y, [3, 5, 3, 5])
    np.testing.assert_allclose(X[0], train_images[3].ravel() / 255.0, rtol=1e-6)
    assert fetch_mnist(tmp_path, digits=(5, 3)).target_names.tolist() == [3, 5]


def test_fetch_mnist_bad_arguments(tmp_path, monkeypatch):
    _, sums, _ = write_mnist(tmp_path)
    monkeypatch.setattr(_mnist, "_SHA256", sums)
    with pytest.raises(ValueError, match="subset"):
        fetch_mnist(tmp_path, subset="validation")
    with pytest.raises(ValueError, match=r"valid values are \[0, 1"):
        fetch_mnist(tmp_path, digits=(1, 10))


def test_fetch_mnist_malformed_magic_raises(tmp_path, monkeypatch):
    _, sums, _ = write_mnist(tmp_path, compress=False)
    path = tmp_path / "train-labels-idx1-ubyte"
    content = b"\x00\x00\x99\x01" + path.read_bytes()[4:]
    path.write_bytes(content)
    sums["train-labels-idx1-ubyte"] = hashlib.sha256(content).hexdigest()
    monkeypatch.setattr(_mnist, "_SHA256", sums)
    with pytest.raises(ValueError, match="train-labels-idx1-ubyte.*magic"):
        fetch_mnist(tmp_path)


def test_fetch_mnist_wrong_kind_of_idx_raises(tmp_path, monkeypatch):
    _, sums, _ = write_mnist(tmp_path, compress=False)
    # labels file with one label too many
    content = idx_bytes(np.zeros(8, dtype=np.uint8))
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(content)
    sums["train-labels-idx1-ubyte"] = hashlib.sha256(content).hexdigest()
    # test images of the wrong size
    content = idx_bytes(np.zeros((5, 8, 8), dtype=np.uint8))
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(content)
    sums["t10k-images-idx3-ubyte"] = hashlib.sha256(content).hexdigest()
    monkeypatch.setattr(_mnist, "_SHA256", sums)
    with pytest.raises(ValueError, match="7 images but 8 labels"):
        fetch_mnist(tmp_path)
    with pytest.raises(ValueError, match=r"\(n, 28, 28\)"):
        fetch_mnist(tmp_path, subset="test")


def test_fetch_mnist_corrupt_gzip_raises(tmp_path, monkeypatch):
    _, sums, _ = write_mnist(tmp_path)
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    content = path.read_bytes()[:-6]
    path.write_bytes(content)
    sums[path.name] = hashlib.sha256(content).hexdigest()
    monkeypatch.setattr(_mnist, "_SHA256", sums)
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte.gz.*gzip"):
        fetch_mnist(tmp_path, subset="test")


@pytest.mark.parametrize("compress", [True, False])
def test_fetch_mnist_sha_mismatch_raises(tmp_path, monkeypatch, compress):
    _, sums, _ = write_mnist(tmp_path, compress=compress)
    name = "train-images-idx3-ubyte" + (".gz" if compress else "")
    sums[name] = "0" * 64
    monkeypatch.setattr(_mnist, "_SHA256", sums)
    forbid_network(monkeypatch)
    with pytest.raises(ValueError, match=rf"{name}.*delete it and re-fetch"):
        fetch_mnist(tmp_path)
    # the test subset's files are intact
    assert fetch_mnist(tmp_path, subset="test", return_X_y=True)[0].shape == (5, 784)


def test_fetch_mnist_real_sums_reject_other_files(tmp_path, monkeypatch):
    write_mnist(tmp_path)  # the official sums stay in place
    forbid_network(monkeypatch)
    with pytest.raises(ValueError, match="SHA-256 mismatch"):
        fetch_mnist(tmp_path, subset="test")


def test_fetch_mnist_known_sums_table():
    for name in MNIST_NAMES:
        for key in (name, name + ".gz"):
            assert len(_mnist._SHA256[key]) == 64
            int(_mnist._SHA256[key], 16)
    assert len(set(_mnist._SHA256.values())) == 8


def test_fetch_mnist_missing_without_download_names_folder(tmp_path, monkeypatch):
    forbid_network(monkeypatch)
    folder = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError) as info:
        fetch_mnist(folder, download_if_missing=False)
    message = str(info.value)
    assert str(folder) in message
    assert "SKPOISON_DATA" in message and "data_home" in message
    assert not folder.exists()


def test_fetch_mnist_default_folders(tmp_path, monkeypatch):
    forbid_network(monkeypatch)
    monkeypatch.setenv("SKPOISON_DATA", str(tmp_path / "env"))
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "env" / "mnist"))):
        fetch_mnist(download_if_missing=False)

    monkeypatch.delenv("SKPOISON_DATA")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    expected = tmp_path / "home" / "skpoison_data" / "mnist"
    with pytest.raises(FileNotFoundError, match=re.escape(str(expected))):
        fetch_mnist(download_if_missing=False)

    # SKPOISON_DATA is found when set
    arrays, sums, _ = write_mnist(tmp_path / "env" / "mnist")
    monkeypatch.setattr(_mnist, "_SHA256", sums)
    monkeypatch.setenv("SKPOISON_DATA", str(tmp_path / "env"))
    _, y = fetch_mnist(download_if_missing=False, return_X_y=True)
    np.testing.assert_array_equal(y, arrays["train-labels-idx1-ubyte"])


# --------------------------------------------------------------------------- #
# download (no real network: urlopen is replaced)
# --------------------------------------------------------------------------- #
def test_fetch_mnist_downloads_atomically(tmp_path, monkeypatch):
    source = tmp_path / "source"
    arrays, sums, payloads = write_mnist(source)
    monkeypatch.setattr(_mnist, "_SHA256", sums)
    calls = []

    def fake_urlopen(url, timeout=None):
        calls.append(url)
        assert timeout is not None and timeout > 0
        if url.startswith(_mnist._MIRRORS[0]):
            raise URLError("first mirror down")
        return io.BytesIO(payloads[url.rsplit("/", 1)[1]])

    replaced = []
    real_replace = os.replace

    def spy_replace(src, dst):
        # the archive is not there under its final name until the rename
        assert not Path(dst).exists()
        assert Path(src).read_bytes() == payloads[Path(dst).name]
        replaced.append((Path(src), Path(dst)))
        return real_replace(src, dst)

    monkeypatch.setattr(_mnist, "urlopen", fake_urlopen)
    monkeypatch.setattr(_mnist.os, "replace", spy_replace)

    folder = tmp_path / "data" / "mnist"  # does not exist yet
    X, y = fetch_mnist(folder, subset="test", return_X_y=True)
    np.testing.assert_array_equal(y, arrays["t10k-labels-idx1-ubyte"])
    assert X.shape == (5, 784)

    names = ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
    assert calls == [m + n for n in names for m in _mnist._MIRRORS]
    assert [dst for _, dst in replaced] == [folder / n for n in names]
    assert all(src.parent == folder and src != dst for src, dst in replaced)
    assert sorted(p.name for p in folder.iterdir()) == names  # no temp files left
    for name in names:
        assert (folder / name).read_bytes() == payloads[name]

    # present files are not downloaded again
    calls.clear()
    fetch_mnist(folder, subset="test", return_X_y=True)
    assert calls == []


def test_fetch_mnist_rejects_bad_download(tmp_path, monkeypatch):
    _, sums, payloads = write_mnist(tmp_path / "source")
    monkeypatch.setattr(_mnist, "_SHA256", sums)
    monkeypatch.setattr(
        _mnist, "urlopen", lambda url, timeout=None: io.BytesIO(b"not the archive")
    )
    folder = tmp_path / "mnist"
    with pytest.raises(FileNotFoundError) as info:
        fetch_mnist(folder, subset="test")
    message = str(info.value)
    assert str(folder) in message and "SHA-256" in message
    assert not folder.exists()  # nothing half-written is left, not even the folder


def test_fetch_mnist_offline_names_folder(tmp_path, monkeypatch):
    def offline(url, timeout=None):
        raise URLError("Temporary failure in name resolution")

    monkeypatch.setattr(_mnist, "urlopen", offline)
    folder = tmp_path / "mnist"
    with pytest.raises(OSError) as info:
        fetch_mnist(folder)
    message = str(info.value)
    assert str(folder) in message
    assert "SKPOISON_DATA" in message and "data_home" in message
    assert "name resolution" in message
    assert not folder.exists()


# --------------------------------------------------------------------------- #
# the real MNIST (skipped when no copy is around)
# --------------------------------------------------------------------------- #
def _real_mnist_folder():
    candidates = []
    if os.environ.get("SKPOISON_DATA"):
        candidates.append(Path(os.environ["SKPOISON_DATA"]) / "mnist")
    # the team's copy, ../shared/data/mnist relative to the project root
    candidates.append(Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist")
    for folder in candidates:
        if all((folder / n).is_file() or (folder / (n + ".gz")).is_file() for n in MNIST_NAMES):
            return folder
    return None


@pytest.fixture(scope="module")
def real_mnist_folder():
    folder = _real_mnist_folder()
    if folder is None:
        pytest.skip("no MNIST copy: set SKPOISON_DATA to a folder holding mnist/")
    return folder


def test_real_mnist_train_and_test(real_mnist_folder, monkeypatch):
    forbid_network(monkeypatch)
    monkeypatch.setenv("SKPOISON_DATA", str(real_mnist_folder.parent))
    bunch = fetch_mnist(download_if_missing=False)
    assert bunch.data.shape == (60000, 784)
    assert bunch.data.dtype == np.float32 and bunch.target.dtype == np.int64
    assert bunch.data.min() == 0.0 and bunch.data.max() == 1.0
    assert np.bincount(bunch.target).tolist() == MNIST_TRAIN_COUNTS

    X_test, y_test = fetch_mnist(
        real_mnist_folder, subset="test", download_if_missing=False, return_X_y=True
    )
    assert X_test.shape == (10000, 784) and y_test.shape == (10000,)
    assert set(y_test.tolist()) == set(range(10))


def test_real_mnist_17(real_mnist_folder, monkeypatch):
    forbid_network(monkeypatch)
    X, y = fetch_mnist(
        real_mnist_folder, digits=(1, 7), download_if_missing=False, return_X_y=True
    )
    assert X.shape == (6742 + 6265, 784)
    assert np.bincount(y, minlength=10)[[1, 7]].tolist() == [6742, 6265]
    assert set(y.tolist()) == {1, 7}
