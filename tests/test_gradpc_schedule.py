"""GradPC's default schedule: the paper's released code (absolute radius, minibatch
ascent over the rows given to fit, last iterate, dropout on)."""

import numpy as np
import pytest
import torch
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression

from skpoison.datasets import load_digits
from skpoison.models import make_net
from skpoison.objectives import as_objective
from skpoison.targets import GradPC


def _flat(model):
    return np.concatenate([np.ravel(model.coef_), np.ravel(model.intercept_)])


@pytest.fixture(scope="module")
def data():
    X, y = load_digits(return_X_y=True)
    X, y = X[:300], y[:300]
    return X, y, LogisticRegression(max_iter=1000).fit(X, y)


def test_defaults_are_the_released_code():
    gpc = GradPC(LogisticRegression())
    assert (gpc.relative, gpc.validation_fraction, gpc.batch_size, gpc.n_epochs) == (
        False, None, 64, 1
    )
    assert (gpc.shuffle, gpc.iterate, gpc.train_mode, gpc.max_iter) == (True, "last", True, None)


@pytest.mark.parametrize("epsilon_w", [0.05, 0.7])
def test_absolute_radius_ends_on_the_sphere(data, epsilon_w):
    X, y, clean = data
    gpc = GradPC(FrozenEstimator(clean), epsilon_w=epsilon_w, n_epochs=3, random_state=0)
    gpc.fit(X, y)
    w0, w = _flat(clean), _flat(gpc.target_)
    # long enough: 3 epochs of 5 batches, steps of 2.5 r / 15 -> on the sphere
    assert gpc.n_iter_ == 15 and gpc.radius_ == epsilon_w
    assert np.linalg.norm(w - w0) == pytest.approx(epsilon_w, rel=1e-6)
    # every row was used for the ascent
    np.testing.assert_array_equal(gpc.validation_indices_, np.arange(len(X)))
    # one loss record per epoch, on all rows, in eval mode
    assert gpc.loss_history_.shape == (3,)
    objective = as_objective(gpc.target_, device="cpu", dtype="float64")
    assert gpc.loss_history_[-1] == pytest.approx(
        float(objective.sample_losses(X, y).mean()), rel=1e-9
    )


def _hand_rolled(clean, X, y, *, radius, step, batch, n_epochs, order=None):
    """Projected normalised-gradient ascent written out with torch, step by step."""
    W = torch.tensor(clean.coef_, dtype=torch.float64)
    b = torch.tensor(clean.intercept_, dtype=torch.float64)
    w0 = torch.cat([W.reshape(-1), b])
    w = w0.clone()
    Xt = torch.tensor(X, dtype=torch.float64)
    yt = torch.tensor(np.searchsorted(clean.classes_, y))
    n_coef = W.numel()
    for epoch in range(n_epochs):
        rows = np.arange(len(X)) if order is None else order[epoch]
        for start in range(0, len(X), batch):
            idx = torch.as_tensor(rows[start:start + batch])
            v = w.clone().requires_grad_(True)
            logits = Xt[idx] @ v[:n_coef].reshape(W.shape).T + v[n_coef:]
            loss = torch.nn.functional.cross_entropy(logits, yt[idx])
            (g,) = torch.autograd.grad(loss, v)
            w = w + step * g / g.norm()
            d = w - w0
            if d.norm() > radius:
                w = w0 + d * (radius / d.norm())
    return w.numpy()


def test_last_iterate_equals_a_hand_rolled_loop(data):
    X, y, clean = data
    X, y = X[:100], y[:100]
    gpc = GradPC(FrozenEstimator(clean), epsilon_w=0.4, batch_size=16, n_epochs=2,
                 shuffle=False, step_size=0.05, random_state=0).fit(X, y)
    expected = _hand_rolled(clean, X, y, radius=0.4, step=0.05 * 0.4, batch=16, n_epochs=2)
    assert gpc.n_iter_ == 14
    np.testing.assert_allclose(_flat(gpc.target_), expected, rtol=1e-9, atol=1e-12)
    # 14 steps of 0.02 travel at most 0.28 < 0.4: inside the ball, not on it
    assert np.linalg.norm(expected - _flat(clean)) < 0.4


def test_shuffle_draws_a_permutation_per_epoch(data):
    X, y, clean = data
    X, y = X[:100], y[:100]
    gpc = GradPC(FrozenEstimator(clean), epsilon_w=0.4, batch_size=16, n_epochs=2,
                 step_size=0.05, random_state=5).fit(X, y)
    rng = np.random.RandomState(5)
    rng.randint(0, 2**31 - 1)  # the dropout seed is drawn first
    order = [rng.permutation(100), rng.permutation(100)]
    expected = _hand_rolled(clean, X, y, radius=0.4, step=0.02, batch=16, n_epochs=2,
                            order=order)
    np.testing.assert_allclose(_flat(gpc.target_), expected, rtol=1e-9, atol=1e-12)
    unshuffled = _hand_rolled(clean, X, y, radius=0.4, step=0.02, batch=16, n_epochs=2)
    assert not np.allclose(expected, unshuffled)


def test_max_iter_overrides_epochs_and_best_iterate(data):
    X, y, clean = data
    gpc = GradPC(FrozenEstimator(clean), epsilon_w=0.5, max_iter=12, random_state=0)
    gpc.fit(X, y)
    # 5 batches per epoch: records after steps 5, 10 and the last one, 12
    assert gpc.n_iter_ == 12 and gpc.loss_history_.shape == (3,)
    best = GradPC(FrozenEstimator(clean), epsilon_w=0.5, max_iter=12, iterate="best",
                  random_state=0).fit(X, y)
    objective = as_objective(best.target_, device="cpu", dtype="float64")
    loss = float(objective.sample_losses(X, y).mean())
    assert loss == pytest.approx(best.loss_history_.max(), rel=1e-9)


def test_validation_fraction_one_is_all_rows(data):
    X, y, clean = data
    a = GradPC(FrozenEstimator(clean), validation_fraction=1.0, random_state=0).fit(X, y)
    b = GradPC(FrozenEstimator(clean), validation_fraction=None, random_state=0).fit(X, y)
    np.testing.assert_array_equal(a.validation_indices_, np.arange(len(X)))
    np.testing.assert_array_equal(_flat(a.target_), _flat(b.target_))


def test_train_mode_turns_dropout_on_during_the_ascent():
    X, y = load_digits(return_X_y=True)
    X, y = X[:200].astype(np.float32), y[:200]
    net = make_net("mlp", hidden_size=16, max_epochs=3, random_state=0, device="cpu",
                   module__dropout=0.5).fit(X, y)
    modes = [m.training for m in net.module_.modules()]
    params = dict(epsilon_w=0.5, batch_size=50, random_state=0, device="cpu")
    on = GradPC(FrozenEstimator(net), train_mode=True, **params).fit(X, y)
    again = GradPC(FrozenEstimator(net), train_mode=True, **params).fit(X, y)
    off = GradPC(FrozenEstimator(net), train_mode=False, **params).fit(X, y)
    w = {k: torch.cat([p.detach().reshape(-1) for p in g.target_.module_.parameters()])
         for k, g in (("on", on), ("again", again), ("off", off))}
    torch.testing.assert_close(w["on"], w["again"])  # dropout is seeded
    assert not torch.allclose(w["on"], w["off"])  # and changes the ascent
    # the source net's modes are left as they were
    assert [m.training for m in net.module_.modules()] == modes
