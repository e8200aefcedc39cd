"""What the closed-form feature-gradient tests share.

``test_perceptron.py`` and ``test_cnn_closed_form.py`` compare an objective whose
feature gradient is written out with its copy that takes autograd's double backward,
in every way ``Objective.poison_feature_gradient`` batches its rows.
"""

import numpy as np
import torch
from sklearn.frozen import FrozenEstimator

from skpoison.attacks import GradientCanceling


def assert_every_batch_mode_matches(objective, generic, X, y, base, rng, *, nonzero=True):
    """Equal feature gradients and gradient sums from ``objective`` and ``generic``.

    One batch, two exact passes, the lagged pass, moved parameters and a fixed
    residual; ``nonzero`` also asserts that the gradients compared are not zero.
    """
    def direction(s):
        return base + s / 7.0

    moved = {k: v + 0.3 * torch.as_tensor(rng.normal(size=v.shape))
             for k, v in objective.params.items()}
    for batch_size, lagged, params in [(None, None, None), (5, None, None), (5, base, None),
                                       (None, None, moved), (4, None, moved)]:
        got, got_sum = objective.poison_feature_gradient(
            X, y, direction, encoded=True, batch_size=batch_size, lagged=lagged, params=params
        )
        expected, expected_sum = generic.poison_feature_gradient(
            X, y, direction, encoded=True, batch_size=batch_size, lagged=lagged, params=params
        )
        if nonzero:
            assert float(expected.norm()) > 0
        np.testing.assert_allclose(got_sum.numpy(), expected_sum.numpy(), rtol=1e-10,
                                   atol=1e-12)
        np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-9, atol=1e-12)
    # a fixed residual (``vjp``'s use) gives what the callable one would
    got = objective.poison_feature_gradient(X, y, base, encoded=True, batch_size=6)[0]
    expected = generic.poison_feature_gradient(X, y, base, encoded=True, batch_size=6)[0]
    np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-9, atol=1e-12)


def assert_gradient_canceling_unchanged(monkeypatch, net, X, y, switch, *, moved, **params):
    """Whole Gradient Canceling runs give the same poison with and without a closed form.

    ``switch`` names the detection function in ``skpoison.objectives._base`` that is
    turned off for the second run; ``moved`` is the fraction of its first residual
    that the second run must end below (so that the comparison is of an attack that
    moved).
    """
    params = dict(params, random_state=0, device="cpu", dtype="float64")
    closed = GradientCanceling(FrozenEstimator(net), **params).fit(X, y)
    monkeypatch.setattr(f"skpoison.objectives._base.{switch}", lambda *args: None)
    generic = GradientCanceling(FrozenEstimator(net), **params).fit(X, y)
    assert generic.history_[-1] < moved * generic.history_[0]
    np.testing.assert_allclose(closed.history_, generic.history_, rtol=1e-8)
    np.testing.assert_allclose(closed.X_poison_, generic.X_poison_, rtol=1e-8, atol=1e-10)
