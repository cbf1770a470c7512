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
    y_true = np.asarray(y_true, dtype=object)
    y_pred = np.asarray(y_pred, dtype=object)
    n = len(y_true)
    if n == 0:
        return Scores(0.0, 0.0, 0)
    true_labels = sorted(set(y_true.tolist()))
    all_labels = sorted(set(true_labels) | set(y_pred.tolist()))
    index = {label: i for i, label in enumerate(all_labels)}
    t = np.fromiter((index[v] for v in y_true), dtype=np.int64, count=n)
    p = np.fromiter((index[v] for v in y_pred), dtype=np.int64, count=n)
    k = len(all_labels)
    confusion = np.bincount(t * k + p, minlength=k * k).reshape(k, k)
    tp = np.diag(confusion).astype(float)
    support = confusion.sum(axis=1).astype(float)
    predicted = confusion.sum(axis=0).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(support > 0, tp / support, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    present = [index[label] for label in true_labels]
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
