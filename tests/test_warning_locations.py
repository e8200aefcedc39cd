"""skpoison's warnings name the user's line, however deep inside a fit they start.

Each case runs from this file, so every warning it raises must report this file.
"""

import warnings

import numpy as np
import pytest
import torch
from sklearn.exceptions import ConvergenceWarning, DataConversionWarning
from sklearn.frozen import FrozenEstimator
from imblearn.pipeline import make_pipeline
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, cross_val_score

from skpoison import GradientCanceling
from skpoison.attacks import TGDA
from skpoison.datasets import load_digits
from skpoison.defenses import InfluenceFilter, MaxUpClassifier
from skpoison.models import MLP, make_net
from skpoison.objectives import as_objective
from skpoison.targets import GradPC


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return (X[:150] / 16).astype(np.float32), y[:150]


def _zero_model(X, y):
    clf = LogisticRegression(max_iter=50).fit(X, y)
    clf.coef_[:] = 0.0
    clf.intercept_[:] = 0.0
    return clf


def _adamw_net(X, y):
    return make_net("mlp", hidden_size=8, max_epochs=1, random_state=0, device="cpu",
                    optimizer=torch.optim.AdamW, optimizer__weight_decay=0.1).fit(X, y)


CASES = {
    "TGDA's conjugate gradients (fit_resample)": (
        ConvergenceWarning,
        lambda X, y: TGDA(LogisticRegression(max_iter=50).fit(X, y), epsilon_d=0.2,
                          max_iter=1, cg_max_iter=1, follower_steps=1,
                          random_state=0).fit_resample(X, y),
    ),
    "InfluenceFilter's conjugate gradients": (
        ConvergenceWarning,
        lambda X, y: InfluenceFilter(LogisticRegression(max_iter=50), solver="cg",
                                     cg_max_iter=1).fit(X, y),
    ),
    "GradPC's zero radius": (
        UserWarning,
        lambda X, y: GradPC(FrozenEstimator(_zero_model(X, y)), relative=True,
                            random_state=0).fit(X, y),
    ),
    "a net's column-vector y": (
        DataConversionWarning,
        lambda X, y: make_net("mlp", hidden_size=8, max_epochs=1, random_state=0,
                              device="cpu").fit(X, y[:, None]),
    ),
    "MaxUp's column-vector y": (
        DataConversionWarning,
        lambda X, y: MaxUpClassifier(MLP, module__n_features=None, module__n_classes=None,
                                     module__hidden_size=8, max_epochs=1, n_augment=2,
                                     random_state=0, verbose=0).fit(X, y[:, None]),
    ),
    "an objective's column-vector y": (
        DataConversionWarning,
        lambda X, y: as_objective(LogisticRegression(max_iter=50).fit(X, y)).encode_labels(
            y[:, None]
        ),
    ),
    "InfluenceFilter in an imbalanced-learn Pipeline": (
        ConvergenceWarning,
        lambda X, y: make_pipeline(
            InfluenceFilter(LogisticRegression(max_iter=50), solver="cg", cg_max_iter=1),
            LogisticRegression(max_iter=50),
        ).fit(X, y),
    ),
    "GradPC in a GridSearchCV": (
        UserWarning,
        lambda X, y: GridSearchCV(
            GradPC(FrozenEstimator(_zero_model(X, y)), relative=True, random_state=0),
            {"epsilon_w": [0.1, 0.2]}, cv=2,
        ).fit(X, y),
    ),
    "a net's column-vector y in cross_val_score": (
        DataConversionWarning,
        lambda X, y: cross_val_score(
            make_net("mlp", hidden_size=8, max_epochs=1, random_state=0, device="cpu"),
            X, y[:, None], cv=2,
        ),
    ),
    "AdamW's weight decay (as_objective)": (
        UserWarning, lambda X, y: as_objective(_adamw_net(X, y)),
    ),
    "AdamW's weight decay (inside GradientCanceling.fit)": (
        UserWarning,
        lambda X, y: GradientCanceling(FrozenEstimator(_adamw_net(X, y)), epsilon_d=0.1,
                                       max_iter=1, random_state=0).fit(X, y),
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_warnings_name_the_callers_line(case, digits):
    X, y = digits
    category, run = CASES[case]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run(X, y)
    ours = [w for w in caught if issubclass(w.category, category)]
    assert ours, f"{case}: no {category.__name__} raised"
    assert all(w.filename == __file__ for w in ours), [
        (w.filename, w.lineno, str(w.message)[:60]) for w in ours
    ]


def test_a_warning_at_import_time_names_the_importing_line(tmp_path, monkeypatch):
    # a library module that warns while it is imported: between its frame and the
    # user's import line lie the import machinery's frames, which warnings.warn skips
    import sys

    from skpoison._utils import _warnings

    library = tmp_path / "warning_library"
    library.mkdir()
    (library / "__init__.py").write_text(
        "import warnings\n"
        "from skpoison._utils import user_stacklevel\n"
        "warnings.warn('imported', UserWarning, stacklevel=user_stacklevel())\n"
    )
    monkeypatch.setattr(_warnings, "_FOLDERS", _warnings._FOLDERS + (str(library) + "/",))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "warning_library", raising=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        import warning_library
    assert [(w.filename, str(w.message)) for w in caught] == [(__file__, "imported")]
    assert sys.modules["warning_library"] is warning_library
