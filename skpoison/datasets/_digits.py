"""The 8x8 handwritten digits of scikit-learn, scaled to [0, 1]."""

import numbers

import numpy as np
from sklearn import datasets as _sk_datasets
from sklearn.utils import Bunch


def _check_digits(digits, valid):
    """Validate a subset of class values and return it as a sorted int array.

    Parameters
    ----------
    digits : None, int or iterable of int
        The class values to keep; None keeps every class.
    valid : array-like of int
        The class values that exist in the data set.

    Returns
    -------
    kept : ndarray of int64
        The sorted, de-duplicated class values to keep (``valid`` when
        ``digits`` is None).
    """
    valid = np.asarray(valid, dtype=np.int64)
    if digits is None:
        return valid
    if isinstance(digits, numbers.Integral) and not isinstance(digits, bool):
        digits = (digits,)
    if isinstance(digits, (str, bytes)):
        raise TypeError(
            f"digits must be None or a tuple of class values, got {digits!r}."
        )
    try:
        values = list(digits)
    except TypeError:
        raise TypeError(
            f"digits must be None or a tuple of class values, got {digits!r}."
        ) from None
    if len(values) == 0:
        raise ValueError(
            "digits must name at least one class; valid values are "
            f"{valid.tolist()}."
        )
    bad = [
        v
        for v in values
        if isinstance(v, bool)
        or not isinstance(v, numbers.Integral)
        or int(v) not in set(valid.tolist())
    ]
    if bad:
        raise ValueError(
            f"Unknown digit value(s) {bad!r} in digits={digits!r}; valid values "
            f"are {valid.tolist()}."
        )
    return np.unique(np.asarray([int(v) for v in values], dtype=np.int64))


def load_digits(*, digits=None, return_X_y=False):
    """Load scikit-learn's 8x8 digits with features scaled to [0, 1].

    This is :func:`sklearn.datasets.load_digits` (shipped with scikit-learn,
    no download) with every pixel divided by 16, so that the features are
    float64 values in [0, 1], optionally restricted to a subset of classes.

    Parameters
    ----------
    digits : tuple of int, default=None
        Class values to keep, e.g. ``(1, 7)``. None keeps all ten classes.
        Labels keep their original digit values (they are not re-encoded).
    return_X_y : bool, default=False
        If True, return ``(X, y)`` instead of a Bunch.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        Dictionary-like object with attributes

        - ``data`` : ndarray of shape (n_samples, 64), float64 in [0, 1];
        - ``target`` : ndarray of shape (n_samples,), int, the digit values;
        - ``feature_names`` : list of 64 str;
        - ``target_names`` : ndarray, the kept digit values;
        - ``images`` : ndarray of shape (n_samples, 8, 8), float64 in [0, 1];
        - ``DESCR`` : str, a description of the data set.
    (X, y) : tuple of ndarray
        Returned instead when ``return_X_y=True``.

    Raises
    ------
    ValueError
        If ``digits`` contains a value that is not a digit 0-9.

    See Also
    --------
    sklearn.datasets.load_digits : The unscaled original.

    Examples
    --------
    >>> from skpoison.datasets import load_digits
    >>> X, y = load_digits(return_X_y=True)
    >>> X.shape, float(X.min()), float(X.max())
    ((1797, 64), 0.0, 1.0)
    >>> bunch = load_digits(digits=(1, 7))
    >>> bunch.data.shape, bunch.target_names.tolist()
    ((361, 64), [1, 7])
    """
    raw = _sk_datasets.load_digits()
    kept = _check_digits(digits, raw.target_names)
    target = np.asarray(raw.target, dtype=np.int64)
    if digits is None:
        mask = slice(None)
    else:
        mask = np.isin(target, kept)
    X = np.asarray(raw.data[mask], dtype=np.float64) / 16.0
    y = target[mask].copy()
    if return_X_y:
        return X, y
    images = np.asarray(raw.images[mask], dtype=np.float64) / 16.0
    descr = (
        "Optical recognition of handwritten digits (scikit-learn's load_digits), "
        "8x8 images with pixel values divided by 16 so that they lie in [0, 1]. "
        f"Classes kept: {kept.tolist()}.\n\n" + raw.DESCR
    )
    return Bunch(
        data=X,
        target=y,
        feature_names=list(raw.feature_names),
        target_names=kept,
        images=images,
        DESCR=descr,
    )
