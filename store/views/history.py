"""The Retraining history page's figures: every retrain, filtered; totals; one retrain's data funnel.

Filters are bound parameters: ``statuses`` and ``triggers`` are lists (None or empty means any),
``start``/``end`` bound ``started_at`` (naive UTC, start inclusive, end exclusive, None means open).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Sequence

import pandas as pd

from store.db import Database

# The data-quality funnel in order: rows in, rows removed by each step, rows out.
FUNNEL = ("rows_in", "malformed", "low_confidence", "conflicts", "duplicates", "reserved_for_eval", "train_rows", "eval_rows")
REMOVED = ("malformed", "low_confidence", "conflicts", "duplicates", "reserved_for_eval")

WHERE = """
WHERE ($statuses IS NULL OR list_contains($statuses, status))
  AND ($triggers IS NULL OR list_contains($triggers, trigger))
  AND ($start IS NULL OR started_at >= $start)
  AND ($end IS NULL OR started_at < $end)
"""
RETRAINS = """
SELECT id, started_at, finished_at, trigger, status, reason, champion_version, candidate_version,
       champion_accuracy, candidate_accuracy, candidate_accuracy - champion_accuracy AS accuracy_change,
       champion_macro_f1, candidate_macro_f1, candidate_macro_f1 - champion_macro_f1 AS macro_f1_change,
       baseline_accuracy, baseline_macro_f1, duration_s, """ + ", ".join(FUNNEL) + """
FROM retrains""" + WHERE + "ORDER BY started_at DESC, id DESC"
TOTALS = """
SELECT count(*) AS retrains,
       count(*) FILTER (WHERE status = 'accepted') AS accepted,
       count(*) FILTER (WHERE status = 'rejected') AS rejected,
       count(*) FILTER (WHERE status = 'failed') AS failed,
       count(*) FILTER (WHERE status = 'running') AS running,
       sum(duration_s) AS total_duration_s,
       median(duration_s) AS median_duration_s,
       min(started_at) AS first_started_at,
       max(started_at) AS last_started_at
FROM retrains""" + WHERE
OPTIONS = """
SELECT list(DISTINCT status ORDER BY status) AS statuses,
       list(DISTINCT trigger ORDER BY trigger) AS triggers,
       min(started_at) AS first, max(started_at) AS last
FROM retrains
"""
ONE_RETRAIN = "SELECT id, started_at, trigger, status, reason, duration_s, " + ", ".join(FUNNEL) + " FROM retrains WHERE id = ?"


def _filters(statuses: Sequence[str] | None, triggers: Sequence[str] | None,
             start: datetime | None, end: datetime | None) -> dict[str, Any]:
    return {"statuses": list(statuses) if statuses else None, "triggers": list(triggers) if triggers else None,
            "start": start, "end": end}


def filter_options(db: Database) -> dict[str, Any]:
    """What the filters can offer: the statuses and triggers present, and the first and last start time."""
    with db.read() as con:
        statuses, triggers, first, last = con.execute(OPTIONS).fetchone()
    return {"statuses": statuses or [], "triggers": triggers or [], "first": first, "last": last}


def retrains(db: Database, *, statuses: Sequence[str] | None = None, triggers: Sequence[str] | None = None,
             start: datetime | None = None, end: datetime | None = None) -> pd.DataFrame:
    """The retrains matching the filters, newest first, with both models' metrics, their changes
    (candidate - champion), the duration and the data-quality funnel counts."""
    with db.read() as con:
        return con.execute(RETRAINS, _filters(statuses, triggers, start, end)).df()


def totals(db: Database, *, statuses: Sequence[str] | None = None, triggers: Sequence[str] | None = None,
           start: datetime | None = None, end: datetime | None = None) -> dict[str, Any]:
    """Over the matching retrains: how many, how many per outcome, the acceptance rate among decided
    ones, total and median duration, and the first and last start time."""
    with db.read() as con:
        cursor = con.execute(TOTALS, _filters(statuses, triggers, start, end))
        names = [d[0] for d in cursor.description]
        row = dict(zip(names, cursor.fetchone()))
    decided = row["accepted"] + row["rejected"]
    row["acceptance_rate"] = row["accepted"] / decided if decided else None
    return row


def retrain(db: Database, retrain_id: int) -> dict[str, Any] | None:
    """One retrain: id, started_at, trigger, status, reason, duration_s, and ``funnel``: its data-quality
    counts by name in FUNNEL order, or None if it stopped before reading the data. None if there is no such retrain."""
    with db.read() as con:
        cursor = con.execute(ONE_RETRAIN, [retrain_id])
        names = [d[0] for d in cursor.description]
        row = cursor.fetchone()
    if row is None:
        return None
    found = dict(zip(names, row))
    counts = {key: found.pop(key) for key in FUNNEL}
    found["funnel"] = None if counts["rows_in"] is None else counts
    return found
