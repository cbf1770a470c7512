"""The rollups the dashboard reads (store/rollups.py) equal the figures of the whole log, whatever arrives.

Random sequences of logged queries, labels (a later label replacing an earlier one, labels before
their queries, labels for queries never logged), spool batches, imports and replays of any earlier
batch: after each, every rollup table equals the same table built from the log, and every page
function read from the rollups equals the same function reading the log alone (``from_log=True``).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from pandas.testing import assert_frame_equal

from engine import spool
from engine.ingest import ingest_spool
from store import open_store, rollups
from store.imports import commit_staged
from store.querylog import NEW_LABELLED_SINCE, insert_labels, insert_queries, new_labelled_since
from store.views import data, overview, performance

T0 = datetime(2026, 3, 1, 0, 0)
ARRIVED = T0 + timedelta(days=3)          # this machine's clock when rows arrive in the tests
LATEST = ARRIVED + timedelta(minutes=5)   # a claim past this is stored at ARRIVED (store/querylog.py)
LABELS = ["refund", "cancel", " Refund", None]
TRUE = ["refund", "cancel", "invoice"]
CONFIDENCES = [None, 0.0, 0.07, 0.29, 0.3, 0.5, 0.55, 0.999, 1.0, 0.123456789, 0.28999999999999998]

moments = st.builds(lambda minutes, seconds: T0 + timedelta(minutes=minutes, seconds=seconds),
                    st.integers(0, 4 * 24 * 60), st.sampled_from([0, 0, 59]))
query_records = st.lists(st.tuples(moments, st.sampled_from(LABELS), st.sampled_from(CONFIDENCES)),
                         min_size=4, max_size=14)
# Which query a label names: an index into the query records, or a query never logged, or none.
label_records = st.lists(st.tuples(moments, st.one_of(st.integers(0, 13), st.sampled_from(["ghost1", "ghost2", None])),
                                   st.sampled_from(TRUE)), min_size=1, max_size=16)
operation = st.one_of(
    st.tuples(st.just("queries"), st.lists(st.integers(0, 13), max_size=6)),
    st.tuples(st.just("labels"), st.lists(st.integers(0, 15), max_size=6)),
    st.tuples(st.just("spool"), st.lists(st.integers(0, 13), max_size=5), st.lists(st.integers(0, 15), max_size=5)),
    st.tuples(st.just("import"), st.integers(1, 4), st.integers(0, 4)),
    st.tuples(st.just("replay"), st.integers(0, 20)),
)


class Log:
    """The records a test draws from: each keeps its id and time however often it is written."""

    def __init__(self, queries, labels):
        self.queries = pd.DataFrame({
            "id": [f"q{i}" for i in range(len(queries))], "ts": [q[0] for q in queries],
            "text": [f"text {i}" for i in range(len(queries))], "predicted_label": [q[1] for q in queries],
            "confidence": [q[2] for q in queries], "model_version": "v0001", "source": "classifier"})
        self.labels = pd.DataFrame({
            "id": [f"l{j}" for j in range(len(labels))], "ts": [l[0] for l in labels],
            "query_id": [f"q{l[1]}" if isinstance(l[1], int) else l[1] for l in labels], "text": None,
            "label": [l[2] for l in labels], "source": "feedback"}).astype({"text": object})

    def pick(self, frame: pd.DataFrame, picks: list[int]) -> pd.DataFrame:
        return frame.iloc[sorted({p % len(frame) for p in picks})].reset_index(drop=True)


def _spool_record(kind: str, row: dict) -> dict:
    record = {"k": kind, **{k: v for k, v in row.items() if v is not None}}
    record["ts"] = row["ts"].isoformat()
    return record


def _import(db, home: Path, number: int, queries: int, labels: int) -> None:
    """An import's staged files (fresh ids, as engine.importer makes them): queries, and labels of some of them."""
    ids = [f"i{number}-{k}" for k in range(queries)]
    staged_q = pa.table({"id": ids, "ts": [T0 + timedelta(hours=7 * k + number, minutes=13) for k in range(queries)],
                         "text": [f"imported {k}" for k in range(queries)],
                         "predicted_label": [LABELS[k % 2] for k in range(queries)],
                         "confidence": [CONFIDENCES[(k + number) % len(CONFIDENCES)] for k in range(queries)],
                         "model_version": [None] * queries, "source": ["import"] * queries},
                        schema=pa.schema([("id", pa.string()), ("ts", pa.timestamp("us")), ("text", pa.string()),
                                          ("predicted_label", pa.string()), ("confidence", pa.float64()),
                                          ("model_version", pa.string()), ("source", pa.string())]))
    staged_l = pa.table({"id": [f"il{number}-{k}" for k in range(labels)],
                         "ts": [T0 + timedelta(days=1, hours=k) for k in range(labels)],
                         "query_id": [ids[k] if k < queries else None for k in range(labels)],
                         "text": [None if k < queries else f"labelled {k}" for k in range(labels)],
                         "label": [TRUE[k % 3] for k in range(labels)], "source": ["import"] * labels},
                        schema=pa.schema([("id", pa.string()), ("ts", pa.timestamp("us")), ("query_id", pa.string()),
                                          ("text", pa.string()), ("label", pa.string()), ("source", pa.string())]))
    paths = {"queries": home / f"staged-q-{number}.parquet", "labels": home / f"staged-l-{number}.parquet"}
    pq.write_table(staged_q, paths["queries"])
    pq.write_table(staged_l, paths["labels"])
    with db.write() as con:
        commit_staged(con, queries=paths["queries"], labels=paths["labels"] if labels else None, arrived_at=ARRIVED)


def assert_rollups_equal_the_log(db) -> None:
    """Every rollup table holds one row per key, and equals the same table built from the whole log; each
    bucket's labels_from is a true bound (no label of its queries has a smaller rowid)."""
    with db.read() as con:
        for table, select in rollups.FROM_LOG.items():
            columns = "* EXCLUDE (labels_from)" if table == "feedback_counts" else "*"
            kept = con.execute(f"SELECT {columns} FROM {table} ORDER BY ALL").fetchall()
            rebuilt = con.execute(f"SELECT {columns} FROM ({select}) ORDER BY ALL").fetchall()
            assert kept == rebuilt, table
        loose = con.execute(f"""SELECT count(*) FROM feedback_counts k JOIN ({rollups.FROM_LOG['feedback_counts']}) t
                                USING (bucket) WHERE k.labels_from > t.labels_from""").fetchone()[0]
        assert loose == 0
        assert rollups.disagreement(con) is None  # the start-up check agrees: the labels counted equal the labels stored


def assert_pages_equal_the_log(db) -> None:
    """Each page function read from the rollups equals the same read of the log alone."""
    for since in (None, T0 + timedelta(days=1, minutes=7), T0 + timedelta(days=2)):
        for offset in (0, 60, -300, 330, 345):
            from_rollups = performance.live_accuracy(db, since=since, offset_minutes=offset)
            from_log = performance.live_accuracy(db, since=since, offset_minutes=offset, from_log=True)
            assert_frame_equal(from_rollups[0], from_log[0])
            assert from_rollups[1] == from_log[1]
    for now, day_start in ((ARRIVED + timedelta(hours=2, minutes=7), ARRIVED),
                           (T0 + timedelta(days=2, hours=5, minutes=44, seconds=30), T0 + timedelta(days=2, minutes=-330))):
        for threshold in (0.5, 0.29):
            kwargs = {"now": now, "day_start": day_start, "min_confidence": threshold}
            assert overview.traffic(db, **kwargs) == overview.traffic(db, **kwargs, from_log=True)
    for since, offset in ((T0, 0), (T0 + timedelta(days=1, minutes=10), 0), (T0 + timedelta(minutes=-330), 330),
                          (T0 + timedelta(days=1, minutes=-345), 345)):
        assert_frame_equal(data.volume_by_label(db, since=since, offset_minutes=offset),
                           data.volume_by_label(db, since=since, offset_minutes=offset, from_log=True))
        for threshold in (0.5, 0.29, 0.07):
            kwargs = {"since": since, "min_confidence": threshold, "offset_minutes": offset}
            assert_frame_equal(data.low_confidence_by_day(db, **kwargs), data.low_confidence_by_day(db, **kwargs, from_log=True))
        for bins in (20, 10, 4):
            assert_frame_equal(data.confidence_histogram(db, since=since, bins=bins),
                               data.confidence_histogram(db, since=since, bins=bins, from_log=True))
        for threshold, pseudo in ((0.5, True), (0.29, True), (0.5, False)):
            kwargs = {"since": since, "min_confidence": threshold, "use_pseudo_labels": pseudo, "exact_limit": -1}
            (traffic, proxy), (traffic_log, proxy_log) = data.mix_inputs(db, **kwargs), data.mix_inputs(db, **kwargs, from_log=True)
            assert_frame_equal(traffic.sort_values("label").reset_index(drop=True),
                               traffic_log.sort_values("label").reset_index(drop=True))
            assert_frame_equal(proxy.sort_values("label").reset_index(drop=True),
                               proxy_log.sort_values("label").reset_index(drop=True))
    assert data.predicted_labels(db) == data.predicted_labels(db, from_log=True)
    for limit in (1, 3, 50):  # the query browser looks in the newest buckets first: the same rows as the whole log's
        for since, until in ((None, None), (T0 + timedelta(days=1), None), (None, T0 + timedelta(days=2, minutes=7))):
            frame, _ = data.search_queries(db, since=since, until=until, limit=limit)
            with db.read() as con:
                whole = con.execute(data.SEARCH_NEWEST, {"pattern": None, "labels": [], "low": None, "high": None,
                                                         "since": since, "until": until, "limit": limit}).df()
            assert_frame_equal(frame, whole[data.RESULT_COLUMNS])
    with db.read() as con:  # the adaptive trigger's counter (every page's status strip)
        for since in (T0 - timedelta(days=1), T0 + timedelta(days=2), ARRIVED - timedelta(minutes=1), ARRIVED):
            assert new_labelled_since(con, since) == con.execute(NEW_LABELLED_SINCE, [since]).fetchone()[0]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(queries=query_records, labels=label_records, operations=st.lists(operation, min_size=1, max_size=8))
def test_the_rollups_equal_the_whole_log_after_any_sequence_of_writes(queries, labels, operations):
    home = Path(tempfile.mkdtemp(prefix="rollups-"))
    try:
        db = open_store(home / "retrainer.duckdb")
        log = Log(queries, labels)
        done = []
        for number, op in enumerate(operations):
            if op[0] == "replay":
                if not done:
                    continue
                op = done[op[1] % len(done)]
            if op[0] == "queries":
                with db.write() as con:
                    insert_queries(con, log.pick(log.queries, op[1]), arrived_at=ARRIVED, latest=LATEST)
            elif op[0] == "labels":  # written directly, as history (no arrival time: each row's own)
                with db.write() as con:
                    insert_labels(con, log.pick(log.labels, op[1]))
            elif op[0] == "spool":
                records = ([_spool_record("q", row) for row in log.pick(log.queries, op[1]).to_dict("records")]
                           + [_spool_record("f", row) for row in log.pick(log.labels, op[2]).to_dict("records")])
                spool.write_batch(home / "spool", records)
                ingest_spool(db, home / "spool", clock=lambda: ARRIVED)
            else:
                _import(db, home, number, op[1], op[2])
            done.append(op)
            assert_rollups_equal_the_log(db)
        assert_pages_equal_the_log(db)
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _counts(db) -> dict[str, list[tuple]]:
    with db.read() as con:
        return {table: con.execute(f"SELECT * FROM {table} ORDER BY ALL").fetchall() for table in rollups.TABLES}


def test_a_spool_file_ingested_twice_after_a_crash_is_counted_once(tmp_path):
    """The worker died between the commit and deleting the file: the next ingest reads it again."""
    db = open_store(tmp_path / "retrainer.duckdb")
    records = [
        {"k": "q", "id": "a", "ts": "2026-03-01T10:05:00", "text": "refund please", "predicted_label": "refund",
         "confidence": 0.42, "model_version": "v0001", "source": "classifier"},
        {"k": "q", "id": "b", "ts": "2026-03-01T10:20:00", "text": "cancel it", "predicted_label": "refund",
         "confidence": 0.9, "model_version": "v0001", "source": "classifier"},
        {"k": "f", "id": "fa", "ts": "2026-03-01T10:06:00", "query_id": "a", "label": "refund", "source": "feedback"},
        {"k": "f", "id": "fb", "ts": "2026-03-01T10:21:00", "query_id": "b", "label": "cancel", "source": "feedback"},
    ]
    path = spool.write_batch(tmp_path / "spool", records)
    kept = path.read_bytes()
    first = ingest_spool(db, tmp_path / "spool", clock=lambda: datetime(2026, 3, 1, 10, 30))
    assert (first.queries, first.labels) == (2, 2)
    once = _counts(db)
    path.write_bytes(kept)  # the crash: the file is still there after its commit
    again = ingest_spool(db, tmp_path / "spool", clock=lambda: datetime(2026, 3, 1, 10, 31))
    assert (again.queries, again.labels) == (0, 0)
    assert _counts(db) == once
    assert once["query_counts"] == [(datetime(2026, 3, 1, 10, 0), "refund", 1), (datetime(2026, 3, 1, 10, 15), "refund", 1)]
    assert once["feedback_counts"] == [(datetime(2026, 3, 1, 10, 0), 1, 1, 1, 0), (datetime(2026, 3, 1, 10, 15), 1, 1, 0, 0)]
    daily, recent = performance.live_accuracy(db)
    assert daily[["labelled", "correct"]].values.tolist() == [[2, 1]]
    assert recent == {"labelled": 2, "correct": 1, "accuracy": 0.5}


def test_a_later_label_replaces_the_earlier_one_in_live_accuracy(tmp_path):
    db = open_store(tmp_path / "retrainer.duckdb")
    log = Log([(T0 + timedelta(minutes=5), "refund", 0.8)], [(T0 + timedelta(minutes=6), 0, "cancel"),
                                                            (T0 + timedelta(minutes=9), 0, "refund")])
    with db.write() as con:
        insert_queries(con, log.queries)
        insert_labels(con, log.labels.iloc[:1])
    assert performance.live_accuracy(db)[1] == {"labelled": 1, "correct": 0, "accuracy": 0.0}
    with db.write() as con:
        insert_labels(con, log.labels.iloc[1:])
    assert performance.live_accuracy(db)[1] == {"labelled": 1, "correct": 1, "accuracy": 1.0}
    assert _counts(db)["feedback_counts"] == [(T0, 1, 1, 1, 0)]  # its labels from the first row of the table on


def test_migration_6_builds_the_rollups_from_the_log_already_stored(tmp_path, monkeypatch):
    import store.schema as schema
    from store.db import Database

    database = Database(tmp_path / "retrainer.duckdb")
    monkeypatch.setattr(schema, "MIGRATIONS", schema.MIGRATIONS[:5])
    monkeypatch.setattr(schema, "LATEST", 5)
    assert schema.migrate(database) == 5  # a store written before the rollups
    log = Log([(T0, "refund", 0.5), (T0 + timedelta(minutes=16), None, None), (T0 + timedelta(days=1), "cancel", 0.07)],
              [(T0 + timedelta(hours=1), 0, "refund"), (T0 + timedelta(hours=2), 2, "refund"), (T0, "ghost1", "cancel")])
    with database.write() as con:
        con.register("q", log.queries)
        con.register("l", log.labels)
        con.execute("INSERT INTO queries BY NAME SELECT * FROM q")
        con.execute("INSERT INTO labels BY NAME SELECT * FROM l")
    monkeypatch.undo()
    assert schema.migrate(database) == 8  # 6 builds the rollups, 7 adds each bucket's labels_from, 8 the training cap's count
    assert _counts(database) == {
        "query_counts": [(T0, "refund", 1), (T0 + timedelta(minutes=15), None, 1), (T0 + timedelta(days=1), "cancel", 1)],
        "confidence_counts": [(T0, 50, 1), (T0 + timedelta(days=1), 7, 1)],
        "label_confidence_counts": [("cancel", 7, 1), ("refund", 50, 1)],
        "feedback_counts": [(T0, 1, 1, 1, 0), (T0 + timedelta(days=1), 1, 1, 0, 1)],  # label rows 0 and 1
        "orphan_labels": [("ghost1",)],
    }


def test_the_query_browser_falls_back_to_the_whole_range_when_the_newest_buckets_hold_too_few_matches(tmp_path):
    db = open_store(tmp_path / "retrainer.duckdb")
    log = Log([(T0, "refund", 0.8), (T0 + timedelta(hours=1), "cancel", 0.6), (T0 + timedelta(hours=2, minutes=10), "refund", 0.9)],
              [(T0 + timedelta(hours=3), 1, "cancel")])
    with db.write() as con:
        insert_queries(con, log.queries)
        insert_labels(con, log.labels)
    # The bucket 02:00-02:15 holds one query, but after `until`: the newest match is the one at 01:00.
    frame, matches = data.search_queries(db, until=T0 + timedelta(hours=2, minutes=5), limit=1)
    assert frame[["id", "true_label"]].values.tolist() == [["q1", "cancel"]] and matches == 2
    frame, _ = data.search_queries(db, limit=2)  # found in the newest buckets alone
    assert frame["id"].tolist() == ["q2", "q1"]
