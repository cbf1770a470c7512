"""The Overview page's figures: traffic KPIs, the metric timeline, markers, recent activity."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pandas as pd

from store.db import Database

TRAFFIC = """
SELECT
    count(*) FILTER (WHERE ts >= ?) AS queries_today,
    count(*) FILTER (WHERE ts >= ?) AS queries_7d,
    count(*) FILTER (WHERE ts >= ? AND confidence < ?) AS low_confidence_7d
FROM queries WHERE ts >= ?
"""
FEEDBACK_7D = """
SELECT count(DISTINCT l.query_id) FROM labels l JOIN queries q ON q.id = l.query_id WHERE q.ts >= ?
"""
TIMELINE = """
SELECT id AS retrain_id, coalesce(finished_at, started_at) AS ts, trigger, status,
       candidate_version, champion_version, candidate_accuracy, candidate_macro_f1,
       champion_accuracy, champion_macro_f1, reason
FROM retrains WHERE status IN ('accepted', 'rejected') ORDER BY ts, id
"""
MARKERS = """
SELECT ts, kind, severity, version, message FROM events
WHERE kind IN ('rollback', 'fallback', 'drift') ORDER BY ts
"""
DEPLOYED_BEFORE = """
SELECT d.previous_version, m.accuracy, m.macro_f1
FROM deployments d LEFT JOIN models m ON m.version = d.previous_version
WHERE d.version = ? ORDER BY d.id DESC LIMIT 1
"""


def traffic(db: Database, *, now: datetime, day_start: datetime, min_confidence: float) -> dict[str, Any]:
    """Queries today and in the last 7 days, share with feedback and share below ``min_confidence`` (7 days)."""
    week = now - timedelta(days=7)
    with db.read() as con:
        today, last7, low = con.execute(TRAFFIC, [day_start, week, week, min_confidence, min(week, day_start)]).fetchone()
        labelled = con.execute(FEEDBACK_7D, [week]).fetchone()[0]
    return {
        "queries_today": today,
        "queries_7d": last7,
        "feedback_share_7d": labelled / last7 if last7 else None,
        "low_confidence_share_7d": low / last7 if last7 else None,
    }


def timeline(db: Database) -> pd.DataFrame:
    """Every decided retrain with both models' metrics, oldest first."""
    with db.read() as con:
        return con.execute(TIMELINE).df()


def markers(db: Database) -> pd.DataFrame:
    """Rollbacks, fallbacks and drift warnings, for markers on the timeline."""
    with db.read() as con:
        return con.execute(MARKERS).df()


def previous_metrics(db: Database, version: str) -> dict[str, Any] | None:
    """The version that served before ``version`` was last deployed, with its metrics."""
    with db.read() as con:
        row = con.execute(DEPLOYED_BEFORE, [version]).fetchone()
    if row is None or row[0] is None:
        return None
    return {"version": row[0], "accuracy": row[1], "macro_f1": row[2]}
