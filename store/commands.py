"""The command queue between the dashboard/CLI and the worker.

A command is ``queued`` until the worker takes it (``running``), then ends ``done``
or ``failed`` with a message. Nothing is ever deleted.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import duckdb

from store.db import Database, Target, writing
from store.records import from_json, one_as_dict, rows_as_dicts, to_json
from store.vocabulary import CommandKind, CommandStatus

FINAL = (CommandStatus.DONE, CommandStatus.FAILED)
Q, R, D, F = CommandStatus.QUEUED, CommandStatus.RUNNING, CommandStatus.DONE, CommandStatus.FAILED

INSERT_COMMAND = """
INSERT INTO commands (created_at, kind, args, source, status) VALUES ($ts, $kind, $args, $source, $queued) RETURNING id
"""
COLUMNS = "id, created_at, kind, args, source, status, started_at, finished_at, progress, stage, message"
SELECT_COMMAND = f"SELECT {COLUMNS} FROM commands WHERE id = ?"
SELECT_QUEUED = f"SELECT {COLUMNS} FROM commands WHERE status = $queued ORDER BY id"
SELECT_RECENT = f"SELECT {COLUMNS} FROM commands ORDER BY id DESC LIMIT ?"
MARK_RUNNING = ("UPDATE commands SET status = $running, started_at = $ts, progress = 0, stage = $stage "
                "WHERE id = $id AND status = $queued")
SET_PROGRESS = "UPDATE commands SET progress = $progress, stage = $stage WHERE id = $id AND status = $running"
FINISH = ("UPDATE commands SET status = $status, finished_at = $ts, message = $message, "
          "progress = CASE WHEN $status = $done THEN 1 ELSE progress END "
          "WHERE id = $id AND status IN ($queued, $running)")
FAIL_RUNNING = ("UPDATE commands SET status = $failed, finished_at = $ts, message = $message WHERE status = $running "
                "RETURNING id")


def _decode(row: dict[str, Any] | None) -> dict[str, Any] | None:
    if row is not None:
        row["args"] = from_json(row["args"]) or {}
    return row


def enqueue(db: Database, *, kind: str, args: dict[str, Any] | None, source: str, ts: datetime) -> int:
    """Queue a command; return its id."""
    with db.write() as con:
        return con.execute(INSERT_COMMAND, {"ts": ts, "kind": CommandKind(kind), "args": to_json(args or {}),
                                            "source": source, "queued": Q}).fetchone()[0]


def get_command(db: Database, command_id: int) -> dict[str, Any] | None:
    with db.read() as con:
        return _decode(one_as_dict(con.execute(SELECT_COMMAND, [command_id])))


def queued_commands(db: Database) -> list[dict[str, Any]]:
    """Commands waiting for the worker, oldest first."""
    with db.read() as con:
        return [_decode(r) for r in rows_as_dicts(con.execute(SELECT_QUEUED, {"queued": Q}))]


def recent_commands(db: Database, *, limit: int = 20) -> list[dict[str, Any]]:
    with db.read() as con:
        return [_decode(r) for r in rows_as_dicts(con.execute(SELECT_RECENT, [limit]))]


def mark_running(db: Database, command_id: int, *, ts: datetime, stage: str = "starting") -> None:
    with db.write() as con:
        con.execute(MARK_RUNNING, {"running": R, "ts": ts, "stage": stage, "id": command_id, "queued": Q})


def set_progress(db: Database, command_id: int, *, progress: float, stage: str) -> None:
    with db.write() as con:
        con.execute(SET_PROGRESS, {"progress": progress, "stage": stage, "id": command_id, "running": R})


def finish_command(to: Target, command_id: int, *, ok: bool, message: str, ts: datetime) -> None:
    """End a queued or running command, done (``ok``) or failed, with ``message``: inside the caller's
    open write when ``to`` is a connection, else in a short write of its own on the ``Database`` ``to``."""
    with writing(to) as con:
        con.execute(FINISH, {"status": D if ok else F, "ts": ts, "message": message, "done": D, "id": command_id,
                             "queued": Q, "running": R})


def fail_running_commands(con: duckdb.DuckDBPyConnection, *, message: str, ts: datetime) -> list[int]:
    """Mark every command still 'running' as failed (the worker that ran it is gone)."""
    return [r[0] for r in con.execute(FAIL_RUNNING, {"failed": F, "ts": ts, "message": message, "running": R}).fetchall()]
