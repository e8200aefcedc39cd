"""Data sets of the paper: digits, OR, Gaussian, MNIST, and the 70/30 split."""

from ._digits import load_digits
from ._mnist import fetch_mnist
from ._normalize import MNIST_MEAN, MNIST_STD, mnist_normalizer, normalize_mnist
from ._split import train_validation_split
from ._synthetic import make_gaussian, make_or

__all__ = [
    "MNIST_MEAN",
    "MNIST_STD",
    "fetch_mnist",
    "load_digits",
    "make_gaussian",
    "make_or",
    "mnist_normalizer",
    "normalize_mnist",
    "train_validation_split",
]
