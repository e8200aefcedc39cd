"""The paper's protocol as code, split by job.

- the registry (:mod:`._registry`): named datasets, victims, targets and defenses, each
  a dict of factories;
- the protocol (:mod:`._protocol`): :class:`PoisoningProtocol` fits the clean model, the
  target and ``g(mu)`` once and runs attacks and defenses against them
  (:func:`evaluate_attack`, :func:`evaluate_defense`);
- the named jobs of the command line (:mod:`._jobs`) and the paper's experiments
  (:mod:`._reproduce`);
- the comparison of several attacks on one target (:mod:`._compare`);
- reporting (:mod:`._reporting`): tables, strict JSON, files and figures.
"""

from ..targets import scale_to_threshold
from ._compare import (
    compare_attacks,
    comparison_report,
    format_comparison_table,
    label_flip_target,
)
from ._jobs import analyze_poisonability, attack_report
from ._protocol import PoisoningProtocol, evaluate_attack, evaluate_defense
from ._registry import (
    ATTACKS,
    DATASETS,
    DEFENSES,
    MODELS,
    PROTOCOLS,
    TARGETS,
    default_epsilon_w,
    load_dataset,
    make_attack,
    make_defense,
    make_model,
    make_target,
)
from ._reporting import (
    format_analyze,
    format_attack_table,
    format_defense_table,
    format_table,
    phase_transition_figure,
    report_to_json,
    write_attack_report,
)
from ._reproduce import PRESETS, figure2, figure3, table2, table6

__all__ = [
    "ATTACKS",
    "DATASETS",
    "DEFENSES",
    "MODELS",
    "PRESETS",
    "PROTOCOLS",
    "TARGETS",
    "PoisoningProtocol",
    "analyze_poisonability",
    "attack_report",
    "compare_attacks",
    "comparison_report",
    "default_epsilon_w",
    "evaluate_attack",
    "evaluate_defense",
    "figure2",
    "figure3",
    "format_analyze",
    "format_attack_table",
    "format_comparison_table",
    "format_defense_table",
    "format_table",
    "label_flip_target",
    "phase_transition_figure",
    "load_dataset",
    "make_attack",
    "make_defense",
    "make_model",
    "make_target",
    "report_to_json",
    "scale_to_threshold",
    "table2",
    "table6",
    "write_attack_report",
]
