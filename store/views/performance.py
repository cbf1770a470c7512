"""The Performance page's figures: every evaluation, live accuracy from feedback, per-class reports,
and the drift warnings the worker recorded for a version.

Offline metrics come from the evaluations each retrain made (the champion and the candidate
scored on the same held-out, human-labelled set). Live accuracy comes from feedback: the
share of answered queries whose predicted label equals the label a person gave later.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pandas as pd

from store import rollups
from store.db import Database
from store.records import from_json
from store.vocabulary import EventKind

EVALUATIONS = """
SELECT e.retrain_id, e.ts, e.version, e.role, e.accuracy, e.macro_f1, e.eval_rows,
       r.status, r.trigger, r.champion_version, r.candidate_version
FROM evaluations e JOIN retrains r ON r.id = e.retrain_id
ORDER BY e.ts, e.retrain_id, e.role DESC
"""
# One label per query (a person's latest word), compared with what the model answered.
# Days are the user's local days: ``offset_minutes`` shifts the stored UTC times. One pass
# also counts the queries answered since ``since`` (for "last 7 days" figures).
# The reference: the same figures read from the log itself (used when the viewer's offset is not a
# whole number of 15-minute buckets, and by the tests that check the rollups against it).
LIVE_ACCURACY_FROM_LOG = """
WITH latest AS (
    SELECT query_id, arg_max(label, (ts, id)) AS label FROM labels WHERE query_id IS NOT NULL GROUP BY query_id
), answered AS (
    SELECT CAST(q.ts + to_minutes($offset_minutes) AS DATE) AS day, q.ts >= $since AS recent,
           q.predicted_label = l.label AS is_right
    FROM latest l JOIN queries q ON q.id = l.query_id
    WHERE q.predicted_label IS NOT NULL
)
SELECT day, count(*) AS labelled, count(*) FILTER (WHERE is_right) AS correct,
       count(*) FILTER (WHERE is_right) / count(*) AS accuracy,
       count(*) FILTER (WHERE recent) AS recent_labelled, count(*) FILTER (WHERE recent AND is_right) AS recent_correct
FROM answered GROUP BY day ORDER BY day
"""
# From the rollup (store/rollups.py): the same figures per local day, from ~100 rows a day.
# $edge: the first bucket boundary at or after ``since``; the part before it is read from the log.
LIVE_ACCURACY = """
SELECT CAST(bucket + to_minutes($offset_minutes) AS DATE) AS day, sum(judged)::BIGINT AS labelled,
       sum(correct)::BIGINT AS correct, sum(correct) / sum(judged) AS accuracy,
       coalesce(sum(judged) FILTER (WHERE bucket >= $edge), 0)::BIGINT AS recent_labelled,
       coalesce(sum(correct) FILTER (WHERE bucket >= $edge), 0)::BIGINT AS recent_correct
FROM feedback_counts GROUP BY day HAVING sum(judged) > 0 ORDER BY day
"""
VERSIONS_WITH_METRICS = """
SELECT version, status, created_at, accuracy, macro_f1, eval_rows FROM models
WHERE report IS NOT NULL ORDER BY created_at, version
"""
REPORT = "SELECT version, status, accuracy, macro_f1, eval_rows, report, retrain_id FROM models WHERE version = ?"
# Retrains in which the two versions met: one the champion, the other the candidate, same evaluation set.
HEAD_TO_HEAD = """
SELECT e.retrain_id, e.ts, r.status,
       max(e.accuracy) FILTER (WHERE e.version = $a) AS a_accuracy,
       max(e.accuracy) FILTER (WHERE e.version = $b) AS b_accuracy,
       max(e.macro_f1) FILTER (WHERE e.version = $a) AS a_macro_f1,
       max(e.macro_f1) FILTER (WHERE e.version = $b) AS b_macro_f1,
       max(e.eval_rows) AS eval_rows
FROM evaluations e JOIN retrains r ON r.id = e.retrain_id
WHERE e.version IN ($a, $b)
GROUP BY e.retrain_id, e.ts, r.status
HAVING count(DISTINCT e.version) = 2
ORDER BY e.ts, e.retrain_id
"""

DRIFT_EVENTS = "SELECT id, ts, message, details FROM events WHERE kind = ? AND version = ? ORDER BY id"
WARNING_COLUMNS = ["event_id", "ts", "day", "metric", "value", "reference", "threshold", "message"]

CLASS_COLUMNS = ["label", "precision", "recall", "f1", "support"]
METRICS = ("precision", "recall", "f1")
COMPARED = ("f1", "precision", "recall")  # the order of the comparison table


def evaluations(db: Database) -> pd.DataFrame:
    """Every evaluation, oldest first: retrain_id, ts, version, role ('champion' or 'candidate'),
    accuracy, macro_f1, eval_rows, and the retrain's status, trigger, champion and candidate versions."""
    with db.read() as con:
        return con.execute(EVALUATIONS).df()


def live_accuracy(db: Database, *, since: datetime | None = None, offset_minutes: int = 0,
                  from_log: bool = False) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Live accuracy from feedback.

    Returns the days (UTC shifted by ``offset_minutes``) with the queries that got feedback
    (``labelled``), how many the model got right (``correct``) and the share (``accuracy``);
    and, over queries answered at or after ``since`` (naive UTC; None: all), a dict with
    labelled, correct and accuracy (None without feedback). A query labelled twice counts
    once, with its latest label (by time, then id).

    Read from the ``feedback_counts`` rollup (store/rollups.py) when the offset is a whole
    number of 15-minute buckets, the part of the period before its first whole bucket from the
    log; ``from_log=True`` (or any other offset) joins the labels to the whole log instead (the
    reference the rollup is tested against: 1.8 s at 10M logged queries).
    """
    since = since or datetime(1970, 1, 1)
    with db.read() as con:
        if from_log or not rollups.whole_buckets(offset_minutes):
            frame = con.execute(LIVE_ACCURACY_FROM_LOG, {"offset_minutes": int(offset_minutes), "since": since}).df()
            edge_labelled = edge_correct = 0
        else:
            edge = rollups.bucket_ceil(since)
            frame = con.execute(LIVE_ACCURACY, {"offset_minutes": int(offset_minutes), "edge": edge}).df()
            _, edge_labelled, edge_correct = rollups.feedback_between(con, since, edge)
    labelled = int(frame["recent_labelled"].sum()) + edge_labelled
    correct = int(frame["recent_correct"].sum()) + edge_correct
    recent = {"labelled": labelled, "correct": correct, "accuracy": correct / labelled if labelled else None}
    return frame[["day", "labelled", "correct", "accuracy"]], recent


def versions_with_metrics(db: Database) -> pd.DataFrame:
    """Versions that have a per-class report, oldest first: version, status, created_at, accuracy, macro_f1, eval_rows."""
    with db.read() as con:
        return con.execute(VERSIONS_WITH_METRICS).df()


def class_report(db: Database, version: str) -> dict[str, Any] | None:
    """A version's overall metrics, its per-class table (label, precision, recall, f1, support, in the
    report's label order) and confusion matrix (rows: true label, columns: predicted); None if it has no report."""
    with db.read() as con:
        row = con.execute(REPORT, [version]).fetchone()
    if row is None or row[5] is None:
        return None
    report = from_json(row[5])
    labels = list(report.get("labels") or sorted(report["per_class"]))
    per_class = report["per_class"]
    table = pd.DataFrame(
        [[label] + [float(per_class[label][m]) for m in METRICS] + [int(per_class[label]["support"])]
         for label in labels if label in per_class],
        columns=CLASS_COLUMNS,
    )
    return {
        "version": row[0], "status": row[1], "accuracy": row[2], "macro_f1": row[3], "eval_rows": row[4],
        "retrain_id": row[6], "per_class": table, "labels": labels, "confusion": report.get("confusion") or [],
    }


def compare(db: Database, a: str, b: str) -> dict[str, Any] | None:
    """Version ``b`` against version ``a``; None if either has no report.

    ``overall``: metric, basis, a, b, change (b - a); first each version's figures from its own
    retrain, then, if the two ever met (one the champion, the other the candidate), their figures
    on that retrain's shared evaluation set (the latest such meeting). ``per_class``: label, F1,
    precision and recall of both with their changes, and both supports, biggest F1 loss first.
    ``head_to_head``: every retrain where they met.
    """
    first, second = class_report(db, a), class_report(db, b)
    if first is None or second is None:
        return None
    with db.read() as con:
        meetings = con.execute(HEAD_TO_HEAD, {"a": a, "b": b}).df()
    rows = [("accuracy", "own retrain", first["accuracy"], second["accuracy"]),
            ("macro_f1", "own retrain", first["macro_f1"], second["macro_f1"])]
    if not meetings.empty:
        met = meetings.iloc[-1]
        basis = f"same set, retrain #{met['retrain_id']}"
        rows += [("accuracy", basis, met["a_accuracy"], met["b_accuracy"]),
                 ("macro_f1", basis, met["a_macro_f1"], met["b_macro_f1"])]
    overall = pd.DataFrame(rows, columns=["metric", "basis", "a", "b"])
    overall["change"] = overall["b"] - overall["a"]
    per_class = first["per_class"].merge(second["per_class"], on="label", how="outer", suffixes=("_a", "_b"))
    for metric in METRICS:
        per_class[f"{metric}_change"] = per_class[f"{metric}_b"] - per_class[f"{metric}_a"]
    per_class = per_class[
        ["label"] + [f"{m}_{side}" for m in COMPARED for side in ("a", "b", "change")] + ["support_a", "support_b"]
    ].sort_values(["f1_change", "label"], na_position="last").reset_index(drop=True)
    per_class[["support_a", "support_b"]] = per_class[["support_a", "support_b"]].astype("Int64")
    return {
        "a": a, "b": b, "overall": overall, "per_class": per_class, "head_to_head": meetings,
        "eval_rows": (first["eval_rows"], second["eval_rows"]),
    }


def drift_warnings(db: Database, version: str) -> pd.DataFrame:
    """The drift warnings recorded for ``version``, one row per moved figure, oldest first:
    event_id, ts (when recorded), day (the UTC day judged, a Timestamp), metric (mean_confidence,
    low_share or js_distance), value, reference (the reference window's mean), threshold, message."""
    with db.read() as con:
        events = con.execute(DRIFT_EVENTS, [EventKind.DRIFT, version]).fetchall()
    rows = []
    for event_id, ts, message, details in events:
        for alarm in (from_json(details) or {}).get("alarms") or []:
            rows.append([event_id, ts, pd.Timestamp(alarm["day"]), alarm["metric"], alarm["value"],
                         alarm["reference"], alarm["threshold"], message])
    return pd.DataFrame(rows, columns=WARNING_COLUMNS)
