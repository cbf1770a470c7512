"""Imports: staged rows moved into the log in one transaction, and the record of what was imported.

An import writes its clean rows to Parquet files outside the store first (engine.importer);
:func:`commit_staged` then inserts them all, and the import's event, inside one write, so a
file is stored whole or not at all.

Memory: the insert streams the staged files (DuckDB writes full row groups to the database file
as they fill, and the commit takes them by reference), but DuckDB keeps the pages it wrote in its
buffer pool up to its ``memory_limit`` (80% of RAM by default), so the process's resident size grew
with the file: 4M staged labels took it from 216 MB to 687 MB. The insert therefore runs under
:data:`IMPORT_MEMORY_LIMIT` (4M rows: 314 MB peak, 1M rows about the same), and the default is
restored before the commit. ``benchmarks/import_memory.py`` measures it at 100 MB and 1 GB of CSV.

Earlier imports are found by the SHA-256 of the file's
bytes, which every import event records.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import duckdb

from store import rollups
from store.querylog import LABEL_COLUMNS, QUERY_COLUMNS
from store.vocabulary import EventKind

# DuckDB's buffer pool during the insert (what it may keep in memory; it writes and evicts beyond that).
IMPORT_MEMORY_LIMIT = "128MB"
LIMIT_MEMORY = "SET memory_limit = '128MB'"  # IMPORT_MEMORY_LIMIT
RESET_MEMORY = "RESET memory_limit"

# $arrived_at: this machine's clock when the import stores its rows (see store/querylog.py).
INSERT_STAGED_QUERIES = f"""
INSERT INTO queries ({', '.join(QUERY_COLUMNS)}, arrived_at)
SELECT id, ts::TIMESTAMP, text, predicted_label, confidence::DOUBLE, model_version, source, $arrived_at::TIMESTAMP
FROM read_parquet($path)
"""
INSERT_STAGED_LABELS = f"""
INSERT INTO labels ({', '.join(LABEL_COLUMNS)}, arrived_at)
SELECT id, ts::TIMESTAMP, query_id, text, label, source, $arrived_at::TIMESTAMP FROM read_parquet($path)
"""
# What the rollups (store/rollups.py) need of the staged rows, as stored.
STAGED = "staged_rows"
STAGED_QUERY_KEYS = f"""
CREATE OR REPLACE TEMP TABLE {STAGED} AS
SELECT id, ts::TIMESTAMP AS ts, predicted_label, confidence::DOUBLE AS confidence FROM read_parquet($path)
"""
STAGED_LABEL_KEYS = f"""
CREATE OR REPLACE TEMP TABLE {STAGED} AS SELECT id, ts::TIMESTAMP AS ts, query_id, label FROM read_parquet($path)
"""
# The latest import of the same bytes that stored something.
FIND_IMPORT = """
SELECT id, ts, message, details FROM events
WHERE kind = $import AND json_extract_string(details, '$.sha256') = $sha256
  AND coalesce(json_extract(details, '$.labels')::BIGINT, 0) + coalesce(json_extract(details, '$.queries')::BIGINT, 0) > 0
ORDER BY id DESC LIMIT 1
"""
ALL_LABELS = """
SELECT label FROM labels
UNION SELECT predicted_label FROM queries WHERE predicted_label IS NOT NULL
"""


def commit_staged(con: duckdb.DuckDBPyConnection, *, queries: Path | None, labels: Path | None,
                  arrived_at: datetime) -> tuple[int, int]:
    """Insert the staged Parquet files inside an open write; return (queries added, labels added).

    ``arrived_at`` (naive UTC, this machine's clock) is stored with every row: the adaptive
    trigger counts new labels by it, whatever time the file's rows claim. Runs with DuckDB's memory
    limit at :data:`IMPORT_MEMORY_LIMIT` and resets it to the default after; the caller's
    transaction still decides whether anything is stored.
    """
    con.execute(LIMIT_MEMORY)
    try:
        added_queries = added_labels = 0
        if queries:
            added_queries = con.execute(INSERT_STAGED_QUERIES, {"path": str(queries), "arrived_at": arrived_at}).fetchone()[0]
            _add_to_rollups(con, STAGED_QUERY_KEYS, queries, rollups.add_queries)
        if labels:
            added_labels = con.execute(INSERT_STAGED_LABELS, {"path": str(labels), "arrived_at": arrived_at}).fetchone()[0]
            _add_to_rollups(con, STAGED_LABEL_KEYS, labels, rollups.add_labels)
    finally:
        con.execute(RESET_MEMORY)
    return added_queries, added_labels


def _add_to_rollups(con: duckdb.DuckDBPyConnection, statement: str, path: Path, add) -> None:
    """Every staged row was stored (an import has no repeat check): the rollups count them all."""
    con.execute(statement, {"path": str(path)})
    try:
        add(con, f"temp.{STAGED}")
    finally:
        con.execute(f"DROP TABLE IF EXISTS temp.{STAGED}")


def find_import(con: duckdb.DuckDBPyConnection, sha256: str) -> dict | None:
    """The latest import event of a file with these bytes that stored rows, or None."""
    row = con.execute(FIND_IMPORT, {"sha256": sha256, "import": EventKind.IMPORT}).fetchone()
    if row is None:
        return None
    return {"id": row[0], "ts": row[1], "message": row[2], "details": json.loads(row[3]) if row[3] else {}}


def all_labels(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Every label the store has seen: true labels and the labels models predicted."""
    return [r[0] for r in con.execute(ALL_LABELS).fetchall()]
