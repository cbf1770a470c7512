"""The Overview page's figures: traffic KPIs, the metric timeline, markers, recent activity."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

import pandas as pd

from store.db import Database
from store.events import recent_events
from store.vocabulary import EventKind, GateOutcome, ModelStatus, RetrainStatus

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
