"""The registry's tables: model versions, and the champion alias with its append-only history.

Rows come back as :class:`ModelVersion` (frozen) and :class:`Assignment`; ``get_model`` and
``list_models`` still return dicts for the read models and pages that index them by name.
Statuses and alias kinds are the enums of ``store.vocabulary``, bound as parameters.
Which transition is allowed is ``engine.lifecycle``'s business: this module only stores.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import duckdb

from store.db import Database
from store.records import from_json, one_as_dict, replace_row, rows_as_dicts, to_json
from store.vocabulary import Alias, AssignmentKind, ModelStatus

STATUSES = tuple(ModelStatus)

MODEL_COLUMNS = (
    "version, created_at, status, file, sha256, size_bytes, sklearn_version, params, labels, "
    "train_rows, train_hash, accuracy, macro_f1, eval_rows, report, retrain_id"
)
JSON_COLUMNS = ("params", "labels", "report")
INSERT_MODEL = f"INSERT INTO models ({MODEL_COLUMNS}) VALUES ({', '.join('?' * 16)})"
SELECT_MODEL = f"SELECT {MODEL_COLUMNS} FROM models WHERE version = ?"
SELECT_MODELS = f"SELECT {MODEL_COLUMNS} FROM models ORDER BY created_at, version"
SELECT_VERSIONS = "SELECT version FROM models"
SELECT_WITH_STATUS = "SELECT version FROM models WHERE status = ? ORDER BY created_at, version"
SELECT_STATUS = "SELECT status FROM models WHERE version = ?"
SET_STATUS = "UPDATE models SET status = ? WHERE version = ?"
# The new champion and every other champion retired, in one statement.
SET_CHAMPION = """
UPDATE models SET status = CASE WHEN version = $version THEN $champion ELSE $retired END
WHERE version = $version OR status = $champion
"""
INSERT_ASSIGNMENT = """
INSERT INTO alias_history (ts, alias, version, previous_version, kind, actor, reason)
VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id
"""
ASSIGNMENT_COLUMNS = "id, ts, alias, version, previous_version, kind, actor, reason"
SELECT_ASSIGNMENTS = f"SELECT {ASSIGNMENT_COLUMNS} FROM alias_history WHERE alias = ? ORDER BY id"
# Versions the champion alias ever pointed at, best stored macro-F1 first (the slow-decay guard's choice).
SELECT_BEST_DEPLOYED = """
SELECT version, sha256, sklearn_version, status, accuracy, macro_f1 FROM models
WHERE status <> $failed AND version IN (SELECT version FROM alias_history WHERE alias = $alias)
ORDER BY coalesce(macro_f1, 0) DESC, version
LIMIT $limit
"""
SELECT_DEPLOYMENTS = "SELECT id, ts, version, previous_version, kind, reason FROM deployments ORDER BY id DESC LIMIT ?"


@dataclass(frozen=True)
class ModelVersion:
    """One registered model version, as stored.

    ``status`` is a :class:`ModelStatus`; ``params`` and ``report`` are the decoded JSON
    documents (training parameters; per-class scores and ECE), ``labels`` the classes it
    predicts. Metrics are None until the version is scored on the evaluation set.
    """

    version: str
    created_at: datetime
    status: ModelStatus
    file: str
    sha256: str
    sklearn_version: str
    size_bytes: int | None = None
    params: dict[str, Any] = field(default_factory=dict)
    labels: tuple[str, ...] = ()
    train_rows: int | None = None
    train_hash: str | None = None
    accuracy: float | None = None
    macro_f1: float | None = None
    eval_rows: int | None = None
    report: dict[str, Any] | None = None
    retrain_id: int | None = None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> "ModelVersion":
        """From a decoded ``models`` row (see :func:`get_model`)."""
        return cls(**{**row, "status": ModelStatus(row["status"]), "params": row.get("params") or {},
                      "labels": tuple(row.get("labels") or ())})


@dataclass(frozen=True)
class Assignment:
    """One move of an alias: at ``ts``, ``actor`` pointed ``alias`` at ``version`` (from
    ``previous_version``) for ``reason``; ``kind`` says which operation did it."""

    id: int
    ts: datetime
    alias: Alias
    version: str
    previous_version: str | None
    kind: AssignmentKind
    actor: str
    reason: str | None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> "Assignment":
        return cls(**{**row, "alias": Alias(row["alias"]), "kind": AssignmentKind(row["kind"])})


def _decode(row: dict[str, Any] | None) -> dict[str, Any] | None:
    if row is not None:
        for key in JSON_COLUMNS:
            row[key] = from_json(row[key])
    return row


def insert_model(con: duckdb.DuckDBPyConnection, row: dict[str, Any]) -> None:
    """Record a new version (inside an open write). ``row`` has every model column."""
    names = [c.strip() for c in MODEL_COLUMNS.split(",")]
    values = [to_json(row.get(n)) if n in JSON_COLUMNS else row.get(n) for n in names]
    con.execute(INSERT_MODEL, values)


def get_model(db: Database, version: str) -> dict[str, Any] | None:
    """One version's row as a dict (JSON columns decoded), or None."""
    with db.read() as con:
        return _decode(one_as_dict(con.execute(SELECT_MODEL, [version])))


def list_models(db: Database) -> list[dict[str, Any]]:
    """Every version, oldest first."""
    with db.read() as con:
        return [_decode(r) for r in rows_as_dicts(con.execute(SELECT_MODELS))]


def read_version(con: duckdb.DuckDBPyConnection, version: str) -> ModelVersion | None:
    """One version inside an open read or write, or None."""
    row = _decode(one_as_dict(con.execute(SELECT_MODEL, [version])))
    return None if row is None else ModelVersion.from_row(row)


def read_versions(con: duckdb.DuckDBPyConnection) -> list[ModelVersion]:
    """Every version inside an open read or write, oldest first."""
    return [ModelVersion.from_row(_decode(r)) for r in rows_as_dicts(con.execute(SELECT_MODELS))]


def model_versions(con: duckdb.DuckDBPyConnection) -> list[str]:
    return [r[0] for r in con.execute(SELECT_VERSIONS).fetchall()]


def versions_with_status(con: duckdb.DuckDBPyConnection, status: ModelStatus) -> list[str]:
    """The names of the versions whose status is ``status``, oldest first, inside an open read or write.

    Reads one column of the rows that match, so its cost does not grow with the other versions'
    reports and parameters: a deploy's "which champion does it retire" no longer decodes every
    model row (21 s at 30,000 versions, issue 15).
    """
    return [r[0] for r in con.execute(SELECT_WITH_STATUS, [ModelStatus(status)]).fetchall()]


def model_status(con: duckdb.DuckDBPyConnection, version: str) -> ModelStatus | None:
    """``version``'s status inside an open read or write, or None when there is no such version.

    One column of one row: a transition's check needs no more (``read_version`` decodes the
    parameters and the per-class report too).
    """
    row = con.execute(SELECT_STATUS, [version]).fetchone()
    return None if row is None else ModelStatus(row[0])


def set_champion(con: duckdb.DuckDBPyConnection, version: str) -> None:
    """Store ``version`` as the champion and every other champion as retired (inside an open write),
    in one statement. Only ``engine.lifecycle`` calls this, after checking the transition."""
    con.execute(SET_CHAMPION, {"version": version, "champion": ModelStatus.CHAMPION, "retired": ModelStatus.RETIRED})


def set_model_status(con: duckdb.DuckDBPyConnection, version: str, status: ModelStatus) -> None:
    """Store ``version``'s status (inside an open write). Only ``engine.lifecycle`` calls this:
    it checks the transition, retires the previous champion and records the event."""
    con.execute(SET_STATUS, [ModelStatus(status), version])


def set_model_metrics(con: duckdb.DuckDBPyConnection, version: str, *, accuracy: float, macro_f1: float,
                      eval_rows: int, report: dict[str, Any] | None) -> None:
    """Record a version's scores (inside an open write); the row is replaced, not updated, so the
    write does not grow with the number of versions (see ``store.records.replace_row``)."""
    replace_row(con, "models", key="version", value=version,
                changes={"accuracy": accuracy, "macro_f1": macro_f1, "eval_rows": eval_rows, "report": to_json(report)})


def add_assignment(con: duckdb.DuckDBPyConnection, *, ts: datetime, alias: Alias, version: str,
                   previous_version: str | None, kind: AssignmentKind, actor: str, reason: str) -> int:
    """Append one alias move (inside an open write); return its id. Nothing is ever updated or deleted."""
    return con.execute(INSERT_ASSIGNMENT, [ts, Alias(alias), version, previous_version, AssignmentKind(kind),
                                           actor, reason]).fetchone()[0]


def read_assignments(con: duckdb.DuckDBPyConnection, *, alias: Alias = Alias.CHAMPION) -> list[Assignment]:
    """Every move of ``alias``, oldest first, inside an open read or write."""
    return [Assignment.from_row(r) for r in rows_as_dicts(con.execute(SELECT_ASSIGNMENTS, [Alias(alias)]))]


def alias_history(db: Database, *, alias: Alias = Alias.CHAMPION) -> list[Assignment]:
    """Every move of ``alias``, oldest first."""
    with db.read() as con:
        return read_assignments(con, alias=alias)


def best_deployed(db: Database, *, exclude: set[str] | frozenset[str] = frozenset(), limit: int) -> list[dict[str, Any]]:
    """Up to ``limit`` versions the champion alias ever pointed at, not failed and not in ``exclude``,
    best stored macro-F1 first (a version not yet scored counts as 0; ties by name).

    Each is a dict of ``version, sha256, sklearn_version, status, accuracy, macro_f1``. One query,
    whose cost does not grow with the versions' reports: the slow-decay guard used to read and
    decode every model row at every retrain (issue 15).
    """
    with db.read() as con:
        rows = rows_as_dicts(con.execute(SELECT_BEST_DEPLOYED, {"failed": ModelStatus.FAILED, "alias": Alias.CHAMPION,
                                                                "limit": limit + len(exclude)}))
    return [r for r in rows if r["version"] not in exclude][:limit]


def list_deployments(db: Database, *, limit: int = 1000) -> list[dict[str, Any]]:
    """The champion's moves as the ``deployments`` view shows them, newest first."""
    with db.read() as con:
        return rows_as_dicts(con.execute(SELECT_DEPLOYMENTS, [limit]))
