"""The Scheduler page's reads: what the scheduled jobs triggered, and pause/resume requests not yet taken."""

from __future__ import annotations

from typing import Any

import pandas as pd

from store.db import Database
from store.records import one_as_dict
from store.vocabulary import SCHEDULED_TRIGGERS, CommandKind, CommandStatus, RetrainStatus


SCHEDULED_RETRAINS = """
SELECT id, started_at, finished_at, trigger, status, candidate_version, champion_version, reason, duration_s
FROM retrains WHERE trigger IN (?, ?, ?) ORDER BY id DESC LIMIT ?
"""
OUTCOMES = """
SELECT trigger,
       count(*) AS retrains,
       count(*) FILTER (WHERE status = ?) AS accepted,
       count(*) FILTER (WHERE status = ?) AS rejected,
       count(*) FILTER (WHERE status = ?) AS failed
FROM retrains WHERE trigger IN (?, ?, ?) GROUP BY trigger
"""
PENDING_TOGGLE = """
SELECT id, kind, created_at, source FROM commands
WHERE kind IN (?, ?) AND status IN (?, ?) ORDER BY id DESC LIMIT 1
"""


def scheduled_retrains(db: Database, *, limit: int = 10) -> pd.DataFrame:
    """The latest retrains started by a scheduled job (weekly, monthly, adaptive), newest first."""
    with db.read() as con:
        return con.execute(SCHEDULED_RETRAINS, [*SCHEDULED_TRIGGERS, limit]).df()


def outcomes(db: Database) -> dict[str, dict[str, int]]:
    """Per scheduled job: how many retrains it started and how each ended (every job present, zeros if none)."""
    with db.read() as con:
        ended = [RetrainStatus.ACCEPTED, RetrainStatus.REJECTED, RetrainStatus.FAILED]
        rows = con.execute(OUTCOMES, [*ended, *SCHEDULED_TRIGGERS]).fetchall()
    found = {r[0]: {"retrains": r[1], "accepted": r[2], "rejected": r[3], "failed": r[4]} for r in rows}
    zero = {"retrains": 0, "accepted": 0, "rejected": 0, "failed": 0}
    return {name: found.get(name, dict(zero)) for name in SCHEDULED_TRIGGERS}


def pending_toggle(db: Database) -> dict[str, Any] | None:
    """The newest pause or resume command the worker has not finished yet, if any."""
    with db.read() as con:
        return one_as_dict(con.execute(PENDING_TOGGLE, [CommandKind.PAUSE, CommandKind.RESUME,
                                                        CommandStatus.QUEUED, CommandStatus.RUNNING]))
