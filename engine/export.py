"""Export the query log and the labels as Parquet partitioned by day, for engines beyond one machine.

Layout (hive partitioning, one file per day and table)::

    DIR/queries/day=2026-03-04/data.parquet
    DIR/labels/day=2026-03-04/data.parquet

DuckDB reads it with ``read_parquet('DIR/queries/*/*.parquet', hive_partitioning = true)``,
Spark with ``spark.read.parquet("DIR/queries")``, Dask with ``dask.dataframe.read_parquet("DIR/queries")``;
each gets a ``day`` column from the folder names and can skip the days a query does not need.

Exporting a day again replaces its file, whole: each file is written under a hidden temporary
name in its folder and renamed into place, so readers never see half a file. ``since`` limits the
export to the days from that one on (a daily job passes yesterday: the day that just ended is
written complete, and today's partial file, if any, is replaced the next time).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from engine.context import Context
from engine.errors import InputError
from store.export import TABLES, copy_day_to_parquet, log_days

log = logging.getLogger(__name__)

FILE_NAME = "data.parquet"


@dataclass(frozen=True)
class ExportReport:
    directory: Path
    rows: dict[str, dict[date, int]] = field(default_factory=dict)  # table -> day -> rows written

    def summary(self) -> str:
        parts = []
        for table in TABLES:
            days = self.rows.get(table, {})
            span = f" ({min(days)} to {max(days)})" if days else ""
            parts.append(f"{table}: {sum(days.values()):,} rows in {len(days)} day(s){span}")
        return f"exported to {self.directory}: " + "; ".join(parts)


def export_log(ctx: Context, directory: Path | str, *, since: date | None = None) -> ExportReport:
    """Write every day of the log (from ``since`` on) as ``directory/<table>/day=YYYY-MM-DD/data.parquet``."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise InputError(f"{directory} is a file: name a directory to export into")
    report = ExportReport(directory)
    for table in TABLES:
        written = report.rows.setdefault(table, {})
        for day in log_days(ctx.db, table, since=since):
            folder = directory / table / f"day={day.isoformat()}"
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise InputError(f"cannot create {folder}: {exc.strerror}; choose a writable directory") from exc
            partial = folder / f".{FILE_NAME}.tmp"  # hidden: DuckDB's *.parquet glob and Spark both skip it
            written[day] = copy_day_to_parquet(ctx.db, table, day, partial)
            os.replace(partial, folder / FILE_NAME)
        log.info("exported %s: %d rows in %d day(s)", table, sum(written.values()), len(written))
    return report
