"""GradPC with this package's earlier schedule, for tests written against it.

Relative radius, 100 full-batch steps on a held-out 30%, best iterate (the paper's
released schedule is GradPC's default now; the experiments registry pins the same
settings for ``protocol="default"``).
"""

from skpoison.targets import GradPC

OLD = dict(relative=True, validation_fraction=0.3, batch_size=None, max_iter=100,
           iterate="best", train_mode=False)


def old_gradpc(estimator, **params):
    """A GradPC recipe with the earlier schedule, overridden by ``params``."""
    return GradPC(estimator, **{**OLD, **params})
