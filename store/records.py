"""Small shared helpers for the store modules: rows to dicts, JSON columns."""

from __future__ import annotations

import json
from typing import Any

import duckdb


def rows_as_dicts(cursor: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    """The fetched rows of the last statement as dicts keyed by column name."""
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]


def one_as_dict(cursor: duckdb.DuckDBPyConnection) -> dict[str, Any] | None:
    rows = rows_as_dicts(cursor)
    return rows[0] if rows else None


def to_json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True, default=str)


def from_json(text: str | None) -> Any:
    return None if text is None else json.loads(text)
