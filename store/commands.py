"""The command queue between the dashboard/CLI and the worker.

A command is ``queued`` until the worker takes it (``running``), then ends ``done``
or ``failed`` with a message. Nothing is ever deleted.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import duckdb

from store.db import Database
from store.records import from_json, one_as_dict, rows_as_dicts, to_json

FINAL = ("done", "failed")

INSERT_COMMAND = """
INSERT INTO commands (created_at, kind, args, source, status) VALUES (?, ?, ?, ?, 'queued') RETURNING id
"""
COLUMNS = "id, created_at, kind, args, source, status, started_at, finished_at, progress, stage, message"
SELECT_COMMAND = f"SELECT {COLUMNS} FROM commands WHERE id = ?"
SELECT_QUEUED = f"SELECT {COLUMNS} FROM commands WHERE status = 'queued' ORDER BY id"
SELECT_RECENT = f"SELECT {COLUMNS} FROM commands ORDER BY id DESC LIMIT ?"
MARK_RUNNING = "UPDATE commands SET status = 'running', started_at = ?, progress = 0, stage = ? WHERE id = ? AND status = 'queued'"
SET_PROGRESS = "UPDATE commands SET progress = ?, stage = ? WHERE id = ? AND status = 'running'"
FINISH = "UPDATE commands SET status = ?, finished_at = ?, message = ?, progress = CASE WHEN ? = 'done' THEN 1 ELSE progress END WHERE id = ? AND status IN ('queued', 'running')"
FAIL_RUNNING = "UPDATE commands SET status = 'failed', finished_at = ?, message = ? WHERE status = 'running' RETURNING id"


def _decode(row: dict[str, Any] | None) -> dict[str, Any] | None:
    if row is not None:
        row["args"] = from_json(row["args"]) or {}
    return row


def enqueue(db: Database, *, kind: str, args: dict[str, Any] | None, source: str, ts: datetime) -> int:
    """Queue a command; return its id."""
    with db.write() as con:
        return con.execute(INSERT_COMMAND, [ts, kind, to_json(args or {}), source]).fetchone()[0]


def get_command(db: Database, command_id: int) -> dict[str, Any] | None:
    with db.read() as con:
        return _decode(one_as_dict(con.execute(SELECT_COMMAND, [command_id])))


def queued_commands(db: Database) -> list[dict[str, Any]]:
    """Commands waiting for the worker, oldest first."""
    with db.read() as con:
        return [_decode(r) for r in rows_as_dicts(con.execute(SELECT_QUEUED))]


def recent_commands(db: Database, *, limit: int = 20) -> list[dict[str, Any]]:
    with db.read() as con:
        return [_decode(r) for r in rows_as_dicts(con.execute(SELECT_RECENT, [limit]))]


def mark_running(db: Database, command_id: int, *, ts: datetime, stage: str = "starting") -> None:
    with db.write() as con:
        con.execute(MARK_RUNNING, [ts, stage, command_id])


def set_progress(db: Database, command_id: int, *, progress: float, stage: str) -> None:
    with db.write() as con:
        con.execute(SET_PROGRESS, [progress, stage, command_id])


def finish_command(con: duckdb.DuckDBPyConnection, command_id: int, *, ok: bool, message: str, ts: datetime) -> None:
    """End a command inside an open write."""
    status = "done" if ok else "failed"
    con.execute(FINISH, [status, ts, message, status, command_id])


def end_command(db: Database, command_id: int, *, ok: bool, message: str, ts: datetime) -> None:
    with db.write() as con:
        finish_command(con, command_id, ok=ok, message=message, ts=ts)


def fail_running_commands(con: duckdb.DuckDBPyConnection, *, message: str, ts: datetime) -> list[int]:
    """Mark every command still 'running' as failed (the worker that ran it is gone)."""
    return [r[0] for r in con.execute(FAIL_RUNNING, [ts, message]).fetchall()]
