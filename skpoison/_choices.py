"""Names of the protocol's datasets, models, targets, defenses, attacks and devices.

Plain constants with no heavy imports, so that ``skpoison --help`` and argument
errors answer without importing torch, skorch or scikit-learn.
"""

__all__ = [
    "ATTACKS", "COMPARE_TARGETS", "DATASETS", "DEFENSES", "MODELS", "NETS", "PAPER_MODELS",
    "PRESET_NAMES", "REPRODUCTIONS", "TARGETS",
]

DATASETS = ("digits", "or", "gaussian", "mnist", "mnist17", "cifar10")
NETS = ("nn", "cnn", "resnet18", "resnet34")
MODELS = ("logreg", "linear-svc", "sgd") + NETS
TARGETS = ("gradpc", "randompc", "labelflip", "scaled-gradpc")
DEFENSES = ("sever", "influence")
# the attacks `skpoison compare` runs side by side, and the targets it builds
ATTACKS = ("gc", "kkt", "mt", "fw", "labelflip", "gm", "tgda")
COMPARE_TARGETS = ("labelflip", "gradpc")
# ``skpoison reproduce``: the paper's experiments, its victims and the run sizes
REPRODUCTIONS = ("table2", "figure2", "figure3", "table6")
PAPER_MODELS = ("lr", "nn", "cnn")
PRESET_NAMES = ("cpu", "gpu")
