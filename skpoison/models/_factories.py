"""skorch classifiers for the paper's nets: a seeded, sklearn-friendly NeuralNetClassifier.

skorch has no ``random_state``; :class:`SeededNeuralNetClassifier` adds one (torch is
seeded from it when the net is initialized and trained, inside a forked RNG so the
global torch state is untouched), casts float64 rows from scikit-learn to the
module's dtype, maps any class labels to output indices (``predict`` returns the
labels), and fills the module's ``n_features``, ``n_classes`` and ``image_shape``
from the training data when they are ``None``.  :func:`make_net` configures it for
the paper's training protocol.
"""

import contextlib
import contextvars
import inspect
import warnings
from numbers import Integral

import numpy as np
import torch
from scipy.sparse import issparse
from skorch import NeuralNetClassifier
from skorch.callbacks import EpochScoring
from skorch.utils import is_dataset
from sklearn.exceptions import DataConversionWarning
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_array

from .._utils import class_indices, resolve_device, user_stacklevel, with_autograd
from ._modules import CNN, MLP, LogisticRegressionNet, ResNet, infer_image_shape

__all__ = ["NETS", "SeededNeuralNetClassifier", "make_net"]

# set while ``fit`` holds a seeded torch RNG, so that the nested ``initialize`` and
# ``partial_fit`` calls do not reseed it
_SEEDED = contextvars.ContextVar("skpoison_seeded_fit", default=False)


def _draw_seed(random_state):
    """An int torch seed drawn from ``random_state`` (``None``: no seeding)."""
    if random_state is None:
        return None
    return int(check_random_state(random_state).randint(0, 2**31 - 1))


@contextlib.contextmanager
def _seeded_torch(random_state, device):
    """Run the block with torch's RNG forked and seeded from ``random_state``.

    A no-op for ``random_state=None`` and inside another seeded block.
    """
    if random_state is None or _SEEDED.get():
        yield
        return
    seed = _draw_seed(random_state)
    devices = []
    if str(device).startswith("cuda") and torch.cuda.is_available():
        devices = [torch.device(device).index or 0]
    token = _SEEDED.set(True)
    try:
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            yield
    finally:
        _SEEDED.reset(token)


def _index_accuracy(net, X, y_index):
    """Accuracy for skorch's ``valid_acc``: ``y`` reaches callbacks as class indices."""
    y_index = np.asarray(y_index).astype(np.int64)
    return float(np.mean(net.predict(X) == np.asarray(net.classes_)[y_index]))


class SeededNeuralNetClassifier(NeuralNetClassifier):
    """A skorch ``NeuralNetClassifier`` with ``random_state`` that takes sklearn data.

    Everything of :class:`skorch.NeuralNetClassifier` applies; in addition:

    - ``random_state``: ``fit`` (and ``initialize`` or a first ``partial_fit`` called
      on their own) seeds torch from it, inside a forked RNG, so the weight
      initialisation, the shuffling and dropout are reproducible and
      ``clone(net).fit(X, y)`` gives the same net; the global torch RNG is left as
      it was.  ``None`` uses torch's global RNG, as skorch does.
    - Inputs: array-likes are validated (finite, dense) and cast to the dtype of the
      module's parameters (float32 by default), so scikit-learn's float64 rows work;
      a row length differing from the one seen in ``fit`` raises ``ValueError``.
    - Labels: any class labels (e.g. MNIST-17's 1 and 7); ``classes_`` are the sorted
      labels of the first fit (or ``classes``), the module's outputs are in that
      order, and ``predict`` returns labels.  Unknown labels raise ``ValueError``.
      Inside skorch (the criterion, the batches, scoring callbacks) targets are the
      class indices; the default ``valid_acc`` accounts for that.
    - Module parameters ``module__n_features``, ``module__n_classes`` and
      ``module__image_shape`` given as ``None`` are filled from the training data
      (row length, number of classes, square image inferred from the row length).
    - Defaults of the paper's protocol: ``criterion=torch.nn.CrossEntropyLoss``
      (logits, so :func:`skpoison.objectives.as_objective` sees the training
      objective), ``train_split=None`` (no validation split).

    Parameters
    ----------
    module : torch.nn.Module class or instance
        The net; it maps float rows ``(n, n_features)`` to logits ``(n, n_classes)``.
    *args
        Passed to :class:`skorch.NeuralNetClassifier`.
    criterion : torch criterion class, default=torch.nn.CrossEntropyLoss
    train_split : callable or None, default=None
    classes : array-like or None, default=None
        Class labels in the order of the module's outputs; ``None`` infers them.
    random_state : int, RandomState instance or None, default=None
        Seed of torch during initialisation and training.
    **kwargs
        Any other skorch parameter (``optimizer``, ``lr``, ``max_epochs``,
        ``batch_size``, ``module__*``, ``optimizer__*``, ``device``, ...).

    Attributes
    ----------
    module_ : torch.nn.Module
        The fitted module.
    classes_ : ndarray
        Class labels.
    n_features_in_ : int
        Row length seen during fit.

    See Also
    --------
    make_net : The nets of the paper configured for its training protocol.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.base import clone
    >>> from skpoison.datasets import load_digits
    >>> from skpoison.models import MLP, SeededNeuralNetClassifier
    >>> X, y = load_digits(digits=(1, 7), return_X_y=True)
    >>> net = SeededNeuralNetClassifier(
    ...     MLP, module__n_features=None, module__n_classes=None, module__hidden_size=8,
    ...     max_epochs=5, lr=0.1, verbose=0, random_state=0)
    >>> net = net.fit(X, y)
    >>> net.classes_, net.n_features_in_
    (array([1, 7]), 64)
    >>> np.unique(net.predict(X[:20]))
    array([1, 7])
    >>> bool((clone(net).fit(X, y).predict_proba(X) == net.predict_proba(X)).all())
    True
    """

    def __init__(
        self,
        module,
        *args,
        criterion=torch.nn.CrossEntropyLoss,
        train_split=None,
        classes=None,
        random_state=None,
        **kwargs,
    ):
        super().__init__(
            module, *args, criterion=criterion, train_split=train_split, classes=classes,
            **kwargs,
        )
        self.random_state = random_state

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = False
        return tags

    @property
    def _default_callbacks(self):
        # inside skorch, targets are class indices; ``predict`` returns labels
        return [
            (name, EpochScoring(_index_accuracy, lower_is_better=False, name="valid_acc"))
            if name == "valid_acc"
            else (name, callback)
            for name, callback in super()._default_callbacks
        ]

    # ------------------------------------------------------------------ seeding
    def _seeded(self):
        return _seeded_torch(self.random_state, self.device)

    def initialize(self):
        """Initialise module, criterion and optimizer (seeded from ``random_state``)."""
        with self._seeded():
            return super().initialize()

    # --------------------------------------------------------------------- data
    def _remember_data(self, X, y):
        """Record the row length and the classes of the first fit."""
        if not is_dataset(X) and not _is_dict(X):
            X = self._check_X(X, check_length=False)
            self.n_features_in_ = int(np.prod(X.shape[1:]))
        if y is not None:
            y = _labels(y)
            check_classification_targets(y)  # continuous y: a clear error, not n classes
            if self.classes is None:
                self.classes_inferred_ = np.unique(y)
            self._encode(y)  # unknown labels fail before training

    def _input_dtype(self):
        module = getattr(self, "module_", None)
        if isinstance(module, torch.nn.Module):
            for p in module.parameters():
                if p.is_floating_point():
                    return p.dtype
        return torch.float32

    def _check_X(self, X, check_length=True):
        if isinstance(X, torch.Tensor):
            X = X.to(self._input_dtype())
        elif not _is_dict(X):
            dtype = torch.empty((), dtype=self._input_dtype()).numpy().dtype
            X = check_array(X, dtype=dtype, allow_nd=True, input_name="X")
        else:
            return X
        if check_length and hasattr(self, "n_features_in_") and X.ndim >= 2:
            n_features = int(np.prod(X.shape[1:]))
            if n_features != self.n_features_in_:
                raise ValueError(
                    f"X has {n_features} features, but {type(self).__name__} is expecting "
                    f"{self.n_features_in_} features as input."
                )
        return X

    def _encode(self, y):
        """Class indices (int64) of labels ``y`` in the order of ``classes_``."""
        return class_indices(self.classes_, y, owner=type(self).__name__).astype(np.int64)

    def check_data(self, X, y):
        """skorch's data check, keeping the classes of the first fit."""
        classes = self.__dict__.get("classes_inferred_")
        super().check_data(X, y)
        if classes is not None:
            self.classes_inferred_ = classes

    def get_dataset(self, X, y=None):
        """Dataset of rows cast to the module's dtype and labels mapped to indices."""
        if is_dataset(X):
            return X
        X = self._check_X(X)
        y_index = None
        if y is not None:
            y = _labels(y)
            y_index = self._encode(y)
        return super().get_dataset(X, y_index)

    # --------------------------------------------------------------- the module
    def initialize_module(self):
        """Create the module, filling ``None`` dimensions from the training data."""
        kwargs = dict(self.get_params_for("module"))
        if not isinstance(self.module, torch.nn.Module):
            try:
                names = set(inspect.signature(self.module).parameters)
            except (TypeError, ValueError):  # pragma: no cover - builtins
                names = set()
            for key in ("n_features", "n_classes", "image_shape"):
                if key in names and key in kwargs and kwargs[key] is None:
                    kwargs[key] = self._inferred(key)
        self.module_ = self.initialized_instance(self.module, kwargs)
        return self

    def _inferred(self, key):
        if key == "n_classes":
            try:
                return len(self.classes_)
            except AttributeError:
                pass
        elif hasattr(self, "n_features_in_"):
            if key == "n_features":
                return self.n_features_in_
            return infer_image_shape(self.n_features_in_)
        raise ValueError(
            f"module__{key} is None and cannot be inferred before the net has seen "
            f"data; call fit, or set module__{key}."
        )

    # ---------------------------------------------------------------- training
    @with_autograd
    def fit(self, X, y, **fit_params):
        """Initialise (unless ``warm_start``) and train the net on ``(X, y)``, seeded.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training rows (any float dtype; cast to the module's).
        y : array-like of shape (n_samples,)
            Class labels.
        **fit_params
            Passed to :meth:`skorch.NeuralNet.fit`.

        Returns
        -------
        self : SeededNeuralNetClassifier
        """
        X, y = _as_arrays(self, X, y)
        if not (self.warm_start and self.initialized_):
            self.__dict__.pop("classes_inferred_", None)
            self._remember_data(X, y)
        with self._seeded():
            return super().fit(X, y, **fit_params)

    @with_autograd
    def partial_fit(self, X, y=None, classes=None, **fit_params):
        """Train the net further on ``(X, y)`` (initialising it first if needed).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        classes : array-like or None
            Unused (skorch's signature); set ``classes`` in the constructor instead.
        **fit_params
            Passed to :meth:`skorch.NeuralNet.partial_fit` (e.g. ``epochs``).

        Returns
        -------
        self : SeededNeuralNetClassifier
        """
        X, y = _as_arrays(self, X, y)
        if not self.initialized_:
            self.__dict__.pop("classes_inferred_", None)
            self._remember_data(X, y)
        with self._seeded():
            return super().partial_fit(X, y, classes=classes, **fit_params)

    # --------------------------------------------------------------- prediction
    def predict(self, X):
        """Class labels of the rows of ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
        """
        # predict_proba first: before fit it raises skorch's NotInitializedError, a
        # NotFittedError (classes_ would raise a bare AttributeError)
        index = self.predict_proba(X).argmax(axis=1)
        return np.asarray(self.classes_)[index]


def _is_dict(X):
    """A dict of inputs for skorch (scipy's dok sparse format is a dict, but not one)."""
    return isinstance(X, dict) and not issparse(X)


def _as_arrays(net, X, y):
    """Array-likes (lists, pandas, ...) as ndarrays, since skorch indexes ``X`` and ``y``
    row by row; tensors, datasets, dicts and sparse input (rejected later) as they are.
    """
    if not (
        isinstance(X, (np.ndarray, torch.Tensor)) or is_dataset(X) or _is_dict(X) or issparse(X)
    ):
        X = np.asarray(X)
    if y is None:
        if not (is_dataset(X) or _is_dict(X)):
            raise ValueError(
                f"{type(net).__name__} requires y to be passed, but the target y is None; "
                "pass the class labels of the rows of X."
            )
    elif not isinstance(y, (np.ndarray, torch.Tensor)):
        y = np.asarray(y)
    return X, y


def _labels(y):
    if isinstance(y, torch.Tensor):
        y = y.detach().cpu().numpy()
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        warnings.warn(
            "A column-vector y was passed when a 1d array was expected; it is raveled.",
            DataConversionWarning,
            stacklevel=user_stacklevel(),
        )
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError(
            "Multilabel and multioutput targets are not supported: y must be a 1-d "
            f"array of class labels, got shape {y.shape}."
        )
    return y


# ------------------------------------------------------------------- factories
# name -> (module class, fixed module kwargs, default training settings)
_NETS = {
    "logreg": (LogisticRegressionNet, {}, dict(lr=0.1, max_epochs=20, hidden_size=None)),
    "mlp": (MLP, {}, dict(lr=0.05, max_epochs=20, hidden_size=784)),
    "cnn": (CNN, {}, dict(lr=0.05, max_epochs=10, hidden_size=128)),
    "resnet18": (
        ResNet, {"block_counts": (2, 2, 2, 2)}, dict(lr=0.05, max_epochs=30, hidden_size=None)
    ),
    "resnet34": (
        ResNet, {"block_counts": (3, 4, 6, 3)}, dict(lr=0.05, max_epochs=30, hidden_size=None)
    ),
}
_ALIASES = {"nn": "mlp", "lr": "logreg", "resnet-18": "resnet18", "resnet-34": "resnet34"}

#: Names accepted by :func:`make_net` (aliases: ``"nn"`` for ``"mlp"``, ``"lr"`` for
#: ``"logreg"``).
NETS = tuple(_NETS)

_OPTIMIZERS = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam}


def make_net(
    name,
    *,
    n_features=None,
    n_classes=None,
    image_shape=None,
    hidden_size=None,
    width=None,
    max_epochs=None,
    lr=None,
    batch_size=128,
    optimizer="sgd",
    momentum=0.9,
    weight_decay=0.0,
    random_state=None,
    device="auto",
    **kwargs,
):
    """A skorch classifier for one of the paper's nets, set up for its training protocol.

    The module outputs logits and the net trains with ``CrossEntropyLoss``, so
    :func:`skpoison.objectives.as_objective` sees exactly the training objective
    (weight decay included, as a mean-form penalty); no validation split, quiet,
    shuffled mini-batches, torch seeded from ``random_state``.

    ========== ============================================ ====== ======
    name       module                                       lr     epochs
    ========== ============================================ ====== ======
    logreg     :class:`LogisticRegressionNet`               0.1    20
    mlp / nn   :class:`MLP` (hidden 784, leaky ReLU 0.2)    0.05   20
    cnn        :class:`CNN` (two 3x3 convs, hidden 128)     0.05   10
    resnet18   :class:`ResNet` (2, 2, 2, 2), width 64       0.05   30
    resnet34   :class:`ResNet` (3, 4, 6, 3), width 64       0.05   30
    ========== ============================================ ====== ======

    All use mini-batches of 128 and SGD with momentum 0.9 by default.

    Parameters
    ----------
    name : {"logreg", "mlp", "nn", "cnn", "resnet18", "resnet34"}
        The net.
    n_features : int or None, default=None
        Row length; ``None`` takes it from the training data.
    n_classes : int or None, default=None
        Number of classes; ``None`` takes it from the training labels.
    image_shape : tuple of int or None, default=None
        ``(channels, height, width)`` for ``cnn`` and the ResNets; ``None`` infers a
        square image from the row length (1 or 3 channels).
    hidden_size : int or None, default=None
        Hidden width of ``mlp`` (784) or ``cnn`` (128); ``None`` keeps the paper's.
    width : int or None, default=None
        Channels of the ResNet stem (64); ``None`` keeps it.
    max_epochs : int or None, default=None
        Training epochs; ``None`` uses the table above.
    lr : float or None, default=None
        Learning rate; ``None`` uses the table above.
    batch_size : int, default=128
        Mini-batch size (``-1`` for full batch).
    optimizer : {"sgd", "adam"} or torch optimizer class, default="sgd"
        ``"sgd"`` is SGD with momentum ``momentum``.
    momentum : float, default=0.9
        Momentum of SGD (ignored by other optimizers).
    weight_decay : float, default=0.0
        L2 weight decay on every parameter (a mean-form penalty of the objective).
    random_state : int, RandomState instance or None, default=None
        Seed of torch for initialisation and training.
    device : str, default="auto"
        Torch device, resolved now: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``
        (``"auto"``: CUDA when available, else the CPU).
    **kwargs
        Further skorch parameters, e.g. ``module__dropout=0.5``, ``callbacks=[...]``.

    Returns
    -------
    net : SeededNeuralNetClassifier
        Unfitted.

    Examples
    --------
    >>> from skpoison.datasets import load_digits
    >>> from skpoison.models import make_net
    >>> X, y = load_digits(return_X_y=True)
    >>> net = make_net("mlp", hidden_size=32, max_epochs=10, random_state=0, device="cpu")
    >>> net = net.fit(X[:1000], y[:1000])
    >>> net.module_.fc1.in_features, net.module_.fc3.out_features
    (64, 10)
    >>> bool(net.score(X[1000:], y[1000:]) > 0.8)
    True
    >>> make_net("cnn", device="cpu").fit(X[:50], y[:50]).module_.image_shape
    (1, 8, 8)
    """
    key = _ALIASES.get(name, name)
    if key not in _NETS:
        raise ValueError(
            f"Unknown net {name!r}; choose one of {NETS + tuple(_ALIASES)}."
        )
    module, fixed, defaults = _NETS[key]
    module_kwargs = dict(fixed)
    module_kwargs["n_classes"] = n_classes
    if key in ("logreg", "mlp"):
        module_kwargs["n_features"] = n_features
    else:
        if image_shape is None and n_features is not None:
            image_shape = infer_image_shape(n_features)
        module_kwargs["image_shape"] = None if image_shape is None else tuple(image_shape)
    if hidden_size is not None and defaults["hidden_size"] is None:
        raise ValueError(f"hidden_size does not apply to {name!r}.")
    if defaults["hidden_size"] is not None:
        module_kwargs["hidden_size"] = (
            defaults["hidden_size"] if hidden_size is None else int(hidden_size)
        )
    if width is not None:
        if not key.startswith("resnet"):
            raise ValueError(f"width applies to the ResNets only, not {name!r}.")
        module_kwargs["width"] = int(width)

    if isinstance(optimizer, str):
        if optimizer not in _OPTIMIZERS:
            raise ValueError(
                f"optimizer must be 'sgd', 'adam' or a torch optimizer class, got {optimizer!r}."
            )
        optimizer_cls = _OPTIMIZERS[optimizer]
    else:
        optimizer_cls = optimizer
    params = {}
    if optimizer_cls is torch.optim.SGD:
        params["optimizer__momentum"] = float(momentum)
    if weight_decay:
        params["optimizer__weight_decay"] = float(weight_decay)
    if isinstance(batch_size, bool) or not (
        isinstance(batch_size, Integral) and (batch_size >= 1 or batch_size == -1)
    ):
        raise ValueError(f"batch_size must be a positive int or -1, got {batch_size!r}.")
    params.update({f"module__{k}": v for k, v in module_kwargs.items()})
    params.update(
        criterion=torch.nn.CrossEntropyLoss,
        optimizer=optimizer_cls,
        lr=defaults["lr"] if lr is None else float(lr),
        max_epochs=defaults["max_epochs"] if max_epochs is None else int(max_epochs),
        batch_size=int(batch_size),
        train_split=None,
        iterator_train__shuffle=True,
        verbose=0,
        device=str(resolve_device(device)),
        random_state=random_state,
    )
    params.update(kwargs)
    return SeededNeuralNetClassifier(module, **params)
