"""Attacks: samplers that add poison to the training data."""

from ._frank_wolfe import FrankWolfeCanceling
from ._gradient_canceling import GradientCanceling
from ._kkt import KKTAttack
from ._label_flip import LabelFlipAttack
from ._model_targeted import ModelTargetedAttack

__all__ = [
    "FrankWolfeCanceling",
    "GradientCanceling",
    "KKTAttack",
    "LabelFlipAttack",
    "ModelTargetedAttack",
]
