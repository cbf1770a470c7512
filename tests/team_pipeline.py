"""A team's own pipeline factories, as the ``pipeline`` setting names them ("tests.team_pipeline:logistic").

The good ones return a new, unfitted scikit-learn estimator that takes a list of strings; the
others each break one rule, for the tests of the errors that name the fix.
"""

from __future__ import annotations

from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.svm import LinearSVC


def logistic() -> Pipeline:
    """Character n-grams + LogisticRegression: has predict_proba."""
    return _char_logistic()


def _char_logistic() -> Pipeline:
    return Pipeline([("tfidf", TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), sublinear_tf=True)),
                     ("clf", LogisticRegression(C=20.0, max_iter=300))])


def linear_svc() -> Pipeline:
    """Word n-grams + LinearSVC: no predict_proba, so Retrainer calibrates it."""
    return Pipeline([("tfidf", TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)), ("clf", LinearSVC(C=1.0))])


# -- broken on purpose ------------------------------------------------------------------------------------

NOT_CALLABLE = 42


def fitted() -> Pipeline:
    """Already fitted: Retrainer must fit its own."""
    return _char_logistic().fit(["where is my order", "refund please", "order status", "money back"],
                          ["track", "refund", "track", "refund"])


def not_an_estimator() -> str:
    return "tfidf + logistic regression"


def no_predict() -> TfidfVectorizer:
    """A transformer: fit and get_params, but nothing to predict with."""
    return TfidfVectorizer()


def raises() -> Pipeline:
    raise RuntimeError("the feature store is down")


class Uncloneable(ClassifierMixin, BaseEstimator):
    """Breaks scikit-learn's rule: __init__ changes its argument, so clone() refuses it."""

    def __init__(self, c: float = 1.0):
        self.c = c * 2

    def fit(self, X, y):  # pragma: no cover - never reached: clone() fails first
        return self

    def predict(self, X):  # pragma: no cover
        return ["x"] * len(X)


def uncloneable() -> Uncloneable:
    return Uncloneable(c=1.0)
