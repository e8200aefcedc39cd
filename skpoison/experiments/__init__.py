"""The paper's protocol as code: datasets, victims, targets, reports."""

from ._analyze import analyze_poisonability
from ._attack import evaluate_attack, evaluate_defense
from ._reproduce import PRESETS, figure2, figure3, table2, table6
from ._report import (
    attack_report,
    format_attack_table,
    format_defense_table,
    write_attack_report,
)
from ..targets import scale_to_threshold
from ._registry import (
    DATASETS,
    DEFENSES,
    MODELS,
    PROTOCOLS,
    TARGETS,
    default_epsilon_w,
    load_dataset,
    make_defense,
    make_model,
    make_target,
)

__all__ = [
    "DATASETS",
    "DEFENSES",
    "MODELS",
    "PRESETS",
    "PROTOCOLS",
    "TARGETS",
    "analyze_poisonability",
    "attack_report",
    "default_epsilon_w",
    "evaluate_attack",
    "evaluate_defense",
    "figure2",
    "figure3",
    "format_attack_table",
    "format_defense_table",
    "load_dataset",
    "make_defense",
    "make_model",
    "make_target",
    "scale_to_threshold",
    "table2",
    "table6",
    "write_attack_report",
]
