"""The SQL page's sandbox: one read-only SELECT over a snapshot of the store, in a process of its own.

What is allowed: exactly one statement that DuckDB's own parser classifies as a SELECT,
which includes ``WITH ... SELECT``, ``FROM t SELECT ...``, ``VALUES``, ``UNION``,
``DESCRIBE``, ``SHOW`` and ``SUMMARIZE``. Everything else is refused before it runs:
writes and DDL, ``ATTACH``/``DETACH``, ``COPY``, ``EXPORT``, ``INSTALL``/``LOAD``,
``PRAGMA``, ``SET``/``RESET``/``USE``, ``CALL``, transactions, ``PREPARE``/``EXECUTE``,
``CHECKPOINT``/``VACUUM``, ``EXPLAIN`` (``EXPLAIN ANALYZE`` runs the statement it
explains, so it is refused as a whole) and ``PIVOT`` (which DuckDB runs as several
statements).

A SELECT is then checked on its syntax tree (``json_serialize_sql``, DuckDB's parser
again, no regular expressions) against allow-lists of what may be read: the store's own
tables and views (checked against the snapshot's catalog, so ``duckdb_databases``,
``pragma_database_list`` and ``information_schema`` are refused by name), the table
functions that compute rather than read (``range``, ``generate_series``, ``unnest``,
``json_each``, ``json_tree``), and no function that reads the session's settings
(``current_setting`` and the like). A data-modifying CTE (``WITH x AS (DELETE ...)``) is
refused too.

Where it runs, and the limits (issue 13 measured each one failing before):

- **Never on the store itself.** A query reads a copy of the store, taken under the
  store's shared lock (a file copy: milliseconds for the demo, ~0.1 s per 100 MB) when the
  newest copy is older than ``SNAPSHOT_SECONDS`` and the store has changed since it was made
  (an unchanged store's copy is reused however old: its data is current); a visitor's query
  holds no lock, so it can never make the worker wait. Snapshots live in ``<home>/sql-snapshots/`` (one at a time; the older one
  is deleted once a newer one exists, and a query still reading it keeps its open file).
- **In a child process** (``store.sql_child``), because DuckDB's own limits did not hold:
  ``interrupt()`` was not noticed for 20 s inside ``unnest(range(1e8))``, and
  ``memory_limit`` did not bound the 7 GB it built. The child caps its own data segment
  at ``PROCESS_MEMORY_MB`` (``RLIMIT_DATA``, so an allocation past it fails inside DuckDB
  as out-of-memory) and the parent kills it at the time limit (SIGKILL always fires).
  DuckDB runs with ``memory_limit`` ``MEMORY_LIMIT_MB``, one thread, no spilling, no
  files, network or extensions, and its configuration locked. One child waits ready
  (DuckDB imported) so a query starts at once.
- **Bounded results**: ``row_limit`` rows and ``BYTE_LIMIT`` bytes (Arrow's count), the
  first bound reached cuts the result and says which.

Every refusal raises :class:`engine.errors.InputError` saying what is allowed.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import hashlib
import io
import json
import logging
import os
import re
import select
import shutil
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterator

import duckdb
import pandas as pd
import pyarrow as pa

from store import sql_child
from store.errors import InputError, RetrainerError, StoreError
from store.db import Database

log = logging.getLogger(__name__)

MAX_SQL_CHARS = 20_000
MEMORY_LIMIT_MB = 256          # DuckDB's buffer pool in the child
PROCESS_MEMORY_MB = 768        # the child's whole data segment (RLIMIT_DATA): DuckDB, Python, the result
MEMORY_LIMIT = f"{MEMORY_LIMIT_MB}MB"
THREADS = 1
BYTE_LIMIT = 20 * 2**20        # bytes of result, as Arrow counts them
# A query reads data at most this old (unless the store is unchanged since the copy). Why a minute: a
# running worker commits its heartbeat every 5 s, so the store is never "unchanged" while it runs, and
# each copy of a 10M-query store is 385 MB written in 0.4-0.6 s; at 10 s nearly every page visit paid
# that copy. A minute-old view is current enough for ad-hoc SQL (ingest lands in batches), and every
# result says how old its data is (SqlResult.snapshot_age_s).
SNAPSHOT_SECONDS = 60.0
SNAPSHOT_DIR = "sql-snapshots"
READY_TIMEOUT_S = 60.0         # a child that cannot even import DuckDB in this time is broken
_MEMORY_WORDS = (f"{MEMORY_LIMIT_MB} MB for DuckDB, {PROCESS_MEMORY_MB} MB for the whole query process; "
                 "aggregate it, select fewer or shorter columns, or add a LIMIT")

ALLOWED = (
    "Only one read-only SELECT statement over the store's tables is allowed "
    "(also WITH ... SELECT, FROM ..., VALUES, DESCRIBE, SHOW and SUMMARIZE)."
)

# The settings of the in-process parser connection; lock_configuration keeps a query from changing any.
SANDBOX_CONFIG: dict[str, Any] = {
    "enable_external_access": False,
    "autoload_known_extensions": False,
    "autoinstall_known_extensions": False,
    "allow_community_extensions": False,
    "allow_unsigned_extensions": False,
    "memory_limit": MEMORY_LIMIT,
    "threads": THREADS,
    "max_temp_directory_size": "0B",
    "lock_configuration": True,
}

# Table functions that compute from their arguments and read nothing.
ALLOWED_TABLE_FUNCTIONS = frozenset({"range", "generate_series", "unnest", "json_each", "json_tree"})

# Scalar functions that read the session (settings with paths, variables) rather than compute.
REFUSED_FUNCTIONS = frozenset({"current_setting", "getvariable", "getenv", "current_query", "which_secret",
                               "current_schemas", "pg_get_viewdef", "pg_get_constraintdef"})

_SURROGATE = re.compile("[\ud800-\udfff]")

# What SHOW may list besides a table of the store: the store's tables.
_SHOWABLE = {'"tables"'}

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
        # From the query_counts rollup (store/rollups.py): a few thousand rows, where the same GROUP BY over
        # the log read 1.5M rows at 10M logged queries (0.25 s in the query process's one thread).
        "Queries per day and predicted label (last 14 days)",
        """SELECT CAST(bucket AS DATE) AS day, predicted_label, sum(queries) AS queries
FROM query_counts
WHERE bucket >= (SELECT max(bucket) FROM query_counts) - INTERVAL 14 DAY
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
    """The first rows of a query; ``truncated`` when it had more (``cut_by`` says which limit: rows or bytes).

    ``snapshot_age_s`` is how old the data read was (seconds since the snapshot was taken).
    """

    columns: list[str]
    rows: pd.DataFrame
    truncated: bool
    elapsed_s: float
    cut_by: str | None = None
    snapshot_age_s: float = 0.0


@dataclass(frozen=True)
class Snapshot:
    """A read-only copy of the store: ``path`` to its file, ``taken_at`` in seconds since the epoch.

    ``current_at``: the last moment the store was seen unchanged since the copy (seconds since the
    epoch; ``taken_at`` unless a later look found it unchanged): the data is as fresh as that.
    """

    path: Path
    taken_at: float
    current_at: float | None = None


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
    bad = _SURROGATE.search(sql)
    if bad:
        raise InputError(f"the query holds a lone UTF-16 surrogate (U+{ord(bad.group()):04X} at character "
                         f"{bad.start()}), which is not Unicode text: retype or delete that character")
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


def run_readonly(db: Database, sql: str, *, row_limit: int = 1000, timeout_s: float = 5.0,
                 byte_limit: int = BYTE_LIMIT, max_age_s: float = SNAPSHOT_SECONDS) -> SqlResult:
    """Run one checked SELECT on a snapshot of the store, in a child process with hard limits.

    Returns at most ``row_limit`` rows and about ``byte_limit`` bytes (``truncated`` and
    ``cut_by`` say when a limit cut it); a query still running after ``timeout_s`` seconds is
    killed; the data is at most ``max_age_s`` seconds old (0: a fresh snapshot). Refusals and
    failures raise :class:`InputError` with a message for the user; the store is never changed
    and never locked while the query runs.
    """
    if row_limit < 1:
        raise InputError(f"row_limit must be at least 1, not {row_limit}")
    if not timeout_s > 0:
        raise InputError(f"timeout_s must be a positive number of seconds, not {timeout_s}")
    if byte_limit < 1:
        raise InputError(f"byte_limit must be at least 1, not {byte_limit}")
    query = check(sql)
    tables = _tables_read(query)
    snap = snapshot(db, max_age_s=max_age_s)
    job = {"path": str(snap.path), "query": query, "tables": tables, "row_limit": row_limit + 1,
           "byte_limit": byte_limit, "memory_limit_mb": MEMORY_LIMIT_MB, "threads": THREADS}
    proc = _ready_child()
    started = time.perf_counter()
    try:
        out, err = proc.communicate((json.dumps(job) + "\n").encode(), timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise InputError(
            f"the query was stopped after {timeout_s:g} s (the time limit): "
            "narrow it with WHERE, aggregate it, or add a LIMIT"
        ) from None
    elapsed = time.perf_counter() - started
    header, _, body = out.partition(b"\n")
    try:
        answer = json.loads(header)
    except ValueError:
        answer = None
    if proc.returncode != 0 or not isinstance(answer, dict):
        # Killed by the kernel or crashed at the memory cap (Python's MemoryError outside DuckDB).
        raise InputError(
            f"the query ended abnormally (exit {proc.returncode}), most likely at the memory limit: {_MEMORY_WORDS}"
        )
    if not answer["ok"]:
        raise _refusal(answer["kind"], answer["message"])
    table = pa.ipc.open_stream(body).read_all()
    names = _unique(table.column_names)
    columns = [column.to_pylist() for column in table.columns]
    kept = min(table.num_rows, row_limit)
    rows = pd.DataFrame(list(zip(*columns))[:kept], columns=names) if names else pd.DataFrame()
    cut_by = "rows" if table.num_rows > row_limit else answer.get("truncated")
    if cut_by == "rows" and table.num_rows <= row_limit:
        cut_by = None  # the child fetched row_limit + 1 rows to tell "exactly row_limit" from "more"
    return SqlResult(names, rows, cut_by is not None, elapsed, cut_by,
                     max(0.0, time.time() - (snap.current_at or snap.taken_at)))


def _refusal(kind: str, message: str) -> InputError:
    if kind == "memory":
        return InputError(f"the query needs more memory than the SQL page allows: {_MEMORY_WORDS}")
    if kind == "refused":
        return InputError(f"the query reads {message}. {ALLOWED}")
    if kind == "permission":
        return InputError(f"refused by DuckDB: {message}. {ALLOWED}")
    if "read-only" in message:
        return InputError(f"refused: the store is opened read-only here. {ALLOWED}")
    return InputError(f"the query failed: {message}")


def snapshot(db: Database, *, max_age_s: float = SNAPSHOT_SECONDS) -> Snapshot:
    """The newest snapshot of the store, taken now if the newest is older than ``max_age_s`` seconds
    and the store has changed since it was taken (while a worker runs it always has: its heartbeat
    commits every 5 s, so a snapshot is then reused until it is ``max_age_s`` old, then replaced).

    Unchanged means the same store file header (DuckDB counts every checkpoint there) and size,
    and the same write-ahead log (every commit grows it; a checkpoint removes it), as recorded
    when the copy was made; such a snapshot is reused whatever its age, with ``current_at`` now
    (copying a 10M-query store took 0.6 s of the SQL page's first query). The copy is made under the store's shared lock (a writer waits for the copy, never for a
    query) into ``<home>/sql-snapshots/<time>/store.duckdb``; one copy at a time across
    processes (a lock file in that folder). Older snapshots are deleted; a query still reading
    one keeps its open file. Raises :class:`StoreError` when the store does not exist or the
    copy cannot be written (a full disk names the folder and the free space).
    """
    if not db.path.exists():
        raise StoreError(f"the store {db.path} does not exist yet: start the worker or run `python -m engine demo`")
    folder = db.path.parent / SNAPSHOT_DIR
    if folder.exists() and not folder.is_dir():
        raise StoreError(f"the SQL page keeps its copies of the store in {folder}, but that is a file, not a folder: "
                         "move or delete that file (Retrainer makes the folder itself), then run the query again")
    with _snapshot_lock:
        newest = _newest_snapshot(folder)
        if newest is not None and time.time() - newest.taken_at <= max_age_s:
            return newest
        if newest is not None and _unchanged(db, newest):
            return replace(newest, current_at=time.time())
        try:
            folder.mkdir(exist_ok=True)
            lock = os.open(folder / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StoreError(f"cannot write the SQL page's snapshot folder {folder}: {exc.strerror} (make it writable "
                             "by the user running the dashboard, or delete it: Retrainer makes it again)") from None
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            newest = _newest_snapshot(folder)  # another process may have just taken one
            if newest is not None and time.time() - newest.taken_at <= max_age_s:
                return newest
            if newest is not None and _unchanged(db, newest):
                return replace(newest, current_at=time.time())
            return _take_snapshot(db, folder)
        finally:
            os.close(lock)


def _take_snapshot(db: Database, folder: Path) -> Snapshot:
    taken = time.time_ns()
    work = folder / f".{taken:020d}.tmp"
    final = folder / f"{taken:020d}"
    try:
        work.mkdir()
        with db.locked(write=False):
            (work / SOURCE_FILE).write_text(_signature(db))
            shutil.copyfile(db.path, work / "store.duckdb")
            wal = db.path.with_name(db.path.name + ".wal")
            if wal.exists():  # left by a crash; the next writer replays it, and so does the copy
                shutil.copyfile(wal, work / "store.duckdb.wal")
        os.replace(work, final)
    except OSError as exc:
        shutil.rmtree(work, ignore_errors=True)
        free = shutil.disk_usage(folder).free / 2**20
        raise StoreError(f"cannot copy the store for the SQL page into {folder}: {exc.strerror} "
                         f"(free {free:,.0f} MB)") from None
    for old in folder.iterdir():
        if old.name != final.name and old.name != ".lock":
            shutil.rmtree(old, ignore_errors=True)
    return Snapshot(final / "store.duckdb", taken / 1e9)


SOURCE_FILE = "source"   # in a snapshot's folder: the store's signature when it was copied
_HEADER_BYTES = 12288    # DuckDB's file header and its two database headers (with the checkpoint iteration)


def _signature(db: Database) -> str:
    """What changes whenever a commit reaches the store: its header and size, its write-ahead log's size and time."""
    with open(db.path, "rb") as handle:
        header = hashlib.sha256(handle.read(_HEADER_BYTES)).hexdigest()
    size = db.path.stat().st_size
    try:
        wal = db.wal_path.stat()
        log = f"{wal.st_size}:{wal.st_mtime_ns}"
    except FileNotFoundError:
        log = "none"
    return f"{header}:{size}:{log}"


def _unchanged(db: Database, snap: Snapshot) -> bool:
    """True when the store is as it was when ``snap`` was copied (its recorded signature matches)."""
    try:
        recorded = (snap.path.parent / SOURCE_FILE).read_text()
        return recorded == _signature(db)
    except OSError:
        return False


def _newest_snapshot(folder: Path) -> Snapshot | None:
    try:
        names = sorted(p.name for p in folder.iterdir() if p.name.isdigit())
    except (FileNotFoundError, NotADirectoryError):  # none yet; a file in its place is refused by snapshot()
        return None
    for name in reversed(names):
        path = folder / name / "store.duckdb"
        if path.exists():
            return Snapshot(path, int(name) / 1e9)
    return None


_snapshot_lock = threading.Lock()
_standby: subprocess.Popen | None = None
_standby_pid: int | None = None
_standby_lock = threading.Lock()


def _spawn() -> subprocess.Popen:
    """A child that imports DuckDB, says ``ready`` and waits for its one job (see store.sql_child)."""
    root = Path(__file__).resolve().parents[2]
    env = {"PYTHONPATH": str(root), "PATH": os.defpath, "HOME": "/nonexistent", "LANG": "C.UTF-8"}
    return subprocess.Popen([sys.executable, "-m", "store.sql_child", str(PROCESS_MEMORY_MB)], cwd=root, env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            start_new_session=True)


_preparing: threading.Thread | None = None
_preparing_lock = threading.Lock()


def prepare(db: Database) -> None:
    """Make the page's first query fast, off the page's path; returns at once.

    Starts a waiting query process (it imports DuckDB and pyarrow: ~0.3 s) unless one waits
    already, and in a background thread opens the checker's parser and refreshes the snapshot
    when it is stale and the store changed (a 10M-query store is a 0.4-0.6 s copy). A query sent meanwhile takes the same
    process, and waits for that copy under the snapshot lock rather than making another.
    A failed refresh is logged; the query then reports it.
    """
    global _standby, _standby_pid, _preparing
    with _standby_lock:
        if _standby is None or _standby_pid != os.getpid() or _standby.poll() is not None:
            _standby, _standby_pid = _spawn(), os.getpid()
    with _preparing_lock:
        if _preparing is not None and _preparing.is_alive():
            return
        _preparing = threading.Thread(target=_refresh, args=(db,), name="sql-snapshot", daemon=True)
        _preparing.start()


_refresh_failure: str | None = None   # the last failure logged, so each page load does not log it again


def _refresh(db: Database) -> None:
    """prepare's background work; never raises (a thread's exception would only print a traceback).

    A failure is logged once as a warning, without a traceback; the query that follows meets the same
    problem and shows its message on the page."""
    global _refresh_failure
    try:
        _serialize("SELECT 1")  # opens the checker's own DuckDB instance (~0.1 s) before the first query needs it
        snapshot(db)
    except (RetrainerError, OSError) as exc:
        if str(exc) != _refresh_failure:
            log.warning("the SQL page's snapshot could not be refreshed ahead of a query: %s", exc)
        _refresh_failure = str(exc)
    else:
        _refresh_failure = None


def _ready_child() -> subprocess.Popen:
    """The waiting child (a fresh one waits behind it for the next query), once it has said ``ready``."""
    global _standby, _standby_pid
    with _standby_lock:
        proc = _standby if _standby is not None and _standby_pid == os.getpid() else None
        _standby, _standby_pid = _spawn(), os.getpid()
    if proc is None or proc.poll() is not None:
        proc = _spawn()
    line = b""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not line.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([proc.stdout], [], [], left)[0]:
            proc.kill()
            proc.wait()
            raise StoreError("the SQL page's query process did not start (DuckDB could not be imported in time)")
        chunk = os.read(proc.stdout.fileno(), 1)
        if not chunk:
            proc.wait()
            raise StoreError(f"the SQL page's query process ended at start (exit {proc.returncode})")
        line += chunk
    return proc


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
    """The locked-down connection a query runs on, opened here on a fresh snapshot (for tests and checks).

    The same settings as in the child process (``store.sql_child.connect``); it holds no lock
    on the store.
    """
    snap = snapshot(db, max_age_s=0)
    try:
        con = sql_child.connect(str(snap.path), memory_limit_mb=MEMORY_LIMIT_MB, threads=THREADS)
    except duckdb.Error as exc:
        raise StoreError(f"cannot open the snapshot of the store read-only: {_first_lines(exc)}") from None
    try:
        yield con
    finally:
        con.close()


def _check_tree(query: str) -> list[str]:
    """Refuse writes, file readers, side doors and paths inside a SELECT; return the table names it reads.

    The names exclude the query's own CTEs; the child checks them against the snapshot's catalog.
    """
    tree = json.loads(_serialize(query))
    if tree.get("error"):
        reason = _REFUSED_BECAUSE["MULTI"] if "PIVOT" in query.upper() else tree.get("error_message", "")
        raise InputError(f"this SELECT cannot be checked, so it is refused: {reason}. {ALLOWED}")
    ctes = {str(entry.get("key", "")).lower() for node in _walk(tree) if isinstance(node.get("cte_map"), dict)
            for entry in node["cte_map"].get("map", []) or []}
    tables: list[str] = []
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
                    f"never files, URLs, settings or other databases (range, generate_series and unnest are fine). "
                    f"{ALLOWED}"
                )
        if kind == "FUNCTION" and str(node.get("function_name", "")).lower() in REFUSED_FUNCTIONS:
            raise InputError(f"the function {str(node['function_name']).lower()}() is refused: the SQL page reads "
                             f"the store's tables, not the server's settings. {ALLOWED}")
        if kind == "SHOW_REF" and node.get("query") is None:
            name = str(node.get("table_name", ""))
            if node.get("show_type") == "SHOW_SPECIAL":
                if name not in _SHOWABLE:
                    shown = "ALL TABLES" if name == "__show_tables_expanded" else name.strip('"').upper()
                    raise InputError(f"SHOW {shown} is refused: only the store's tables can be listed "
                                     f"(SHOW TABLES). {ALLOWED}")
            else:
                tables.append(_plain_table(node, name))
        if kind == "BASE_TABLE":
            name = str(node.get("table_name", ""))
            if any(mark in name for mark in "/\\:.*?") or name.startswith("~"):
                raise InputError(f"reading {name!r} is refused: it looks like a file or URL, and the SQL page "
                                 f"reads only the store's tables. {ALLOWED}")
            if name.lower() in ctes and not node.get("schema_name") and not node.get("catalog_name"):
                continue
            tables.append(_plain_table(node, name))
    return sorted(set(tables))


def _plain_table(node: dict, name: str) -> str:
    """``name`` when it is written as the store's own (no other database or schema), else a refusal."""
    catalog, schema_name = str(node.get("catalog_name") or ""), str(node.get("schema_name") or "")
    if catalog.lower() not in ("", "store") or schema_name.lower() not in ("", "main"):
        where = ".".join(part for part in (catalog, schema_name, name) if part)
        raise InputError(f"reading {where!r} is refused: the SQL page reads only the store's own tables and "
                         f"views (schema main). {ALLOWED}")
    return name


def _tables_read(query: str) -> list[str]:
    """The store tables and views a checked SELECT names (its CTEs left out)."""
    return _check_tree(query)


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
