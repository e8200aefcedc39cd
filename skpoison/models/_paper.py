"""The paper's victims as named recipes: how its released code trains and retrains them."""

import torch
from skorch.callbacks import LRScheduler

from ._factories import make_net

__all__ = ["PAPER_VICTIMS", "paper_victim"]

# name -> (make_net name, module settings); the CNN of the released code has dropout
_MODULES = {
    "lr": ("logreg", {}),
    "nn": ("mlp", {}),
    "cnn": ("cnn", {"module__dropout": 0.25}),
}

# stage -> training settings per name (batch size may depend on the net)
_STAGES = {
    # Adadelta (lr 1.0) with StepLR (gamma 0.7 per epoch), one epoch, batches of 64
    "source": lambda name: dict(
        optimizer=torch.optim.Adadelta,
        lr=1.0,
        max_epochs=1,
        batch_size=64,
        callbacks=[
            ("lr_scheduler", LRScheduler(policy=torch.optim.lr_scheduler.StepLR,
                                         step_size=1, gamma=0.7)),
        ],
    ),
    # plain SGD (no momentum), lr 0.1, 100 epochs, batches of 10000 (1000 for the CNN)
    "retrain": lambda name: dict(
        optimizer="sgd",
        momentum=0.0,
        lr=0.1,
        max_epochs=100,
        batch_size=1000 if name == "cnn" else 10000,
    ),
}

#: Names accepted by :func:`paper_victim`.
PAPER_VICTIMS = tuple(_MODULES)


def paper_victim(name, *, stage="source", random_state=None, device="auto", **kwargs):
    """One of the paper's MNIST victims, configured as its released code trains it.

    Lu, Kamath and Yu (2023) train the clean (source) model that GradPC corrupts
    differently from the victim retrained on poisoned data:

    ========== =================================================================
    stage      training
    ========== =================================================================
    source     Adadelta, lr 1.0, StepLR gamma 0.7 per epoch, 1 epoch, batch 64
    retrain    SGD, lr 0.1, no momentum, 100 epochs, batch 10000 (CNN: 1000)
    ========== =================================================================

    The modules: ``"lr"`` is ``Linear(784, 10)`` with bias and no penalty
    (:class:`LogisticRegressionNet`), ``"nn"`` the three-layer :class:`MLP` (hidden
    784, leaky ReLU 0.2), ``"cnn"`` the :class:`CNN` with dropout 0.25 before each
    linear layer.  All train with the summed-over-batch mean cross-entropy, no weight
    decay, shuffled batches.  Inputs are expected normalised with
    :func:`skpoison.datasets.normalize_mnist`, as in the released code.

    Parameters
    ----------
    name : {"lr", "nn", "cnn"}
        The victim.
    stage : {"source", "retrain"}, default="source"
        Training recipe of the clean model (``"source"``) or of the victim retrained
        on clean plus poison data (``"retrain"``).
    random_state : int, RandomState instance or None, default=None
        Seed of torch for initialisation, shuffling and dropout.
    device : str, default="auto"
        Torch device (``"auto"``: CUDA when available).
    **kwargs
        Overrides passed to :func:`make_net` (e.g. ``max_epochs=5`` for a short run).

    Returns
    -------
    net : SeededNeuralNetClassifier
        Unfitted.

    Examples
    --------
    >>> from skpoison.datasets import load_digits, normalize_mnist
    >>> from skpoison.models import paper_victim
    >>> X, y = load_digits(return_X_y=True)
    >>> net = paper_victim("lr", random_state=0, device="cpu")
    >>> net.optimizer.__name__, net.lr, net.max_epochs, net.batch_size
    ('Adadelta', 1.0, 1, 64)
    >>> net = paper_victim("lr", random_state=0, device="cpu", max_epochs=10)
    >>> net = net.fit(normalize_mnist(X), y)  # digits are 8x8, not 28x28: 10 epochs
    >>> bool(net.score(normalize_mnist(X), y) > 0.9)
    True
    >>> victim = paper_victim("cnn", stage="retrain", device="cpu")
    >>> victim.lr, victim.max_epochs, victim.batch_size, victim.optimizer__momentum
    (0.1, 100, 1000, 0.0)
    """
    if name not in _MODULES:
        raise ValueError(f"Unknown paper victim {name!r}; choose one of {PAPER_VICTIMS}.")
    if stage not in _STAGES:
        raise ValueError(f"Unknown stage {stage!r}; choose 'source' or 'retrain'.")
    net_name, module_params = _MODULES[name]
    params = {**_STAGES[stage](name), **module_params, **kwargs}
    return make_net(net_name, random_state=random_state, device=device, **params)
