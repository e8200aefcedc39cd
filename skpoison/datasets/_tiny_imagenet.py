"""Tiny ImageNet from its official folder layout, decoded with Pillow.

The release (``tiny-imagenet-200.zip``, unzipped) holds ``wnids.txt`` (the
200 class ids, one a line), ``train/<wnid>/images/*.JPEG`` (500 images per
class) and ``val/images/*.JPEG`` with their classes in
``val/val_annotations.txt`` (tab-separated: file name, wnid, bounding box).
The test images have no public labels and are not read.
"""

import numbers

import numpy as np
from sklearn.utils import Bunch

from ._home import data_folder, where_to_put

RELEASE_FOLDER = "tiny-imagenet-200"
URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
IMAGE_SHAPE = (3, 64, 64)
_N_FEATURES = 3 * 64 * 64


def _import_pillow():
    try:
        from PIL import Image
    except ImportError as exc:
        raise ImportError(
            "fetch_tiny_imagenet decodes the JPEG files with Pillow, which is not "
            "installed. Install it with: pip install 'skpoison[images]' (or pip "
            "install Pillow)."
        ) from exc
    return Image


def _root(data_home):
    """The folder holding ``wnids.txt``: the data folder or its release subfolder."""
    folder = data_folder(data_home, "tiny_imagenet")
    for root in (folder, folder / RELEASE_FOLDER):
        if (root / "wnids.txt").is_file():
            return root
    raise FileNotFoundError(
        f"Tiny ImageNet not found in folder {folder}: neither it nor its "
        f"'{RELEASE_FOLDER}' subfolder holds wnids.txt. Download {URL}, unzip it "
        f"into that folder, {where_to_put('tiny_imagenet')}"
    )


def _read_wnids(root):
    path = root / "wnids.txt"
    wnids = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not wnids or len(set(wnids)) != len(wnids):
        raise ValueError(
            f"{path} must list distinct class ids (wnids), one a line; it lists "
            f"{len(wnids)} lines with {len(set(wnids))} distinct ids. Re-fetch the release."
        )
    return wnids


def _kept_classes(classes, wnids):
    """The indices into ``wnids`` of the classes to keep, in wnids.txt order."""
    if classes is None:
        return list(range(len(wnids)))
    if isinstance(classes, numbers.Integral) and not isinstance(classes, bool):
        if not 1 <= classes <= len(wnids):
            raise ValueError(
                f"classes as an int is a number of classes between 1 and {len(wnids)}, "
                f"got {classes}."
            )
        return list(range(int(classes)))
    if isinstance(classes, (str, bytes)):
        raise TypeError(
            f"classes must be None, an int or a list of wnids, got {classes!r}; "
            f"write [{classes!r}] for one class."
        )
    index = {wnid: i for i, wnid in enumerate(wnids)}
    unknown = [c for c in classes if c not in index]
    if unknown:
        raise ValueError(
            f"Unknown classes {unknown}: they are not in wnids.txt (e.g. {wnids[:3]})."
        )
    kept = sorted({index[c] for c in classes})
    if not kept:
        raise ValueError("classes must name at least one class.")
    return kept


def _train_files(root, wnids, kept):
    files, labels = [], []
    for label in kept:
        folder = root / "train" / wnids[label] / "images"
        if not folder.is_dir():
            raise FileNotFoundError(
                f"Tiny ImageNet training folder {folder} is missing; unzip the whole "
                f"release ({URL}) again."
            )
        names = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".jpeg")
        files.extend(names)
        labels.extend([label] * len(names))
    return files, labels


def _val_files(root, wnids, kept):
    path = root / "val" / "val_annotations.txt"
    if not path.is_file():
        raise FileNotFoundError(
            f"Tiny ImageNet validation labels {path} are missing; unzip the whole "
            f"release ({URL})."
        )
    index = {wnid: i for i, wnid in enumerate(wnids)}
    keep = set(kept)
    files, labels = [], []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 2 or fields[1] not in index:
            raise ValueError(
                f"{path}, line {number}: expected '<file>\\t<wnid>\\t...' with a wnid "
                f"from wnids.txt, got {line!r}. Re-fetch the release."
            )
        label = index[fields[1]]
        if label in keep:
            files.append(root / "val" / "images" / fields[0])
            labels.append(label)
    return files, labels


def _decode(files, Image):
    """Flat float32 rows (n, 12288), channels first, in [0, 1]."""
    X = np.empty((len(files), _N_FEATURES), dtype=np.float32)
    for i, path in enumerate(files):
        with Image.open(path) as image:
            if image.size != (64, 64):
                raise ValueError(
                    f"{path} is {image.size[0]}x{image.size[1]} pixels; Tiny ImageNet "
                    "images are 64x64. Re-fetch the release."
                )
            pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
        X[i] = pixels.transpose(2, 0, 1).reshape(-1)
    X /= np.float32(255.0)
    return X


def fetch_tiny_imagenet(data_home=None, *, subset="train", classes=None, return_X_y=False):
    """Load Tiny ImageNet from its official folder layout.

    Reads ``wnids.txt``, the training images ``train/<wnid>/images/*.JPEG``
    and the validation images listed in ``val/val_annotations.txt`` with
    Pillow (the optional extra ``pip install 'skpoison[images]'``). Grey
    images are converted to RGB. Nothing is downloaded: unzip the release
    (http://cs231n.stanford.edu/tiny-imagenet-200.zip) into ``data_home``.

    Parameters
    ----------
    data_home : str or path-like, default=None
        The folder holding ``wnids.txt``, or holding the unzipped
        ``tiny-imagenet-200`` folder. None means
        ``$SKPOISON_DATA/tiny_imagenet`` when the environment variable
        ``SKPOISON_DATA`` is set, else ``~/skpoison_data/tiny_imagenet``.
    subset : {"train", "val"}, default="train"
        The 100,000 training images (classes in ``wnids.txt`` order, files
        sorted by name within a class) or the 10,000 validation images (in
        ``val_annotations.txt`` order). The test images have no labels.
    classes : None, int or list of str, default=None
        Classes to keep: None keeps all 200; an int ``k`` keeps the first
        ``k`` of ``wnids.txt``; a list keeps the named wnids. Labels keep
        their index in ``wnids.txt``. The full training set takes about
        4.9 GB as float32, so small experiments keep a few classes.
    return_X_y : bool, default=False
        If True, return ``(X, y)`` instead of a Bunch.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        Dictionary-like object with attributes

        - ``data`` : ndarray of shape (n_samples, 12288), float32 in [0, 1],
          channels first (red plane, green plane, blue plane, row by row);
        - ``target`` : ndarray of shape (n_samples,), int64, the index of the
          class in ``wnids.txt``;
        - ``images`` : ndarray of shape (n_samples, 3, 64, 64), a view of
          ``data``;
        - ``target_names`` : ndarray of str, all wnids, so that
          ``target_names[target]`` is each image's wnid;
        - ``DESCR`` : str, a description of the data set.
    (X, y) : tuple of ndarray
        Returned instead when ``return_X_y=True``.

    Raises
    ------
    FileNotFoundError
        If the release is not in the folder; the message names the folder.
    ImportError
        If Pillow is not installed.
    ValueError
        If ``subset`` or ``classes`` is invalid, or a file breaks the layout.

    See Also
    --------
    fetch_cifar10 : CIFAR-10 from its binary release.

    Examples
    --------
    With the unzipped release in ``$SKPOISON_DATA/tiny_imagenet``:

    >>> from skpoison.datasets import fetch_tiny_imagenet
    >>> X, y = fetch_tiny_imagenet(subset="val", classes=2,
    ...                            return_X_y=True)  # doctest: +SKIP
    >>> X.shape, sorted(set(y.tolist()))  # doctest: +SKIP
    ((100, 12288), [0, 1])

    A folder without the release gives a clear error:

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     try:
    ...         fetch_tiny_imagenet(folder)
    ...     except FileNotFoundError as exc:
    ...         print("SKPOISON_DATA" in str(exc) and folder in str(exc))
    True
    """
    if not isinstance(subset, str) or subset not in ("train", "val"):
        raise ValueError(f"subset must be 'train' or 'val', got {subset!r}.")
    root = _root(data_home)
    wnids = _read_wnids(root)
    kept = _kept_classes(classes, wnids)
    Image = _import_pillow()
    reader = _train_files if subset == "train" else _val_files
    files, labels = reader(root, wnids, kept)
    X = _decode(files, Image)
    y = np.asarray(labels, dtype=np.int64)
    if return_X_y:
        return X, y
    descr = (
        "Tiny ImageNet (the 200-class, 64x64 subset of ImageNet of Stanford's "
        "CS231n), pixels scaled to [0, 1] as flat rows of 12288 values, channels "
        f"first, read from {root}. Subset: {subset!r}; {len(kept)} classes; "
        f"{len(y)} samples."
    )
    return Bunch(
        data=X,
        target=y,
        images=X.reshape(len(X), *IMAGE_SHAPE),
        target_names=np.array(wnids),
        DESCR=descr,
    )
