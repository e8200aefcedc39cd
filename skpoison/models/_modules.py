"""Torch modules of the paper's victims; each maps flat rows to logits.

Lu, Kamath and Yu (2023, section 5 and appendix C.1) attack logistic regression, a
three-layer fully connected net and a small CNN on MNIST, ResNet-18 on CIFAR-10 and
ResNet-34 on TinyImageNet.  The modules here take the flat float rows that
scikit-learn passes (shape ``(n_samples, n_features)``), reshape them to images where
they need images, and end in a :class:`torch.nn.Linear` layer whose outputs are the
logits: the threshold head of the analyzer (paper, Theorem 4).
"""

import math

import torch
from torch import nn

__all__ = [
    "CNN",
    "MLP",
    "LogisticRegressionNet",
    "ResNet",
    "infer_image_shape",
    "resnet18",
    "resnet34",
]


def infer_image_shape(n_features):
    """Image shape ``(channels, height, width)`` of a flat row of ``n_features`` pixels.

    Square images only: one channel when ``n_features`` is a perfect square (MNIST's
    784 = 28 x 28, the digits' 64 = 8 x 8), else three channels when ``n_features / 3``
    is one (CIFAR-10's 3072 = 3 x 32 x 32).

    Parameters
    ----------
    n_features : int
        Length of a flat row.

    Returns
    -------
    image_shape : tuple of int

    Raises
    ------
    ValueError
        When no square one- or three-channel image has ``n_features`` pixels.

    Examples
    --------
    >>> from skpoison.models import infer_image_shape
    >>> infer_image_shape(784), infer_image_shape(3072), infer_image_shape(64)
    ((1, 28, 28), (3, 32, 32), (1, 8, 8))
    """
    n_features = int(n_features)
    for channels in (1, 3):
        if n_features % channels:
            continue
        side = math.isqrt(n_features // channels)
        if side > 0 and side * side * channels == n_features:
            return (channels, side, side)
    raise ValueError(
        f"Cannot infer a square image shape from {n_features} features; pass "
        "image_shape=(channels, height, width)."
    )


def _check_image_shape(image_shape):
    try:
        shape = tuple(int(s) for s in image_shape)
    except TypeError:
        raise ValueError(
            f"image_shape must be (channels, height, width), got {image_shape!r}."
        ) from None
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(
            f"image_shape must be three positive ints (channels, height, width), "
            f"got {image_shape!r}."
        )
    return shape


def _as_rows(X, n_features, name):
    """Flatten ``X`` to ``(n, n_features)`` rows, with a clear error on a mismatch."""
    X = X.reshape(X.shape[0], -1)
    if X.shape[1] != n_features:
        raise ValueError(
            f"{name} expects rows of {n_features} features, got {X.shape[1]}."
        )
    return X


def _as_images(X, image_shape, name):
    """Reshape flat rows (or images) ``X`` to ``(n, *image_shape)``."""
    n_features = image_shape[0] * image_shape[1] * image_shape[2]
    return _as_rows(X, n_features, name).reshape(X.shape[0], *image_shape)


class LogisticRegressionNet(nn.Module):
    """Multinomial logistic regression as a torch module: one linear layer to logits.

    Parameters
    ----------
    n_features : int, default=784
        Length of an input row.
    n_classes : int, default=10
        Number of classes (logits).
    dtype : torch.dtype or None, default=None
        Dtype of the parameters (``None``: torch's default, float32).

    Attributes
    ----------
    linear : torch.nn.Linear
        The only layer (and the threshold head).

    Examples
    --------
    >>> import torch
    >>> from skpoison.models import LogisticRegressionNet
    >>> LogisticRegressionNet(n_features=64, n_classes=3)(torch.zeros(5, 64)).shape
    torch.Size([5, 3])
    """

    #: Its outputs are ``X @ linear.weight.T + linear.bias``: objectives of this
    #: module use the closed-form poison-feature gradient of affine models.
    affine_parameters = ("linear.weight", "linear.bias")

    def __init__(self, n_features=784, n_classes=10, dtype=None):
        super().__init__()
        self.n_features = int(n_features)
        self.n_classes = int(n_classes)
        self.linear = nn.Linear(self.n_features, self.n_classes, dtype=dtype)

    def forward(self, X):
        """Logits of shape ``(n_samples, n_classes)``."""
        return self.linear(_as_rows(X, self.n_features, type(self).__name__))


class MLP(nn.Module):
    """The paper's three-layer fully connected net (NN) with leaky ReLU activations.

    ``Linear(n_features, h) -> LeakyReLU -> Linear(h, h) -> LeakyReLU ->
    Linear(h, n_classes)``, with hidden size ``h = 784`` and slope 0.2 on MNIST
    (appendix C.1).  Optional dropout after each hidden activation (inactive in eval
    mode, the mode in which objectives evaluate the net).

    Parameters
    ----------
    n_features : int, default=784
        Length of an input row.
    n_classes : int, default=10
        Number of classes (logits).
    hidden_size : int, default=784
        Width of both hidden layers.
    negative_slope : float, default=0.2
        Slope of the leaky ReLU for negative inputs.
    dropout : float, default=0.0
        Dropout probability after each hidden activation.
    dtype : torch.dtype or None, default=None
        Dtype of the parameters (``None``: torch's default, float32).

    Attributes
    ----------
    fc1, fc2 : torch.nn.Linear
        The hidden layers.
    fc3 : torch.nn.Linear
        The output layer (the threshold head).

    Examples
    --------
    >>> import torch
    >>> from skpoison.models import MLP
    >>> net = MLP(n_features=64, n_classes=10, hidden_size=32)
    >>> net(torch.zeros(4, 64)).shape
    torch.Size([4, 10])
    >>> sum(p.numel() for p in net.parameters())
    3466
    """

    def __init__(
        self, n_features=784, n_classes=10, hidden_size=784, negative_slope=0.2, dropout=0.0,
        dtype=None,
    ):
        super().__init__()
        self.n_features = int(n_features)
        self.n_classes = int(n_classes)
        self.hidden_size = int(hidden_size)
        self.negative_slope = float(negative_slope)
        self.fc1 = nn.Linear(self.n_features, self.hidden_size, dtype=dtype)
        self.fc2 = nn.Linear(self.hidden_size, self.hidden_size, dtype=dtype)
        self.drop = nn.Dropout(dropout)
        self.fc3 = nn.Linear(self.hidden_size, self.n_classes, dtype=dtype)

    def forward(self, X):
        """Logits of shape ``(n_samples, n_classes)``."""
        X = _as_rows(X, self.n_features, type(self).__name__)
        act = nn.functional.leaky_relu
        X = self.drop(act(self.fc1(X), self.negative_slope))
        X = self.drop(act(self.fc2(X), self.negative_slope))
        return self.fc3(X)

    @property
    def perceptron_layers(self):
        """``(layer name, slope of the leaky ReLU after it)`` per linear layer.

        ``None`` for the output layer.  Objectives read it to compute Gradient
        Canceling's feature gradient in closed form (the forward in eval mode
        flattens the rows and runs these layers).
        """
        slope = self.negative_slope
        return (("fc1", slope), ("fc2", slope), ("fc3", None))


class CNN(nn.Module):
    """The paper's small CNN: two 3x3 convolutions, max-pooling, two linear layers.

    ``Conv3x3(C, c1) -> ReLU -> Conv3x3(c1, c2) -> ReLU -> MaxPool2 -> flatten ->
    Linear(., hidden_size) -> ReLU -> Linear(hidden_size, n_classes)`` with
    ``(c1, c2) = (32, 64)`` and hidden size 128 on MNIST (appendix C.1).  The
    convolutions have no padding, so images need at least 6 x 6 pixels; flat rows are
    reshaped to ``image_shape``.

    Parameters
    ----------
    image_shape : tuple of int, default=(1, 28, 28)
        ``(channels, height, width)`` of an input image.
    n_classes : int, default=10
        Number of classes (logits).
    hidden_size : int, default=128
        Width of the hidden linear layer.
    channels : tuple of int, default=(32, 64)
        Output channels of the two convolutions.
    dropout : float, default=0.0
        Dropout probability before each linear layer.
    dtype : torch.dtype or None, default=None
        Dtype of the parameters (``None``: torch's default, float32).

    Attributes
    ----------
    conv1, conv2 : torch.nn.Conv2d
    fc1 : torch.nn.Linear
        The hidden linear layer.
    fc2 : torch.nn.Linear
        The output layer (the threshold head).

    Examples
    --------
    >>> import torch
    >>> from skpoison.models import CNN
    >>> net = CNN(image_shape=(1, 8, 8), n_classes=10, hidden_size=16, channels=(4, 8))
    >>> net(torch.zeros(3, 64)).shape
    torch.Size([3, 10])
    """

    def __init__(
        self, image_shape=(1, 28, 28), n_classes=10, hidden_size=128, channels=(32, 64),
        dropout=0.0, dtype=None,
    ):
        super().__init__()
        self.image_shape = _check_image_shape(image_shape)
        c, h, w = self.image_shape
        if h < 6 or w < 6:
            raise ValueError(f"CNN needs images of at least 6 x 6 pixels, got {h} x {w}.")
        c1, c2 = (int(k) for k in channels)
        self.n_classes = int(n_classes)
        self.conv1 = nn.Conv2d(c, c1, kernel_size=3, dtype=dtype)
        self.conv2 = nn.Conv2d(c1, c2, kernel_size=3, dtype=dtype)
        self.pool = nn.MaxPool2d(2)
        flat = c2 * ((h - 4) // 2) * ((w - 4) // 2)
        self.drop = nn.Dropout(dropout)
        self.fc1 = nn.Linear(flat, int(hidden_size), dtype=dtype)
        self.fc2 = nn.Linear(int(hidden_size), self.n_classes, dtype=dtype)

    def forward(self, X):
        """Logits of shape ``(n_samples, n_classes)``."""
        X = _as_images(X, self.image_shape, type(self).__name__)
        X = torch.relu(self.conv1(X))
        X = self.pool(torch.relu(self.conv2(X)))
        X = torch.relu(self.fc1(self.drop(X.flatten(1))))
        return self.fc2(self.drop(X))


class _BasicBlock(nn.Module):
    """Two 3x3 convolutions with batch norm and an identity (or 1x1) shortcut."""

    def __init__(self, in_channels, out_channels, stride, dtype=None):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False, dtype=dtype)
        self.bn1 = nn.BatchNorm2d(out_channels, dtype=dtype)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False, dtype=dtype)
        self.bn2 = nn.BatchNorm2d(out_channels, dtype=dtype)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False, dtype=dtype),
                nn.BatchNorm2d(out_channels, dtype=dtype),
            )

    def forward(self, X):
        out = torch.relu(self.bn1(self.conv1(X)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(X))


class ResNet(nn.Module):
    """CIFAR-style residual network (He et al., 2016) ending in a linear layer.

    A 3x3 stem convolution (no max-pooling), four stages of basic blocks with
    ``width``, ``2 width``, ``4 width`` and ``8 width`` channels (strides 1, 2, 2, 2),
    batch norm, global average pooling and a final :class:`torch.nn.Linear` to the
    logits.  ``block_counts=(2, 2, 2, 2)`` is ResNet-18 and ``(3, 4, 6, 3)``
    ResNet-34.  Batch norm uses batch statistics in train mode and running
    statistics in eval mode, the mode in which objectives evaluate the net.

    Parameters
    ----------
    block_counts : tuple of int, default=(2, 2, 2, 2)
        Basic blocks per stage.
    image_shape : tuple of int, default=(3, 32, 32)
        ``(channels, height, width)`` of an input image; flat rows are reshaped to it.
    n_classes : int, default=10
        Number of classes (logits).
    width : int, default=64
        Channels of the stem and the first stage.
    dtype : torch.dtype or None, default=None
        Dtype of the parameters and batch-norm statistics (``None``: float32).

    Attributes
    ----------
    fc : torch.nn.Linear
        The output layer (the threshold head).

    Examples
    --------
    >>> import torch
    >>> from skpoison.models import ResNet
    >>> net = ResNet(block_counts=(1, 1, 1, 1), image_shape=(1, 8, 8), n_classes=3, width=4)
    >>> net.eval()(torch.zeros(2, 64)).shape
    torch.Size([2, 3])
    """

    def __init__(
        self, block_counts=(2, 2, 2, 2), image_shape=(3, 32, 32), n_classes=10, width=64,
        dtype=None,
    ):
        super().__init__()
        self.image_shape = _check_image_shape(image_shape)
        self.block_counts = tuple(int(b) for b in block_counts)
        if not self.block_counts or min(self.block_counts) < 1:
            raise ValueError(f"block_counts must be positive ints, got {block_counts!r}.")
        self.n_classes = int(n_classes)
        width = int(width)
        self.stem = nn.Sequential(
            nn.Conv2d(self.image_shape[0], width, 3, 1, 1, bias=False, dtype=dtype),
            nn.BatchNorm2d(width, dtype=dtype),
            nn.ReLU(),
        )
        stages, in_channels = [], width
        for i, count in enumerate(self.block_counts):
            out_channels = width * 2**i
            blocks = []
            for j in range(count):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(_BasicBlock(in_channels, out_channels, stride, dtype=dtype))
                in_channels = out_channels
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.fc = nn.Linear(in_channels, self.n_classes, dtype=dtype)

    def forward(self, X):
        """Logits of shape ``(n_samples, n_classes)``."""
        X = _as_images(X, self.image_shape, type(self).__name__)
        X = self.stages(self.stem(X))
        return self.fc(X.mean(dim=(2, 3)))


def resnet18(image_shape=(3, 32, 32), n_classes=10, width=64, dtype=None):
    """CIFAR-style ResNet-18 (basic blocks 2, 2, 2, 2).

    Examples
    --------
    >>> from skpoison.models import resnet18
    >>> net = resnet18()
    >>> net.block_counts, round(sum(p.numel() for p in net.parameters()) / 1e6, 1)
    ((2, 2, 2, 2), 11.2)
    """
    return ResNet(
        (2, 2, 2, 2), image_shape=image_shape, n_classes=n_classes, width=width, dtype=dtype
    )


def resnet34(image_shape=(3, 32, 32), n_classes=10, width=64, dtype=None):
    """CIFAR-style ResNet-34 (basic blocks 3, 4, 6, 3).

    Examples
    --------
    >>> from skpoison.models import resnet34
    >>> resnet34(image_shape=(3, 8, 8), width=4).block_counts
    (3, 4, 6, 3)
    """
    return ResNet(
        (3, 4, 6, 3), image_shape=image_shape, n_classes=n_classes, width=width, dtype=dtype
    )
