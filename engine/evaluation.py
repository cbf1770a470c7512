"""Scoring a model on an evaluation set: accuracy, macro-F1, per-class figures, confusion.

Computed with numpy from the confusion counts (fast and exact); macro-F1 averages the
F1 of the labels present in the evaluation set, matching
``sklearn.metrics.f1_score(y, p, labels=sorted(set(y)), average="macro", zero_division=0)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd

from engine.stats import encode


@dataclass(frozen=True)
class Scores:
    accuracy: float
    macro_f1: float
    rows: int
    per_class: dict[str, dict[str, float]] = field(default_factory=dict)
    labels: tuple[str, ...] = ()
    confusion: tuple[tuple[int, ...], ...] = ()

    def report(self) -> dict[str, Any]:
        """A JSON-friendly record for the registry (per-class figures and the confusion matrix)."""
        return {"per_class": self.per_class, "labels": list(self.labels), "confusion": [list(r) for r in self.confusion]}


def score_predictions(y_true: Sequence[str], y_pred: Sequence[str]) -> Scores:
    """Scores of predictions against true labels.

    >>> s = score_predictions(["a", "a", "b", "b"], ["a", "b", "b", "b"])
    >>> (s.accuracy, round(s.macro_f1, 4))
    (0.75, 0.7333)
    """
    n = len(y_true)
    if n == 0:
        return Scores(0.0, 0.0, 0)
    t, (p,), all_labels = encode(y_true, y_pred)
    index = {label: i for i, label in enumerate(all_labels)}
    k = len(all_labels)
    confusion = np.bincount(t * k + p, minlength=k * k).reshape(k, k)
    tp = np.diag(confusion).astype(float)
    support = confusion.sum(axis=1).astype(float)
    predicted = confusion.sum(axis=0).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(support > 0, tp / support, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    present = np.unique(t)  # the labels of y_true
    per_class = {
        label: {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for label, i in index.items()
    }
    return Scores(
        accuracy=float(tp.sum() / n),
        macro_f1=float(f1[present].mean()),
        rows=n,
        per_class=per_class,
        labels=tuple(all_labels),
        confusion=tuple(tuple(int(x) for x in row) for row in confusion),
    )


def expected_calibration_error(confidence: Sequence[float], correct: Sequence[bool], *, bins: int = 10) -> float:
    """ECE: the row-weighted mean gap between confidence and accuracy over equal-width confidence bins.

    Bin ``i`` holds confidences in ``(i/bins, (i+1)/bins]`` (the first also holds 0).

    >>> expected_calibration_error([0.9, 0.9, 0.6, 0.6], [True, True, True, False])
    0.1
    """
    conf = np.asarray(confidence, dtype=float)
    hit = np.asarray(correct, dtype=float)
    if conf.shape != hit.shape:
        raise ValueError(f"confidence and correctness must have the same rows: {conf.size} vs {hit.size}")
    if conf.size == 0:
        return 0.0
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    which = np.clip(np.ceil(conf * bins).astype(int) - 1, 0, bins - 1)
    gap = np.bincount(which, weights=conf, minlength=bins) - np.bincount(which, weights=hit, minlength=bins)
    return float(round(np.abs(gap).sum() / conf.size, 12))


def predict_labels(model: Any, eval_set: pd.DataFrame) -> list[Any]:
    """The model's predicted label for each evaluation row (in order)."""
    if eval_set.empty:
        return []
    return list(model.predict(eval_set["text"].tolist()))


def calibration(model: Any, eval_set: pd.DataFrame, *, bins: int = 10) -> float | None:
    """Expected calibration error of the model's top-class probability on ``eval_set`` (None without probabilities)."""
    if eval_set.empty or not hasattr(model, "predict_proba"):
        return None
    proba = np.asarray(model.predict_proba(eval_set["text"].tolist()))
    predicted = np.asarray(model.classes_)[proba.argmax(axis=1)]
    correct = predicted == eval_set["label"].to_numpy(dtype=object)
    return expected_calibration_error(proba.max(axis=1), correct, bins=bins)


def predict_and_calibrate(model: Any, eval_set: pd.DataFrame, *, bins: int = 10,
                          counts: Any = None) -> tuple[list[Any], float | None]:
    """``predict_labels`` and ``calibration`` from one pass over the texts (the top-probability class is
    the predicted class), which saves a third of the gate's scoring time on a big evaluation set.

    ``counts``: an :class:`engine.evaluation_counts.EvaluationCounts` of ``eval_set``'s texts, whose
    ``predict_proba`` returns the model's own probabilities bit for bit without re-analysing the texts.
    """
    if eval_set.empty or not hasattr(model, "predict_proba"):
        return predict_labels(model, eval_set), calibration(model, eval_set, bins=bins)
    texts = eval_set["text"].tolist()
    proba = np.asarray(model.predict_proba(texts) if counts is None else counts.predict_proba(model, texts))
    predicted = np.asarray(model.classes_)[proba.argmax(axis=1)]
    correct = predicted == eval_set["label"].to_numpy(dtype=object)
    return predicted.tolist(), expected_calibration_error(proba.max(axis=1), correct, bins=bins)


def score_model(model: Any, eval_set: pd.DataFrame) -> Scores:
    """Scores of a fitted model on ``eval_set`` (columns text, label)."""
    if eval_set.empty:
        return Scores(0.0, 0.0, 0)
    predictions = model.predict(eval_set["text"].tolist())
    return score_predictions(eval_set["label"].tolist(), list(predictions))


def majority_baseline(train: pd.DataFrame, eval_set: pd.DataFrame) -> Scores:
    """Scores of always answering the most frequent training label."""
    if train.empty or eval_set.empty:
        return Scores(0.0, 0.0, len(eval_set))
    counts = train["label"].value_counts()
    majority = sorted(counts[counts == counts.max()].index)[0]
    return score_predictions(eval_set["label"].tolist(), [majority] * len(eval_set))
