"""The Retraining history page's figures: every retrain, filtered; totals; one retrain's data funnel
and its gate decision with the paired statistics.

Filters are bound parameters: ``statuses`` and ``triggers`` are lists (None or empty means any),
``start``/``end`` bound ``started_at`` (naive UTC, start inclusive, end exclusive, None means open).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Sequence

import pandas as pd

from store.db import Database
from store.records import from_json
from store.views.funnel import CAPPED, COLUMNS as FUNNEL
from store.vocabulary import EventKind, GateOutcome, RetrainStatus

REMOVED = tuple(key for key in FUNNEL if key not in ("rows_in", "train_rows", "eval_rows"))

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
       count(*) FILTER (WHERE status = $accepted) AS accepted,
       count(*) FILTER (WHERE status = $rejected) AS rejected,
       count(*) FILTER (WHERE status = $failed) AS failed,
       count(*) FILTER (WHERE status = $skipped) AS skipped,
       count(*) FILTER (WHERE status = $running) AS running,
       sum(duration_s) AS total_duration_s,
       median(duration_s) AS median_duration_s,
       min(started_at) AS first_started_at,
       max(started_at) AS last_started_at
FROM retrains""" + WHERE
STATUS_WORDS = {s.value: s for s in RetrainStatus}  # $accepted, $rejected, $failed, $skipped, $running in TOTALS
OPTIONS = """
SELECT list(DISTINCT status ORDER BY status) AS statuses,
       list(DISTINCT trigger ORDER BY trigger) AS triggers,
       min(started_at) AS first, max(started_at) AS last
FROM retrains
"""
# The gate event of a retrain (engine/retrain.py writes one per decided candidate).
GATE_EVENT = """
SELECT id, ts, details FROM events
WHERE kind = ? AND TRY_CAST(json_extract_string(details, '$.retrain_id') AS BIGINT) = ?
ORDER BY id DESC LIMIT 1
"""
ONE_RETRAIN = ("SELECT id, started_at, trigger, status, reason, duration_s, " + ", ".join((*FUNNEL, CAPPED[0]))
               + " FROM retrains WHERE id = ?")


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
        cursor = con.execute(TOTALS, {**_filters(statuses, triggers, start, end), **STATUS_WORDS})
        names = [d[0] for d in cursor.description]
        row = dict(zip(names, cursor.fetchone()))
    decided = row["accepted"] + row["rejected"]
    row["acceptance_rate"] = row["accepted"] / decided if decided else None
    return row


def retrain(db: Database, retrain_id: int) -> dict[str, Any] | None:
    """One retrain: id, started_at, trigger, status, reason, duration_s, and ``funnel``: its data-quality
    counts by name in FUNNEL order, then ``over_training_cap`` (texts the training cap left out, 0 or None
    before the cap existed), or None if it stopped before reading the data. None if there is no such retrain."""
    with db.read() as con:
        cursor = con.execute(ONE_RETRAIN, [retrain_id])
        names = [d[0] for d in cursor.description]
        row = cursor.fetchone()
    if row is None:
        return None
    found = dict(zip(names, row))
    counts = {key: found.pop(key) for key in (*FUNNEL, CAPPED[0])}
    found["funnel"] = None if counts["rows_in"] is None else counts
    return found


def gate_decision(db: Database, retrain_id: int) -> dict[str, Any] | None:
    """What the gate decided for one retrain and the evidence behind it, from its gate event;
    None if the retrain has none (it failed before the gate, or is still running).

    Keys: ``event_id``, ``ts``, ``outcome`` (accepted, rejected or inconclusive), ``mode`` and
    ``tolerance`` (None in events older than the statistical gate), ``rule``, ``candidate``,
    ``champion`` (the version, None for a first model), ``compared_with`` ('champion', or 'baseline'
    when there was no champion or it could not be loaded), ``candidate_metrics``, ``other_metrics``
    (the champion's or the baseline's), ``deltas`` (candidate minus the other), ``eval_rows``,
    ``candidate_ece`` and ``paired``: None when not recorded (old events, or no champion), else
    ``rows``, ``confidence``, ``resamples``, ``seed``, ``accuracy`` and ``macro_f1`` (each
    ``difference``, ``low``, ``high``), McNemar's ``p_value``, ``mid_p_value``, ``candidate_only``
    and ``champion_only`` (the discordant rows), and ``more_rows_needed`` (noninferiority mode, for
    an inconclusive decision; None otherwise).
    """
    with db.read() as con:
        row = con.execute(GATE_EVENT, [EventKind.GATE, retrain_id]).fetchone()
    if row is None:
        return None
    event_id, ts, raw = row
    d = from_json(raw) or {}
    evidence = d.get("evidence") or {}
    champion_metrics = d.get("champion_metrics")
    paired = evidence.get("paired")
    if paired:
        mcnemar = paired.get("mcnemar") or {}
        paired = {"rows": paired.get("rows"), "confidence": paired.get("confidence"),
                  "resamples": paired.get("resamples"), "seed": paired.get("seed"),
                  "accuracy": paired.get("accuracy"), "macro_f1": paired.get("macro_f1"),
                  "p_value": mcnemar.get("p_value"), "mid_p_value": mcnemar.get("mid_p_value"),
                  "candidate_only": mcnemar.get("candidate_only"), "champion_only": mcnemar.get("champion_only"),
                  "more_rows_needed": evidence.get("more_rows_needed"),
                  "too_little_evidence": evidence.get("too_little_evidence")}
    accepted = d.get("accepted")
    return {
        "event_id": event_id, "ts": ts,
        "outcome": d.get("outcome") or (GateOutcome.ACCEPTED if accepted else GateOutcome.REJECTED),
        "mode": evidence.get("mode"), "tolerance": evidence.get("tolerance"), "rule": d.get("rule"),
        "candidate": d.get("candidate"), "champion": d.get("champion"),
        "compared_with": "champion" if champion_metrics else "baseline",
        "candidate_metrics": d.get("candidate_metrics"),
        "other_metrics": champion_metrics or d.get("baseline_metrics"),
        "deltas": d.get("deltas") or {}, "eval_rows": d.get("eval_rows"),
        "candidate_ece": d.get("candidate_ece"), "paired": paired or None,
    }
