"""The SQL page's sandbox (store/views/sql.py) on a real DuckDB store with a few seeded rows.

Two layers are tested separately: the statement check refuses every forbidden kind with a
message, and DuckDB itself (read-only, external access off, configuration locked) refuses the
same statements when they are sent raw to the sandbox connection. After every attempt the
store's file is byte-for-byte the same.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import threading
from datetime import datetime

import duckdb
import pandas as pd
import pytest

from engine.config import load_settings
from engine.context import Context
from engine.errors import InputError
from store import open_store
from store.events import record_event
from store.querylog import insert_labels, insert_queries
from store.schema import LATEST  # one schema_version row per migration
from store.views import sql as views
from tests.conftest import ROOT

QUERIES = pd.DataFrame({
    "id": ["q1", "q2", "q3", "q4", "q5"],
    "ts": [datetime(2026, 3, 1, 9, 0), datetime(2026, 3, 1, 10, 0), datetime(2026, 3, 2, 9, 30),
           datetime(2026, 3, 3, 8, 0), datetime(2026, 3, 3, 18, 45)],
    "text": ["where is my parcel", "cancel my order", "=cmd|' /C calc'!A0", "refund please", "@SUM(1+1)"],
    "predicted_label": ["delivery_delay", "cancel_order", "cancel_order", "refund_request", "refund_request"],
    "confidence": [0.91, 0.88, 0.42, 0.77, 0.35],
    "model_version": ["v0001", "v0001", "v0001", "v0002", "v0002"],
    "source": ["classifier"] * 5,
})
LABELS = pd.DataFrame({
    "id": ["l1", "l2", "l3"],
    "ts": [datetime(2026, 3, 4, 9, 0)] * 3,
    "query_id": ["q1", "q3", "q5"],
    "text": [None, None, None],
    "label": ["delivery_delay", "invoice_request", "refund_request"],
    "source": ["feedback"] * 3,
})


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    """A store with 5 queries, 3 feedback labels and 2 events, built once; tests get a copy."""
    ctx = Context.open(load_settings(env={}, home=tmp_path_factory.mktemp("seeded") / "home"))
    with ctx.db.write() as con:
        insert_queries(con, QUERIES)
        insert_labels(con, LABELS)
    record_event(ctx.db, ts=datetime(2026, 3, 4, 12, 0), kind="retrain", message="v0002 accepted")
    record_event(ctx.db, ts=datetime(2026, 3, 4, 13, 0), kind="fallback", severity="warning", message="v0002 unreadable")
    return ctx.settings.home


@pytest.fixture
def db(seeded, tmp_path):
    """This test's own copy of the seeded store."""
    home = tmp_path / "home"
    shutil.copytree(seeded, home, ignore=shutil.ignore_patterns("*.lock"))
    return open_store(home / "retrainer.duckdb")


def fingerprint(db) -> tuple[str, dict[str, int]]:
    """The store file's sha256 (plus any WAL) and every table's row count."""
    digest = hashlib.sha256(db.path.read_bytes())
    wal = db.path.with_name(db.path.name + ".wal")
    digest.update(wal.read_bytes() if wal.exists() else b"no wal")
    return digest.hexdigest(), views.row_counts(db)


# Every kind of forbidden attempt, with the words its refusal must contain.
FORBIDDEN = [
    ("INSERT INTO events (ts, kind, severity, message) VALUES (now(), 'x', 'info', 'y')", "INSERT is refused: the SQL page is read-only"),
    ("UPDATE queries SET predicted_label = 'x'", "UPDATE is refused: the SQL page is read-only"),
    ("DELETE FROM queries", "DELETE is refused: the SQL page is read-only"),
    ("CREATE TABLE stolen AS SELECT * FROM queries", "CREATE is refused: the SQL page is read-only"),
    ("CREATE TEMP TABLE scratch (a INTEGER)", "CREATE is refused: the SQL page is read-only"),
    ("DROP TABLE events", "DROP is refused: the SQL page is read-only"),
    ("ALTER TABLE queries ADD COLUMN note VARCHAR", "ALTER is refused: the SQL page is read-only"),
    ("ATTACH '/tmp/other.duckdb' AS other", "ATTACH is refused: the SQL page cannot reach other databases or files"),
    ("DETACH store", "DETACH is refused: the SQL page cannot detach the store"),
    ("COPY queries TO '/tmp/queries.csv'", "COPY is refused: the SQL page cannot read or write files"),
    ("COPY queries FROM '/etc/passwd'", "COPY is refused: the SQL page cannot read or write files"),
    ("EXPORT DATABASE '/tmp/dump'", "EXPORT is refused: the SQL page cannot write files"),
    ("INSTALL httpfs", "INSTALL is refused: extensions cannot be installed or loaded"),
    ("LOAD httpfs", "LOAD is refused: extensions cannot be installed or loaded"),
    ("PRAGMA enable_profiling", "PRAGMA is refused: settings and pragmas cannot be used here"),
    ("SET enable_external_access = true", "SET is refused: settings cannot be changed here"),
    ("RESET memory_limit", "RESET is refused: settings cannot be changed here"),
    ("CALL pragma_version()", "CALL is refused: procedures cannot be called here"),
    ("CHECKPOINT", "CHECKPOINT is refused: procedures cannot be called here"),
    ("BEGIN TRANSACTION", "BEGIN is refused: each query runs in its own read-only transaction"),
    ("EXPLAIN ANALYZE DELETE FROM queries", "EXPLAIN is refused: EXPLAIN is not supported"),
    ("SELECT * FROM read_csv('/etc/passwd')", r"the table function read_csv\(\) is refused: .* never files"),
    ("SELECT * FROM read_text('/etc/passwd')", r"the table function read_text\(\) is refused"),
    ("SELECT * FROM read_parquet('/tmp/x.parquet')", r"the table function read_parquet\(\) is refused"),
    ("SELECT * FROM glob('/*')", r"the table function glob\(\) is refused"),
    ("SELECT (SELECT count(*) FROM read_blob('/etc/shadow')) AS n", r"the table function read_blob\(\) is refused"),
    ("SELECT * FROM query('SELECT 1')", r"the table function query\(\) is refused"),
    ("FROM '/etc/passwd'", "reading '/etc/passwd' is refused: it looks like a file or URL"),
    ("SELECT * FROM 'https://example.com/data.csv'", "reading 'https://example.com/data.csv' is refused"),
    ("SELECT 1; DROP TABLE events", "the query has 2 statements; send them one at a time"),
    ("SELECT 1; SELECT 2", "the query has 2 statements; send them one at a time"),
    ("WITH gone AS (DELETE FROM queries RETURNING *) SELECT count(*) FROM gone", "a DELETE inside the query is refused: the SQL page is read-only"),
    ("WITH x AS (INSERT INTO events (ts, kind, severity, message) VALUES (now(), 'x', 'info', 'y') RETURNING *) SELECT * FROM x",
     "an? INSERT inside the query is refused"),
    ("PIVOT queries ON predicted_label", "PIVOT is refused: PIVOT and other multi-step statements are not supported"),
    ("", "the query is empty"),
    ("-- just a comment ;", r"the query is empty \(only comments or semicolons\)"),
    ("SELEC 1", "the query is not valid SQL: Parser Error: syntax error"),
]
FORBIDDEN_IDS = [
    "insert", "update", "delete", "create-table", "create-temp-table", "drop", "alter", "attach", "detach",
    "copy-to", "copy-from", "export-database", "install", "load", "pragma", "set", "reset", "call", "checkpoint",
    "transaction", "explain-analyze", "read_csv", "read_text", "read_parquet", "glob", "read_blob-in-subquery",
    "query-function", "file-as-table", "url-as-table", "select-then-drop", "two-selects", "cte-delete", "cte-insert",
    "pivot", "empty", "only-comment", "syntax-error",
]


def test_a_valid_query_returns_the_exact_rows(db):
    result = views.run_readonly(db, "SELECT id, text, predicted_label, confidence FROM queries WHERE confidence > 0.5 ORDER BY id")

    assert result.columns == ["id", "text", "predicted_label", "confidence"]
    assert result.rows.values.tolist() == [
        ["q1", "where is my parcel", "delivery_delay", 0.91],
        ["q2", "cancel my order", "cancel_order", 0.88],
        ["q4", "refund please", "refund_request", 0.77],
    ]
    assert result.truncated is False
    assert result.elapsed_s > 0


@pytest.mark.parametrize(
    ("sql", "rows"),
    [
        ("WITH low AS (SELECT id FROM queries WHERE confidence < 0.5) SELECT id FROM low ORDER BY id", [["q3"], ["q5"]]),
        ("FROM labels SELECT query_id, label ORDER BY query_id", [["q1", "delivery_delay"], ["q3", "invoice_request"], ["q5", "refund_request"]]),
        ("VALUES (1, 'a'), (2, 'b');", [[1, "a"], [2, "b"]]),
        ("SELECT predicted_label, count(*) AS n FROM queries GROUP BY ALL ORDER BY n DESC, predicted_label",
         [["cancel_order", 2], ["refund_request", 2], ["delivery_delay", 1]]),
        ("SELECT kind FROM events UNION ALL SELECT 'extra' ORDER BY 1", [["extra"], ["fallback"], ["retrain"]]),
        ("SELECT column_name, column_type FROM (DESCRIBE labels) ORDER BY column_name LIMIT 2", [["arrived_at", "TIMESTAMP"], ["claimed_ts", "TIMESTAMP"]]),
        ("SELECT sum(range) AS total FROM range(5)", [[10]]),
        ("/* a note */ SELECT 1 AS one -- trailing comment", [[1]]),
    ],
    ids=["with", "from-first", "values", "group-by", "union", "describe-in-subquery", "range", "comments"],
)
def test_read_only_forms_are_allowed(db, sql, rows):
    assert views.run_readonly(db, sql).rows.values.tolist() == rows


@pytest.mark.parametrize(("sql", "message"), FORBIDDEN, ids=FORBIDDEN_IDS)
def test_each_forbidden_kind_is_refused_with_a_message_and_the_store_is_unchanged(db, sql, message):
    before = fingerprint(db)

    with pytest.raises(InputError, match=message) as refused:
        views.run_readonly(db, sql)

    if sql.strip() and "not valid SQL" not in message:
        assert "Only one read-only SELECT statement over the store's tables is allowed" in str(refused.value)
    assert fingerprint(db) == before


def test_every_attempt_in_a_row_leaves_the_store_unchanged_and_usable(db):
    before = fingerprint(db)

    refused = 0
    for sql, _ in FORBIDDEN:
        with pytest.raises(InputError):
            views.run_readonly(db, sql)
        refused += 1

    assert refused == len(FORBIDDEN) == 37
    digest, counts = fingerprint(db)
    assert (digest, counts) == before
    assert {k: counts[k] for k in ("queries", "labels", "events")} == {"queries": 5, "labels": 3, "events": 2}
    record_event(db, ts=datetime(2026, 3, 5), kind="note", message="the store still takes writes")
    assert views.row_counts(db)["events"] == 3


# The same attempts sent raw to the sandbox connection, skipping the statement check: DuckDB refuses them.
RAW = [
    ("INSERT INTO events (ts, kind, severity, message) VALUES (now(), 'x', 'info', 'y')", duckdb.InvalidInputException, "read-only mode"),
    ("UPDATE queries SET predicted_label = 'x'", duckdb.InvalidInputException, "read-only mode"),
    ("DELETE FROM queries", duckdb.InvalidInputException, "read-only mode"),
    ("CREATE TABLE stolen AS SELECT * FROM queries", duckdb.InvalidInputException, "read-only mode"),
    ("DROP TABLE events", duckdb.InvalidInputException, "read-only mode"),
    ("ALTER TABLE queries ADD COLUMN note VARCHAR", duckdb.InvalidInputException, "read-only mode"),
    ("WITH gone AS (DELETE FROM queries RETURNING *) SELECT count(*) FROM gone", duckdb.InvalidInputException, "read-only mode"),
    ("ATTACH '{tmp}/other.duckdb' AS other", duckdb.PermissionException, "file system operations are disabled by configuration"),
    ("ATTACH ':memory:' AS other", duckdb.CatalogException, "Cannot launch in-memory database in read-only mode"),
    ("COPY queries TO '{tmp}/queries.csv'", duckdb.PermissionException, "file system operations are disabled by configuration"),
    ("EXPORT DATABASE '{tmp}/dump'", duckdb.PermissionException, "file system operations are disabled by configuration"),
    ("INSTALL httpfs", duckdb.PermissionException, "file system operations are disabled by configuration"),
    ("LOAD httpfs", duckdb.PermissionException, "Loading external extensions is disabled"),
    ("SET enable_external_access = true", duckdb.InvalidInputException, "the configuration has been locked"),
    ("RESET enable_external_access", duckdb.InvalidInputException, "the configuration has been locked"),
    ("SET memory_limit = '64GB'", duckdb.InvalidInputException, "the configuration has been locked"),
    ("PRAGMA enable_profiling", duckdb.InvalidInputException, "the configuration has been locked"),
    ("SELECT * FROM read_csv('/etc/passwd')", duckdb.PermissionException, 'Cannot access file "/etc/passwd"'),
    ("SELECT * FROM read_text('/etc/passwd')", duckdb.PermissionException, 'Cannot access file "/etc/passwd"'),
    ("SELECT * FROM read_parquet('{tmp}/x.parquet')", duckdb.PermissionException, "file system operations are disabled"),
    ("SELECT * FROM glob('/*')", duckdb.PermissionException, 'Cannot access file "/\\*"'),
    ("SELECT * FROM 'https://example.com/data.csv'", duckdb.PermissionException, "file system operations are disabled"),
]


@pytest.mark.parametrize(("sql", "error", "message"), RAW,
                         ids=["insert", "update", "delete", "create", "drop", "alter", "cte-delete", "attach-file",
                              "attach-memory", "copy-to", "export", "install", "load", "set-external-access",
                              "reset-external-access", "set-memory", "pragma", "read_csv", "read_text", "read_parquet",
                              "glob", "url"])
def test_duckdb_itself_refuses_what_the_check_would_have_caught(db, tmp_path, sql, error, message):
    before = fingerprint(db)

    with views.sandbox(db) as con:
        with pytest.raises(error, match=message):
            con.execute(sql.format(tmp=tmp_path)).fetchall()
        assert con.execute("SELECT current_setting('enable_external_access')").fetchone() == (False,)

    assert fingerprint(db) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home"]  # nothing written beside the store


def test_row_limit_truncates_and_says_so(db):
    cut = views.run_readonly(db, "SELECT range AS n FROM range(25)", row_limit=10)
    whole = views.run_readonly(db, "SELECT range AS n FROM range(25)", row_limit=25)

    assert (cut.rows["n"].tolist(), cut.truncated) == (list(range(10)), True)
    assert (whole.rows["n"].tolist(), whole.truncated) == (list(range(25)), False)


def test_a_slow_query_is_stopped_at_the_time_limit_and_releases_the_store(db):
    with pytest.raises(InputError, match=r"the query was stopped after 0\.3 s \(the time limit\): narrow it"):
        views.run_readonly(db, "SELECT count(*) FROM range(10000000000)", timeout_s=0.3)

    record_event(db, ts=datetime(2026, 3, 5), kind="note", message="the writer got the lock back")
    assert views.run_readonly(db, "SELECT count(*) AS n FROM events", max_age_s=0).rows["n"].tolist() == [3]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"row_limit": 0}, "row_limit must be at least 1, not 0"),
     ({"timeout_s": 0}, "timeout_s must be a positive number of seconds, not 0")],
    ids=["row-limit", "timeout"],
)
def test_limits_are_checked(db, kwargs, message):
    with pytest.raises(InputError, match=message):
        views.run_readonly(db, "SELECT 1", **kwargs)


def test_a_too_long_query_is_refused(db):
    sql = "SELECT 1 AS x" + " " * views.MAX_SQL_CHARS
    with pytest.raises(InputError, match="the query is 20,013 characters long; at most 20,000 are accepted"):
        views.run_readonly(db, sql)


def test_a_mistake_in_a_select_is_a_message_not_a_crash(db):
    with pytest.raises(InputError, match=r"^the query reads 'nope', which is not one of the store's tables or views "
                                         r"\(.*commands, confidence_counts, deployments, .*, queries, query_counts, retrains, schema_version, state\)\. "):
        views.run_readonly(db, "SELECT * FROM nope")
    with pytest.raises(InputError, match=r'^the query failed: Binder Error: Referenced column "nope" not found'):
        views.run_readonly(db, "SELECT nope FROM queries")


def test_duplicate_column_names_are_made_unique(db):
    result = views.run_readonly(db, "SELECT 1 AS n, 2 AS n, 3 AS n")
    assert result.columns == ["n", "n (2)", "n (3)"]
    assert result.rows.values.tolist() == [[1, 2, 3]]


def test_schema_lists_every_table_with_its_columns_and_counts(db):
    tables = views.schema(db)

    assert sorted(tables) == ["alias_history", "commands", "confidence_counts", "deployments", "evaluations", "events",
                              "feedback_counts", "jobs", "label_confidence_counts", "labels", "models", "orphan_labels",
                              "quarantine", "queries", "query_counts", "retrains", "schema_version", "state"]
    assert tables["labels"] == [("id", "VARCHAR"), ("ts", "TIMESTAMP"), ("query_id", "VARCHAR"), ("text", "VARCHAR"),
                                ("label", "VARCHAR"), ("source", "VARCHAR"), ("arrived_at", "TIMESTAMP"),
                                ("claimed_ts", "TIMESTAMP")]
    assert views.row_counts(db) == {"alias_history": 0, "commands": 0, "deployments": 0, "evaluations": 0,
                                    "events": 2, "jobs": 0, "labels": 3, "models": 0, "quarantine": 0, "queries": 5, "retrains": 0,
                                    "schema_version": LATEST, "state": 1,  # the labels the rollups counted (rollups.LABELS_COUNTED_KEY)
                                    # the rollups: 5 queries in 5 buckets and bins, 3 of them labelled, no orphan label
                                    "query_counts": 5, "confidence_counts": 5, "label_confidence_counts": 5,
                                    "feedback_counts": 3, "orphan_labels": 0}


@pytest.mark.parametrize("title", [title for title, _ in views.EXAMPLES])
def test_every_example_passes_the_check_and_runs(db, title):
    sql = dict(views.EXAMPLES)[title]
    assert views.check(sql) == sql
    views.run_readonly(db, sql)


def test_examples_give_the_exact_answers_on_the_seeded_store(db):
    examples = dict(views.EXAMPLES)

    accuracy = views.run_readonly(db, examples["Live accuracy of each model version from feedback"])
    confused = views.run_readonly(db, examples["Most confused labels (feedback that disagreed)"])
    warnings = views.run_readonly(db, examples["Recent warnings and errors"])

    assert accuracy.rows.values.tolist() == [["v0001", 2, 0.5], ["v0002", 1, 1.0]]
    assert confused.rows.values.tolist() == [["invoice_request", "cancel_order", 1]]
    assert warnings.rows[["kind", "message"]].values.tolist() == [["fallback", "v0002 unreadable"]]


def test_csv_download_defuses_spreadsheet_formulas(db):
    result = views.run_readonly(db, "SELECT id, text AS \"=label\", round(confidence - 1, 2) AS shift FROM queries WHERE id IN ('q3', 'q4', 'q5') ORDER BY id")

    assert views.to_csv(result.rows).decode().splitlines() == [
        "id,'=label,shift",
        "q3,'=cmd|' /C calc'!A0,-0.58",
        "q4,refund please,-0.23",
        "q5,'@SUM(1+1),-0.65",
    ]


@pytest.mark.parametrize(
    ("cell", "written"),
    [("=1+1", "'=1+1"), ("+1", "'+1"), ("-1", "'-1"), ("@x", "'@x"), ("\tx", "'\tx"), ("plain", "plain"), ("", '""')],
    ids=["equals", "plus", "minus", "at", "tab", "plain", "empty"],
)
def test_to_csv_prefixes_each_formula_start(cell, written):
    assert views.to_csv(pd.DataFrame({"c": [cell]})).decode() == f"c\r\n{written}\r\n"


WRITER = """
import sys
from datetime import datetime
from store import open_store
from store import open_store
from store.events import record_event
db = open_store(sys.argv[1])
for i in range(int(sys.argv[2])):
    record_event(db, ts=datetime(2026, 3, 6), kind="load", message=f"write {i}")
print("done")
"""


@pytest.mark.slow
def test_queries_keep_working_while_another_process_writes(db):
    writes = 15
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(db.path), str(writes)], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen: list[int] = []
    errors: list[BaseException] = []

    def read_until_done() -> None:
        while writer.poll() is None or not seen:
            try:
                seen.append(views.run_readonly(db, "SELECT count(*) AS n FROM events", max_age_s=0).rows["n"].iloc[0])
            except BaseException as exc:  # noqa: BLE001 - collected and asserted below
                errors.append(exc)
                return

    reader = threading.Thread(target=read_until_done)
    reader.start()
    out, err = writer.communicate(timeout=120)
    reader.join(timeout=60)

    assert (writer.returncode, out.strip(), errors) == (0, "done", []), err
    assert seen == sorted(seen) and 2 <= seen[0] and seen[-1] <= 2 + writes
    assert views.run_readonly(db, "SELECT count(*) AS n FROM events WHERE kind = 'load'",
                              max_age_s=0).rows["n"].tolist() == [writes]
