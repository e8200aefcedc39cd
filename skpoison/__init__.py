"""skpoison: indiscriminate data poisoning for scikit-learn.

Model poisonability (the threshold tau), the Gradient Canceling attack, target-model
recipes, datasets and defenses, as estimators that compose with ``Pipeline``,
``GridSearchCV`` and skorch.
"""

__version__ = "0.1.0"

__all__ = ["GradientCanceling", "PoisonabilityAnalyzer", "__version__"]

# The estimators are imported on first use (PEP 562), so that ``import skpoison`` and
# the command line's ``--help`` do not pay for importing torch.
_LAZY = {
    "GradientCanceling": "skpoison.attacks",
    "PoisonabilityAnalyzer": "skpoison._poisonability",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'skpoison' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
