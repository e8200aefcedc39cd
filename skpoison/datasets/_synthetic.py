"""Synthetic data sets of the paper: OR and the 10-d Gaussian problem."""

import numbers

import numpy as np
from sklearn.datasets import make_classification
from sklearn.utils import check_random_state

_OR_POINTS = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
_OR_LABELS = np.array([0, 1, 1, 1], dtype=np.int64)


def make_or(*, n_repeats=50, noise=0.1, random_state=None):
    """Generate the noisy OR data set of the paper.

    The four corners (0, 0) -> 0, (0, 1) -> 1, (1, 0) -> 1 and (1, 1) -> 1 are
    each repeated ``n_repeats`` times and perturbed with isotropic Gaussian
    noise of standard deviation ``noise``. Rows are grouped by corner, in the
    order above.

    Parameters
    ----------
    n_repeats : int, default=50
        Number of copies of each of the four points; must be >= 1.
    noise : float, default=0.1
        Standard deviation of the Gaussian noise added to every coordinate;
        must be >= 0 (0 gives the exact corners).
    random_state : int, RandomState instance or None, default=None
        Seed or generator for the noise, see :term:`random_state`.

    Returns
    -------
    X : ndarray of shape (4 * n_repeats, 2), float64
        The points.
    y : ndarray of shape (4 * n_repeats,), int64
        The OR labels, in {0, 1}.

    Raises
    ------
    ValueError
        If ``n_repeats < 1`` or ``noise`` is negative or not finite.
    TypeError
        If ``n_repeats`` is not an integer or ``noise`` not a real number.

    Examples
    --------
    >>> from skpoison.datasets import make_or
    >>> X, y = make_or(n_repeats=2, noise=0.0)
    >>> X
    array([[0., 0.],
           [0., 0.],
           [0., 1.],
           [0., 1.],
           [1., 0.],
           [1., 0.],
           [1., 1.],
           [1., 1.]])
    >>> y
    array([0, 0, 1, 1, 1, 1, 1, 1])
    """
    if isinstance(n_repeats, bool) or not isinstance(n_repeats, numbers.Integral):
        raise TypeError(
            f"n_repeats must be an integer >= 1, got {n_repeats!r} "
            f"of type {type(n_repeats).__name__}."
        )
    if n_repeats < 1:
        raise ValueError(f"n_repeats must be an integer >= 1, got {n_repeats}.")
    if isinstance(noise, bool) or not isinstance(noise, numbers.Real):
        raise TypeError(
            f"noise must be a real number >= 0, got {noise!r} "
            f"of type {type(noise).__name__}."
        )
    if not np.isfinite(noise) or noise < 0:
        raise ValueError(f"noise must be a finite real number >= 0, got {noise}.")
    rng = check_random_state(random_state)
    n_repeats = int(n_repeats)
    X = np.repeat(_OR_POINTS, n_repeats, axis=0)
    X = X + rng.normal(loc=0.0, scale=float(noise), size=X.shape)
    y = np.repeat(_OR_LABELS, n_repeats)
    return X, y


def make_gaussian(*, n_samples=1000, n_features=10, random_state=None):
    """Generate the paper's Gaussian binary classification data set.

    This is :func:`sklearn.datasets.make_classification` with the given
    ``n_samples``, ``n_features`` and ``random_state`` and its other defaults
    (two informative and two redundant features, two classes).

    Parameters
    ----------
    n_samples : int, default=1000
        Number of samples.
    n_features : int, default=10
        Number of features; must be at least 4 (the informative plus
        redundant features of ``make_classification``'s defaults).
    random_state : int, RandomState instance or None, default=None
        Seed or generator, see :term:`random_state`.

    Returns
    -------
    X : ndarray of shape (n_samples, n_features), float64
        The samples.
    y : ndarray of shape (n_samples,), int
        The labels, in {0, 1}.

    See Also
    --------
    sklearn.datasets.make_classification : The underlying generator.

    Examples
    --------
    >>> from skpoison.datasets import make_gaussian
    >>> X, y = make_gaussian(random_state=0)
    >>> X.shape, sorted(set(y.tolist()))
    ((1000, 10), [0, 1])
    """
    return make_classification(
        n_samples=n_samples, n_features=n_features, random_state=random_state
    )
