"""The MNIST input normalisation of the paper's released code."""

import numpy as np
from sklearn.preprocessing import FunctionTransformer

__all__ = ["MNIST_MEAN", "MNIST_STD", "mnist_normalizer", "normalize_mnist"]

#: Mean and standard deviation of MNIST's training pixels in [0, 1].
MNIST_MEAN = 0.1307
MNIST_STD = 0.3081


def normalize_mnist(X):
    """Standardise pixels in [0, 1] with MNIST's mean 0.1307 and std 0.3081.

    The paper's released code feeds its victims ``(X - 0.1307) / 0.3081``; a poison box
    of ``(0, 1)`` on raw pixels becomes ``normalize_mnist(0), normalize_mnist(1)``.

    Parameters
    ----------
    X : array-like
        Pixels in [0, 1] (any shape).

    Returns
    -------
    X_normalized : ndarray of float64
        A new array; ``X`` is not modified.

    Examples
    --------
    >>> from skpoison.datasets import normalize_mnist
    >>> normalize_mnist([0.0, 1.0]).round(4)
    array([-0.4242,  2.8215])
    """
    return (np.asarray(X, dtype=np.float64) - MNIST_MEAN) / MNIST_STD


def _denormalize_mnist(X):
    return np.asarray(X, dtype=np.float64) * MNIST_STD + MNIST_MEAN


def mnist_normalizer():
    """The normalisation of :func:`normalize_mnist` as a scikit-learn transformer.

    Returns
    -------
    transformer : sklearn.preprocessing.FunctionTransformer
        Stateless, with ``inverse_transform`` back to pixels in [0, 1], ready for a
        :class:`~sklearn.pipeline.Pipeline` in front of a victim.

    Examples
    --------
    >>> from skpoison.datasets import mnist_normalizer
    >>> t = mnist_normalizer()
    >>> t.inverse_transform(t.fit_transform([[0.1307, 0.4388]])).round(4)
    array([[0.1307, 0.4388]])
    >>> t.transform([[0.1307, 0.4388]]).round(4)
    array([[0., 1.]])
    """
    return FunctionTransformer(
        normalize_mnist, inverse_func=_denormalize_mnist, check_inverse=False,
        feature_names_out="one-to-one",
    )
