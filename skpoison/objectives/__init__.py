"""Victim training objectives viewed at fixed parameters (the core of skpoison)."""

from ._as_objective import SUPPORTED_ESTIMATORS, as_objective
from ._base import Objective
from ._margins import MARGIN_LOSSES, MarginLoss, margin_bounds, softmax_bounds
from ._sklearn import LinearModule
from ._torch import last_linear_layer

__all__ = [
    "MARGIN_LOSSES",
    "SUPPORTED_ESTIMATORS",
    "LinearModule",
    "MarginLoss",
    "Objective",
    "as_objective",
    "last_linear_layer",
    "margin_bounds",
    "softmax_bounds",
]
