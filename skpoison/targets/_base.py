"""Target models: how the analyzer and the attacks obtain the parameters ``w``.

``target=`` accepts (a) a fitted estimator, (b) a
:class:`sklearn.frozen.FrozenEstimator` wrapping one (it survives ``clone`` and so
``GridSearchCV``), or (c) a *recipe*: an unfitted :class:`TargetRecipe` that, fitted on
the training data, produces ``target_``.
"""

from sklearn.base import BaseEstimator, clone
from sklearn.exceptions import NotFittedError
from sklearn.frozen import FrozenEstimator
from sklearn.utils import get_tags
from sklearn.utils._available_if import available_if
from sklearn.utils.validation import check_is_fitted

from .._utils import check_feature_names, is_fitted

__all__ = ["TargetRecipe", "fit_source_estimator", "resolve_target"]


def resolve_target(target, X, y):
    """Return the fitted target model named by ``target`` for training data ``(X, y)``.

    Recipes are cloned and fitted on ``(X, y)``; frozen and fitted estimators are used
    as they are (never modified).  An unfitted plain estimator raises
    :class:`~sklearn.exceptions.NotFittedError` saying what to pass instead.
    """
    if isinstance(target, TargetRecipe):
        return clone(target).fit(X, y).target_
    if isinstance(target, FrozenEstimator):
        target = target.estimator
    if not is_fitted(target):
        raise NotFittedError(
            f"The target {type(target).__name__} is not fitted. Pass a fitted model "
            "wrapped in sklearn.frozen.FrozenEstimator(model) (which survives clone and "
            "GridSearchCV), or a recipe from skpoison.targets such as "
            "GradPC(LogisticRegression(), epsilon_w=1.0) that builds the target from the "
            "training data."
        )
    return target


def fit_source_estimator(estimator, X, y):
    """The model a recipe starts from: frozen ones are taken, others fitted on ``(X, y)``.

    Pass ``X`` as the caller gave it: a fitted model keeps the column names it was
    fitted with, and a frozen one has them checked against ``X``'s.
    """
    if isinstance(estimator, FrozenEstimator):
        check_feature_names(estimator.estimator, X)
        return estimator.estimator
    if isinstance(estimator, TargetRecipe):
        return clone(estimator).fit(X, y).target_
    return clone(estimator).fit(X, y)


def _target_has(attr):
    def check(self):
        source = self.target_ if hasattr(self, "target_") else self.estimator
        if isinstance(source, FrozenEstimator):
            source = source.estimator
        return hasattr(source, attr)

    return check


class TargetRecipe(BaseEstimator):
    """Base class of target recipes.

    A recipe is an unfitted estimator whose ``fit(X, y)`` builds a target model from the
    training data and stores it in ``target_``; ``predict``, ``decision_function``,
    ``predict_proba`` and ``score`` use ``target_``.  Pass
    ``FrozenEstimator(fitted_model)`` as ``estimator`` to start from a model that is
    already fitted; any other estimator is cloned and fitted on the data.
    """

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        inner = get_tags(self.estimator)
        tags.estimator_type = inner.estimator_type
        tags.classifier_tags = inner.classifier_tags
        tags.regressor_tags = inner.regressor_tags
        tags.target_tags.required = True
        tags.input_tags.sparse = False
        return tags

    def _set_fitted_attributes(self, target, source):
        self.target_ = target
        self.estimator_ = source
        if hasattr(target, "classes_"):
            self.classes_ = target.classes_

    def predict(self, X):
        """Predict with the target model."""
        check_is_fitted(self, "target_")
        return self.target_.predict(X)

    @available_if(_target_has("decision_function"))
    def decision_function(self, X):
        """Decision function of the target model."""
        check_is_fitted(self, "target_")
        return self.target_.decision_function(X)

    @available_if(_target_has("predict_proba"))
    def predict_proba(self, X):
        """Class probabilities of the target model."""
        check_is_fitted(self, "target_")
        return self.target_.predict_proba(X)

    def score(self, X, y, sample_weight=None):
        """Score of the target model (accuracy for classifiers, R^2 for regressors)."""
        check_is_fitted(self, "target_")
        return self.target_.score(X, y, sample_weight=sample_weight)
