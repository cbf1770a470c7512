"""The SQL page's sandbox: one read-only SELECT over the store, unable to reach anything else.

What is allowed: exactly one statement that DuckDB's own parser classifies as a SELECT,
which includes ``WITH ... SELECT``, ``FROM t SELECT ...``, ``VALUES``, ``UNION``,
``DESCRIBE``, ``SHOW`` and ``SUMMARIZE``. Everything else is refused before it runs:
writes and DDL, ``ATTACH``/``DETACH``, ``COPY``, ``EXPORT``, ``INSTALL``/``LOAD``,
``PRAGMA``, ``SET``/``RESET``/``USE``, ``CALL``, transactions, ``PREPARE``/``EXECUTE``,
``CHECKPOINT``/``VACUUM``, ``EXPLAIN`` (``EXPLAIN ANALYZE`` runs the statement it
explains, so it is refused as a whole) and ``PIVOT`` (which DuckDB runs as several
statements).

A SELECT is then checked on its syntax tree (``json_serialize_sql``, DuckDB's parser
again, no regular expressions): a data-modifying CTE (``WITH x AS (DELETE ...)``), a table
function outside a short allow-list (``read_csv``, ``read_text``, ``read_parquet``,
``glob``, ``query`` ...), or a table name that is a file path or URL
(``FROM '/etc/passwd'``) is refused.

Defence in depth: the statement that passes runs on its own connection, opened
read-only with external access (files, network) off, extension loading off, memory
capped and the configuration locked, so a refusal the checks missed is DuckDB's own.
The connection is opened under the store's process lock and its shared file lock, like
every other read (see ``store.db``), so it never collides with the worker's writes; a
writer waits at most the time limit. A row limit (``fetchmany(row_limit + 1)`` on a
streaming result) and a time limit (``interrupt()`` at the deadline) keep it short.
Every refusal raises :class:`engine.errors.InputError` saying what is allowed.
"""

from __future__ import annotations

import contextlib

import csv
import io
import json
import os
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

import duckdb
import pandas as pd

from store.errors import InputError, StoreError
from store.db import Database

MAX_SQL_CHARS = 20_000
MEMORY_LIMIT = "512MB"

ALLOWED = (
    "Only one read-only SELECT statement over the store's tables is allowed "
    "(also WITH ... SELECT, FROM ..., VALUES, DESCRIBE, SHOW and SUMMARIZE)."
)

# The connection's settings; lock_configuration keeps a query from changing any of them.
SANDBOX_CONFIG: dict[str, Any] = {
    "enable_external_access": False,       # no files, no network: read_csv, COPY, ATTACH, INSTALL fail
    "autoload_known_extensions": False,
    "autoinstall_known_extensions": False,
    "allow_community_extensions": False,
    "allow_unsigned_extensions": False,
    "memory_limit": MEMORY_LIMIT,
    "max_temp_directory_size": "0B",       # never spill to disk
    "lock_configuration": True,            # SET, RESET and PRAGMA cannot change any of the above
}

# Table functions that read nothing but their arguments or the catalog.
ALLOWED_TABLE_FUNCTIONS = frozenset({
    "range", "generate_series", "unnest", "json_each", "json_tree",
    "duckdb_tables", "duckdb_columns", "duckdb_views", "duckdb_constraints", "duckdb_indexes",
    "duckdb_schemas", "duckdb_types", "duckdb_functions", "duckdb_keywords", "duckdb_sequences",
    "pragma_table_info",
})

# Why each kind of statement is refused (names as in duckdb.StatementType).
_REFUSED_BECAUSE = {
    "INSERT": "the SQL page is read-only",
    "UPDATE": "the SQL page is read-only",
    "DELETE": "the SQL page is read-only",
    "MERGE_INTO": "the SQL page is read-only",
    "CREATE": "the SQL page is read-only (no tables, views, macros, sequences or secrets)",
    "DROP": "the SQL page is read-only",
    "ALTER": "the SQL page is read-only",
    "CREATE_FUNC": "the SQL page is read-only",
    "ATTACH": "the SQL page cannot reach other databases or files",
    "DETACH": "the SQL page cannot detach the store",
    "COPY": "the SQL page cannot read or write files",
    "COPY_DATABASE": "the SQL page cannot write files or databases",
    "EXPORT": "the SQL page cannot write files",
    "LOAD": "extensions cannot be installed or loaded",
    "UPDATE_EXTENSIONS": "extensions cannot be installed or loaded",
    "PRAGMA": "settings and pragmas cannot be used here",
    "SET": "settings cannot be changed here",
    "VARIABLE_SET": "settings and variables cannot be changed here",
    "CALL": "procedures cannot be called here",
    "TRANSACTION": "each query runs in its own read-only transaction",
    "PREPARE": "prepared statements are not supported here",
    "EXECUTE": "prepared statements are not supported here",
    "EXPLAIN": "EXPLAIN is not supported (EXPLAIN ANALYZE would run the statement it explains)",
    "VACUUM": "the SQL page is read-only",
    "ANALYZE": "the SQL page is read-only",
    "MULTI": "PIVOT and other multi-step statements are not supported (use a GROUP BY with FILTER)",
}

# Query nodes of a SELECT's syntax tree that read only.
_READ_NODES = {"SELECT_NODE", "SET_OPERATION_NODE", "RECURSIVE_CTE_NODE", "CTE_NODE", "STATEMENT_NODE"}

EXAMPLES: list[tuple[str, str]] = [
    (
        "Queries per day and predicted label (last 14 days)",
        """SELECT CAST(ts AS DATE) AS day, predicted_label, count(*) AS queries
FROM queries
WHERE ts >= (SELECT max(ts) FROM queries) - INTERVAL 14 DAY
GROUP BY day, predicted_label
ORDER BY day, predicted_label""",
    ),
    (
        "Live accuracy of each model version from feedback",
        """SELECT q.model_version, count(*) AS feedback,
       round(avg(CAST(q.predicted_label = l.label AS INTEGER)), 3) AS live_accuracy
FROM labels l JOIN queries q ON q.id = l.query_id
GROUP BY q.model_version
ORDER BY q.model_version""",
    ),
    (
        "Most confused labels (feedback that disagreed)",
        """SELECT l.label AS true_label, q.predicted_label, count(*) AS times
FROM labels l JOIN queries q ON q.id = l.query_id
WHERE l.label <> q.predicted_label
GROUP BY true_label, q.predicted_label
ORDER BY times DESC, true_label
LIMIT 20""",
    ),
    (
        "Every retrain with its decision and reason",
        """SELECT id, started_at, trigger, status, candidate_version, champion_version,
       round(candidate_accuracy, 3) AS candidate_acc, round(champion_accuracy, 3) AS champion_acc,
       train_rows, reason
FROM retrains
ORDER BY id DESC""",
    ),
    (
        "Recent warnings and errors",
        """SELECT ts, kind, severity, version, message
FROM events
WHERE severity IN ('warning', 'error')
ORDER BY id DESC
LIMIT 50""",
    ),
]

_parser: duckdb.DuckDBPyConnection | None = None
_parser_pid: int | None = None
_parser_lock = threading.Lock()

SCHEMA = """
SELECT table_name, column_name, data_type
FROM information_schema.columns
WHERE table_catalog = current_database() AND table_schema = 'main'
ORDER BY table_name, ordinal_position
"""


@dataclass(frozen=True)
class SqlResult:
    """The first ``row_limit`` rows of a query; ``truncated`` when it had more."""

    columns: list[str]
    rows: pd.DataFrame
    truncated: bool
    elapsed_s: float


def schema(db: Database) -> dict[str, list[tuple[str, str]]]:
    """Every table of the store with its columns and their types, in table order."""
    with db.read() as con:
        found = con.execute(SCHEMA).fetchall()
    tables: dict[str, list[tuple[str, str]]] = {}
    for table, column, kind in found:
        tables.setdefault(table, []).append((column, kind))
    return tables


def row_counts(db: Database) -> dict[str, int]:
    """The exact number of rows in every table of the store.

    Table names come from the catalog (never from a user) and are quoted as identifiers.
    """
    with db.read() as con:
        tables = [row[0] for row in con.execute(
            "SELECT DISTINCT table_name FROM information_schema.tables "
            "WHERE table_catalog = current_database() AND table_schema = 'main' ORDER BY table_name"
        ).fetchall()]
        return {table: con.execute(f"SELECT count(*) FROM {_identifier(table)}").fetchone()[0] for table in tables}


def check(sql: str) -> str:
    """The one allowed statement in ``sql``, or :class:`InputError` saying why it is refused.

    >>> check("SELECT 1 AS one;")
    'SELECT 1 AS one'
    >>> check("DROP TABLE events")
    Traceback (most recent call last):
    ...
    engine.errors.InputError: DROP is refused: the SQL page is read-only. Only one read-only SELECT ...
    """
    if not isinstance(sql, str) or not sql.strip():
        raise InputError(f"the query is empty. {ALLOWED}")
    if len(sql) > MAX_SQL_CHARS:
        raise InputError(f"the query is {len(sql):,} characters long; at most {MAX_SQL_CHARS:,} are accepted")
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise InputError(f"the query is not valid SQL: {_first_lines(exc)}") from None
    if not statements:
        raise InputError(f"the query is empty (only comments or semicolons). {ALLOWED}")
    if len(statements) > 1:
        raise InputError(f"the query has {len(statements)} statements; send them one at a time. {ALLOWED}")
    statement = statements[0]
    kind = _kind(statement)
    if kind != "SELECT":
        label = _label(kind, statement.query)
        why = _REFUSED_BECAUSE.get(kind, "this kind of statement is not run here")
        raise InputError(f"{label} is refused: {why}. {ALLOWED}")
    _check_tree(statement.query)
    return statement.query.strip().rstrip(";").strip()


def run_readonly(db: Database, sql: str, *, row_limit: int = 1000, timeout_s: float = 5.0) -> SqlResult:
    """Run one checked SELECT on a sandboxed read-only connection to the store.

    Returns at most ``row_limit`` rows (``truncated`` says there were more); a query still
    running after ``timeout_s`` seconds is interrupted. Refusals and failures raise
    :class:`InputError` with a message for the user; the store is never changed.
    """
    if row_limit < 1:
        raise InputError(f"row_limit must be at least 1, not {row_limit}")
    if not timeout_s > 0:
        raise InputError(f"timeout_s must be a positive number of seconds, not {timeout_s}")
    query = check(sql)
    started = time.perf_counter()
    with sandbox(db) as con:
        timer = threading.Timer(timeout_s, _interrupt, [con])
        timer.daemon = True
        timer.start()
        try:
            cursor = con.execute(query)
            columns = [d[0] for d in cursor.description or []]
            rows = cursor.fetchmany(row_limit + 1)
        except duckdb.InterruptException:
            raise InputError(
                f"the query was stopped after {timeout_s:g} s (the time limit): "
                "narrow it with WHERE, aggregate it, or add a LIMIT"
            ) from None
        except duckdb.OutOfMemoryException:
            raise InputError(
                f"the query needs more than {MEMORY_LIMIT} of memory (the limit here): aggregate it or add a LIMIT"
            ) from None
        except duckdb.PermissionException as exc:
            raise InputError(f"refused by DuckDB: {_first_lines(exc)}. {ALLOWED}") from None
        except duckdb.Error as exc:
            text = _first_lines(exc)
            if "read-only" in text:
                raise InputError(f"refused: the store is opened read-only here. {ALLOWED}") from None
            raise InputError(f"the query failed: {text}") from None
        finally:
            timer.cancel()
    elapsed = time.perf_counter() - started
    truncated = len(rows) > row_limit
    names = _unique(columns)
    return SqlResult(names, pd.DataFrame(rows[:row_limit], columns=names), truncated, elapsed)


def to_csv(frame: pd.DataFrame) -> bytes:
    """The frame as UTF-8 CSV, safe to open in a spreadsheet.

    A text cell (or column name) starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage
    return would be read as a formula; it gets a leading single quote.

    >>> to_csv(pd.DataFrame({"text": ["=1+1", "ok", "-2"], "n": [-1, 2, 3]})).decode()
    "text,n\\r\\n'=1+1,-1\\r\\nok,2\\r\\n'-2,3\\r\\n"
    """
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([_defuse(str(name)) for name in frame.columns])
    for row in frame.itertuples(index=False, name=None):
        writer.writerow([_defuse(value) if isinstance(value, str) else _cell(value) for value in row])
    return out.getvalue().encode("utf-8")


@contextmanager
def sandbox(db: Database) -> Iterator[duckdb.DuckDBPyConnection]:
    """A locked-down read-only connection to the store, held under the store's locks.

    Takes the same locks as ``Database.read``: the process lock (no attachment of the
    file may coexist in this process), the turnstile, then the shared side lock. Close
    it quickly: a writer waits while it is open.
    """
    if not db.path.exists():
        raise StoreError(f"the store {db.path} does not exist yet: start the worker or run `python -m engine demo`")
    with db.locked(write=False):
        try:
            con = duckdb.connect(str(db.path), read_only=True, config=dict(SANDBOX_CONFIG))
        except duckdb.Error as exc:
            raise StoreError(f"cannot open the store {db.path} read-only: {_first_lines(exc)}") from None
        try:
            yield con
        finally:
            con.close()


def _check_tree(query: str) -> None:
    """Refuse writes, file readers and paths inside a SELECT, found on DuckDB's syntax tree."""
    tree = json.loads(_serialize(query))
    if tree.get("error"):
        reason = _REFUSED_BECAUSE["MULTI"] if "PIVOT" in query.upper() else tree.get("error_message", "")
        raise InputError(f"this SELECT cannot be checked, so it is refused: {reason}. {ALLOWED}")
    for node in _walk(tree):
        kind = node.get("type")
        if isinstance(kind, str) and kind.endswith("_NODE") and kind not in _READ_NODES:
            verb = kind.removesuffix("_NODE").removesuffix("_QUERY").replace("_", " ")
            raise InputError(f"a {verb} inside the query is refused: the SQL page is read-only. {ALLOWED}")
        if kind == "TABLE_FUNCTION":
            function = node.get("function") or {}
            name = str(function.get("function_name", "")).lower()
            if name not in ALLOWED_TABLE_FUNCTIONS:
                raise InputError(
                    f"the table function {name}() is refused: the SQL page reads only the store's tables, "
                    f"never files, URLs or other databases (range, generate_series and unnest are fine). {ALLOWED}"
                )
        if kind == "BASE_TABLE":
            name = str(node.get("table_name", ""))
            if any(mark in name for mark in "/\\:.*?") or name.startswith("~"):
                raise InputError(f"reading {name!r} is refused: it looks like a file or URL, and the SQL page "
                                 f"reads only the store's tables. {ALLOWED}")


def _interrupt(con: duckdb.DuckDBPyConnection) -> None:
    with contextlib.suppress(duckdb.Error):  # the query ended and the connection closed just before the deadline
        con.interrupt()


def _serialize(query: str) -> str:
    """DuckDB's syntax tree of a SELECT as JSON, from one in-memory connection per process.

    The connection holds no data and reaches no file (same locked settings as the sandbox);
    it is kept because opening a DuckDB instance costs ~0.1 s.
    """
    global _parser, _parser_pid
    with _parser_lock:
        if _parser is None or _parser_pid != os.getpid():
            _parser = duckdb.connect(":memory:", config=dict(SANDBOX_CONFIG))
            _parser_pid = os.getpid()
        return _parser.execute("SELECT json_serialize_sql(?::VARCHAR)", [query]).fetchone()[0]


def _walk(value: Any) -> Iterator[dict]:
    if isinstance(value, dict):
        yield value
        for item in value.values():
            yield from _walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from _walk(item)


def _kind(statement: Any) -> str:
    try:
        return statement.type.name
    except ValueError:  # a statement type this Python package has no name for (UPDATE EXTENSIONS)
        return "UNKNOWN"


def _label(kind: str, query: str) -> str:
    """The statement's first keyword as the user wrote it (INSTALL, RESET, CHECKPOINT ...), else its kind."""
    words = query.split()
    first = words[0].rstrip(";").upper() if words else ""
    return first if first.isalpha() else kind.replace("_", " ")


def _first_lines(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return " ".join(lines[:3])[:400]


def _identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _unique(columns: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    names = []
    for column in columns:
        count = seen.get(column, 0)
        seen[column] = count + 1
        names.append(column if count == 0 else f"{column} ({count + 1})")
    return names


def _defuse(text: str) -> str:
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _cell(value: Any) -> Any:
    if value is None or (isinstance(value, float) and value != value):
        return ""
    return value
