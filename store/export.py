"""The query log and the labels as Parquet, one file per day: what other engines read in place.

Each day of a table is written by one ``COPY ... TO`` in one short read, so an export of a
large log never holds the store's lock for long (the worker keeps writing in between).
engine/export.py lays the files out as ``DIR/<table>/day=YYYY-MM-DD/data.parquet`` (the hive
layout DuckDB, Spark and Dask all understand) and makes each one appear whole.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

from store.db import Database

TABLES = ("queries", "labels")

_DAYS = {
    "queries": "SELECT DISTINCT ts::DATE AS day FROM queries WHERE ?::DATE IS NULL OR ts >= ? ORDER BY day",
    "labels": "SELECT DISTINCT ts::DATE AS day FROM labels WHERE ?::DATE IS NULL OR ts >= ? ORDER BY day",
}
# Rows sorted by time, so each file's row-group statistics let readers skip by ts; zstd keeps text small.
_COPY_DAY = {
    "queries": """
        COPY (SELECT id, ts, text, predicted_label, confidence, model_version, source FROM queries
              WHERE ts >= ? AND ts < ? ORDER BY ts, id)
        TO ? (FORMAT parquet, COMPRESSION zstd)""",
    "labels": """
        COPY (SELECT id, ts, query_id, text, label, source FROM labels
              WHERE ts >= ? AND ts < ? ORDER BY ts, id)
        TO ? (FORMAT parquet, COMPRESSION zstd)""",
}


def _check(table: str) -> None:
    if table not in TABLES:
        raise ValueError(f"unknown table {table!r}: use one of {', '.join(TABLES)}")


def log_days(db: Database, table: str, *, since: date | None = None) -> list[date]:
    """The days (of ``ts``) that have rows in ``table``, oldest first; from ``since`` on if given."""
    _check(table)
    with db.read() as con:
        return [row[0] for row in con.execute(_DAYS[table], [since, since]).fetchall()]


def copy_day_to_parquet(db: Database, table: str, day: date, path: Path) -> int:
    """Write the rows of ``table`` with ``ts`` on ``day`` to the Parquet file ``path``; return their number."""
    _check(table)
    with db.read() as con:
        return con.execute(_COPY_DAY[table], [day, day + timedelta(days=1), str(path)]).fetchone()[0]
