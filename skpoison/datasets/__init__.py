"""Data sets of the paper: digits, OR, Gaussian, MNIST, CIFAR-10, Tiny ImageNet, the split."""

from ._cifar10 import fetch_cifar10
from ._digits import load_digits
from ._mnist import fetch_mnist
from ._normalize import MNIST_MEAN, MNIST_STD, mnist_normalizer, normalize_mnist
from ._split import train_validation_split
from ._synthetic import make_gaussian, make_or
from ._tiny_imagenet import fetch_tiny_imagenet

__all__ = [
    "MNIST_MEAN",
    "MNIST_STD",
    "fetch_cifar10",
    "fetch_mnist",
    "fetch_tiny_imagenet",
    "load_digits",
    "make_gaussian",
    "make_or",
    "mnist_normalizer",
    "normalize_mnist",
    "train_validation_split",
]
