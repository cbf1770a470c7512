"""Retrain cycles and the evaluations they made: the history behind every chart."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import duckdb

from store.db import Database
from store.records import from_json, one_as_dict, replace_row, rows_as_dicts, to_json
from store.vocabulary import RetrainStatus, Trigger

RESULT_COLUMNS = (
    "finished_at", "status", "champion_version", "candidate_version", "decision", "reason",
    "champion_accuracy", "champion_macro_f1", "candidate_accuracy", "candidate_macro_f1",
    "baseline_accuracy", "baseline_macro_f1", "eval_rows", "rows_in", "malformed", "low_confidence",
    "conflicts", "duplicates", "reserved_for_eval", "train_rows", "duration_s", "stages",
    "quarantined", "pseudo_not_deployed", "pseudo_too_old", "over_training_cap",
)
START_RETRAIN = "INSERT INTO retrains (started_at, trigger, status, command_id) VALUES (?, ?, ?, ?) RETURNING id"
SELECT_RETRAINS = "SELECT * FROM retrains ORDER BY id DESC LIMIT ?"
SELECT_RETRAIN = "SELECT * FROM retrains WHERE id = ?"
FAIL_RUNNING = "UPDATE retrains SET status = $failed, finished_at = $ts, reason = $reason WHERE status = $running RETURNING id"
INSERT_EVALUATION = "INSERT INTO evaluations VALUES (?, ?, ?, ?, ?, ?, ?)"


def start_retrain(db: Database, *, trigger: Trigger, ts: datetime, command_id: int | None = None) -> int:
    """Record a retrain as running; return its id. ``trigger`` must be a :class:`Trigger` word."""
    with db.write() as con:
        return con.execute(START_RETRAIN, [ts, Trigger(trigger), RetrainStatus.RUNNING, command_id]).fetchone()[0]


def finish_retrain(con: duckdb.DuckDBPyConnection, retrain_id: int, result: dict[str, Any]) -> None:
    """Write a cycle's outcome inside an open write; ``result`` holds any of RESULT_COLUMNS (the others become NULL).

    The row is replaced, not updated, so the write costs the same at 30,000 retrains as at
    1,000 (see ``store.records.replace_row``).
    """
    unknown = set(result) - set(RESULT_COLUMNS)
    if unknown:
        raise ValueError(f"unknown retrain columns {sorted(unknown)}")
    replace_row(con, "retrains", key="id", value=retrain_id,
                changes={c: to_json(result.get(c)) if c == "stages" else result.get(c) for c in RESULT_COLUMNS})


def add_evaluation(con: duckdb.DuckDBPyConnection, *, retrain_id: int, ts: datetime, version: str, role: str,
                   accuracy: float, macro_f1: float, eval_rows: int) -> None:
    con.execute(INSERT_EVALUATION, [retrain_id, ts, version, role, accuracy, macro_f1, eval_rows])


def fail_running_retrains(con: duckdb.DuckDBPyConnection, *, reason: str, ts: datetime) -> list[int]:
    """Mark every retrain still running as failed with ``reason`` (its worker is gone); return their ids."""
    params = {"failed": RetrainStatus.FAILED, "ts": ts, "reason": reason, "running": RetrainStatus.RUNNING}
    return [r[0] for r in con.execute(FAIL_RUNNING, params).fetchall()]


def _decode(row: dict[str, Any] | None) -> dict[str, Any] | None:
    if row is not None:
        row["stages"] = from_json(row.get("stages"))
    return row


def get_retrain(db: Database, retrain_id: int) -> dict[str, Any] | None:
    with db.read() as con:
        return _decode(one_as_dict(con.execute(SELECT_RETRAIN, [retrain_id])))


def recent_retrains(db: Database, *, limit: int = 100) -> list[dict[str, Any]]:
    with db.read() as con:
        return [_decode(r) for r in rows_as_dicts(con.execute(SELECT_RETRAINS, [limit]))]
