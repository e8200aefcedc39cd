"""skpoison: indiscriminate data poisoning for scikit-learn.

Model poisonability (the threshold tau), the Gradient Canceling attack, target-model
recipes, datasets and defenses, as estimators that compose with ``Pipeline``,
``GridSearchCV`` and skorch.
"""

__version__ = "0.1.0"

from ._poisonability import PoisonabilityAnalyzer  # noqa: E402
from .attacks import GradientCanceling  # noqa: E402

__all__ = ["GradientCanceling", "PoisonabilityAnalyzer", "__version__"]
