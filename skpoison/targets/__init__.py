"""Target-model recipes: where the target parameters ``w`` come from."""

from ._base import TargetRecipe, resolve_target
from ._label_flip import LabelFlipTarget
from ._scaled import ScaledTarget

__all__ = ["LabelFlipTarget", "ScaledTarget", "TargetRecipe", "resolve_target"]
