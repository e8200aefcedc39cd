"""Victim training objectives viewed at fixed parameters (the core of skpoison).

Importing this package registers the adapters for scikit-learn linear models and
skorch nets; a new victim type is one more adapter module registered with
:func:`register_adapter`.
"""

from ._base import Objective
from ._clean_gradient import CleanGradient
from ._curvature import (
    conjugate_gradient,
    exact_hessian,
    hessian_vector_products,
    loss_hessian_products,
)
from ._losses import (
    BinaryMarginLoss,
    CrossEntropyLoss,
    OneVsRestMarginLoss,
    SquaredLoss,
    TrainingLoss,
)
from ._margins import MARGIN_LOSSES, MarginLoss, margin_bounds, softmax_bounds
from ._penalty import Penalty
from ._registry import as_objective, register_adapter, supported_estimators

# the adapters register themselves on import
from ._sklearn import LinearModule  # noqa: E402
from ._torch import last_linear_layer  # noqa: E402

__all__ = [
    "MARGIN_LOSSES",
    "BinaryMarginLoss",
    "CleanGradient",
    "CrossEntropyLoss",
    "LinearModule",
    "MarginLoss",
    "Objective",
    "OneVsRestMarginLoss",
    "Penalty",
    "SquaredLoss",
    "TrainingLoss",
    "as_objective",
    "conjugate_gradient",
    "exact_hessian",
    "hessian_vector_products",
    "last_linear_layer",
    "loss_hessian_products",
    "margin_bounds",
    "register_adapter",
    "softmax_bounds",
    "supported_estimators",
]
