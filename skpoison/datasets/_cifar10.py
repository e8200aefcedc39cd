"""CIFAR-10 from its official binary release, checked against known SHA-256 sums.

The binary release (``cifar-10-binary.tar.gz``) holds six batch files of
fixed-length records: one label byte, then 3072 pixel bytes (the 1024 red,
then 1024 green, then 1024 blue values of a 32x32 image, row by row). The
records are read straight from the archive, in memory, or from the folder
``cifar-10-batches-bin`` it extracts to. Nothing is unpickled and nothing is
written to disk besides the downloaded archive, which is written atomically.
"""

import contextlib
import hashlib
import io
import tarfile
import zlib
from urllib.request import urlopen

import numpy as np
from sklearn.utils import Bunch

from ._download import save_verified
from ._home import data_folder, where_to_put

ARCHIVE = "cifar-10-binary.tar.gz"
BATCH_FOLDER = "cifar-10-batches-bin"
BATCHES = {
    "train": tuple(f"data_batch_{i}.bin" for i in range(1, 6)),
    "test": ("test_batch.bin",),
}
CLASS_NAMES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
IMAGE_SHAPE = (3, 32, 32)
_PIXELS = 3 * 32 * 32
_RECORD_BYTES = 1 + _PIXELS

# SHA-256 of the official archive (170,052,171 bytes; its MD5, the sum published
# on the CIFAR page, is c32a1d4ab5d03f1284b67883e8d87530) and of the batch files
# it holds, for folders where the archive was extracted.
SHA256 = {
    ARCHIVE: "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd",
    "data_batch_1.bin": "cee916563c9f80d84e3cc88e17fdc0941787f1244f00a67874d45b261883ada5",
    "data_batch_2.bin": "a591ca11fa1708a91ee40f54b3da4784ccd871ecf2137de63f51ada8b3fa57ed",
    "data_batch_3.bin": "bbe8596564c0f86427f876058170b84dac6670ddf06d79402899d93ceea26f67",
    "data_batch_4.bin": "014e562d6e23c72197cc727519169a60359f5eccd8945ad5a09d710285ff4e48",
    "data_batch_5.bin": "755304fc0b379caeae8c14f0dac912fbc7d6cd469eb67a1029a08a39453a9add",
    "test_batch.bin": "8e2eb146ae340b09e24670f29cabc6326dba54da8789dab6768acf480273f65b",
}

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
_DOWNLOAD_TIMEOUT_S = 60
_MAX_DOWNLOAD_BYTES = 256 * 1024 * 1024  # the archive is about 162 MiB


def _parse_batch(content, name):
    """Labels (n,) and pixel rows (n, 3072), both uint8, of one batch file."""
    n_bytes = len(content)
    if n_bytes == 0 or n_bytes % _RECORD_BYTES:
        raise ValueError(
            f"{name} is not a CIFAR-10 batch file: it holds {n_bytes} bytes, not a "
            f"positive multiple of the {_RECORD_BYTES}-byte record (1 label byte and "
            f"{_PIXELS} pixel bytes); delete it and re-fetch it."
        )
    records = np.frombuffer(content, dtype=np.uint8).reshape(-1, _RECORD_BYTES)
    labels = records[:, 0]
    if labels.max() >= len(CLASS_NAMES):
        raise ValueError(
            f"{name} is not a CIFAR-10 batch file: found label {int(labels.max())}, "
            f"labels are 0-{len(CLASS_NAMES) - 1}; delete it and re-fetch it."
        )
    return labels, records[:, 1:]


def _check_sha256(content, path, key):
    want = SHA256[key]
    got = hashlib.sha256(content).hexdigest()
    if got != want:
        raise ValueError(
            f"SHA-256 mismatch for {path}: got {got}, expected {want}. The file is "
            "corrupt or not the official CIFAR-10 binary release; delete it and "
            "re-fetch it (fetch_cifar10 downloads a missing archive)."
        )


def _missing_message(folder, reason):
    return (
        f"CIFAR-10 archive {ARCHIVE} (or the folder {BATCH_FOLDER} extracted from it) "
        f"not found in folder {folder}{reason}. Put the archive from {URL} in that "
        f"folder, {where_to_put('cifar10')}"
    )


def _make_folders(folder, created):
    """Create ``folder`` and its missing parents, appending each to ``created``."""
    missing = []
    path = folder
    while not path.exists():
        missing.append(path)
        if path.parent == path:
            break
        path = path.parent
    for path in reversed(missing):
        path.mkdir()
        created.append(path)


def _download(dest):
    """Fetch the archive to ``dest`` atomically, verifying its SHA-256.

    On failure nothing is left behind: no partial file, no folder created here.
    """
    want = SHA256[ARCHIVE]
    created = []
    try:
        _make_folders(dest.parent, created)
        with urlopen(URL, timeout=_DOWNLOAD_TIMEOUT_S) as response:
            try:
                save_verified(
                    response, dest, want, max_bytes=_MAX_DOWNLOAD_BYTES,
                    what="the CIFAR-10 archive",
                )
            except ValueError as exc:
                raise ValueError(f"{URL}: {exc}") from None
    except BaseException:
        for path in reversed(created):
            with contextlib.suppress(OSError):
                path.rmdir()
        raise


def _read_from_folder(batch_folder, names):
    batches = []
    for name in names:
        path = batch_folder / name
        content = path.read_bytes()
        _check_sha256(content, path, name)
        batches.append(_parse_batch(content, str(path)))
    return batches


def _read_from_archive(path, names):
    content = path.read_bytes()
    _check_sha256(content, path, ARCHIVE)
    batches = []
    try:
        with tarfile.open(fileobj=io.BytesIO(content), mode="r:gz") as archive:
            for name in names:
                member_name = f"{BATCH_FOLDER}/{name}"
                try:
                    member = archive.getmember(member_name)
                except KeyError:
                    raise ValueError(
                        f"{path} has no member {member_name}; it is not the CIFAR-10 "
                        "binary release. Delete it and re-fetch it."
                    ) from None
                if not member.isfile():
                    raise ValueError(
                        f"{path}: member {member_name} is not a regular file; delete "
                        "the archive and re-fetch it."
                    )
                data = archive.extractfile(member).read()
                batches.append(_parse_batch(data, f"{path}:{member_name}"))
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise ValueError(
            f"{path} is not a valid tar.gz archive ({exc}); delete it and re-fetch it."
        ) from exc
    return batches


def _load(folder, names, download_if_missing):
    """(labels, pixels) of each batch in ``names``, from the folder or the archive."""
    batch_folder = folder / BATCH_FOLDER
    if all((batch_folder / name).is_file() for name in names):
        return _read_from_folder(batch_folder, names)
    archive = folder / ARCHIVE
    if not archive.is_file():
        if not download_if_missing:
            raise FileNotFoundError(_missing_message(folder, " (download_if_missing=False)"))
        try:
            _download(archive)
        except (OSError, ValueError) as exc:
            raise FileNotFoundError(
                _missing_message(folder, f", and downloading it failed ({exc})")
            ) from exc
    return _read_from_archive(archive, names)


def fetch_cifar10(
    data_home=None,
    *,
    subset="train",
    download_if_missing=True,
    return_X_y=False,
):
    """Load CIFAR-10 from its official binary release, downloading it when missing.

    The records are read from ``cifar-10-binary.tar.gz`` in ``data_home``
    (in memory, nothing is extracted) or, when present, from the folder
    ``cifar-10-batches-bin`` extracted from it. The archive, or each batch
    file read from the folder, is checked against its known SHA-256 sum. The
    files are fixed-length binary records; nothing is unpickled. A missing
    archive is downloaded from the dataset authors' page, verified and written
    atomically; nothing else is written to disk.

    Parameters
    ----------
    data_home : str or path-like, default=None
        The folder holding the archive (or the extracted folder). None means
        ``$SKPOISON_DATA/cifar10`` when the environment variable
        ``SKPOISON_DATA`` is set, else ``~/skpoison_data/cifar10``.
    subset : {"train", "test", "all"}, default="train"
        The 50,000 training images (``data_batch_1.bin`` to
        ``data_batch_5.bin``), the 10,000 test images (``test_batch.bin``), or
        both (training first).
    download_if_missing : bool, default=True
        Whether to download the archive when neither it nor the extracted
        batch files are there. If False, they must be there.
    return_X_y : bool, default=False
        If True, return ``(X, y)`` instead of a Bunch.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        Dictionary-like object with attributes

        - ``data`` : ndarray of shape (n_samples, 3072), float32 in [0, 1],
          channels first (the 1024 red, 1024 green, then 1024 blue values
          of each image, row by row);
        - ``target`` : ndarray of shape (n_samples,), int64 in 0-9;
        - ``images`` : ndarray of shape (n_samples, 3, 32, 32), a view of
          ``data``;
        - ``feature_names`` : list of 3072 str;
        - ``target_names`` : ndarray of str, the ten class names;
        - ``DESCR`` : str, a description of the data set.
    (X, y) : tuple of ndarray
        Returned instead when ``return_X_y=True``.

    Raises
    ------
    FileNotFoundError
        If the files are missing and ``download_if_missing=False``, or the
        archive could not be downloaded (e.g. offline); the message names the
        folder.
    ValueError
        If a file's SHA-256 sum is not the known one (delete it and re-fetch
        it), a file is not in the CIFAR-10 binary format, or ``subset`` is
        invalid.

    See Also
    --------
    fetch_mnist : MNIST from its IDX files, with the same checks.

    Examples
    --------
    With the archive in ``$SKPOISON_DATA/cifar10``:

    >>> from skpoison.datasets import fetch_cifar10
    >>> X, y = fetch_cifar10(subset="test", return_X_y=True)  # doctest: +SKIP
    >>> X.shape, X.dtype, y[:5].tolist()  # doctest: +SKIP
    ((10000, 3072), dtype('float32'), [3, 8, 8, 0, 6])

    A folder without the files and no download gives a clear error:

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     try:
    ...         fetch_cifar10(folder, download_if_missing=False)
    ...     except FileNotFoundError as exc:
    ...         print("SKPOISON_DATA" in str(exc) and folder in str(exc))
    True
    """
    if not isinstance(subset, str) or subset not in ("train", "test", "all"):
        raise ValueError(
            f"subset must be one of 'train', 'test' or 'all', got {subset!r}."
        )
    folder = data_folder(data_home, "cifar10")
    names = BATCHES["train"] + BATCHES["test"] if subset == "all" else BATCHES[subset]
    batches = _load(folder, names, download_if_missing)
    labels = np.concatenate([lab for lab, _ in batches])
    pixels = np.concatenate([pix for _, pix in batches])
    X = pixels.astype(np.float32)
    X /= np.float32(255.0)
    y = labels.astype(np.int64)
    if return_X_y:
        return X, y
    descr = (
        "CIFAR-10 (Krizhevsky 2009), 32x32 colour images in ten classes, pixels "
        "scaled to [0, 1] as flat rows of 3072 values, channels first, read from "
        f"the binary release in {folder}. Subset: {subset!r}; {len(y)} samples."
    )
    return Bunch(
        data=X,
        target=y,
        images=X.reshape(len(X), *IMAGE_SHAPE),
        feature_names=[
            f"{channel}_{r}_{c}"
            for channel in ("red", "green", "blue")
            for r in range(32)
            for c in range(32)
        ],
        target_names=np.array(CLASS_NAMES),
        DESCR=descr,
    )
