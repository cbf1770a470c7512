"""The registry's tables: model versions and their deployment history."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import duckdb

from store.db import Database
from store.records import from_json, one_as_dict, rows_as_dicts, to_json

STATUSES = ("candidate", "rejected", "active", "retired", "failed")

MODEL_COLUMNS = (
    "version, created_at, status, file, sha256, size_bytes, sklearn_version, params, labels, "
    "train_rows, train_hash, accuracy, macro_f1, eval_rows, report, retrain_id"
)
INSERT_MODEL = f"INSERT INTO models ({MODEL_COLUMNS}) VALUES ({', '.join('?' * 16)})"
SELECT_MODEL = f"SELECT {MODEL_COLUMNS} FROM models WHERE version = ?"
SELECT_MODELS = f"SELECT {MODEL_COLUMNS} FROM models ORDER BY created_at, version"
SELECT_VERSIONS = "SELECT version FROM models"
SET_STATUS = "UPDATE models SET status = ? WHERE version = ?"
RETIRE_OTHERS = "UPDATE models SET status = 'retired' WHERE status = 'active' AND version <> ?"
SET_METRICS = "UPDATE models SET accuracy = ?, macro_f1 = ?, eval_rows = ?, report = ? WHERE version = ?"
INSERT_DEPLOYMENT = """
INSERT INTO deployments (ts, version, previous_version, kind, reason) VALUES (?, ?, ?, ?, ?) RETURNING id
"""
SELECT_DEPLOYMENTS = "SELECT id, ts, version, previous_version, kind, reason FROM deployments ORDER BY id DESC LIMIT ?"


def _decode(row: dict[str, Any] | None) -> dict[str, Any] | None:
    if row is not None:
        for key in ("params", "labels", "report"):
            row[key] = from_json(row[key])
    return row


def insert_model(con: duckdb.DuckDBPyConnection, row: dict[str, Any]) -> None:
    """Record a new version (inside an open write). ``row`` has every model column."""
    names = [c.strip() for c in MODEL_COLUMNS.split(",")]
    values = [to_json(row.get(n)) if n in ("params", "labels", "report") else row.get(n) for n in names]
    con.execute(INSERT_MODEL, values)


def get_model(db: Database, version: str) -> dict[str, Any] | None:
    with db.read() as con:
        return _decode(one_as_dict(con.execute(SELECT_MODEL, [version])))


def list_models(db: Database) -> list[dict[str, Any]]:
    """Every version, oldest first."""
    with db.read() as con:
        return [_decode(r) for r in rows_as_dicts(con.execute(SELECT_MODELS))]


def model_versions(con: duckdb.DuckDBPyConnection) -> list[str]:
    return [r[0] for r in con.execute(SELECT_VERSIONS).fetchall()]


def set_model_status(con: duckdb.DuckDBPyConnection, version: str, status: str) -> None:
    if status not in STATUSES:
        raise ValueError(f"status {status!r} is not one of {STATUSES}")
    con.execute(SET_STATUS, [status, version])
    if status == "active":
        con.execute(RETIRE_OTHERS, [version])


def set_model_metrics(con: duckdb.DuckDBPyConnection, version: str, *, accuracy: float, macro_f1: float,
                      eval_rows: int, report: dict[str, Any] | None) -> None:
    con.execute(SET_METRICS, [accuracy, macro_f1, eval_rows, to_json(report), version])


def add_deployment(con: duckdb.DuckDBPyConnection, *, ts: datetime, version: str, previous_version: str | None,
                   kind: str, reason: str) -> int:
    return con.execute(INSERT_DEPLOYMENT, [ts, version, previous_version, kind, reason]).fetchone()[0]


def list_deployments(db: Database, *, limit: int = 1000) -> list[dict[str, Any]]:
    """Deployment history, newest first."""
    with db.read() as con:
        return rows_as_dicts(con.execute(SELECT_DEPLOYMENTS, [limit]))
