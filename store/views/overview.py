"""The Overview page's figures: traffic KPIs, the metric timeline, markers, recent activity."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

import pandas as pd

from store import rollups
from store.db import Database
from store.events import recent_events
from store.vocabulary import EventKind, GateOutcome, ModelStatus, RetrainStatus

# The reference, from the log itself.
TRAFFIC_FROM_LOG = """
SELECT
    count(*) FILTER (WHERE ts >= $day_start) AS queries_today,
    count(*) FILTER (WHERE ts >= $week) AS queries_7d,
    count(*) FILTER (WHERE ts >= $week AND confidence < $min_confidence) AS low_confidence_7d
FROM queries WHERE ts >= least($week, $day_start)
"""
FEEDBACK_7D_FROM_LOG = """
SELECT count(DISTINCT l.query_id) FROM labels l JOIN queries q ON q.id = l.query_id WHERE q.ts >= ?
"""
PART_FROM_LOG = """
SELECT count(*), count(*) FILTER (WHERE confidence < $min_confidence) FROM queries WHERE ts >= $since AND ts < $edge
"""
# From the rollups (store/rollups.py), whole buckets from $today / $week_edge on; $bin: the threshold's bin.
TRAFFIC = """
SELECT
    (SELECT coalesce(sum(queries), 0) FROM query_counts WHERE bucket >= $today)::BIGINT,
    (SELECT coalesce(sum(queries), 0) FROM query_counts WHERE bucket >= $week_edge)::BIGINT,
    (SELECT coalesce(sum(queries), 0) FROM confidence_counts WHERE bucket >= $week_edge AND bin < $bin)::BIGINT,
    (SELECT coalesce(sum(feedback), 0) FROM feedback_counts WHERE bucket >= $week_edge)::BIGINT
"""
TIMELINE = """
SELECT id AS retrain_id, coalesce(finished_at, started_at) AS ts, trigger, status,
       candidate_version, champion_version, candidate_accuracy, candidate_macro_f1,
       champion_accuracy, champion_macro_f1, reason
FROM retrains WHERE status IN (?, ?) ORDER BY ts, id
"""
MARKERS = """
SELECT ts, kind, severity, version, message FROM events
WHERE kind IN (?, ?, ?) AND NOT (kind = ? AND version IS NULL) ORDER BY ts
"""
DEPLOYED_BEFORE = """
SELECT d.previous_version, m.accuracy, m.macro_f1
FROM deployments d LEFT JOIN models m ON m.version = d.previous_version
WHERE d.version = ? ORDER BY d.id DESC LIMIT 1
"""


def traffic(db: Database, *, now: datetime, day_start: datetime, min_confidence: float,
            from_log: bool = False) -> dict[str, Any]:
    """Queries since ``day_start`` and in the last 7 days (naive UTC), the share of those with feedback
    and the share below ``min_confidence``.

    The 7 days start at the beginning of the 15-minute bucket that holds ``now`` minus 7 days, so
    they are whole buckets of the rollups (store/rollups.py): finding the labels of the queries in
    part of a bucket means reading every label (130 ms at 10M logged queries). ``day_start`` is
    exact (the part of a bucket before the first whole one is read from the log).
    ``from_log=True`` (or a threshold off the 0.01 grid) reads the log alone (the reference the
    rollups are tested against).
    """
    week = rollups.bucket_floor(now - timedelta(days=7))
    bin_ = rollups.grid_bin(min_confidence)
    params = {"day_start": day_start, "week": week, "min_confidence": min_confidence}
    with db.read() as con:
        if from_log or bin_ is None:
            today, last7, low = con.execute(TRAFFIC_FROM_LOG, params).fetchone()
            labelled = con.execute(FEEDBACK_7D_FROM_LOG, [week]).fetchone()[0]
        else:
            today_edge, week_edge = rollups.bucket_ceil(day_start), rollups.bucket_ceil(week)
            today, last7, low, labelled = con.execute(
                TRAFFIC, {"today": today_edge, "week_edge": week_edge, "bin": bin_}).fetchone()
            # The parts of a bucket before the first whole ones: [day_start, today_edge) and [week, week_edge).
            today += con.execute(PART_FROM_LOG, {"since": day_start, "edge": today_edge, "min_confidence": 0.0}).fetchone()[0]
            part, part_low = con.execute(PART_FROM_LOG, {"since": week, "edge": week_edge,
                                                         "min_confidence": min_confidence}).fetchone()
            last7, low = last7 + part, low + part_low
            labelled += rollups.feedback_between(con, week, week_edge)[0]
    return {
        "queries_today": today,
        "queries_7d": last7,
        "feedback_share_7d": labelled / last7 if last7 else None,
        "low_confidence_share_7d": low / last7 if last7 else None,
    }


def timeline(db: Database) -> pd.DataFrame:
    """Every decided retrain with both models' metrics, oldest first."""
    with db.read() as con:
        return con.execute(TIMELINE, [RetrainStatus.ACCEPTED, RetrainStatus.REJECTED]).df()


def markers(db: Database) -> pd.DataFrame:
    """Rollbacks that moved the champion, fallbacks and drift warnings, for markers on the timeline.

    A refused rollback is recorded as a rollback event without a version (nothing moved): not a marker.
    """
    with db.read() as con:
        return con.execute(MARKERS, [EventKind.ROLLBACK, EventKind.FALLBACK, EventKind.DRIFT, EventKind.ROLLBACK]).df()


def previous_metrics(db: Database, version: str) -> dict[str, Any] | None:
    """The version that served before ``version`` was last deployed, with its metrics."""
    with db.read() as con:
        row = con.execute(DEPLOYED_BEFORE, [version]).fetchone()
    if row is None or row[0] is None:
        return None
    return {"version": row[0], "accuracy": row[1], "macro_f1": row[2]}


_DECISION_PREFIX = re.compile(r"^(Accepted|Rejected|Inconclusive)\s*:\s*", re.IGNORECASE)


def without_decision_word(reason: str | None) -> str:
    """A gate reason without its leading "Accepted: " (the line around it already says the decision).

    >>> without_decision_word("Accepted: no metric got worse.")
    'no metric got worse.'
    """
    return _DECISION_PREFIX.sub("", reason or "").strip()


def _capitalised(text: str) -> str:
    return text[:1].upper() + text[1:]


def activity(db: Database, *, limit: int = 12) -> list[dict[str, Any]]:
    """The newest happenings, one line per retrain: the candidate's registration, the gate decision and the
    deployment it caused are one entry. Each: ``ts``, ``severity``, ``kind`` (``retrain`` for a decided candidate, else the event's
    kind) and ``text``, newest first, at most ``limit``.
    """
    events = recent_events(db, limit=3 * limit)
    deploys = {(e["version"], (e["details"] or {}).get("previous")): e for e in events if e["kind"] == EventKind.DEPLOY}
    decided = {(e["details"] or {}).get("retrain_id") for e in events if e["kind"] == EventKind.GATE} - {None}
    # A candidate's registration is part of its retrain's line too.
    folded: set[int] = {e["id"] for e in events if e["kind"] == EventKind.REGISTRY and (e["details"] or {}).get("status") == ModelStatus.CANDIDATE
                        and (e["details"] or {}).get("retrain_id") in decided}
    lines = []
    for e in events:
        d = e["details"] or {}
        if e["kind"] == EventKind.GATE and d.get("retrain_id") is not None:
            deployed = deploys.get((d.get("candidate"), d.get("champion")))
            if deployed is not None:
                folded.add(deployed["id"])
            outcome = d.get("outcome") or (GateOutcome.ACCEPTED if d.get("accepted") else GateOutcome.REJECTED)
            done = f"{outcome} and deployed" if deployed is not None else outcome
            rest = e["message"].split(". ", 1)[1] if ". " in e["message"] else ""
            lines.append({"id": e["id"], "ts": e["ts"], "severity": e["severity"], "kind": EventKind.RETRAIN,
                          "text": f"#{d['retrain_id']} ({d.get('trigger') or 'unknown trigger'}): "
                                  f"{d.get('candidate')} {done}. {_capitalised(without_decision_word(rest))}".strip()})
        else:
            lines.append({"id": e["id"], "ts": e["ts"], "severity": e["severity"], "kind": e["kind"], "text": e["message"]})
    return [line for line in lines if line["id"] not in folded][:limit]
