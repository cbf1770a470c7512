"""Tests for store/: migrations, refusing foreign files, locked access across processes, the query log."""

import json
import os
import subprocess
import sys
import textwrap
from datetime import datetime

import pandas as pd
import pytest

from engine.errors import StoreError
from store import open_store
from store.db import Database
from store.events import record_event, recent_events
from store.querylog import count_rows, insert_labels, insert_queries, known_labels, recent_texts, training_rows
from store.models import get_model, insert_model, list_models, set_model_status
from store.schema import LATEST, current_version, migrate
from store.vocabulary import ModelStatus
from tests.conftest import ROOT

TABLES = ["alias_history", "commands", "confidence_counts", "deployments", "evaluations", "events", "feedback_counts", "jobs",
          "label_confidence_counts", "labels", "models", "orphan_labels", "quarantine", "queries", "query_counts", "retrains",
          "schema_version", "state"]
T0 = datetime(2026, 3, 4, 12, 0, 0)


def tables(db: Database) -> list[str]:
    with db.read() as con:
        return [r[0] for r in con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_catalog = current_database() ORDER BY 1"
        ).fetchall()]


def query_frame(*rows) -> pd.DataFrame:
    """Rows as (id, text, predicted_label, confidence)."""
    return pd.DataFrame(
        [{"id": i, "ts": T0, "text": t, "predicted_label": p, "confidence": c, "model_version": "v0001", "source": "test"}
         for i, t, p, c in rows]
    )


def label_frame(*rows) -> pd.DataFrame:
    """Rows as (id, query_id, text, label)."""
    return pd.DataFrame(
        [{"id": i, "ts": T0, "query_id": q, "text": t, "label": lab, "source": "test"} for i, q, t, lab in rows],
        columns=["id", "ts", "query_id", "text", "label", "source"],
    ).astype({"query_id": object, "text": object})


@pytest.fixture
def db(tmp_path):
    database = Database(tmp_path / "retrainer.duckdb")
    migrate(database)
    return database


# --- migrations ----------------------------------------------------------------------------------


def test_migrations_create_every_table_and_are_idempotent(tmp_path):
    database = Database(tmp_path / "retrainer.duckdb")
    assert migrate(database) == LATEST == 8
    assert tables(database) == TABLES  # "deployments" is a view of alias_history since schema 2
    assert migrate(database) == 8
    assert tables(database) == TABLES
    assert current_version(database) == 8
    with database.read() as con:
        assert con.execute("SELECT version, name FROM schema_version ORDER BY version").fetchall() == [
            (1, "initial schema"),
            (2, "the champion alias with an append-only history; model statuses champion and inconclusive"),
            (3, "the query log and the labels without a primary-key index"),
            (4, "arrival times: when each logged query and label reached the store, and the claims clamped to it"),
            (5, "quarantine rules, and what each retrain left out"),
            (6, "rollups the dashboard reads: counts per 15-minute bucket, confidence bins, live-accuracy feedback"),
            (7, "live-accuracy feedback per bucket: the first labels row its refresh reads"),
            (8, "what each retrain's training cap left out")]


def test_migration_3_keeps_every_logged_row_and_drops_the_log_index(tmp_path, monkeypatch):
    import store.schema as schema

    database = Database(tmp_path / "retrainer.duckdb")
    monkeypatch.setattr(schema, "MIGRATIONS", schema.MIGRATIONS[:2])
    monkeypatch.setattr(schema, "LATEST", 2)
    assert migrate(database) == 2  # a store written before migration 3
    with database.write() as con:  # the columns of schema 2 (the store's insert functions write today's)
        con.execute("INSERT INTO queries VALUES ('q2', $t, 'track my parcel', 'track_order', 0.9, 'v0001', 'test'),"
                    " ('q1', $t, 'refund please', 'refund', 0.7, 'v0001', 'test')", {"t": T0})
        con.execute("INSERT INTO labels VALUES ('l1', $t, 'q1', NULL, 'refund', 'test')", {"t": T0})
    monkeypatch.undo()
    assert migrate(database) == LATEST
    with database.read() as con:
        assert con.execute("SELECT id, text, predicted_label FROM queries ORDER BY id").fetchall() == [
            ("q1", "refund please", "refund"), ("q2", "track my parcel", "track_order")]
        assert con.execute("SELECT id, query_id, label FROM labels").fetchall() == [("l1", "q1", "refund")]
        assert con.execute("SELECT table_name, constraint_type FROM duckdb_constraints() WHERE database_name = 'store' "
                           "AND table_name IN ('queries', 'labels') AND constraint_type <> 'NOT NULL'").fetchall() == []
    with database.write() as con:  # a repeat is still stored once, without the index
        assert insert_queries(con, query_frame(("q1", "refund please", "refund", 0.7))) == 0


def test_open_store_creates_the_directory_and_migrates(tmp_path):
    path = tmp_path / "new" / "deeper" / "retrainer.duckdb"
    db = open_store(path)
    assert db.path == path
    assert tables(db) == TABLES
    assert open_store(path).path == path  # a second open is harmless


def test_open_store_without_create_leaves_a_missing_file_missing(tmp_path):
    path = tmp_path / "retrainer.duckdb"
    db = open_store(path, create=False)
    assert (db.exists(), path.exists()) == (False, False)
    with pytest.raises(StoreError, match=rf"the store {path} does not exist yet: start the worker"):
        with db.read() as con:
            con.execute("SELECT 1")


def test_a_newer_schema_is_refused(tmp_path):
    path = tmp_path / "retrainer.duckdb"
    db = Database(path)
    migrate(db)
    with db.write() as con:
        con.execute("INSERT INTO schema_version VALUES (?, 'from the future', now()::TIMESTAMP)", [LATEST + 1])
    with pytest.raises(StoreError, match=rf"schema {LATEST + 1}, this one knows {LATEST}\): upgrade Retrainer"):
        open_store(path)


@pytest.mark.parametrize(
    "content",
    [b"this is not a duckdb file\n" * 200, bytes(range(256)) * 40, b"SQLite format 3\x00" + b"\x00" * 4080],
    ids=["text", "binary", "sqlite-header"],
)
def test_a_file_that_is_not_duckdb_is_refused_and_left_alone(tmp_path, content):
    path = tmp_path / "retrainer.duckdb"
    path.write_bytes(content)
    with pytest.raises(StoreError, match=rf"^{path} is not a DuckDB database file .*\(nothing was changed\)$"):
        open_store(path)
    with pytest.raises(StoreError, match=rf"^{path} is not a DuckDB database file"):
        with Database(path).read() as con:
            con.execute("SELECT 1")
    assert path.read_bytes() == content
    assert sorted(os.listdir(tmp_path)) == ["retrainer.duckdb", "retrainer.duckdb.lock", "retrainer.duckdb.turnstile.lock"]


def test_missing_data_directory_is_named(tmp_path):
    db = Database(tmp_path / "absent" / "retrainer.duckdb")
    with pytest.raises(StoreError, match=rf"the data directory {tmp_path / 'absent'} does not exist"):
        with db.write() as con:
            con.execute("SELECT 1")


# --- access rules ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("outer", "inner"), [("read", "read"), ("read", "write"), ("write", "read"), ("write", "write")])
def test_nested_access_is_refused_and_the_store_stays_usable(db, outer, inner):
    with pytest.raises(RuntimeError, match="nested store access: finish one read/write before starting another"):
        with getattr(db, outer)() as con:
            if outer == "write":
                con.execute("INSERT INTO state VALUES ('k', 'v', ?)", [T0])
            with getattr(db, inner)() as nested:
                nested.execute("SELECT 1")
    # The outer write was rolled back; the next access works.
    with db.read() as con:
        assert con.execute("SELECT count(*) FROM state").fetchone()[0] == 0


def test_write_commits_on_success_and_rolls_back_on_error(db):
    with db.write() as con:
        con.execute("INSERT INTO state VALUES ('kept', '1', ?)", [T0])
    with pytest.raises(ZeroDivisionError):
        with db.write() as con:
            con.execute("INSERT INTO state VALUES ('lost', '2', ?)", [T0])
            1 / 0
    with db.read() as con:
        assert con.execute("SELECT key, value FROM state").fetchall() == [("kept", "1")]


def test_read_is_read_only(db):
    with pytest.raises(Exception, match="read-only"):
        with db.read() as con:
            con.execute("INSERT INTO state VALUES ('k', 'v', ?)", [T0])


# --- across processes ----------------------------------------------------------------------------------

# Each child prints "ready", waits for "go" on stdin, works for SECONDS, then prints one JSON line.
WRITER = textwrap.dedent("""
    import json, sys, time
    import pandas as pd
    from store.db import Database
    from store.querylog import insert_labels, insert_queries
    db = Database(sys.argv[1]); seconds = float(sys.argv[2])
    print("ready", flush=True); sys.stdin.readline()
    ids, errors, n = [], [], 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        qid = f"q{n:06d}"; n += 1
        q = pd.DataFrame([{"id": qid, "ts": pd.Timestamp("2026-03-04"), "text": f"text {qid}", "predicted_label": "a",
                           "confidence": 0.5, "model_version": "v0001", "source": "writer"}])
        l = pd.DataFrame([{"id": "l" + qid, "ts": pd.Timestamp("2026-03-04"), "query_id": qid, "text": None,
                           "label": "a", "source": "writer"}])
        try:
            with db.write() as con:
                insert_queries(con, q)
                insert_labels(con, l)
            ids.append(qid)
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
    print(json.dumps({"ids": ids, "errors": errors}), flush=True)
""")

READER = textwrap.dedent("""
    import json, sys, time
    from store.db import Database
    db = Database(sys.argv[1]); seconds = float(sys.argv[2])
    print("ready", flush=True); sys.stdin.readline()
    reads, errors, torn, last, backwards = 0, [], 0, 0, 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            with db.read() as con:
                q = con.execute("SELECT count(*) FROM queries").fetchone()[0]
                l = con.execute("SELECT count(*) FROM labels").fetchone()[0]
            reads += 1
            torn += q != l
            backwards += q < last
            last = q
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
    print(json.dumps({"reads": reads, "errors": errors, "torn": torn, "backwards": backwards, "last": last}), flush=True)
""")


@pytest.mark.slow
def test_readers_and_a_writer_in_other_processes_never_see_an_error(tmp_path):
    path = tmp_path / "retrainer.duckdb"
    db = open_store(path)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    scripts = [WRITER] + [READER] * 3
    children = [
        subprocess.Popen([sys.executable, "-c", script, str(path), "3.0"], cwd=ROOT, env=env, text=True,
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for script in scripts
    ]
    try:
        for child in children:
            assert child.stdout.readline().strip() == "ready", child.stderr.read()
        for child in children:  # start together
            child.stdin.write("go\n")
            child.stdin.flush()
        outputs = [child.communicate(timeout=60) for child in children]
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
    assert [c.returncode for c in children] == [0, 0, 0, 0], [err for _, err in outputs]
    writer, *readers = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]
    assert writer["errors"] == []
    assert len(writer["ids"]) > 10
    for reader in readers:
        assert (reader["errors"], reader["torn"], reader["backwards"]) == ([], 0, 0)
        assert reader["reads"] > 10
        assert reader["last"] <= len(writer["ids"])
    with db.read() as con:
        stored = [r[0] for r in con.execute("SELECT id FROM queries ORDER BY id").fetchall()]
        labels = con.execute("SELECT count(*) FROM labels").fetchone()[0]
    assert stored == writer["ids"]
    assert labels == len(writer["ids"])


# --- the query log ----------------------------------------------------------------------------------------


def test_insert_queries_twice_stores_each_once(db):
    frame = query_frame(("q1", "where is my order", "track_order", 0.9), ("q2", "refund please", "request_refund", 0.8))
    with db.write() as con:
        assert insert_queries(con, frame) == 2
    with db.write() as con:
        assert insert_queries(con, frame) == 0
        # A batch with an old id and a new one adds only the new one; a repeated id inside a batch counts once.
        more = query_frame(("q2", "changed text", "x", 0.1), ("q3", "hello", "contact_human", 0.7),
                           ("q3", "hello again", "contact_human", 0.6))
        assert insert_queries(con, more) == 1
    with db.read() as con:
        assert con.execute("SELECT id, text FROM queries ORDER BY id").fetchall() == [
            ("q1", "where is my order"), ("q2", "refund please"), ("q3", "hello")]
    assert count_rows(db) == {"queries": 3, "labels": 0}


def test_insert_labels_twice_stores_each_once(db):
    frame = label_frame(("l1", None, "cancel my order", "cancel_order"), ("l2", None, "my box is broken", "damaged_item"))
    for expected in (2, 0):
        with db.write() as con:
            assert insert_labels(con, frame) == expected
    assert count_rows(db) == {"queries": 0, "labels": 2}
    assert known_labels(db) == ["cancel_order", "damaged_item"]


def test_empty_batches_insert_nothing(db):
    with db.write() as con:
        assert insert_queries(con, query_frame().reindex(columns=["id", "ts", "text", "predicted_label", "confidence",
                                                                  "model_version", "source"])) == 0
        assert insert_labels(con, label_frame()) == 0
    assert count_rows(db) == {"queries": 0, "labels": 0}


def test_training_rows_joins_feedback_text_from_queries(db):
    with db.write() as con:
        insert_queries(con, query_frame(("q1", "where is my parcel", "track_order", 0.9),
                                        ("q2", "cancel it now", "cancel_order", 0.4)))
        insert_labels(con, label_frame(("l1", "q1", None, "delivery_delay"),           # feedback: text from q1
                                       ("l2", None, "reset my password", "reset_password")))  # imported
    rows = training_rows(db)
    assert list(rows.columns) == ["text", "label", "confidence", "source", "ts", "quarantined", "deployed"]
    got = sorted(zip(rows["source"], rows["text"], rows["label"], rows["confidence"].fillna(-1)))
    assert got == [
        ("human", "reset my password", "reset_password", -1),
        ("human", "where is my parcel", "delivery_delay", -1),
        ("pseudo", "cancel it now", "cancel_order", 0.4),
        ("pseudo", "where is my parcel", "track_order", 0.9),
    ]
    human_only = training_rows(db, include_pseudo=False)
    assert sorted(human_only["text"]) == ["reset my password", "where is my parcel"]
    assert set(human_only["source"]) == {"human"}


def test_recent_texts_are_the_newest_distinct_queries_then_labelled_texts(db):
    frame = query_frame(("q1", "oldest", "a", 0.9), ("q2", "same", "a", 0.9), ("q3", "same", "b", 0.8),
                        ("q4", "   ", "a", 0.7), ("q5", "newest", "b", 0.6))
    frame["ts"] = pd.date_range(T0, periods=5, freq="min")
    labels = label_frame(("l1", None, "imported text", "a"), ("l2", "q1", None, "b"))  # l2: feedback on q1
    with db.write() as con:
        insert_queries(con, frame)
        insert_labels(con, labels)
    assert recent_texts(db, limit=2) == ["newest", "same"]
    assert recent_texts(db, limit=10) == ["newest", "same", "oldest", "imported text"]  # blank text skipped


def test_recent_texts_of_an_empty_store(db):
    assert recent_texts(db, limit=5) == []


# --- events and models ------------------------------------------------------------------------------------


def test_events_round_trip_newest_first(db):
    first = record_event(db, ts=T0, kind="deploy", message="Deployed v0001.", version="v0001", details={"a": [1, 2]})
    second = record_event(db, ts=T0, kind="gate", message="Rejected.", severity="warning")
    assert (first, second) == (1, 2)
    events = recent_events(db)
    assert [(e["id"], e["kind"], e["severity"], e["version"], e["details"]) for e in events] == [
        (2, "gate", "warning", None, None), (1, "deploy", "info", "v0001", {"a": [1, 2]})]
    assert [e["id"] for e in recent_events(db, kind="deploy")] == [1]
    assert [e["id"] for e in recent_events(db, limit=1)] == [2]


def test_event_severity_is_checked(db):
    with pytest.raises(ValueError, match=r"^severity 'fatal' is not one of info, warning, error$"):
        record_event(db, ts=T0, kind="x", message="m", severity="fatal")
    assert recent_events(db) == []


def test_model_rows_round_trip_and_a_status_must_be_a_model_status(db):
    """Storing only: which transition is allowed, and retiring the previous champion, is engine.lifecycle's."""
    with db.write() as con:
        for i, version in enumerate(["v0001", "v0002"]):
            insert_model(con, {"version": version, "created_at": T0.replace(minute=i), "status": ModelStatus.CANDIDATE,
                               "file": f"{version}.joblib", "sha256": "0" * 64, "sklearn_version": "1.9.1",
                               "labels": ["a", "b"], "params": {"seed": 0}})
        set_model_status(con, "v0002", ModelStatus.CHAMPION)
    assert [(m["version"], m["status"]) for m in list_models(db)] == [("v0001", "candidate"), ("v0002", "champion")]
    row = get_model(db, "v0002")
    assert (row["labels"], row["params"], row["report"]) == (["a", "b"], {"seed": 0}, None)
    assert get_model(db, "v0003") is None
    with pytest.raises(ValueError, match="'live' is not a valid ModelStatus"):
        with db.write() as con:
            set_model_status(con, "v0001", "live")
