"""Names of the protocol's datasets, models, targets, defenses, attacks and devices.

Plain constants with no heavy imports, so that ``skpoison --help`` and argument
errors answer without importing torch, skorch or scikit-learn.
"""

__all__ = ["ATTACKS", "COMPARE_TARGETS", "DATASETS", "DEFENSES", "MODELS", "NETS", "TARGETS"]

DATASETS = ("digits", "or", "gaussian", "mnist", "mnist17", "cifar10")
NETS = ("nn", "cnn", "resnet18", "resnet34")
MODELS = ("logreg", "linear-svc", "sgd") + NETS
TARGETS = ("gradpc", "randompc", "labelflip", "scaled-gradpc")
DEFENSES = ("sever", "influence")
# the attacks `skpoison compare` runs side by side, and the targets it builds
ATTACKS = ("gc", "kkt", "mt", "fw", "labelflip", "gm", "tgda")
COMPARE_TARGETS = ("labelflip", "gradpc")
