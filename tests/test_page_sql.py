"""The SQL page, through Streamlit's AppTest, on an empty store and on a copy of the demo store."""

from __future__ import annotations

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from engine.config import load_settings
from engine.context import Context
from store.querylog import count_rows
from store.models import list_models
from store.schema import LATEST
from store.views import sql as views
from tests.conftest import ROOT, open_app, shown as read

TABLES = ["alias_history", "commands", "confidence_counts", "deployments", "evaluations", "events", "feedback_counts", "jobs",
          "label_confidence_counts", "labels", "models", "orphan_labels", "quarantine", "queries", "query_counts", "retrains",
          "schema_version", "state"]


@pytest.fixture
def open_page(monkeypatch):
    """Open the SQL page on a data directory, with fresh caches."""

    def open_(home) -> AppTest:
        return open_app(monkeypatch, home, "pages/sql.py")

    return open_


def run_query(at: AppTest, sql: str) -> AppTest:
    at.text_area(key="sql_text").input(sql)
    at.button(key="sql_run").click().run()
    assert not at.exception
    return at


def result_line(at: AppTest) -> str:
    return next(m.value for m in at.markdown if m.value.startswith("**Result:**"))


def test_a_valid_query_shows_the_exact_rows(open_page, demo_copy):
    at = open_page(demo_copy)
    db = Context.open(load_settings(env={}, home=demo_copy)).db
    models = list_models(db)

    run_query(at, "SELECT version, status, train_rows FROM models ORDER BY version")

    shown = at.dataframe[0].value
    assert list(shown.columns) == ["version", "status", "train_rows"]
    assert shown.values.tolist() == [[m["version"], m["status"], m["train_rows"]] for m in models]
    assert len(models) >= 2 and [m["status"] for m in models].count("champion") == 1
    assert result_line(at).startswith(f"**Result:** {len(models)} rows in ")
    assert len(at.error) == 0


def test_the_schema_and_row_counts_are_listed_beside_the_editor(open_page, demo_copy):
    at = open_page(demo_copy)
    db = Context.open(load_settings(env={}, home=demo_copy)).db
    counts = views.row_counts(db)
    stored = count_rows(db)

    labels = [e.label for e in at.expander]
    assert [label.split(" · ")[0] for label in labels] == TABLES
    assert f"queries · {stored['queries']:,} rows" in labels and f"labels · {stored['labels']:,} rows" in labels
    assert labels[TABLES.index("schema_version")] == f"schema_version · {LATEST} rows"  # one per migration
    assert labels == [f"{t} · {counts[t]:,} {'row' if counts[t] == 1 else 'rows'}" for t in TABLES]
    labels_columns = at.expander[TABLES.index("labels")].markdown[0].value
    assert labels_columns.splitlines() == ["- `id` varchar", "- `ts` timestamp", "- `query_id` varchar", "- `text` varchar",
                                           "- `label` varchar", "- `source` varchar", "- `arrived_at` timestamp",
                                           "- `claimed_ts` timestamp"]
    assert not [i for i in at.info if "store is empty" in i.value]


# One of each kind of forbidden attempt, with the words its refusal must show.
REFUSED = [
    ("INSERT INTO events (ts, kind, severity, message) VALUES (now(), 'x', 'info', 'y')", "INSERT is refused: the SQL page is read-only"),
    ("UPDATE queries SET predicted_label = 'x'", "UPDATE is refused: the SQL page is read-only"),
    ("DELETE FROM queries", "DELETE is refused: the SQL page is read-only"),
    ("CREATE TABLE copied AS SELECT * FROM queries", "CREATE is refused: the SQL page is read-only"),
    ("DROP TABLE queries", "DROP is refused: the SQL page is read-only"),
    ("ALTER TABLE queries ADD COLUMN x INTEGER", "ALTER is refused: the SQL page is read-only"),
    ("ATTACH '/tmp/elsewhere.duckdb' AS elsewhere", "ATTACH is refused: the SQL page cannot reach other databases or files"),
    ("DETACH store", "DETACH is refused: the SQL page cannot detach the store"),
    ("COPY queries TO '/tmp/queries.csv'", "COPY is refused: the SQL page cannot read or write files"),
    ("EXPORT DATABASE '/tmp/dump'", "EXPORT is refused: the SQL page cannot write files"),
    ("INSTALL httpfs", "INSTALL is refused: extensions cannot be installed or loaded"),
    ("LOAD httpfs", "LOAD is refused: extensions cannot be installed or loaded"),
    ("PRAGMA enable_profiling", "PRAGMA is refused: settings and pragmas cannot be used here"),
    ("SET threads = 1", "SET is refused: settings cannot be changed here"),
    ("CALL pragma_version()", "CALL is refused: procedures cannot be called here"),
    ("SELECT * FROM read_csv('/etc/passwd')", "the table function read_csv() is refused"),
    ("SELECT * FROM read_text('/etc/passwd')", "the table function read_text() is refused"),
    ("SELECT * FROM read_parquet('/tmp/x.parquet')", "the table function read_parquet() is refused"),
    ("SELECT * FROM glob('/*')", "the table function glob() is refused"),
    ("SELECT 1; DROP TABLE events", "the query has 2 statements; send them one at a time"),
    ("WITH gone AS (DELETE FROM queries RETURNING *) SELECT * FROM gone", "a DELETE inside the query is refused"),
    ("SELECT * FROM nowhere", "the query reads 'nowhere', which is not one of the store's tables or views (alias_history, commands, "),
]


def test_each_forbidden_kind_shows_its_refusal_and_no_rows(open_page, demo_copy):
    at = open_page(demo_copy)
    db = Context.open(load_settings(env={}, home=demo_copy)).db
    before = views.row_counts(db)

    shown = {}
    for sql, _ in REFUSED:
        run_query(at, sql)
        assert len(at.dataframe) == 0, sql
        shown[sql] = [read(e.value) for e in at.error]

    assert {sql: len(errors) for sql, errors in shown.items()} == {sql: 1 for sql, _ in REFUSED}
    for sql, message in REFUSED:
        assert shown[sql][0].startswith("**No result:** ") and message in shown[sql][0], (sql, shown[sql][0])
    assert views.row_counts(db) == before


def test_the_empty_store_shows_the_schema_an_empty_note_and_no_rows(open_page, tmp_path):
    at = open_page(tmp_path / "home")

    assert [e.label for e in at.expander] == [
        f"{t} · {LATEST if t == 'schema_version' else 0} rows" for t in TABLES
    ]
    assert [i.value for i in at.info if "store is empty" in i.value] == [
        "The store is empty: no logged queries, labels or models yet, so queries return no rows. "
        "Build the demo with `python -m engine demo`, or import data with `python -m engine import FILE`."
    ]
    assert at.text_area(key="sql_text").value == views.EXAMPLES[0][1]

    at.button(key="sql_run").click().run()

    assert not at.exception
    assert result_line(at).startswith("**Result:** 0 rows in ")
    assert list(at.dataframe[0].value.columns) == ["day", "predicted_label", "queries"]


def test_choosing_an_example_puts_it_in_the_editor_and_it_runs(open_page, demo_copy):
    at = open_page(demo_copy)
    title, sql = views.EXAMPLES[3]

    at.selectbox(key="sql_example").select(title).run()
    assert at.text_area(key="sql_text").value == sql
    at.button(key="sql_run").click().run()

    assert not at.exception and len(at.error) == 0
    db = Context.open(load_settings(env={}, home=demo_copy)).db
    assert at.dataframe[0].value["id"].tolist() == views.run_readonly(db, "SELECT id FROM retrains ORDER BY id DESC").rows["id"].tolist()


def test_a_long_result_is_cut_at_the_row_limit_with_a_warning(open_page, demo_copy):
    at = open_page(demo_copy)

    run_query(at, "SELECT range AS n FROM range(1500)")

    assert at.dataframe[0].value["n"].tolist() == list(range(1000))
    assert result_line(at).startswith("**Result:** first 1,000 rows (the query returned more) in ")
    assert [w.value for w in at.warning if "row" in w.value] == [
        "Only the first 1,000 rows are shown and downloaded: add a LIMIT or aggregate."
    ]


def test_a_first_row_larger_than_the_byte_limit_says_so_rather_than_first_0_rows(open_page, demo_copy):
    at = run_query(open_page(demo_copy), "SELECT repeat('x', 30000000) AS big")  # 30 MB > the 20 MB limit
    assert result_line(at).startswith(
        f"**Result:** no row shown: the first row alone is larger than {views.BYTE_LIMIT // 2**20} MB in ")


def test_a_file_where_the_snapshot_folder_belongs_is_named_with_its_fix_on_the_page(open_page, tmp_path, caplog):
    home = tmp_path / "home"
    db = Context.open(load_settings(env={}, home=home)).db
    (home / views.SNAPSHOT_DIR).write_text("not a folder")
    at = open_page(home)
    views._preparing.join(timeout=60)  # the page's background prepare met the file too, and did not raise

    at.button(key="sql_run").click().run()

    assert not at.exception
    assert [read(e.value) for e in at.error] == [
        "**No result:** the SQL page keeps its copies of the store in <data directory>/sql-snapshots, but that is a "
        "file, not a folder: move or delete that file (Retrainer makes the folder itself), then run the query again"]
    assert str(tmp_path) not in at.error[0].value
    caplog.clear()
    with caplog.at_level("WARNING", logger="store.views.sql"):
        views._refresh_failure = None
        views._refresh(db)  # the prepare thread's work: a warning once, no exception, no traceback
        views._refresh(db)
    warnings = [r for r in caplog.records if r.name == "store.views.sql"]
    assert [r.getMessage() for r in warnings] == [
        "the SQL page's snapshot could not be refreshed ahead of a query: the SQL page keeps its copies of the store in "
        f"{home / views.SNAPSHOT_DIR}, but that is a file, not a folder: move or delete that file (Retrainer makes the "
        "folder itself), then run the query again"]
    assert warnings[0].exc_info is None

    (home / views.SNAPSHOT_DIR).unlink()  # the fix the message names: the next Run answers
    at.button(key="sql_run").click().run()
    assert not at.error and result_line(at).startswith("**Result:** ")
