"""Warnings without labels: daily confidence and predicted-label mix of live traffic, judged
against a reference window.

Per day: the active model's mean confidence, its share of predictions below
``min_confidence``, and the Jensen-Shannon distance (base 2, from 0 to 1) of the day's
predicted-label mix from the training set's label mix. A day raises an alarm when a figure
moves past its threshold against the mean of the ``reference_days`` judged days before it.

>>> round(js_distance([1, 0], [0, 1]), 12), js_distance([0.5, 0.5], [1, 1])
(1.0, 0.0)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

EPSILON = 1e-12
METRICS = ("mean_confidence", "low_share", "js_distance")


def js_distance(p: Sequence[float], q: Sequence[float]) -> float:
    """Jensen-Shannon distance (base 2) of two distributions (normalised here; counts are fine)."""
    p = np.asarray(p, dtype=float)
    q = np.asarray(q, dtype=float)
    if p.shape != q.shape or p.sum() <= 0 or q.sum() <= 0 or (p < 0).any() or (q < 0).any():
        raise ValueError("js_distance needs two non-negative distributions of the same length with mass")
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2

    def kl(a: np.ndarray) -> float:
        nz = a > 0
        return float(np.sum(a[nz] * np.log2(a[nz] / m[nz])))

    return float(np.sqrt(max(0.0, (kl(p) + kl(q)) / 2)))


def daily_figures(queries: pd.DataFrame, *, training_mix: Mapping[str, float], min_confidence: float) -> pd.DataFrame:
    """One row per day (``day``, ``queries``, ``mean_confidence``, ``low_share``, ``js_distance``).

    ``queries`` has columns ``ts``, ``predicted_label`` and ``confidence``; ``training_mix``
    maps each training label to its count or share. Labels the training set never had count
    in the day's mix (they push the distance up).
    """
    columns = ["day", "queries", "mean_confidence", "low_share", "js_distance"]
    if queries.empty:
        return pd.DataFrame(columns=columns)
    labels = sorted(set(training_mix) | set(queries["predicted_label"].dropna()))
    reference = np.array([float(training_mix.get(label, 0.0)) for label in labels])
    frame = queries.assign(day=pd.to_datetime(queries["ts"]).dt.normalize())
    rows = []
    for day, group in frame.groupby("day", sort=True):
        conf = group["confidence"].astype(float)
        mix = group["predicted_label"].value_counts().reindex(labels, fill_value=0).to_numpy(dtype=float)
        rows.append({"day": day, "queries": len(group), "mean_confidence": float(conf.mean()),
                     "low_share": float((conf < min_confidence).mean()),
                     "js_distance": js_distance(mix, reference) if mix.sum() > 0 else float("nan")})
    return pd.DataFrame(rows, columns=columns)


@dataclass(frozen=True)
class Alarm:
    day: Any
    metric: str
    value: float
    reference: float
    threshold: float

    @property
    def message(self) -> str:
        words = {"mean_confidence": "mean confidence fell to", "low_share": "share of low-confidence predictions rose to",
                 "js_distance": "predicted-label mix moved away from the training set: Jensen-Shannon distance"}
        return (f"Drift on {pd.Timestamp(self.day).date()}: {words[self.metric]} {self.value:.3f} "
                f"(reference window {self.reference:.3f}, threshold {self.threshold:g})")

    def as_dict(self) -> dict[str, Any]:
        return {"day": str(pd.Timestamp(self.day).date()), "metric": self.metric, "value": self.value,
                "reference": self.reference, "threshold": self.threshold}


def detect(daily: pd.DataFrame, *, reference_days: int = 7, min_queries: int = 50, confidence_drop: float = 0.05,
           low_share_rise: float = 0.10, js_threshold: float = 0.15) -> list[Alarm]:
    """Alarms, oldest first: each judged day against the mean of the ``reference_days`` judged days before it.

    Days with fewer than ``min_queries`` queries are neither judged nor used as reference;
    a day is judged only once a full reference window exists.
    """
    if reference_days < 1:
        raise ValueError(f"reference_days must be >= 1, got {reference_days}")
    judged = daily[daily["queries"] >= min_queries].sort_values("day").reset_index(drop=True)
    alarms: list[Alarm] = []
    for i in range(reference_days, len(judged)):
        ref = judged.iloc[i - reference_days:i]
        today = judged.iloc[i]
        checks = (
            ("mean_confidence", ref["mean_confidence"].mean() - today["mean_confidence"], confidence_drop),
            ("low_share", today["low_share"] - ref["low_share"].mean(), low_share_rise),
            ("js_distance", today["js_distance"] - ref["js_distance"].mean(), js_threshold),
        )
        for metric, move, threshold in checks:
            if move > threshold + EPSILON:
                alarms.append(Alarm(today["day"], metric, float(today[metric]), float(ref[metric].mean()), threshold))
    return alarms


def detect_with(settings: Any, daily: pd.DataFrame) -> list[Alarm]:
    """:func:`detect` with the thresholds from ``settings`` (the ``drift_*`` settings)."""
    return detect(daily, reference_days=settings.drift_reference_days, min_queries=settings.drift_min_queries,
                  confidence_drop=settings.drift_confidence_drop, low_share_rise=settings.drift_low_share_rise,
                  js_threshold=settings.drift_js_threshold)
