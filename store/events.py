"""Events: every decision and happening, with its reasons in words."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import duckdb

from store.db import Database
from store.records import from_json, rows_as_dicts, to_json

INSERT_EVENT = """
INSERT INTO events (ts, kind, severity, version, message, details) VALUES (?, ?, ?, ?, ?, ?)
RETURNING id
"""

RECENT_EVENTS = """
SELECT id, ts, kind, severity, version, message, details FROM events
WHERE (? IS NULL OR kind = ?)
ORDER BY id DESC LIMIT ?
"""

SEVERITIES = ("info", "warning", "error")


def add_event(
    con: duckdb.DuckDBPyConnection,
    *,
    ts: datetime,
    kind: str,
    message: str,
    severity: str = "info",
    version: str | None = None,
    details: dict[str, Any] | None = None,
) -> int:
    """Insert one event inside an open write (``with db.write() as con``); return its id."""
    if severity not in SEVERITIES:
        raise ValueError(f"severity {severity!r} is not one of {SEVERITIES}")
    return con.execute(INSERT_EVENT, [ts, kind, severity, version, message, to_json(details)]).fetchone()[0]


def record_event(db: Database, **event: Any) -> int:
    """Insert one event in its own short write."""
    with db.write() as con:
        return add_event(con, **event)


def recent_events(db: Database, *, limit: int = 50, kind: str | None = None) -> list[dict[str, Any]]:
    """The newest events first; ``details`` decoded from JSON."""
    with db.read() as con:
        rows = rows_as_dicts(con.execute(RECENT_EVENTS, [kind, kind, limit]))
    for row in rows:
        row["details"] = from_json(row["details"])
    return rows
