"""Target-model recipes: where the target parameters ``w`` come from."""

from ._base import TargetRecipe, resolve_target
from ._label_flip import LabelFlipTarget
from ._parameter_corruption import GradPC, RandomPC
from ._scale_to_threshold import scale_to_threshold
from ._scaled import ScaledTarget

__all__ = [
    "GradPC",
    "LabelFlipTarget",
    "RandomPC",
    "ScaledTarget",
    "TargetRecipe",
    "resolve_target",
    "scale_to_threshold",
]
