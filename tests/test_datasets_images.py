"""Tests of the image data sets: CIFAR-10 (binary release) and Tiny ImageNet (folders)."""

import hashlib
import io
import pickle
import sys
import tarfile
from urllib.error import URLError

import numpy as np
import pytest

from skpoison.datasets import fetch_cifar10, fetch_tiny_imagenet
from skpoison.datasets import _cifar10

TRAIN_NAMES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
TEST_NAME = "test_batch.bin"


# --------------------------------------------------------------------------- #
# helpers: CIFAR-10 batch files in the exact binary layout, and their archive
# --------------------------------------------------------------------------- #
def batch_bytes(labels, images):
    """One record per image: the label byte, then the (3, 32, 32) uint8 pixels."""
    return b"".join(bytes([int(lab)]) + img.tobytes() for lab, img in zip(labels, images))


def make_cifar(n_per_batch=(3, 2, 4, 1, 2), n_test=3, seed=0):
    """Small batches: {name: (labels, images (n, 3, 32, 32) uint8, bytes)}."""
    rng = np.random.default_rng(seed)
    batches = {}
    for name, n in zip(TRAIN_NAMES + (TEST_NAME,), tuple(n_per_batch) + (n_test,)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        images = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
        batches[name] = (labels, images, batch_bytes(labels, images))
    return batches


def tar_gz(members):
    """A gzip-compressed tar holding ``cifar-10-batches-bin/<name>`` for each member."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, content in members.items():
            info = tarfile.TarInfo(f"cifar-10-batches-bin/{name}")
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def expected(batches, names):
    labels = np.concatenate([batches[n][0] for n in names]).astype(np.int64)
    images = np.concatenate([batches[n][1] for n in names])
    return images.reshape(len(images), 3072).astype(np.float64) / 255.0, labels


@pytest.fixture
def cifar(tmp_path, monkeypatch):
    """A data folder with a small archive; the module trusts its sums."""
    batches = make_cifar()
    members = {name: content for name, (_, _, content) in batches.items()}
    members["batches.meta.txt"] = b"\n".join(n.encode() for n in _cifar10.CLASS_NAMES)
    archive = tar_gz(members)
    (tmp_path / _cifar10.ARCHIVE).write_bytes(archive)
    sums = {name: hashlib.sha256(content).hexdigest() for name, content in members.items()}
    sums[_cifar10.ARCHIVE] = hashlib.sha256(archive).hexdigest()
    monkeypatch.setattr(_cifar10, "SHA256", sums)
    monkeypatch.setattr(_cifar10, "urlopen", _no_network)
    return tmp_path, batches, archive


def _no_network(*args, **kwargs):  # pragma: no cover - must not be called
    raise AssertionError("fetch_cifar10 tried to download")


# --------------------------------------------------------------------------- #
# fetch_cifar10: reading
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize(
    "subset, names",
    [("train", TRAIN_NAMES), ("test", (TEST_NAME,)), ("all", TRAIN_NAMES + (TEST_NAME,))],
)
def test_fetch_cifar10_reads_archive_records(cifar, subset, names):
    folder, batches, _ = cifar
    bunch = fetch_cifar10(folder, subset=subset)
    X_want, y_want = expected(batches, names)
    assert bunch.data.shape == (len(y_want), 3072) and bunch.data.dtype == np.float32
    assert bunch.target.dtype == np.int64
    np.testing.assert_allclose(bunch.data, X_want, rtol=0, atol=1e-7)
    np.testing.assert_array_equal(bunch.target, y_want)
    assert bunch.data.min() >= 0.0 and bunch.data.max() <= 1.0
    assert bunch.target_names.tolist()[:2] == ["airplane", "automobile"]
    assert len(bunch.feature_names) == 3072 and bunch.feature_names[1024] == "green_0_0"
    assert str(folder) in bunch.DESCR


def test_fetch_cifar10_rows_are_channels_first(cifar):
    folder, batches, _ = cifar
    bunch = fetch_cifar10(folder, subset="test")
    content = batches[TEST_NAME][2]
    # record 1, channel green (1), row 5, column 7, read from the raw bytes
    offset = 1 * 3073 + 1 + 1 * 1024 + 5 * 32 + 7
    assert bunch.data[1, 1024 + 5 * 32 + 7] == np.float32(content[offset] / 255.0)
    assert bunch.images.shape == (3, 3, 32, 32)
    np.testing.assert_array_equal(bunch.images[1, 1, 5, 7], bunch.data[1, 1024 + 5 * 32 + 7])
    assert bunch.target[1] == content[3073]


def test_fetch_cifar10_extracted_folder_matches_archive(cifar):
    folder, batches, _ = cifar
    from_archive = fetch_cifar10(folder, subset="all", return_X_y=True)
    extracted = folder / "extracted"
    (extracted / "cifar-10-batches-bin").mkdir(parents=True)
    for name, (_, _, content) in batches.items():
        (extracted / "cifar-10-batches-bin" / name).write_bytes(content)
    from_folder = fetch_cifar10(extracted, subset="all", return_X_y=True)
    np.testing.assert_array_equal(from_folder[0], from_archive[0])
    np.testing.assert_array_equal(from_folder[1], from_archive[1])


def test_fetch_cifar10_never_unpickles(cifar, monkeypatch):
    def refuse(*args, **kwargs):  # pragma: no cover - must not be called
        raise AssertionError("fetch_cifar10 unpickled something")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, refuse)
    folder, batches, _ = cifar
    X, y = fetch_cifar10(folder, subset="test", return_X_y=True)
    np.testing.assert_array_equal(y, batches[TEST_NAME][0])


def test_fetch_cifar10_uses_skpoison_data(cifar, monkeypatch):
    folder, batches, archive = cifar
    home = folder / "home"
    (home / "cifar10").mkdir(parents=True)
    (home / "cifar10" / _cifar10.ARCHIVE).write_bytes(archive)
    monkeypatch.setenv("SKPOISON_DATA", str(home))
    _, y = fetch_cifar10(subset="test", return_X_y=True)
    np.testing.assert_array_equal(y, batches[TEST_NAME][0])


# --------------------------------------------------------------------------- #
# fetch_cifar10: checks and errors
# --------------------------------------------------------------------------- #
def test_fetch_cifar10_official_sum_rejects_other_archive(tmp_path, monkeypatch):
    monkeypatch.setattr(_cifar10, "urlopen", _no_network)
    batches = make_cifar()
    archive = tar_gz({name: content for name, (_, _, content) in batches.items()})
    (tmp_path / _cifar10.ARCHIVE).write_bytes(archive)
    with pytest.raises(ValueError, match="SHA-256 mismatch") as info:
        fetch_cifar10(tmp_path, subset="test")
    assert _cifar10.SHA256[_cifar10.ARCHIVE] in str(info.value)
    assert "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd" in str(info.value)


def test_fetch_cifar10_rejects_tampered_batch_file(cifar):
    folder, batches, _ = cifar
    extracted = folder / "extracted" / "cifar-10-batches-bin"
    extracted.mkdir(parents=True)
    content = bytearray(batches[TEST_NAME][2])
    content[10] ^= 0xFF
    (extracted / TEST_NAME).write_bytes(bytes(content))
    with pytest.raises(ValueError, match=r"SHA-256 mismatch for .*test_batch\.bin"):
        fetch_cifar10(folder / "extracted", subset="test")


@pytest.mark.parametrize(
    "content, match",
    [(b"\x01" * 3072, "not a positive multiple"), (b"", "holds 0 bytes"),
     (b"\x0a" + b"\x00" * 3072, "found label 10")],
)
def test_fetch_cifar10_rejects_bad_records(cifar, monkeypatch, content, match):
    folder, _, _ = cifar
    extracted = folder / "extracted" / "cifar-10-batches-bin"
    extracted.mkdir(parents=True)
    (extracted / TEST_NAME).write_bytes(content)
    monkeypatch.setitem(_cifar10.SHA256, TEST_NAME, hashlib.sha256(content).hexdigest())
    with pytest.raises(ValueError, match=match):
        fetch_cifar10(folder / "extracted", subset="test")


def test_fetch_cifar10_rejects_link_members_and_non_tar(tmp_path, monkeypatch):
    monkeypatch.setattr(_cifar10, "urlopen", _no_network)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        info = tarfile.TarInfo(f"cifar-10-batches-bin/{TEST_NAME}")
        info.type = tarfile.SYMTYPE
        info.linkname = "/etc/passwd"
        archive.addfile(info)
    for content, match in [(buffer.getvalue(), "not a regular file"),
                           (b"not a tar", "not a valid tar.gz")]:
        (tmp_path / _cifar10.ARCHIVE).write_bytes(content)
        monkeypatch.setitem(_cifar10.SHA256, _cifar10.ARCHIVE, hashlib.sha256(content).hexdigest())
        with pytest.raises(ValueError, match=match):
            fetch_cifar10(tmp_path, subset="test")


def test_fetch_cifar10_missing_names_folder_and_options(tmp_path, monkeypatch):
    monkeypatch.setattr(_cifar10, "urlopen", _no_network)
    folder = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError) as info:
        fetch_cifar10(folder, download_if_missing=False)
    message = str(info.value)
    for part in (str(folder), "SKPOISON_DATA", "--data-home", "cifar-10-binary.tar.gz"):
        assert part in message
    assert not folder.exists()


@pytest.mark.parametrize("subset", ["val", "TRAIN", None])
def test_fetch_cifar10_invalid_subset(tmp_path, subset):
    with pytest.raises(ValueError, match="subset must be one of"):
        fetch_cifar10(tmp_path, subset=subset)


# --------------------------------------------------------------------------- #
# fetch_cifar10: download (urlopen replaced; no network)
# --------------------------------------------------------------------------- #
def test_fetch_cifar10_downloads_atomically(cifar, monkeypatch):
    folder, batches, archive = cifar
    served = []

    def fake_urlopen(url, timeout=None):
        served.append(url)
        return io.BytesIO(archive)

    monkeypatch.setattr(_cifar10, "urlopen", fake_urlopen)
    target = folder / "new" / "deeper"
    _, y = fetch_cifar10(target, subset="test", return_X_y=True)
    np.testing.assert_array_equal(y, batches[TEST_NAME][0])
    assert served == [_cifar10.URL]
    assert sorted(p.name for p in target.iterdir()) == [_cifar10.ARCHIVE]
    assert (target / _cifar10.ARCHIVE).read_bytes() == archive


@pytest.mark.parametrize("failure", ["offline", "wrong content"])
def test_fetch_cifar10_failed_download_leaves_nothing(tmp_path, monkeypatch, failure):
    def fake_urlopen(url, timeout=None):
        if failure == "offline":
            raise URLError("no network")
        return io.BytesIO(b"not the archive")

    monkeypatch.setattr(_cifar10, "urlopen", fake_urlopen)
    target = tmp_path / "a" / "b"
    with pytest.raises(FileNotFoundError, match="downloading it failed") as info:
        fetch_cifar10(target)
    assert str(target) in str(info.value) and "SKPOISON_DATA" in str(info.value)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- #
# fetch_tiny_imagenet on a tiny generated tree
# --------------------------------------------------------------------------- #
WNIDS = ("n01443537", "n01629819", "n01641577")


def gradient_image(shift):
    """A 64x64 RGB image: red grows down the rows, green along the columns."""
    rows, cols = np.mgrid[0:64, 0:64]
    return np.stack(
        [rows * 4, cols * 4, np.full((64, 64), 40 * shift + 20)], axis=-1
    ).astype(np.uint8)


def write_tiny_imagenet(root, n_train=2):
    """Official layout under ``root``; return the pixels and labels written."""
    from PIL import Image

    root.mkdir(parents=True, exist_ok=True)
    (root / "wnids.txt").write_text("\n".join(WNIDS) + "\n")
    train = {}
    for label, wnid in enumerate(WNIDS):
        folder = root / "train" / wnid / "images"
        folder.mkdir(parents=True)
        for k in range(n_train):
            pixels = gradient_image(label + k)
            Image.fromarray(pixels).save(folder / f"{wnid}_{k}.JPEG", quality=100, subsampling=0)
            train[(label, k)] = pixels
    (root / "val" / "images").mkdir(parents=True)
    val_labels = [2, 0, 2]
    lines = []
    for k, label in enumerate(val_labels):
        pixels = gradient_image(k)
        if k == 1:  # a grey image, as some of the release has
            grey = np.full((64, 64), 77, dtype=np.uint8)
            Image.fromarray(grey, mode="L").save(root / "val" / "images" / f"val_{k}.JPEG")
            pixels = np.repeat(grey[:, :, None], 3, axis=2)
        else:
            Image.fromarray(pixels).save(
                root / "val" / "images" / f"val_{k}.JPEG", quality=100, subsampling=0
            )
        lines.append(f"val_{k}.JPEG\t{WNIDS[label]}\t0\t0\t63\t63")
    (root / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    return train, val_labels


def channels_first(pixels):
    return pixels.transpose(2, 0, 1).reshape(-1).astype(np.float64) / 255.0


def test_fetch_tiny_imagenet_train_layout(tmp_path):
    pytest.importorskip("PIL")
    train, _ = write_tiny_imagenet(tmp_path / "tiny-imagenet-200")
    bunch = fetch_tiny_imagenet(tmp_path, subset="train")  # finds the release subfolder
    assert bunch.data.shape == (6, 3 * 64 * 64) and bunch.data.dtype == np.float32
    np.testing.assert_array_equal(bunch.target, [0, 0, 1, 1, 2, 2])
    for i, key in enumerate(sorted(train)):
        # JPEG at quality 100 is nearly lossless; a row/column or channel mix-up is not
        np.testing.assert_allclose(bunch.data[i], channels_first(train[key]), atol=4 / 255)
    assert bunch.images.shape == (6, 3, 64, 64)
    assert bunch.target_names[bunch.target].tolist()[::2] == list(WNIDS)


def test_fetch_tiny_imagenet_val_and_classes(tmp_path):
    pytest.importorskip("PIL")
    write_tiny_imagenet(tmp_path)
    X, y = fetch_tiny_imagenet(tmp_path, subset="val", return_X_y=True)
    np.testing.assert_array_equal(y, [2, 0, 2])
    np.testing.assert_allclose(X[1], 77 / 255, atol=1 / 255)  # grey -> three equal planes
    np.testing.assert_allclose(X[2], channels_first(gradient_image(2)), atol=4 / 255)
    X2, y2 = fetch_tiny_imagenet(tmp_path, subset="val", classes=[WNIDS[2]], return_X_y=True)
    np.testing.assert_array_equal(y2, [2, 2])
    np.testing.assert_array_equal(X2, X[[0, 2]])
    _, y3 = fetch_tiny_imagenet(tmp_path, subset="train", classes=2, return_X_y=True)
    np.testing.assert_array_equal(y3, [0, 0, 1, 1])


def test_fetch_tiny_imagenet_errors(tmp_path, monkeypatch):
    pytest.importorskip("PIL")
    with pytest.raises(FileNotFoundError) as info:
        fetch_tiny_imagenet(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(info.value) and "--data-home" in str(info.value)
    write_tiny_imagenet(tmp_path / "t")
    with pytest.raises(ValueError, match="subset must be"):
        fetch_tiny_imagenet(tmp_path / "t", subset="test")
    with pytest.raises(ValueError, match="Unknown classes"):
        fetch_tiny_imagenet(tmp_path / "t", classes=["n00000000"])
    with pytest.raises(ValueError, match="between 1 and 3"):
        fetch_tiny_imagenet(tmp_path / "t", classes=4)
    with pytest.raises(TypeError, match="list of wnids"):
        fetch_tiny_imagenet(tmp_path / "t", classes=WNIDS[0])
    from PIL import Image

    Image.new("RGB", (32, 64)).save(tmp_path / "t" / "val" / "images" / "val_0.JPEG")
    with pytest.raises(ValueError, match="32x64 pixels"):
        fetch_tiny_imagenet(tmp_path / "t", subset="val")
    monkeypatch.setitem(sys.modules, "PIL", None)
    with pytest.raises(ImportError, match=r"skpoison\[images\]"):
        fetch_tiny_imagenet(tmp_path / "t", subset="val")
