"""MNIST from its original IDX files, checked against known SHA-256 sums.

Nothing here unpickles anything and nothing is cached on disk besides the
downloaded ``.gz`` archives, which are written atomically.
"""

import contextlib
import gzip
import hashlib
import math
import os
import zlib
from pathlib import Path
from urllib.request import urlopen

import numpy as np
from sklearn.utils import Bunch

from ._digits import _check_digits
from ._download import save_verified

# The four files of each subset: (images, labels).
_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

# SHA-256 of the official files: the gzip archives as distributed, and the
# uncompressed IDX content (for folders that hold the raw files).
_SHA256 = {
    "train-images-idx3-ubyte.gz": (
        "0b367032e93c5d0cea0925647cfdb18614af8ee15f83e6f2fc2ad904a6835971"
    ),
    "train-labels-idx1-ubyte.gz": (
        "1787548bbe0bff1ec2ecdc0ef292b02df999e2d1a6002d27500982c652b17203"
    ),
    "t10k-images-idx3-ubyte.gz": (
        "1a1a05eab793c14bb050b398624a11b0ffd1a2953baed553b1b9bd079e2a20be"
    ),
    "t10k-labels-idx1-ubyte.gz": (
        "b91679a0acfe4ba0e50a2437a903084cba1f5f92592b016a25a7dfd00455798b"
    ),
    "train-images-idx3-ubyte": (
        "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"
    ),
    "train-labels-idx1-ubyte": (
        "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"
    ),
    "t10k-images-idx3-ubyte": (
        "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"
    ),
    "t10k-labels-idx1-ubyte": (
        "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"
    ),
}

# Public mirrors of the gzip archives, tried in order.
_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
_DOWNLOAD_TIMEOUT_S = 60
_MAX_DOWNLOAD_BYTES = 64 * 1024 * 1024  # the largest archive is about 10 MB

# IDX type codes (third byte of the magic number) -> big-endian numpy dtype.
_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def _parse_idx(buffer, name="<buffer>"):
    """Parse the bytes of an (uncompressed) IDX file into an ndarray.

    Parameters
    ----------
    buffer : bytes-like
        The whole file content.
    name : str
        Name used in error messages.

    Returns
    -------
    array : ndarray
        A read-only view of ``buffer`` with the dims and dtype of the header.

    Raises
    ------
    ValueError
        If the magic number is wrong or the size disagrees with the header.
    """
    n_bytes = len(buffer)
    if n_bytes < 4:
        raise ValueError(
            f"{name} is not an IDX file: it holds {n_bytes} bytes, fewer than the "
            "4 bytes of the magic number."
        )
    magic = bytes(buffer[:4])
    if magic[0] != 0 or magic[1] != 0 or magic[2] not in _IDX_DTYPES:
        raise ValueError(
            f"{name} is not an IDX file: bad magic number 0x{magic.hex()} (expected "
            "two zero bytes, a type code in "
            f"{[hex(c) for c in _IDX_DTYPES]} and the number of dimensions)."
        )
    ndim = magic[3]
    if ndim == 0:
        raise ValueError(f"{name} is not a valid IDX file: it declares 0 dimensions.")
    header = 4 + 4 * ndim
    if n_bytes < header:
        raise ValueError(
            f"{name} is truncated: its header declares {ndim} dimensions "
            f"({header} header bytes) but the file holds {n_bytes} bytes."
        )
    dims = tuple(int(d) for d in np.frombuffer(buffer, dtype=">u4", count=ndim, offset=4))
    dtype = _IDX_DTYPES[magic[2]]
    expected = header + math.prod(dims) * dtype.itemsize
    if n_bytes != expected:
        raise ValueError(
            f"{name} is corrupt: its header declares dims {dims} of {dtype.name} "
            f"({expected} bytes in all) but the file holds {n_bytes} bytes."
        )
    return np.frombuffer(buffer, dtype=dtype, offset=header).reshape(dims)


def _mnist_folder(data_home):
    """The folder that holds (or will hold) the MNIST files."""
    if data_home is not None:
        return Path(os.fspath(data_home)).expanduser()
    env = os.environ.get("SKPOISON_DATA")
    if env:
        return Path(env).expanduser() / "mnist"
    return Path.home() / "skpoison_data" / "mnist"


class MNISTNotFoundError(FileNotFoundError):
    """A missing MNIST file; ``folder``, ``file`` and ``reason`` let a caller (the
    command line) phrase its own advice."""

    def __init__(self, folder, base, reason):
        self.folder, self.file, self.reason = folder, base, reason
        super().__init__(
            f"MNIST file {base}.gz (or uncompressed {base}) not found in folder "
            f"{folder}{reason}. Put the four MNIST IDX files in that folder, set the "
            "SKPOISON_DATA environment variable to a folder whose 'mnist' subfolder "
            "holds them, or pass data_home=<folder holding them>."
        )


def _check_sha256(content, path):
    want = _SHA256[path.name]
    got = hashlib.sha256(content).hexdigest()
    if got != want:
        raise ValueError(
            f"SHA-256 mismatch for {path}: got {got}, expected {want}. The file is "
            "corrupt or not the official MNIST file; delete it and re-fetch it "
            "(fetch_mnist downloads missing files)."
        )


def _download_one(url, dest):
    """Download ``url`` to ``dest`` atomically, verifying its SHA-256."""
    with urlopen(url, timeout=_DOWNLOAD_TIMEOUT_S) as response:
        save_verified(
            response, dest, _SHA256[dest.name], max_bytes=_MAX_DOWNLOAD_BYTES,
            what="an MNIST archive",
        )


def _download(dest):
    """Fetch the archive ``dest.name`` from the first mirror that serves it.

    Folders created for it are removed again when every mirror fails (and they are
    still empty), so a failed download leaves nothing behind.
    """
    created = []
    folder = dest.parent
    while not folder.exists():
        created.append(folder)
        folder = folder.parent
    dest.parent.mkdir(parents=True, exist_ok=True)
    errors = []
    for mirror in _MIRRORS:
        url = mirror + dest.name
        try:
            _download_one(url, dest)
            return
        except (OSError, ValueError) as exc:
            errors.append(f"{url}: {exc}")
        except BaseException:
            _remove_empty(created)
            raise
    _remove_empty(created)
    raise OSError("; ".join(errors))


def _remove_empty(folders):
    """Remove ``folders`` (deepest first), each only if it is empty."""
    for folder in folders:
        with contextlib.suppress(OSError):
            folder.rmdir()


def _load_idx(folder, base, download_if_missing):
    """Read, verify and parse ``base`` (raw or ``.gz``) from ``folder``."""
    raw_path = folder / base
    gz_path = folder / f"{base}.gz"
    if raw_path.is_file():
        path = raw_path
    elif gz_path.is_file():
        path = gz_path
    elif download_if_missing:
        try:
            _download(gz_path)
        except OSError as exc:
            raise MNISTNotFoundError(
                folder, base, f", and downloading it failed ({exc})"
            ) from exc
        path = gz_path
    else:
        raise MNISTNotFoundError(folder, base, " (download_if_missing=False)")
    content = path.read_bytes()
    _check_sha256(content, path)
    if path is gz_path:
        try:
            content = gzip.decompress(content)
        except (OSError, EOFError, zlib.error) as exc:
            raise ValueError(
                f"{path} is not a valid gzip file ({exc}); delete it and re-fetch it."
            ) from exc
    return _parse_idx(content, str(path))


def _load_part(folder, part, kept, download_if_missing):
    """Images (n, 28, 28) uint8 and labels (n,) uint8 of one MNIST part."""
    images_name, labels_name = _FILES[part]
    images = _load_idx(folder, images_name, download_if_missing)
    labels = _load_idx(folder, labels_name, download_if_missing)
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
        raise ValueError(
            f"{folder / images_name}: expected uint8 images of shape (n, 28, 28), "
            f"got {images.dtype} of shape {images.shape}; delete it and re-fetch it."
        )
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise ValueError(
            f"{folder / labels_name}: expected a 1-d uint8 label vector, got "
            f"{labels.dtype} of shape {labels.shape}; delete it and re-fetch it."
        )
    if len(images) != len(labels):
        raise ValueError(
            f"MNIST {part} files in {folder} disagree: {len(images)} images but "
            f"{len(labels)} labels; delete them and re-fetch them."
        )
    if labels.size and labels.max() > 9:
        raise ValueError(
            f"{folder / labels_name}: labels must be digits 0-9, found "
            f"{int(labels.max())}; delete it and re-fetch it."
        )
    if kept is not None:
        mask = np.isin(labels, kept)
        images, labels = images[mask], labels[mask]
    return images, labels


def fetch_mnist(
    data_home=None,
    *,
    subset="train",
    digits=None,
    download_if_missing=True,
    return_X_y=False,
):
    """Load MNIST from its IDX files, downloading them when missing.

    The four files ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
    ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte``, each either
    gzip-compressed (``.gz``) or raw, are read from ``data_home``. Every file
    read is checked against its known SHA-256 sum. Missing files are
    downloaded as ``.gz`` archives from a public mirror, verified and written
    atomically; nothing else is written to disk.

    Parameters
    ----------
    data_home : str or path-like, default=None
        The folder holding the MNIST files. None means
        ``$SKPOISON_DATA/mnist`` when the environment variable
        ``SKPOISON_DATA`` is set, else ``~/skpoison_data/mnist``.
    subset : {"train", "test", "all"}, default="train"
        The 60,000 training images, the 10,000 test images, or both
        (training first).
    digits : tuple of int, default=None
        Classes to keep, e.g. ``(1, 7)`` for MNIST-17. None keeps all ten.
        Labels keep their digit values.
    download_if_missing : bool, default=True
        Whether to download missing files. If False, a missing file raises.
    return_X_y : bool, default=False
        If True, return ``(X, y)`` instead of a Bunch.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        Dictionary-like object with attributes

        - ``data`` : ndarray of shape (n_samples, 784), float32 in [0, 1];
        - ``target`` : ndarray of shape (n_samples,), int64;
        - ``images`` : ndarray of shape (n_samples, 28, 28), a view of ``data``;
        - ``feature_names`` : list of 784 str;
        - ``target_names`` : ndarray, the kept digit values;
        - ``DESCR`` : str, a description of the data set.
    (X, y) : tuple of ndarray
        Returned instead when ``return_X_y=True``.

    Raises
    ------
    FileNotFoundError
        If a file is missing and ``download_if_missing=False``, or it could
        not be downloaded (e.g. offline); the message names the folder.
    ValueError
        If a file's SHA-256 sum is not the known one (delete it and re-fetch
        it), a file is not a valid IDX file, or ``subset`` or ``digits`` is
        invalid.

    Examples
    --------
    With the data in ``$SKPOISON_DATA/mnist``:

    >>> from skpoison.datasets import fetch_mnist
    >>> X, y = fetch_mnist(subset="test", digits=(1, 7),
    ...                    return_X_y=True)  # doctest: +SKIP
    >>> X.shape, X.dtype, sorted(set(y.tolist()))  # doctest: +SKIP
    ((2163, 784), dtype('float32'), [1, 7])

    A folder without the files and no download gives a clear error:

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     try:
    ...         fetch_mnist(folder, download_if_missing=False)
    ...     except FileNotFoundError as exc:
    ...         print("SKPOISON_DATA" in str(exc) and folder in str(exc))
    True
    """
    if not isinstance(subset, str) or subset not in ("train", "test", "all"):
        raise ValueError(
            f"subset must be one of 'train', 'test' or 'all', got {subset!r}."
        )
    kept = None if digits is None else _check_digits(digits, np.arange(10))
    folder = _mnist_folder(data_home)
    parts = ("train", "test") if subset == "all" else (subset,)
    loaded = [_load_part(folder, part, kept, download_if_missing) for part in parts]
    if len(loaded) == 1:
        images, labels = loaded[0]
    else:
        images = np.concatenate([im for im, _ in loaded])
        labels = np.concatenate([lab for _, lab in loaded])
    X = images.reshape(len(images), 28 * 28).astype(np.float32)
    X /= np.float32(255.0)
    y = labels.astype(np.int64)
    if return_X_y:
        return X, y
    target_names = np.arange(10, dtype=np.int64) if kept is None else kept
    descr = (
        "MNIST handwritten digits (LeCun, Cortes, Burges), 28x28 grey levels "
        f"scaled to [0, 1], read from the IDX files in {folder}. Subset: "
        f"{subset!r}; classes kept: {target_names.tolist()}; {len(y)} samples."
    )
    return Bunch(
        data=X,
        target=y,
        images=X.reshape(len(X), 28, 28),
        feature_names=[f"pixel_{r}_{c}" for r in range(28) for c in range(28)],
        target_names=target_names,
        DESCR=descr,
    )
