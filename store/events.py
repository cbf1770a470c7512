"""Events: every decision and happening, with its reasons in words."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from store.db import Database, Target, writing
from store.records import from_json, rows_as_dicts, to_json
from store.vocabulary import EventKind, Severity

INSERT_EVENT = """
INSERT INTO events (ts, kind, severity, version, message, details) VALUES (?, ?, ?, ?, ?, ?)
RETURNING id
"""

RECENT_EVENTS = """
SELECT id, ts, kind, severity, version, message, details FROM events
WHERE (? IS NULL OR kind = ?)
ORDER BY id DESC LIMIT ?
"""

SAME_EVENT_SINCE = """
SELECT count(*) FROM events
WHERE kind = ? AND version IS NOT DISTINCT FROM ? AND message = ? AND ts >= ?
"""

SEVERITIES = tuple(Severity)
# The most events one read returns (DuckDB's LIMIT is a BIGINT).
MAX_LIMIT = 2**63 - 1


def record_event(
    to: Target,
    *,
    ts: datetime,
    kind: EventKind,
    message: str,
    severity: Severity = Severity.INFO,
    version: str | None = None,
    details: dict[str, Any] | None = None,
) -> int:
    """Store one event and return its id: inside the caller's open write when ``to`` is a connection
    (``with db.write() as con``), else in a short write of its own on the ``Database`` ``to``.

    Raises ValueError for a severity that is not a :class:`Severity`.
    """
    if severity not in SEVERITIES:
        raise ValueError(f"severity {severity!r} is not one of {', '.join(SEVERITIES)}")
    with writing(to) as con:
        return con.execute(INSERT_EVENT, [ts, kind, Severity(severity), version, message, to_json(details)]).fetchone()[0]


def recent_events(db: Database, *, limit: int = 50, kind: str | None = None) -> list[dict[str, Any]]:
    """The newest events first, at most ``limit`` (1 to MAX_LIMIT); ``details`` decoded from JSON.

    Raises ValueError for a ``limit`` outside that range (DuckDB's LIMIT takes a BIGINT, and 0 would read as
    "no events").
    """
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit {limit!r} is out of range: use a whole number from 1 to {MAX_LIMIT}")
    with db.read() as con:
        rows = rows_as_dicts(con.execute(RECENT_EVENTS, [kind, kind, limit]))
    for row in rows:
        row["details"] = from_json(row["details"])
    return rows


def same_event_since(con, *, kind: EventKind, version: str | None, message: str, since: datetime) -> bool:
    """Whether an event of ``kind`` with this ``version`` and exact ``message`` was stored at ``since`` or later,
    inside the caller's open read or write ``con``."""
    return con.execute(SAME_EVENT_SINCE, [kind, version, message, since]).fetchone()[0] > 0
