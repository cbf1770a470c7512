"""Rollups that drifted from the log are found and rebuilt: at the worker's start-up, and by
``python -m engine rebuild-rollups``. Real DuckDB stores, rows deleted or written behind the rollups'
back with plain SQL (what an older Retrainer or a person at the DuckDB prompt does)."""

from __future__ import annotations

from datetime import datetime, timedelta

import subprocess
import sys

import pandas as pd
import pytest

from engine.cli import main
from engine.config import load_settings
from engine.context import Context
from engine.lock import WorkerLock
from engine.worker import open_worker
from store import rollups
from store.events import recent_events
from store.querylog import insert_labels, insert_queries
from store.vocabulary import EventKind, Severity

T0 = datetime(2026, 3, 1, 8, 0)
NOW = T0 + timedelta(days=2)


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A data directory whose store logged 40 queries over 10 hours and 12 labels, through the real writers."""
    monkeypatch.setenv("RETRAINER_HOME", str(tmp_path / "home"))
    ctx = Context.open(load_settings(), clock=lambda: NOW)
    queries = pd.DataFrame({"id": [f"q{i}" for i in range(40)], "ts": [T0 + timedelta(minutes=15 * i) for i in range(40)],
                            "text": [f"text {i}" for i in range(40)],
                            "predicted_label": [["refund", "cancel", None][i % 3] for i in range(40)],
                            "confidence": [None if i % 7 == 0 else (i % 10) / 10 for i in range(40)],
                            "model_version": ["v0001"] * 40, "source": ["test"] * 40})
    labels = pd.DataFrame({"id": [f"l{i}" for i in range(12)], "ts": [T0 + timedelta(hours=12, minutes=i) for i in range(12)],
                           "query_id": [f"q{3 * i}" for i in range(12)], "text": [None] * 12,
                           "label": [["refund", "cancel"][i % 2] for i in range(12)], "source": ["test"] * 12})
    with ctx.db.write() as con:
        insert_queries(con, queries)
    with ctx.db.write() as con:
        insert_labels(con, labels)
    return ctx


def _tables(con) -> dict[str, list[tuple]]:
    return {table: con.execute(f"SELECT * FROM {table} ORDER BY ALL").fetchall() for table in rollups.TABLES}


def _from_log(con) -> dict[str, list[tuple]]:
    """Every rollup as a full rebuild from the whole log makes it (the statements rebuild and migration 6 run)."""
    return {table: con.execute(f"SELECT * FROM ({rollups.FROM_LOG[table]}) ORDER BY ALL").fetchall()
            for table in rollups.TABLES}


def _corrupt(ctx: Context) -> None:
    """Rows deleted and written with plain SQL, past the rollups: 5 queries and 2 labels gone, 3 queries more."""
    with ctx.db.write() as con:
        con.execute("DELETE FROM queries WHERE id IN ('q1', 'q2', 'q4', 'q5', 'q7')")
        con.execute("DELETE FROM labels WHERE id IN ('l0', 'l1')")
        con.execute("""INSERT INTO queries (id, ts, text, predicted_label, confidence, model_version, source)
                       SELECT 'old' || i, TIMESTAMP '2026-03-02 01:00:00', 'text', 'refund', 0.9, 'v0001', 'old'
                       FROM range(3) t(i)""")


def test_the_check_names_what_disagrees_and_agrees_after_a_rebuild(home):
    with home.db.read() as con:
        assert rollups.disagreement(con) is None
    _corrupt(home)
    with home.db.read() as con:
        assert rollups.disagreement(con) == ("the log holds 38 queries, the rollups count 40; "
                                             "10 labels are stored, the rollups took in 12")
    with home.db.write() as con:
        rollups.rebuild(con)
        assert rollups.disagreement(con) is None


def test_the_worker_rebuilds_drifted_rollups_at_start_up_and_records_why(home):
    _corrupt(home)
    with home.db.read() as con:
        stale = _tables(con)
        expected = _from_log(con)
    assert stale != expected
    assert sum(n for _, _, n in expected["query_counts"]) == 38

    worker, lock = open_worker(home, synchronous=True)
    try:
        fixes = worker.start(schedule=False)
    finally:
        worker.shutdown()
        lock.release()
    with home.db.read() as con:
        assert _tables(con) == expected
        assert rollups.disagreement(con) is None
    assert "rollups rebuilt from the log (the log holds 38 queries, the rollups count 40; " \
           "10 labels are stored, the rollups took in 12)" in fixes
    events = [e for e in recent_events(home.db, limit=50) if e["kind"] == EventKind.ROLLUPS]
    assert len(events) == 1
    assert events[0]["severity"] == Severity.WARNING
    assert events[0]["message"] == ("Rollups rebuilt from the log at the worker's start-up: the log holds 38 queries, "
                                    "the rollups count 40; 10 labels are stored, the rollups took in 12.")
    assert events[0]["details"]["queries"] == 38 and events[0]["details"]["labels"] == 10

    worker, lock = open_worker(home, synchronous=True)  # agreeing rollups: no rebuild, no event
    try:
        assert worker.start(schedule=False) == []
    finally:
        worker.shutdown()
        lock.release()
    assert len([e for e in recent_events(home.db, limit=50) if e["kind"] == EventKind.ROLLUPS]) == 1


def test_rebuild_rollups_rebuilds_them_equal_to_the_log(home, capsys):
    _corrupt(home)
    with home.db.read() as con:
        expected = _from_log(con)
    assert main(["rebuild-rollups"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("rollups rebuilt from 38 logged queries and 10 labels in ")
    assert out.rstrip().endswith("(they disagreed with the log: the log holds 38 queries, the rollups count 40; "
                                 "10 labels are stored, the rollups took in 12)")
    assert "Traceback" not in err
    with home.db.read() as con:
        assert _tables(con) == expected
    assert main(["rebuild-rollups"]) == 0  # on demand also when they agree
    assert capsys.readouterr().out.rstrip().endswith("(their totals agreed with the log)")
    kinds = [(e["kind"], e["severity"]) for e in recent_events(home.db, limit=50) if e["kind"] == EventKind.ROLLUPS]
    assert kinds == [(EventKind.ROLLUPS, Severity.INFO), (EventKind.ROLLUPS, Severity.WARNING)]


def test_rebuild_rollups_refuses_while_a_worker_runs_and_changes_nothing(home, capsys):
    _corrupt(home)
    with home.db.read() as con:
        before = _tables(con)
    with WorkerLock(home.settings.worker_lock_path):
        assert main(["rebuild-rollups"]) == 2
    out, err = capsys.readouterr()
    assert err.startswith(f"error: a worker is running (pid ")
    assert "stop it first, then run rebuild-rollups again" in err and "Traceback" not in err
    with home.db.read() as con:
        assert _tables(con) == before


def test_rebuild_rollups_refuses_while_another_program_holds_the_store_open(home, capsys):
    _corrupt(home)
    # A person's DuckDB session on the file, in another process (DuckDB locks the file per process).
    holder = subprocess.Popen([sys.executable, "-c", "import duckdb, sys, time; con = duckdb.connect(sys.argv[1]); "
                               "print('open', flush=True); time.sleep(120)", str(home.settings.db_path)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "open"
        assert main(["rebuild-rollups"]) == 2
    finally:
        holder.kill()
        holder.wait()
    out, err = capsys.readouterr()
    assert "error: another program holds the store " in err
    assert "close that program" in err and "Traceback" not in err
    with home.db.read() as con:
        assert rollups.disagreement(con) is not None  # nothing was rebuilt
