"""Attacks: samplers that add poison to the training data."""

from ._frank_wolfe import FrankWolfeCanceling
from ._gradient_canceling import GradientCanceling
from ._gradient_matching import GradientMatching
from ._kkt import KKTAttack
from ._label_flip import LabelFlipAttack
from ._model_targeted import ModelTargetedAttack
from ._tgda import TGDA

__all__ = [
    "FrankWolfeCanceling",
    "GradientCanceling",
    "GradientMatching",
    "KKTAttack",
    "LabelFlipAttack",
    "ModelTargetedAttack",
    "TGDA",
]
