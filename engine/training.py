"""The text pipeline: what a model is, and how it is fitted.

TF-IDF over word 1-2 grams (vocabulary pruned by ``min_df`` and capped by
``max_features``) feeding a linear model trained by SGD on the logistic loss.
DESIGN.md's measurements rule out lbfgs LogisticRegression at 100k+ rows on two
cores; SGD on a pruned vocabulary fits 100k queries in seconds, and the logistic
loss keeps ``predict_proba`` meaningful for the confidence filter.

An optional cross-validated search over SGD's ``alpha`` (:mod:`engine.tuning`, off by
default) picks the value to fit; what it tried, chose and where it ran is kept in the
model's params.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import sklearn
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import SGDClassifier
from sklearn.pipeline import Pipeline

from engine.errors import TrainingError
from engine.tuning import SearchPlan, search_alpha

log = logging.getLogger(__name__)


def build_pipeline(*, max_features: int = 200_000, min_df: int = 2, seed: int = 0, n_rows: int | None = None) -> Pipeline:
    """An unfitted pipeline. ``min_df`` is relaxed to 1 for tiny training sets.

    >>> build_pipeline(seed=1).named_steps["clf"].random_state
    1
    """
    if n_rows is not None and n_rows < 200:
        min_df = 1
    return Pipeline(
        [
            (
                "tfidf",
                TfidfVectorizer(
                    ngram_range=(1, 2),
                    min_df=min_df,
                    max_features=max_features,
                    sublinear_tf=True,
                    dtype=np.float32,
                ),
            ),
            (
                "clf",
                SGDClassifier(
                    loss="log_loss",
                    alpha=2e-5,
                    max_iter=10,
                    tol=1e-3,
                    random_state=seed,
                    n_jobs=2,
                    average=False,
                ),
            ),
        ]
    )


@dataclass(frozen=True)
class FittedModel:
    pipeline: Pipeline
    params: dict[str, Any]
    train_rows: int
    labels: tuple[str, ...]
    fit_seconds: float
    sklearn_version: str


def fit(train: pd.DataFrame, *, max_features: int = 200_000, min_df: int = 2, seed: int = 0,
        search: SearchPlan | None = None) -> FittedModel:
    """Fit the pipeline on ``train`` (columns text, label); needs at least two labels.

    With a ``search`` plan, SGD's alpha is first chosen by cross-validation (see
    :mod:`engine.tuning`); its record is ``params["search"]``.
    """
    labels = tuple(sorted(train["label"].unique())) if len(train) else ()
    if len(labels) < 2:
        raise TrainingError(
            f"the clean training set has {len(train)} rows and {len(labels)} label(s): at least two labels are needed; "
            "import labelled examples with `python -m engine import FILE --labeled`"
        )
    pipeline = build_pipeline(max_features=max_features, min_df=min_df, seed=seed, n_rows=len(train))
    searched = None
    if search is not None:
        searched = search_alpha(pipeline, train["text"].tolist(), train["label"].to_numpy(), plan=search, seed=seed)
        if searched.alpha is not None:
            pipeline.set_params(clf__alpha=searched.alpha)
    started = time.perf_counter()
    import warnings
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # max_iter is a deliberate time budget
        pipeline.fit(train["text"].tolist(), train["label"].to_numpy())
    clf = pipeline.named_steps["clf"]
    clf.coef_ = np.asfortranarray(clf.coef_)  # single-query predict without copying (DESIGN.md)
    # The vectorizer keeps every pruned term in stop_words_, only for introspection; it can
    # dwarf the model and slow every load (scikit-learn's docs suggest dropping it).
    tfidf = pipeline.named_steps["tfidf"]
    if hasattr(tfidf, "stop_words_"):
        del tfidf.stop_words_
    seconds = time.perf_counter() - started
    tfidf = pipeline.named_steps["tfidf"]
    params = {
        "features": "tfidf word 1-2 grams, sublinear tf",
        "min_df": tfidf.min_df,
        "max_features": max_features,
        "vocabulary": len(tfidf.vocabulary_),
        "classifier": "SGDClassifier(log_loss)",
        "alpha": clf.alpha,
        "max_iter": clf.max_iter,
        "epochs_run": int(np.max(clf.n_iter_)) if np.ndim(clf.n_iter_) else int(clf.n_iter_),
        "seed": seed,
        # The training set's label mix: the reference of the drift warnings' Jensen-Shannon distance.
        "label_counts": {str(k): int(v) for k, v in train["label"].value_counts().sort_index().items()},
    }
    if searched is not None:
        params["search"] = searched.as_params()
    log.info("fitted %d rows, %d labels, vocabulary %d in %.2fs", len(train), len(labels), len(tfidf.vocabulary_), seconds)
    return FittedModel(pipeline, params, len(train), labels, seconds, sklearn.__version__)
