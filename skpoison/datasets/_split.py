"""The paper's seeded, stratified train/validation split."""

import numbers

import numpy as np
from sklearn.model_selection import train_test_split


def train_validation_split(X, y, *, validation_fraction=0.3, random_state=0):
    """Split data into stratified training and validation parts (70/30 by default).

    A thin wrapper of :func:`sklearn.model_selection.train_test_split` with
    ``stratify=y``, as in the paper's protocol.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        The samples.
    y : array-like of shape (n_samples,)
        The labels, used for stratification.
    validation_fraction : float, default=0.3
        Fraction of the samples put in the validation part; ``0 < f < 1``.
    random_state : int, RandomState instance or None, default=0
        Seed of the shuffle, see :term:`random_state`.

    Returns
    -------
    X_train, X_val, y_train, y_val : ndarray
        The training and validation parts.

    Raises
    ------
    ValueError
        If ``validation_fraction`` is not strictly between 0 and 1, or a
        class has too few samples to be stratified.

    Examples
    --------
    >>> import numpy as np
    >>> from skpoison.datasets import train_validation_split
    >>> X = np.arange(20).reshape(10, 2)
    >>> y = np.array([0, 1] * 5)
    >>> X_train, X_val, y_train, y_val = train_validation_split(X, y)
    >>> X_train.shape, X_val.shape
    ((7, 2), (3, 2))
    """
    if isinstance(validation_fraction, bool) or not isinstance(
        validation_fraction, numbers.Real
    ):
        raise TypeError(
            "validation_fraction must be a float strictly between 0 and 1, got "
            f"{validation_fraction!r}."
        )
    if not (np.isfinite(validation_fraction) and 0 < validation_fraction < 1):
        raise ValueError(
            "validation_fraction must be strictly between 0 and 1, got "
            f"{validation_fraction}."
        )
    return train_test_split(
        X,
        y,
        test_size=float(validation_fraction),
        random_state=random_state,
        stratify=y,
    )
