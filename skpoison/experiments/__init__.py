"""The paper's protocol as code: datasets, victims, targets, reports."""

from ._analyze import analyze_poisonability
from ._attack import evaluate_attack
from ._report import attack_report, format_attack_table, write_attack_report
from ._registry import (
    DATASETS,
    MODELS,
    TARGETS,
    default_epsilon_w,
    load_dataset,
    make_model,
    make_target,
)

__all__ = [
    "DATASETS",
    "MODELS",
    "TARGETS",
    "analyze_poisonability",
    "attack_report",
    "default_epsilon_w",
    "evaluate_attack",
    "format_attack_table",
    "write_attack_report",
    "load_dataset",
    "make_model",
    "make_target",
]
