"""Warnings without labels: daily confidence and predicted-label mix of live traffic, judged
against a reference window.

Per day: the active model's mean confidence, its share of predictions below
``min_confidence``, and the Jensen-Shannon distance (base 2, from 0 to 1) of the day's
predicted-label mix from the training set's label mix. A day raises an alarm when a figure
moves past its threshold against the mean of the ``reference_days`` judged days before it.

Each model version is judged on its own traffic (``judge``): its figures come from the query
log, per UTC day, and its training mix from the label counts recorded when it was trained.
The worker judges each completed day once and records a ``drift`` event per alarmed day.

>>> round(js_distance([1, 0], [0, 1]), 12), js_distance([0.5, 0.5], [1, 1])
(1.0, 0.0)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from store.db import Database
from store.querylog import prediction_counts, versions_served
from store.models import get_model

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


COUNT_COLUMNS = ["day", "predicted_label", "queries", "confidence_n", "confidence_sum", "low"]
DAILY_COLUMNS = ["day", "queries", "mean_confidence", "low_share", "js_distance"]


def daily_figures(queries: pd.DataFrame, *, training_mix: Mapping[str, float], min_confidence: float) -> pd.DataFrame:
    """One row per day (``day``, ``queries``, ``mean_confidence``, ``low_share``, ``js_distance``).

    ``queries`` has columns ``ts``, ``predicted_label`` and ``confidence``; ``training_mix``
    maps each training label to its count or share. Labels the training set never had count
    in the day's mix (they push the distance up). The rows are first counted per day and
    label, as the store counts them (:func:`figures_from_counts` does the rest).
    """
    if queries.empty:
        return pd.DataFrame(columns=DAILY_COLUMNS)
    confidence = queries["confidence"].astype(float)
    frame = pd.DataFrame({
        "day": pd.to_datetime(queries["ts"]).dt.normalize(), "predicted_label": queries["predicted_label"],
        "queries": 1, "confidence_n": confidence.notna().astype(int), "confidence_sum": confidence.fillna(0.0),
        "low": (confidence < min_confidence).astype(int),
    })
    counts = frame.groupby(["day", "predicted_label"], dropna=False, sort=True).sum().reset_index()
    return figures_from_counts(counts, training_mix=training_mix)


def figures_from_counts(counts: pd.DataFrame, *, training_mix: Mapping[str, float] | None) -> pd.DataFrame:
    """The daily figures of :func:`daily_figures` from counts per day and predicted label
    (columns COUNT_COLUMNS, as ``store.querylog.prediction_counts`` returns them for one version).

    Without a training mix (None or empty) the Jensen-Shannon distance is NaN: it is neither
    judged nor used as reference.
    """
    if counts.empty:
        return pd.DataFrame(columns=DAILY_COLUMNS)
    training_mix = training_mix or {}
    labels = sorted(set(training_mix) | set(counts["predicted_label"].dropna()))
    reference = np.array([float(training_mix.get(label, 0.0)) for label in labels])
    frame = counts.assign(day=pd.to_datetime(counts["day"]))
    totals = frame.groupby("day", sort=True)[["queries", "confidence_n", "confidence_sum", "low"]].sum()
    mix = (frame.dropna(subset=["predicted_label"])
           .pivot_table(index="day", columns="predicted_label", values="queries", aggfunc="sum", fill_value=0)
           .reindex(index=totals.index, columns=labels, fill_value=0).to_numpy(dtype=float))
    answered = totals["queries"].to_numpy(dtype=float)
    rated = totals["confidence_n"].to_numpy(dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_confidence = np.where(rated > 0, totals["confidence_sum"].to_numpy(dtype=float) / rated, np.nan)
        low_share = np.where(answered > 0, totals["low"].to_numpy(dtype=float) / answered, np.nan)
    return pd.DataFrame({"day": totals.index, "queries": answered.astype(int), "mean_confidence": mean_confidence,
                         "low_share": low_share, "js_distance": js_distances(mix, reference)}, columns=DAILY_COLUMNS)


def js_distances(rows: np.ndarray, reference: Sequence[float]) -> np.ndarray:
    """:func:`js_distance` of each row of ``rows`` from ``reference`` at once; NaN for a row (or a
    reference) without mass."""
    p = np.asarray(rows, dtype=float)
    q = np.asarray(reference, dtype=float)
    mass = p.sum(axis=1)
    out = np.full(p.shape[0], np.nan)
    if q.sum() <= 0 or p.size == 0:
        return out
    ok = mass > 0
    p = p[ok] / mass[ok, None]
    q = q / q.sum()
    m = (p + q) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        kl_p = np.where(p > 0, p * np.log2(p / m), 0.0).sum(axis=1)
        kl_q = np.where(q > 0, q * np.log2(q / m), 0.0).sum(axis=1)
    out[ok] = np.sqrt(np.maximum(0.0, (kl_p + kl_q) / 2))
    return out


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

    @property
    def move(self) -> float:
        """How far the figure moved in the alarming direction (a drop for confidence, a rise otherwise)."""
        return self.reference - self.value if self.metric == "mean_confidence" else self.value - self.reference

    def phrase(self) -> str:
        """The move in words, e.g. 'mean confidence fell to 0.553 from 0.801, a drop of 0.248 (threshold 0.05)'."""
        words = {"mean_confidence": ("mean confidence fell", "drop"),
                 "low_share": ("share of low-confidence predictions rose", "rise"),
                 "js_distance": ("Jensen-Shannon distance of the predicted-label mix from the training set's rose", "rise")}
        verb, noun = words[self.metric]
        return (f"{verb} to {self.value:.3f} from {self.reference:.3f}, a {noun} of {self.move:.3f} "
                f"(threshold {self.threshold:g})")

    def as_dict(self) -> dict[str, Any]:
        return {"day": str(pd.Timestamp(self.day).date()), "metric": self.metric, "value": self.value,
                "reference": self.reference, "move": self.move, "threshold": self.threshold}


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


# -- the log, judged: what the worker records --------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """One day of one version's live traffic that raised at least one alarm."""

    day: date
    version: str
    figures: dict[str, float]          # queries, mean_confidence, low_share, js_distance of the day
    alarms: tuple[Alarm, ...]
    training_mix: str | None           # where the label mix behind the distance came from (None: not recorded)
    reference_days: int

    def message(self) -> str:
        return (f"Drift in the live traffic of {self.version} on {self.day} ({int(self.figures['queries']):,} queries): "
                + "; ".join(a.phrase() for a in self.alarms)
                + f". Reference: the mean of the {self.reference_days} judged days before.")

    def details(self) -> dict[str, Any]:
        return {"day": str(self.day), "version": self.version, "queries": int(self.figures["queries"]),
                "figures": {m: _number(self.figures[m]) for m in METRICS},
                "alarms": [a.as_dict() for a in self.alarms], "metrics": [a.metric for a in self.alarms],
                "reference_days": self.reference_days, "training_mix": self.training_mix}


def _number(value: Any) -> float | None:
    return None if value is None or pd.isna(value) else float(value)


def training_mix(model: Mapping[str, Any] | None) -> tuple[dict[str, int] | None, str | None]:
    """(label counts, where they come from) of a registry row: the training set's label counts,
    recorded in ``params["label_counts"]`` when the version was trained; (None, None) for a version
    trained before they were recorded, or one the registry does not know (an imported log's)."""
    counts = ((model or {}).get("params") or {}).get("label_counts")
    if not counts:
        return None, None
    return {str(k): int(v) for k, v in counts.items()}, f"training set of {model['version']}"


def version_figures(db: Database, version: str, *, min_confidence: float) -> tuple[pd.DataFrame, str | None]:
    """The daily figures of ``version``'s live traffic (every logged day) and where its training
    mix comes from (None: not recorded, so no distance)."""
    mix, source = training_mix(get_model(db, version))
    counts = prediction_counts(db, versions=[version], min_confidence=min_confidence)
    return figures_from_counts(counts, training_mix=mix), source


def judge(db: Database, settings: Any, *, first: date, last: date) -> list[Verdict]:
    """The days from ``first`` to ``last`` (UTC, inclusive) that raise alarms, per version that
    answered queries on them, oldest first. Each version is judged on its own traffic only: its
    reference window is made of its own earlier days (confidence means little across models)."""
    start = datetime.combine(first, time())
    end = datetime.combine(last + timedelta(days=1), time())
    versions = versions_served(db, start=start, end=end)
    if not versions:
        return []
    counts = prediction_counts(db, versions=versions, min_confidence=settings.min_confidence, end=end)
    verdicts = []
    for version, part in counts.groupby("version", sort=True):
        mix, source = training_mix(get_model(db, version))
        daily = figures_from_counts(part, training_mix=mix).set_index("day", drop=False)
        alarms: dict[pd.Timestamp, list[Alarm]] = {}
        for alarm in detect_with(settings, daily.reset_index(drop=True)):
            if start <= alarm.day < end:
                alarms.setdefault(pd.Timestamp(alarm.day), []).append(alarm)
        for day, found in alarms.items():
            verdicts.append(Verdict(day.date(), str(version), daily.loc[day].to_dict(), tuple(found), source,
                                    settings.drift_reference_days))
    return sorted(verdicts, key=lambda v: (v.day, v.version))
