"""Tests for engine.export and `python -m engine export-log`: the log as Parquet partitioned by day.

Files are read back the way docs/SCALING.md says other engines read them: DuckDB's
read_parquet with hive_partitioning, the day coming from the folder names.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

import duckdb
import pandas as pd
import pytest

from engine.errors import InputError
from engine.export import export_log
from store.querylog import insert_labels, insert_queries
from tests.conftest import run_cli

# Rows per day, with the day's first and last instants among them (midnight belongs to the new day).
QUERY_DAYS = {date(2026, 3, 1): 5, date(2026, 3, 2): 3, date(2026, 3, 4): 7}
LABEL_DAYS = {date(2026, 3, 2): 2, date(2026, 3, 4): 1}


def instants(day: date, n: int) -> list[datetime]:
    """``n`` moments of ``day``: its first instant, then its last (for n >= 2), then whole hours."""
    start = datetime.combine(day, datetime.min.time())
    moments = [start, start + timedelta(days=1, microseconds=-1)] + [start + timedelta(hours=1 + i) for i in range(n)]
    return moments[:n]


def add_queries(ctx, days: dict[date, int], *, prefix: str = "q") -> None:
    ts = [t for day, n in days.items() for t in instants(day, n)]
    frame = pd.DataFrame({"id": [f"{prefix}{i:03d}" for i in range(len(ts))], "ts": ts,
                          "text": [f"where is order {i}" for i in range(len(ts))], "predicted_label": "track_order",
                          "confidence": 0.9, "model_version": "v0001", "source": "classifier"})
    with ctx.db.write() as con:
        insert_queries(con, frame)


def add_labels(ctx, days: dict[date, int]) -> None:
    ts = [t for day, n in days.items() for t in instants(day, n)]
    frame = pd.DataFrame({"id": [f"l{i:03d}" for i in range(len(ts))], "ts": ts, "query_id": [f"q{i:03d}" for i in range(len(ts))],
                          "text": None, "label": "track_order", "source": "feedback"})
    with ctx.db.write() as con:
        insert_labels(con, frame)


def per_day(directory, table: str) -> dict[date, int]:
    rows = duckdb.sql(
        "SELECT day, count(*) FROM read_parquet(?, hive_partitioning = true) GROUP BY day ORDER BY day",
        params=[str(directory / table / "*" / "*.parquet")]).fetchall()
    return dict(rows)


def test_cli_writes_one_folder_per_day_that_duckdb_reads_back(ctx, tmp_path):
    add_queries(ctx, QUERY_DAYS)
    add_labels(ctx, LABEL_DAYS)
    out = tmp_path / "log"

    done = run_cli("export-log", "--parquet", str(out), home=ctx.settings.home)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"exported to {out}: queries: 15 rows in 3 day(s) (2026-03-01 to 2026-03-04); "
                                  "labels: 3 rows in 2 day(s) (2026-03-02 to 2026-03-04)\n")
    assert per_day(out, "queries") == QUERY_DAYS
    assert per_day(out, "labels") == LABEL_DAYS
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        "labels/day=2026-03-02/data.parquet", "labels/day=2026-03-04/data.parquet",
        "queries/day=2026-03-01/data.parquet", "queries/day=2026-03-02/data.parquet",
        "queries/day=2026-03-04/data.parquet"]
    columns = duckdb.sql("DESCRIBE SELECT * FROM read_parquet(?, hive_partitioning = true)",
                         params=[str(out / "queries" / "*" / "*.parquet")]).fetchall()
    assert [(c[0], c[1]) for c in columns] == [
        ("id", "VARCHAR"), ("ts", "TIMESTAMP"), ("text", "VARCHAR"), ("predicted_label", "VARCHAR"),
        ("confidence", "DOUBLE"), ("model_version", "VARCHAR"), ("source", "VARCHAR"), ("day", "DATE")]


def test_since_rewrites_those_days_whole_and_leaves_older_ones(ctx, tmp_path):
    add_queries(ctx, QUERY_DAYS)
    out = tmp_path / "log"
    export_log(ctx, out)
    first_day = out / "queries" / "day=2026-03-01" / "data.parquet"
    before = first_day.stat().st_mtime_ns

    add_queries(ctx, {date(2026, 3, 4): 2, date(2026, 3, 5): 4}, prefix="r")
    report = export_log(ctx, out, since=date(2026, 3, 4))
    assert report.rows == {"queries": {date(2026, 3, 4): 9, date(2026, 3, 5): 4}, "labels": {}}
    assert per_day(out, "queries") == {**QUERY_DAYS, date(2026, 3, 4): 9, date(2026, 3, 5): 4}
    assert first_day.stat().st_mtime_ns == before
    assert not [p for p in out.rglob(".*")]  # no temporary file left behind


def test_a_file_is_not_a_directory_to_export_into(ctx, tmp_path):
    add_queries(ctx, QUERY_DAYS)
    target = tmp_path / "log.parquet"
    target.write_text("not a folder")
    with pytest.raises(InputError, match=r"log\.parquet is a file: name a directory to export into$"):
        export_log(ctx, target)


def test_cli_refuses_a_since_that_is_not_a_day(ctx, tmp_path):
    done = run_cli("export-log", "--parquet", str(tmp_path / "log"), "--since", "March 4", home=ctx.settings.home)
    assert done.returncode == 2
    assert "argument --since: 'March 4' is not a day: use YYYY-MM-DD, e.g. 2026-03-04" in done.stderr
