"""Defenses: filters that remove suspicious training rows, and MaxUp training.

:class:`SeverFilter` and :class:`InfluenceFilter` score the rows with the gradients of
the victim's own objective and remove the highest-scoring fraction; both are outlier
detectors (``fit_predict``: +1 keep, -1 remove) and imbalanced-learn samplers
(``fit_resample`` returns the kept rows), so they slot into
:class:`imblearn.pipeline.Pipeline` between an attack and the victim.
:class:`MaxUpClassifier` is a skorch net trained on the worst of several random
perturbations of each row.
"""

from ._influence import InfluenceFilter
from ._maxup import MaxUpClassifier
from ._sever import SeverFilter

__all__ = ["InfluenceFilter", "MaxUpClassifier", "SeverFilter"]
