"""Rollups: small tables kept current as logged queries and labels arrive, so a cold dashboard page
reads a few thousand rows instead of the whole log (issue 15).

Every writer of the log updates them inside its own write transaction (``store.querylog``'s
inserts and the spool batch, ``store.imports.commit_staged``): the rows and their counts commit
together or not at all, and a repeat (a spool file ingested twice, a replay after a crash) stores
no row, so it adds nothing. The updates are computed from exactly the rows an insert stored.
Migration 6 (store/schema.py) builds the tables from the log already stored; code that writes
the log with its own SQL (the benchmarks' stores) calls :func:`rebuild` after.

The tables (times are the stored, naive-UTC ``ts`` of the query):

- ``query_counts(bucket, predicted_label, queries)``: logged queries per 15-minute bucket and
  predicted label (NULL kept).
- ``confidence_counts(bucket, bin, queries)``: queries with a confidence, per bucket and bin of
  0.01: bin ``k`` holds ``k/100 <= confidence < (k+1)/100`` compared as doubles, unclamped (1.0 is
  bin 100), so ``confidence < t`` is exact from the bins for any threshold ``t`` on the 0.01 grid
  (:func:`grid_bin`). Non-finite confidences get bins far outside (NaN and +inf above, -inf below).
- ``label_confidence_counts(predicted_label, bin, queries)``: all time, queries with a predicted
  label per label and bin (NULL: no confidence): the Data page's training-mix proxy.
- ``feedback_counts(bucket, feedback, judged, correct)``: per bucket of the query's time, the
  queries with at least one label (``feedback``), those of them with a predicted label
  (``judged``) and those whose predicted label equals the latest label (``correct``; latest by
  ``(ts, id)``: live accuracy's definition in ``store.views.performance``). A bucket is recomputed
  from the log whenever a label for one of its queries arrives (a later label replaces an earlier
  one), or a query arrives that labels already name.
  ``labels_from``: no label of the bucket's queries has a smaller rowid (a bound, so a refresh reads
  only the labels past it; the labels table only grows, so its rowids are dense and in arrival order).
- ``orphan_labels(query_id)``: query ids that stored labels name but no logged query has (yet), so
  a query arriving after its label is found without scanning the labels.

Why 15 minutes: every time zone's offset from UTC is a multiple of 15 minutes, so a viewer's local
day is a whole number of buckets. A query id names one logged query (a uuid4 from the Classifier,
an importer's own ids): the lookups stop at the first row with the id.

Cost per write: the query side adds a group-by over the batch; a batch with labels looks their
queries up first among the queries logged within :data:`LOOKUP_WINDOW` of the labels' claimed times
(a few row groups), and only ids not found there in the whole log (about 0.3 s at 10M logged
queries), then re-reads the labels of the affected buckets' queries (a scan of the labels' query ids).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta

import duckdb

from store.db import Database
from store.events import record_event
from store.vocabulary import EventKind, Severity

BUCKET_MINUTES = 15
BUCKET = timedelta(minutes=BUCKET_MINUTES)
BINS_PER_UNIT = 100            # confidence bins of 0.01
LOOKUP_WINDOW = timedelta(days=1)   # where a label's query is looked for first: this long around the labels' times

TABLES = ("query_counts", "confidence_counts", "label_confidence_counts", "feedback_counts", "orphan_labels")


def bucket_sql(ts: str) -> str:
    """SQL for the 15-minute bucket (its start, naive UTC) of the timestamp expression ``ts``."""
    return f"time_bucket(INTERVAL {BUCKET_MINUTES} MINUTE, {ts})"


def bin_sql(c: str, *, per_unit: int | str = BINS_PER_UNIT) -> str:
    """SQL for the bin of the confidence expression ``c``: the largest ``k`` with ``k / per_unit <= c``
    compared as doubles (``floor(c * per_unit)`` corrected where the product rounds across an integer).
    NULL stays NULL; NaN and values from 1e6 up get 100000000, values down from -1e6 get -100000000.
    ``per_unit`` may be a SQL parameter such as ``'$bins'``."""
    k0 = f"CAST(floor({c} * {per_unit}) AS BIGINT)"
    return (f"CASE WHEN {c} IS NULL THEN NULL WHEN isnan({c}) OR {c} >= 1e6 THEN 100000000 "
            f"WHEN {c} <= -1e6 THEN -100000000 "
            f"ELSE {k0} - CASE WHEN {c} < CAST({k0} AS DOUBLE) / {per_unit} THEN 1 ELSE 0 END "
            f"+ CASE WHEN {c} >= CAST({k0} + 1 AS DOUBLE) / {per_unit} THEN 1 ELSE 0 END END")


def grid_bin(threshold: float) -> int | None:
    """The bin ``k`` with ``confidence < threshold`` exactly when ``bin < k``; None off the 0.01 grid.

    >>> grid_bin(0.5), grid_bin(0.07), grid_bin(0.555)
    (50, 7, None)
    """
    k = round(threshold * BINS_PER_UNIT)
    return k if k / BINS_PER_UNIT == threshold else None


def bucket_floor(moment: datetime) -> datetime:
    """The start of the 15-minute bucket holding ``moment``."""
    return moment.replace(minute=moment.minute - moment.minute % BUCKET_MINUTES, second=0, microsecond=0)


def bucket_ceil(moment: datetime) -> datetime:
    """The first bucket boundary at or after ``moment``.

    >>> bucket_ceil(datetime(2026, 3, 1, 10, 7)), bucket_ceil(datetime(2026, 3, 1, 10, 15))
    (datetime.datetime(2026, 3, 1, 10, 15), datetime.datetime(2026, 3, 1, 10, 15))
    """
    start = bucket_floor(moment)
    return start if start == moment else start + BUCKET


def whole_buckets(offset_minutes: int) -> bool:
    """True when local days at this offset from UTC are whole buckets (every real zone's are)."""
    return offset_minutes % BUCKET_MINUTES == 0


# -- building (migration 6 and rebuild) ---------------------------------------------------------------

_QUERY_COUNTS = f"""
SELECT {bucket_sql('ts')} AS bucket, predicted_label, count(*) AS queries FROM {{source}} GROUP BY ALL
"""
_CONFIDENCE_COUNTS = f"""
SELECT {bucket_sql('ts')} AS bucket, {bin_sql('confidence')} AS bin, count(*) AS queries
FROM {{source}} WHERE confidence IS NOT NULL GROUP BY ALL
"""
_LABEL_CONFIDENCE_COUNTS = f"""
SELECT predicted_label, {bin_sql('confidence')} AS bin, count(*) AS queries
FROM {{source}} WHERE predicted_label IS NOT NULL GROUP BY ALL
"""
# Queries (restricted by {where}) joined to the latest label of each: the feedback figures per bucket.
_FEEDBACK = f"""
WITH qs AS {{materialized}}(SELECT id, ts, predicted_label FROM queries WHERE {{where}}),
latest AS (
    SELECT query_id, arg_max(label, (ts, id)) AS label, min(rowid) AS first_row FROM labels
    WHERE query_id IS NOT NULL{{labels_where}} GROUP BY query_id
)
SELECT {bucket_sql('q.ts')} AS bucket, count(*) AS feedback,
       count(*) FILTER (WHERE q.predicted_label IS NOT NULL) AS judged,
       count(*) FILTER (WHERE q.predicted_label = l.label) AS correct,
       -- a row written in this transaction has no final rowid yet (DuckDB numbers it past every stored row)
       CASE WHEN min(l.first_row) < (SELECT count(*) FROM labels) THEN min(l.first_row) ELSE 0 END AS labels_from
FROM qs q JOIN latest l ON l.query_id = q.id GROUP BY ALL
"""
_ORPHANS = """
SELECT DISTINCT query_id FROM labels l
WHERE query_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM queries q WHERE q.id = l.query_id)
"""

CREATE = [
    "CREATE TABLE query_counts (bucket TIMESTAMP NOT NULL, predicted_label VARCHAR, queries BIGINT NOT NULL)",
    "CREATE TABLE confidence_counts (bucket TIMESTAMP NOT NULL, bin INTEGER NOT NULL, queries BIGINT NOT NULL)",
    "CREATE TABLE label_confidence_counts (predicted_label VARCHAR NOT NULL, bin INTEGER, queries BIGINT NOT NULL)",
    # labels_from: added by migration 7 (MIGRATION_7).
    """CREATE TABLE feedback_counts (bucket TIMESTAMP NOT NULL, feedback BIGINT NOT NULL, judged BIGINT NOT NULL,
                                     correct BIGINT NOT NULL)""",
    "CREATE TABLE orphan_labels (query_id VARCHAR NOT NULL)",
]
# Each rollup as built from the whole log (migration 6, rebuild, and the tests' reference).
FROM_LOG = {
    "query_counts": _QUERY_COUNTS.format(source="queries"),
    "confidence_counts": _CONFIDENCE_COUNTS.format(source="queries"),
    "label_confidence_counts": _LABEL_CONFIDENCE_COUNTS.format(source="queries"),
    "feedback_counts": _FEEDBACK.format(materialized="", where="true", labels_where=""),
    "orphan_labels": _ORPHANS,
}
FILL = [f"INSERT INTO {table} {select}" for table, select in FROM_LOG.items()]
# Migration 6 as it first shipped: feedback_counts without labels_from (its first four columns).
FILL_6 = [statement if not statement.startswith("INSERT INTO feedback_counts") else
          "INSERT INTO feedback_counts SELECT bucket, feedback, judged, correct FROM (" + FROM_LOG["feedback_counts"] + ")"
          for statement in FILL]
# Migration 7: each bucket's labels_from, so refreshing a bucket reads only the labels past it.
MIGRATION_7 = [
    "ALTER TABLE feedback_counts ADD COLUMN labels_from BIGINT",
    "DELETE FROM feedback_counts",
    "INSERT INTO feedback_counts " + FROM_LOG["feedback_counts"],
]


def rebuild(con: duckdb.DuckDBPyConnection) -> None:
    """Recompute every rollup from the log, inside the caller's write (after writing the log with other SQL).

    Call it in a write after the one that wrote the rows: labels written in the same transaction have
    no final rowid yet, so their buckets get ``labels_from`` 0 (correct, but each refresh of them then
    reads every label). Also sets the labels counted (:data:`LABELS_COUNTED_KEY`) to the labels stored.
    About 0.5 s per million logged queries (measured: 0.47 s at 1M, 4.0 s at 10M)."""
    for table in TABLES:
        con.execute(f"DELETE FROM {table}")
    for statement in FILL:
        con.execute(statement)
    con.execute(_SET_LABELS_COUNTED, {"key": LABELS_COUNTED_KEY})


# -- checking them against the log (the worker at start-up; `python -m engine rebuild-rollups` rebuilds) --

# The state key holding how many labels the rollups have taken in (a JSON integer). Every writer of
# labels adds its rows' number in the same transaction (add_labels), so it equals count(*) of labels
# unless something wrote or deleted labels without the rollups: an older Retrainer still running on a
# migrated store, or SQL run on the file by hand.
LABELS_COUNTED_KEY = "rollups_labels_counted"
_NOW = "CAST(timezone('UTC', now()) AS TIMESTAMP)"
_SET_LABELS_COUNTED = f"""INSERT OR REPLACE INTO state (key, value, updated_at)
VALUES ($key, CAST((SELECT count(*) FROM labels) AS VARCHAR), {_NOW})"""
# A missing key (a store whose rollups migration 6 built) starts at the labels stored, this batch included.
_ADD_LABELS_COUNTED = f"""INSERT INTO state (key, value, updated_at)
VALUES ($key, CAST((SELECT count(*) FROM labels) AS VARCHAR), {_NOW})
ON CONFLICT (key) DO UPDATE SET value = CAST(CAST(value AS BIGINT) + $added AS VARCHAR), updated_at = {_NOW}"""
# count(*) of a table is answered from DuckDB's metadata; the sum reads the rollup (thousands of rows).
_TOTALS = """SELECT (SELECT count(*) FROM queries), (SELECT coalesce(sum(queries), 0) FROM query_counts),
                    (SELECT count(*) FROM labels), (SELECT CAST(value AS BIGINT) FROM state WHERE key = $key)"""


def disagreement(con: duckdb.DuckDBPyConnection) -> str | None:
    """Why the rollups disagree with the log, in words, or None when they agree.

    2-5 ms at 1M and at 10M logged queries (measured): ``count(*)`` comes from DuckDB's metadata.

    Compares the queries query_counts holds with ``count(*)`` of the queries, and the labels the
    rollups took in (:data:`LABELS_COUNTED_KEY`) with ``count(*)`` of the labels: exact for rows
    written or deleted without the rollups, as long as added and deleted rows do not cancel out.
    A store whose labels were never counted (rollups built by migration 6, no label since) passes the
    labels' part. It reads only; :func:`rebuild` repairs.
    """
    logged, counted, labels, labels_counted = con.execute(_TOTALS, {"key": LABELS_COUNTED_KEY}).fetchone()
    problems = []
    if logged != counted:
        problems.append(f"the log holds {logged:,} queries, the rollups count {counted:,}")
    if labels_counted is not None and labels != labels_counted:
        problems.append(f"{labels:,} labels are stored, the rollups took in {labels_counted:,}")
    return "; ".join(problems) or None


@dataclass(frozen=True)
class Rebuilt:
    """What :func:`rebuild_store` did: the disagreement it found (None: the totals agreed), the
    logged queries and labels the rebuilt rollups count, and the rebuild's wall time in seconds."""

    disagreement: str | None
    queries: int
    labels: int
    seconds: float


def rebuild_store(db: Database, *, ts: datetime, always: bool, why: str) -> Rebuilt | None:
    """Check the rollups against the log (:func:`disagreement`, one short read) and rebuild them from
    the log in one write when they disagree, or in any case with ``always``; None when nothing was rebuilt.

    A rebuild records an event (kind ``rollups``, a warning when they disagreed) at ``ts`` (naive
    UTC) saying ``why`` (e.g. "at the worker's start-up") and what disagreed, in the same transaction.
    It holds the store's write lock about 0.5 s per million logged queries; raises what ``db.write`` raises
    (:class:`store.errors.StoreBusyError` while another program holds the file open).
    """
    if not always:
        with db.read() as con:
            if disagreement(con) is None:
                return None
    started = time.perf_counter()
    with db.write() as con:
        found = disagreement(con)
        if found is None and not always:  # a writer in between cannot repair them, but be exact
            return None
        rebuild(con)
        queries, labels = con.execute("SELECT (SELECT count(*) FROM queries), (SELECT count(*) FROM labels)").fetchone()
        seconds = time.perf_counter() - started
        record_event(con, ts=ts, kind=EventKind.ROLLUPS, severity=Severity.WARNING if found else Severity.INFO,
                     message=(f"Rollups rebuilt from the log {why}: {found}." if found else
                              f"Rollups rebuilt from the log {why}; their totals agreed with the log."),
                     details={"disagreement": found, "queries": queries, "labels": labels,
                              "seconds": round(seconds, 3)})
    return Rebuilt(disagreement=found, queries=queries, labels=labels, seconds=seconds)


# -- keeping them current -------------------------------------------------------------------------------

def _add(con: duckdb.DuckDBPyConnection, table: str, keys: tuple[str, ...], delta: str) -> None:
    """Add the counts of the SELECT ``delta`` (one row per key: columns ``keys`` and ``queries``) into
    ``table``, one MERGE (1-2 ms on a 667k-row rollup); a NULL key matches a NULL key."""
    match = " AND ".join(f"t.{k} = d.{k}" if k == "bucket" else f"t.{k} IS NOT DISTINCT FROM d.{k}" for k in keys)
    con.execute(f"MERGE INTO {table} t USING ({delta}) d ON {match} "
                f"WHEN MATCHED THEN UPDATE SET queries = t.queries + d.queries "
                f"WHEN NOT MATCHED THEN INSERT ({', '.join(keys)}, queries) VALUES ({', '.join('d.' + k for k in keys)}, d.queries)")


def _refresh_feedback(con: duckdb.DuckDBPyConnection, *, new_from: int) -> None:
    """Recompute feedback_counts for the buckets in temp.feedback_buckets(bucket) from the log.

    Only the labels from rowid ``labels_from`` on are read: the labels table only grows (rowids are
    dense, in arrival order), every label of a bucket's queries lies at or past its ``labels_from``,
    and the labels stored in this write lie past ``new_from`` (the table's size before them; 0 when
    unknown). Reading from the smallest of them instead of every label took a 10M-query store's
    ingest from 0.3 s to a few ms of this work.
    """
    lo, hi, mark = con.execute("""SELECT min(b.bucket), max(b.bucket), min(f.labels_from) FROM temp.feedback_buckets b
        LEFT JOIN feedback_counts f ON f.bucket = b.bucket""").fetchone()
    if lo is None:
        return
    params = {"lo": lo, "hi": hi + BUCKET}
    con.execute("""CREATE OR REPLACE TEMP TABLE feedback_marks AS SELECT bucket, labels_from FROM feedback_counts
        WHERE bucket BETWEEN $lo AND $hi AND bucket IN (SELECT bucket FROM temp.feedback_buckets)""", params)
    con.execute("DELETE FROM feedback_counts WHERE bucket BETWEEN $lo AND $hi "
                "AND bucket IN (SELECT bucket FROM temp.feedback_buckets)", params)
    where = f"ts >= $lo AND ts < $hi AND {bucket_sql('ts')} IN (SELECT bucket FROM temp.feedback_buckets)"
    # MATERIALIZED: the few queries once, then one pass over the labels' query ids (half the time of inlining it).
    counted = _FEEDBACK.format(materialized="MATERIALIZED ", where=where,
                               labels_where=" AND rowid >= $scan_from AND query_id IN (SELECT id FROM qs)")
    con.execute(f"""INSERT INTO feedback_counts
        SELECT n.bucket, n.feedback, n.judged, n.correct, least(coalesce(m.labels_from, $new_from), $new_from)
        FROM ({counted}) n LEFT JOIN temp.feedback_marks m ON m.bucket = n.bucket""",
                {**params, "scan_from": min(new_from, mark if mark is not None else new_from), "new_from": new_from})


def add_queries(con: duckdb.DuckDBPyConnection, fresh: str) -> None:
    """Count the queries just stored, inside the write that stored them.

    ``fresh``: a table or view with exactly those rows (columns id, ts, predicted_label,
    confidence, as stored). Queries that earlier labels name get their buckets' feedback recomputed.
    """
    _add(con, "query_counts", ("bucket", "predicted_label"), _QUERY_COUNTS.format(source=fresh))
    _add(con, "confidence_counts", ("bucket", "bin"), _CONFIDENCE_COUNTS.format(source=fresh))
    _add(con, "label_confidence_counts", ("predicted_label", "bin"), _LABEL_CONFIDENCE_COUNTS.format(source=fresh))
    if not con.execute("SELECT count(*) FROM orphan_labels").fetchone()[0]:
        return
    con.execute(f"""CREATE OR REPLACE TEMP TABLE feedback_buckets AS
        SELECT DISTINCT {bucket_sql('ts')} AS bucket FROM {fresh} WHERE id IN (SELECT query_id FROM orphan_labels)""")
    con.execute(f"DELETE FROM orphan_labels WHERE query_id IN (SELECT id FROM {fresh})")
    _refresh_feedback(con, new_from=0)  # the earlier labels of these queries may be anywhere


def add_labels(con: duckdb.DuckDBPyConnection, fresh: str) -> None:
    """Take the labels just stored into the feedback figures, inside the write that stored them.

    ``fresh``: a table or view with exactly those rows (columns id, ts, query_id, label, as stored).
    Each named query is looked up first among the queries logged within :data:`LOOKUP_WINDOW` of
    the labels, then (ids not found there) in the whole log; ids still not found wait in orphan_labels.
    """
    added = con.execute(f"SELECT count(*) FROM {fresh}").fetchone()[0]
    con.execute(_ADD_LABELS_COUNTED, {"key": LABELS_COUNTED_KEY, "added": added})
    con.execute(f"""CREATE OR REPLACE TEMP TABLE label_targets AS
        SELECT query_id AS id, min(ts) AS first, max(ts) AS last FROM {fresh} WHERE query_id IS NOT NULL GROUP BY ALL""")
    lo, hi = con.execute("SELECT min(first), max(last) FROM temp.label_targets").fetchone()
    if lo is None:
        return
    con.execute("""CREATE OR REPLACE TEMP TABLE label_found AS
        SELECT id, ts FROM queries WHERE ts BETWEEN $lo AND $hi AND id IN (SELECT id FROM temp.label_targets)""",
                {"lo": lo - LOOKUP_WINDOW, "hi": hi + LOOKUP_WINDOW})
    missing = con.execute("SELECT count(*) FROM temp.label_targets WHERE id NOT IN (SELECT id FROM temp.label_found)"
                          ).fetchone()[0]
    if missing:
        con.execute("""INSERT INTO temp.label_found SELECT id, ts FROM queries WHERE id IN (
            SELECT id FROM temp.label_targets WHERE id NOT IN (SELECT id FROM temp.label_found))""")
        con.execute("""INSERT INTO orphan_labels SELECT id FROM temp.label_targets
            WHERE id NOT IN (SELECT id FROM temp.label_found) AND id NOT IN (SELECT query_id FROM orphan_labels)""")
    con.execute(f"CREATE OR REPLACE TEMP TABLE feedback_buckets AS SELECT DISTINCT {bucket_sql('ts')} AS bucket "
                "FROM temp.label_found")
    # The rows just stored are the table's last: it held this many before them (earlier writes in the same
    # transaction make it larger, but a bucket they touched got a smaller labels_from then).
    stored = con.execute("SELECT count(*) FROM labels").fetchone()[0] - added
    _refresh_feedback(con, new_from=stored)


# -- reading: the part of a period before its first whole bucket comes from the log itself ---------------

# Feedback figures of the queries logged in [$since, $edge): the part of a period that starts inside a bucket.
FEEDBACK_BETWEEN = """
WITH qs AS MATERIALIZED (SELECT id, predicted_label FROM queries WHERE ts >= $since AND ts < $edge),
latest AS (
    SELECT query_id, arg_max(label, (ts, id)) AS label FROM labels
    WHERE query_id IN (SELECT id FROM qs) GROUP BY query_id
)
SELECT count(*) AS feedback, count(*) FILTER (WHERE q.predicted_label IS NOT NULL) AS judged,
       count(*) FILTER (WHERE q.predicted_label = l.label) AS correct
FROM qs q JOIN latest l ON l.query_id = q.id
"""


def feedback_between(con: duckdb.DuckDBPyConnection, since: datetime, edge: datetime) -> tuple[int, int, int]:
    """(feedback, judged, correct) of the queries logged in ``[since, edge)``, from the log (a part of a bucket)."""
    if since >= edge:
        return 0, 0, 0
    return tuple(con.execute(FEEDBACK_BETWEEN, {"since": since, "edge": edge}).fetchone())
