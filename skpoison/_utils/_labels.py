"""The label-flip rule shared by the label-flip target and the label-flip attack."""

import numpy as np

__all__ = ["flip_labels"]


def flip_labels(y, n_flip, rng, *, classes=None, losses=None):
    """Rows to copy and their flipped labels: the one flip rule of skpoison.

    ``LabelFlipTarget`` and ``LabelFlipAttack`` both call it, so one seed gives the
    same rows and labels in both.

    Parameters
    ----------
    y : ndarray of shape (n_samples,)
        Clean labels.
    n_flip : int
        Number of flips; above ``n_samples`` rows are drawn with replacement
        (random) or the ranking is repeated (adversarial).
    rng : numpy.random.RandomState
        Source of randomness (consumed in a fixed order).
    classes : ndarray or None
        Sorted class labels (default ``np.unique(y)``).
    losses : ndarray of shape (n_samples, n_classes) or None
        ``None``: random rows, each given a different class drawn uniformly.
        Otherwise the victim's loss of each row under each class: each row gets the
        other class of largest loss, and the rows of largest such loss are taken
        (ties broken by ``rng``).

    Returns
    -------
    rows : ndarray of shape (n_flip,)
        Sorted row indices.
    labels : ndarray of shape (n_flip,)
        The new (always different) label of each row.

    Examples
    --------
    >>> import numpy as np
    >>> from skpoison._utils import flip_labels
    >>> y = np.array([0, 1, 1, 0, 2, 2])
    >>> rows, labels = flip_labels(y, 3, np.random.RandomState(0))
    >>> bool(np.all(labels != y[rows]))
    True
    """
    classes = np.unique(y) if classes is None else classes
    n, c = len(y), len(classes)
    index = np.searchsorted(classes, y)
    if losses is None:
        rows = np.sort(rng.choice(n, size=n_flip, replace=n_flip > n))
        # shift by 1..c-1 classes: always a different label, uniform over the others
        shift = rng.randint(1, c, size=n_flip)
        return rows, classes[(index[rows] + shift) % c]
    losses = np.array(losses, dtype=float)
    losses[np.arange(n), index] = -np.inf
    best = np.argmax(losses, axis=1)
    score = losses[np.arange(n), best]
    order = rng.permutation(n)
    order = order[np.argsort(-score[order], kind="stable")]
    rows = np.sort(np.resize(order, n_flip))
    return rows, classes[best[rows]]
