"""Shared fixtures of the skpoison test suite: small data sets and small torch nets.

Everything here is small on purpose (the whole suite runs in about a minute on two
CPU cores).  Data fixtures hand out fresh copies, so a test that (wrongly) modified
its inputs cannot leak into another test.
"""

import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

from skpoison.datasets import load_digits, make_gaussian, make_or

# --------------------------------------------------------------------------- data


@pytest.fixture(scope="session")
def _gaussian_data():
    return make_gaussian(n_samples=200, n_features=5, random_state=0)


@pytest.fixture
def gaussian(_gaussian_data):
    """Binary 5-d Gaussian problem, 200 points, labels {0, 1}."""
    X, y = _gaussian_data
    return X.copy(), y.copy()


@pytest.fixture(scope="session")
def _digits3_data():
    X, y = load_digits(digits=(0, 1, 2), return_X_y=True)
    return X[:150], y[:150]


@pytest.fixture
def digits3(_digits3_data):
    """150 digits of classes 0, 1, 2 (64 features in [0, 1])."""
    X, y = _digits3_data
    return X.copy(), y.copy()


@pytest.fixture(scope="session")
def _blobs3_data():
    # three overlapping classes: no linear model separates them (finite C=inf optimum)
    rng = np.random.RandomState(0)
    centers = np.array([[0.0, 0.0, 0.0], [1.0, 0.5, 0.0], [0.0, 1.0, 0.5]])
    y = np.repeat(np.arange(3), 40)
    X = centers[y] + rng.normal(scale=0.8, size=(len(y), 3))
    return X, y


@pytest.fixture
def blobs3(_blobs3_data):
    """120 points of three overlapping Gaussian classes in 3-d, labels {0, 1, 2}."""
    X, y = _blobs3_data
    return X.copy(), y.copy()


@pytest.fixture(scope="session")
def _or_data():
    return make_or(n_repeats=25, noise=0.3, random_state=0)


@pytest.fixture
def or_data(_or_data):
    """The noisy OR problem (100 points in 2-d)."""
    X, y = _or_data
    return X.copy(), y.copy()


@pytest.fixture(scope="session")
def _regression_data():
    rng = np.random.RandomState(1)
    X = rng.normal(size=(80, 4))
    beta = np.array([1.0, -2.0, 0.5, 0.0])
    y = X @ beta + 0.3 + 0.5 * rng.normal(size=80)
    Y = np.column_stack([y, X @ beta[::-1] - 1.0 + 0.5 * rng.normal(size=80)])
    return X, y, Y


@pytest.fixture
def regression(_regression_data):
    """Regression data: X (80, 4), a 1-d target y and a 2-output target Y."""
    X, y, Y = _regression_data
    return X.copy(), y.copy(), Y.copy()


# --------------------------------------------------------------------------- nets


class MLP(torch.nn.Module):
    """A small float64 MLP ``Linear -> tanh -> Dropout -> Linear`` (+ optional softmax)."""

    def __init__(self, n_in=2, n_hidden=6, n_out=2, output="logits", dropout=0.0):
        super().__init__()
        self.hidden = torch.nn.Linear(n_in, n_hidden, dtype=torch.float64)
        self.drop = torch.nn.Dropout(dropout)
        self.out = torch.nn.Linear(n_hidden, n_out, dtype=torch.float64)
        self.output = output

    def forward(self, X):
        h = self.out(self.drop(torch.tanh(self.hidden(X))))
        if self.output == "log_softmax":
            return torch.log_softmax(h, dim=1)
        if self.output == "softmax":
            return torch.softmax(h, dim=1)
        return h


@pytest.fixture(scope="session")
def mlp_class():
    """The MLP module class used by the skorch tests."""
    return MLP


_LBFGS = dict(
    optimizer=torch.optim.LBFGS,
    lr=1.0,
    optimizer__line_search_fn="strong_wolfe",
    optimizer__tolerance_grad=1e-12,
    optimizer__tolerance_change=0.0,
    optimizer__max_iter=50,
    max_epochs=30,
    batch_size=-1,
    train_split=None,
    callbacks="disable",
    verbose=0,
)


def _fit_net(net, X, y, seed=0):
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return net.fit(X, y)


@pytest.fixture(scope="session")
def net_ce(_or_data):
    """skorch classifier, CrossEntropyLoss on logits, trained to stationarity (LBFGS)."""
    from skorch import NeuralNetClassifier

    X, y = _or_data
    net = NeuralNetClassifier(MLP, criterion=torch.nn.CrossEntropyLoss, **_LBFGS)
    return _fit_net(net, X, y)


@pytest.fixture(scope="session")
def net_nll(_or_data):
    """skorch NeuralNet, NLLLoss on log-softmax outputs, trained to stationarity (LBFGS)."""
    from skorch import NeuralNet

    X, y = _or_data
    net = NeuralNet(
        MLP, module__output="log_softmax", criterion=torch.nn.NLLLoss, **_LBFGS
    )
    return _fit_net(net, X, y)


@pytest.fixture(scope="session")
def net_wd(_or_data):
    """skorch classifier trained by full-batch SGD with weight decay (mean-form penalty)."""
    from skorch import NeuralNetClassifier

    X, y = _or_data
    net = NeuralNetClassifier(
        MLP,
        criterion=torch.nn.CrossEntropyLoss,
        optimizer=torch.optim.SGD,
        lr=0.5,
        optimizer__momentum=0.9,
        optimizer__weight_decay=1e-2,
        max_epochs=1500,
        batch_size=-1,
        train_split=None,
        callbacks="disable",
        verbose=0,
    )
    return _fit_net(net, X, y)


# ------------------------------------------------------------------ command line
@pytest.fixture
def heavy_imports_of_cli():
    """Run ``skpoison.cli.main`` on each argv in a fresh interpreter.

    Returns the finished process; its last output line lists which of torch, skorch,
    scikit-learn and scipy got imported (``SystemExit`` from ``--help`` or an argument
    error is caught).
    """

    def run(*argvs):
        code = (
            "import sys, skpoison.cli\n"
            f"for argv in {[list(a) for a in argvs]!r}:\n"
            "    try:\n"
            "        skpoison.cli.main(argv)\n"
            "    except SystemExit:\n"
            "        pass\n"
            "print(sorted(m for m in ('torch', 'skorch', 'sklearn', 'scipy') "
            "if m in sys.modules))"
        )
        return subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
            env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)),
        )

    return run
