"""The paper's protocol as code: datasets, victims, targets, reports."""

from ._analyze import analyze_poisonability
from ._registry import DATASETS, MODELS, TARGETS, load_dataset, make_model, make_target

__all__ = [
    "DATASETS",
    "MODELS",
    "TARGETS",
    "analyze_poisonability",
    "load_dataset",
    "make_model",
    "make_target",
]
