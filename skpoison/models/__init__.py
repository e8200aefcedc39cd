"""The paper's nets as torch modules, and skorch classifiers configured to train them.

Modules map flat float rows (as scikit-learn passes them) to logits and end in a
:class:`torch.nn.Linear` layer, the threshold head of
:class:`~skpoison.PoisonabilityAnalyzer`.  :func:`make_net` wraps one in a
:class:`SeededNeuralNetClassifier` (skorch, ``CrossEntropyLoss``, seeded by
``random_state``), which :func:`skpoison.objectives.as_objective`, the analyzer,
:class:`~skpoison.attacks.GradientCanceling` and :class:`~skpoison.targets.GradPC`
accept like any linear model.
"""

from ._factories import NETS, SeededNeuralNetClassifier, make_net
from ._modules import (
    CNN,
    MLP,
    LogisticRegressionNet,
    ResNet,
    infer_image_shape,
    resnet18,
    resnet34,
)
from ._paper import PAPER_VICTIMS, paper_victim

__all__ = [
    "CNN",
    "MLP",
    "NETS",
    "PAPER_VICTIMS",
    "LogisticRegressionNet",
    "ResNet",
    "SeededNeuralNetClassifier",
    "infer_image_shape",
    "make_net",
    "paper_victim",
    "resnet18",
    "resnet34",
]
