"""Fitting a model: the estimator of the ``pipeline`` setting (:mod:`engine.pipelines`) on a training set.

The presets are TF-IDF features feeding a linear model trained by SGD on the logistic loss.
DESIGN.md's measurements rule out lbfgs LogisticRegression at 100k+ rows on two cores; SGD on a
pruned vocabulary fits 100k queries in seconds, and the logistic loss keeps ``predict_proba``
meaningful for the confidence filter. A team's factory gives its own estimator; one without
``predict_proba`` is calibrated (see :mod:`engine.pipelines`), and the params say so.

An optional cross-validated search over SGD's ``alpha`` (:mod:`engine.tuning`, off by
default) picks the value to fit for a preset; what it tried, chose and where it ran is kept in
the model's params.
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import sklearn
from sklearn.exceptions import ConvergenceWarning
from sklearn.feature_extraction.text import CountVectorizer

from engine.errors import TrainingError
from engine.pipelines import DEFAULT_PIPELINE, FEATURE_CHARS, build_estimator, calibrated, json_params
from engine.tuning import SearchPlan, search_alpha

log = logging.getLogger(__name__)


def build_pipeline(*, pipeline: str = DEFAULT_PIPELINE, max_features: int = 200_000, min_df: int = 2, seed: int = 0,
                   n_rows: int | None = None) -> Any:
    """The unfitted estimator of ``pipeline`` (a preset or a factory; see :func:`engine.pipelines.build_estimator`).

    >>> build_pipeline(seed=1).named_steps["clf"].random_state
    1
    """
    return build_estimator(pipeline, max_features=max_features, min_df=min_df, seed=seed, n_rows=n_rows).estimator


@dataclass(frozen=True)
class FittedModel:
    pipeline: Any            # the fitted estimator (a scikit-learn Pipeline for the presets)
    params: dict[str, Any]
    train_rows: int
    labels: tuple[str, ...]
    fit_seconds: float
    sklearn_version: str


def fit(train: pd.DataFrame, *, pipeline: str = DEFAULT_PIPELINE, max_features: int = 200_000, min_df: int = 2,
        seed: int = 0, search: SearchPlan | None = None) -> FittedModel:
    """Fit the ``pipeline`` setting's estimator on ``train`` (columns text, label); needs at least two labels.

    With a ``search`` plan, a preset's SGD alpha is first chosen by cross-validation (see
    :mod:`engine.tuning`); its record is ``params["search"]``. A team's factory is not searched.
    Raises TrainingError (too few labels, the estimator failed to fit) or PipelineError (a factory
    that no longer gives a usable estimator).
    """
    labels = tuple(sorted(train["label"].unique())) if len(train) else ()
    if len(labels) < 2:
        raise TrainingError(
            f"the clean training set has {len(train)} rows and {len(labels)} label(s): at least two labels are needed; "
            "import labelled examples with `python -m engine import FILE --labeled`"
        )
    built = build_estimator(pipeline, max_features=max_features, min_df=min_df, seed=seed, n_rows=len(train))
    estimator = built.estimator
    texts, y = train["text"].tolist(), train["label"].to_numpy()
    searched: dict[str, Any] | None = None
    if search is not None and built.kind == "preset":
        result = search_alpha(estimator, texts, y, plan=search, seed=seed)
        if result.alpha is not None:
            estimator.set_params(clf__alpha=result.alpha)
        searched = result.as_params()
    elif search is not None:
        searched = {"skipped": f"the search tunes the presets' SGD alpha; the team pipeline {pipeline!r} is fitted as "
                               "its factory builds it", "cv_folds": search.cv_folds}
    calibration = None
    if built.needs_calibration:
        estimator, calibration = calibrated(estimator, y)
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # max_iter is a deliberate time budget
        try:
            estimator.fit(texts, y)
        except Exception as exc:
            if built.kind == "preset":
                raise
            raise TrainingError(
                f"the team pipeline {pipeline!r} failed to fit on {len(texts)} texts ({type(exc).__name__}: {exc}); "
                "its fit(X, y) must take a list of strings and their labels"
            ) from exc
    _slim(estimator)
    seconds = time.perf_counter() - started
    params: dict[str, Any] = {
        "pipeline": pipeline,
        "pipeline_kind": built.kind,
        "estimator": type(built.estimator).__name__,
        "pipeline_params": json_params(built.estimator),
        "calibration": calibration,
        "sklearn_version": sklearn.__version__,
        "seed": seed,
        # The training set's label mix: the reference of the drift warnings' Jensen-Shannon distance.
        "label_counts": {str(k): int(v) for k, v in train["label"].value_counts().sort_index().items()},
    }
    if built.kind == "preset":
        params.update(_preset_params(estimator, pipeline, max_features))
    if searched is not None:
        params["search"] = searched
    log.info("fitted %s on %d rows, %d labels in %.2fs", pipeline, len(train), len(labels), seconds)
    return FittedModel(estimator, params, len(train), labels, seconds, sklearn.__version__)


FEATURES = {
    "word": "tfidf word 1-2 grams, sublinear tf, first 10,000 characters",
    "char": "tfidf char_wb 1-4 grams, sublinear tf, first 10,000 characters",
    "word+char": "tfidf word 1-2 grams + char_wb 1-4 grams, sublinear tf, first 10,000 characters",
}


def _vectorizers(estimator: Any) -> list[CountVectorizer]:
    """The fitted text vectorizers inside ``estimator`` (TfidfVectorizer is a CountVectorizer), in order."""
    found: list[CountVectorizer] = []
    stack = [estimator]
    while stack:
        node = stack.pop(0)
        if isinstance(node, CountVectorizer):
            found.append(node)
        for attr in ("steps", "transformer_list"):
            stack.extend(step for _, step in getattr(node, attr, []) if hasattr(step, "get_params"))
        if hasattr(node, "estimator") and hasattr(node.estimator, "get_params"):
            stack.append(node.estimator)
        for calibrated_clf in getattr(node, "calibrated_classifiers_", []):
            stack.append(calibrated_clf.estimator)
    return found


def _slim(estimator: Any) -> None:
    """Make the fitted model small and quick to serve, without changing a single prediction.

    Every vectorizer's ``stop_words_`` (each pruned term, kept only for introspection: it can dwarf the
    model and slow every load; scikit-learn's docs suggest dropping it) is removed; a preset's SGD
    coefficients are stored in Fortran order (single-query predict without a copy, DESIGN.md).
    """
    for vectorizer in _vectorizers(estimator):
        if hasattr(vectorizer, "stop_words_"):
            del vectorizer.stop_words_
    clf = getattr(estimator, "named_steps", {}).get("clf")
    if clf is not None and isinstance(getattr(clf, "coef_", None), np.ndarray):
        clf.coef_ = np.asfortranarray(clf.coef_)


def _preset_params(estimator: Any, pipeline: str, max_features: int) -> dict[str, Any]:
    clf = estimator.named_steps["clf"]
    vectorizers = _vectorizers(estimator)
    return {
        "features": FEATURES[pipeline],
        "feature_chars": FEATURE_CHARS,
        "min_df": vectorizers[0].min_df,
        "max_features": max_features,
        "vocabulary": sum(len(v.vocabulary_) for v in vectorizers),
        "classifier": "SGDClassifier(log_loss)",
        "alpha": clf.alpha,
        "max_iter": clf.max_iter,
        "epochs_run": int(np.max(clf.n_iter_)) if np.ndim(clf.n_iter_) else int(clf.n_iter_),
    }
