"""Locked, short-lived access to the DuckDB file: the only way anything reaches the store.

DuckDB lets one process write a file, or many read it, never both (see DESIGN.md).
So no process keeps the file open: each access takes a side lock file with
``fcntl.flock`` (shared to read, exclusive to write), ATTACHes the database to a
long-lived in-memory connection, does one short piece of work, and DETACHes.
``flock`` has no writer preference: readers whose shared locks overlap would starve a
writer for as long as they keep reading (measured: 1 write in 3 s against 3 busy
readers). So every access first passes a second lock file, the turnstile, which a
writer holds while it waits for the data lock: new readers queue behind it.
Inside a process a thread lock serialises accesses, because a read-only and a
read-write attachment of the same file cannot coexist in one process.

Measured here: a read (attach, query, detach) takes ~2 ms, a write ~15 ms; a
writer's worst wait under busy readers stays far below a second.

Checkpoints. A commit is durable once DuckDB has appended it to the write-ahead log
(``retrainer.duckdb.wal``, fsynced at COMMIT); the checkpoint that folds the log into the
file is extra work. DuckDB checkpoints when a file is detached, which made every short
write pay one (18-20 ms of a 26 ms write here), and a checkpoint rewrites every column
that an UPDATE touched in the affected row groups, so its cost grew with the history
(issue 15: 82 ms per retrain at 200 retrains, 119 ms at 1,000). So detaching never
checkpoints (``checkpoint_on_detach``); a write checkpoints only when the log has grown
past :data:`CHECKPOINT_WAL_BYTES` since the last one, which keeps what every attach must
replay small (about 1 ms per 10 KB here) while a retrain's few small writes share one
checkpoint. Crash safety is unchanged: a SIGKILL at any point leaves the committed
transactions in the log, and the next attach replays them (tests/test_crash.py).
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import shutil
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import duckdb

from store.errors import DiskFullError, StoreBusyError, StoreError

log = logging.getLogger(__name__)

ALIAS = "store"
# What ``Database.read`` and ``Database.write`` yield; engine code names it through this alias
# (only store/ imports duckdb).
Connection = duckdb.DuckDBPyConnection
# Checkpoint after a write once the write-ahead log is larger than this (bytes); see above.
CHECKPOINT_WAL_BYTES = 64 * 1024

# One in-memory connection and one thread lock per process, shared by every Database.
_process_lock = threading.RLock()
_connection: duckdb.DuckDBPyConnection | None = None
_connection_pid: int | None = None
_local = threading.local()


def _memory_connection() -> duckdb.DuckDBPyConnection:
    global _connection, _connection_pid
    if _connection is None or _connection_pid != os.getpid():
        # Never fetch or load extensions: a foreign file (say SQLite) must be refused, not downloaded for.
        _connection = duckdb.connect(
            ":memory:", config={"autoinstall_known_extensions": False, "autoload_known_extensions": False,
                                "checkpoint_on_detach": "DISABLED"}
        )
        _connection_pid = os.getpid()
    return _connection


def _disk_full(exc: BaseException) -> bool:
    text = str(exc)
    return "No space left on device" in text or "Disk full" in text or "disk is full" in text


def disk_full_message(directory: Path) -> str:
    """``disk full at PATH, free N MB`` and what to do: the message every full-disk failure gives."""
    try:
        free = shutil.disk_usage(directory).free / 2**20
    except OSError:
        free = float("nan")
    return (f"disk full at {directory}, free {free:,.0f} MB: make room there (nothing stored was lost; "
            "the worker retries by itself)")


class Database:
    """A DuckDB file reached only through :meth:`read` and :meth:`write`.

    Both are context managers yielding a connection whose default schema is the
    store; leave them quickly (one short transaction), never keep the connection.
    """

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self.wal_path = self.path.with_name(self.path.name + ".wal")
        self.turnstile_path = self.path.with_name(self.path.name + ".turnstile.lock")
        self.longest_wait = 0.0  # seconds: worst time spent waiting for the locks

    def exists(self) -> bool:
        return self.path.exists()

    @contextmanager
    def read(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-only view of the store for one short read."""
        with self._attached(write=False) as con:
            yield con

    @contextmanager
    def write(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-write view in one transaction: committed on success, rolled back on error.

        After the commit, a checkpoint runs if the write-ahead log has outgrown
        :data:`CHECKPOINT_WAL_BYTES` (see the module's notes).
        """
        with self._attached(write=True) as con:
            con.execute("BEGIN TRANSACTION")
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")
            self._checkpoint_if_due(con)

    def checkpoint(self) -> None:
        """Fold the write-ahead log into the file now (a clean stop; before copying the file alone)."""
        with self._attached(write=True) as con:
            con.execute(f"CHECKPOINT {ALIAS}")

    def _checkpoint_if_due(self, con: duckdb.DuckDBPyConnection) -> None:
        try:
            due = self.wal_path.stat().st_size > CHECKPOINT_WAL_BYTES
        except FileNotFoundError:  # nothing logged since the last checkpoint
            return
        if due:
            try:
                con.execute(f"CHECKPOINT {ALIAS}")
            except duckdb.Error as exc:  # the commit is safe in the log; the next write tries again
                log.warning("checkpoint of %s postponed: %s", self.path, exc)

    @contextmanager
    def locked(self, *, write: bool) -> Iterator[None]:
        """Hold this process's turn and the file lock (shared to read, exclusive to write).

        For code that must open a connection of its own (the SQL page's sandbox); everything
        else uses :meth:`read` and :meth:`write`, which take this lock.
        """
        if getattr(_local, "depth", 0):
            raise RuntimeError("nested store access: finish one read/write before starting another")
        started = time.perf_counter()
        with _process_lock:
            turnstile = self._open_lock_file(self.turnstile_path)
            try:
                lock_file = self._open_lock_file(self.lock_path)
            except BaseException:
                os.close(turnstile)
                raise
            _local.depth = 1
            try:
                # A writer holds the turnstile while it waits, so readers arriving later wait behind it.
                fcntl.flock(turnstile, fcntl.LOCK_EX)
                try:
                    fcntl.flock(lock_file, fcntl.LOCK_EX if write else fcntl.LOCK_SH)
                finally:
                    fcntl.flock(turnstile, fcntl.LOCK_UN)
                self.longest_wait = max(self.longest_wait, time.perf_counter() - started)
                yield
            finally:
                _local.depth = 0
                fcntl.flock(lock_file, fcntl.LOCK_UN)
                os.close(lock_file)
                os.close(turnstile)

    @contextmanager
    def _attached(self, *, write: bool) -> Iterator[duckdb.DuckDBPyConnection]:
        with self.locked(write=write):
            con = _memory_connection()
            self._attach(con, write=write)
            try:
                try:
                    yield con
                finally:
                    try:
                        con.execute("USE memory")
                    finally:
                        con.execute(f"DETACH {ALIAS}")
            except duckdb.Error as exc:
                if _disk_full(exc):  # DuckDB's own words name a temp file and a checkpoint: say what to do
                    raise DiskFullError(disk_full_message(self.path.parent)) from exc
                raise


    def _open_lock_file(self, path: Path) -> int:
        try:
            return os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except FileNotFoundError as exc:
            raise StoreError(f"the data directory {self.path.parent} does not exist: create it or set RETRAINER_HOME") from exc
        except OSError as exc:  # permissions, a read-only file system, a full disk
            raise StoreError(
                f"cannot write the lock file {path}: {exc.strerror} (the data directory must be writable by this user)"
            ) from exc

    def _attach(self, con: duckdb.DuckDBPyConnection, *, write: bool) -> None:
        # TYPE DUCKDB: never let DuckDB guess the format from the file's header.
        options = " (TYPE DUCKDB)" if write else " (TYPE DUCKDB, READ_ONLY)"
        try:
            con.execute(f"ATTACH ? AS {ALIAS}{options}", [str(self.path)])
        except duckdb.Error as exc:
            if _disk_full(exc):
                raise DiskFullError(disk_full_message(self.path.parent)) from exc
            holder = re.search(r"Conflicting lock is held in (.+?)(?: \(PID (\d+)\))?(?:\. |\.?$)", str(exc))
            if holder:
                who = f"{Path(holder.group(1)).name} (pid {holder.group(2)})" if holder.group(2) else Path(holder.group(1)).name
                raise StoreBusyError(
                    f"another program holds the store {self.path} open: {who}. DuckDB lets one process open a "
                    "file for writing; close that program, or read a copy of the file instead"
                ) from exc
            raise StoreError(self._explain(exc, write=write)) from exc
        con.execute(f"USE {ALIAS}")

    def _explain(self, exc: duckdb.Error, *, write: bool) -> str:
        text = str(exc)
        if not self.path.exists() and not write:
            return f"the store {self.path} does not exist yet: start the worker or run `python -m engine demo`"
        if "Permission denied" in text or "Read-only file system" in text:
            return f"cannot {'write' if write else 'read'} the store {self.path}: permission denied (the data directory must be writable)"
        if "not a valid DuckDB database" in text or "Serialization" in type(exc).__name__ or "magic" in text.lower():
            return (
                f"{self.path} is not a DuckDB database file written by this version of Retrainer; "
                "move it away or point RETRAINER_HOME at another directory (nothing was changed)"
            )
        return f"cannot open the store {self.path}: {text}"


Target = Database | duckdb.DuckDBPyConnection


@contextmanager
def writing(to: Target) -> Iterator[duckdb.DuckDBPyConnection]:
    """The connection to write with: ``to`` itself when it is one (the caller's open transaction,
    ``with db.write() as con``), else one short write of its own on the ``Database`` ``to``.

    So each write action has one function and one verb (``record_event``, ``set_state``,
    ``finish_command``) whether it joins a transaction or is the whole of one.
    """
    if isinstance(to, Database):
        with to.write() as con:
            yield con
    else:
        yield to
