"""Moving spooled queries, feedback and events into the store (the worker's job).

Each spool file goes in with one transaction, then is deleted. Ids make a repeat
harmless, so a crash between the commit and the delete stores nothing twice.
A file that cannot be parsed is moved to ``spool/rejected`` and an event says so;
nothing else in the store changes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from engine import faults, spool
from store import Database
from store.events import add_event
from store.log import LABEL_COLUMNS, QUERY_COLUMNS, insert_labels, insert_queries

log = logging.getLogger(__name__)


@dataclass
class IngestResult:
    files: int = 0
    queries: int = 0
    labels: int = 0
    events: int = 0
    rejected_files: int = 0


def _parse_ts(value: Any) -> datetime:
    return datetime.fromisoformat(value) if isinstance(value, str) else value


def _frames(records: list[dict[str, Any]]) -> tuple[pd.DataFrame, pd.DataFrame, list[dict[str, Any]]]:
    queries = [r for r in records if r.get("k") == "q"]
    labels = [r for r in records if r.get("k") == "f"]
    events = [r for r in records if r.get("k") == "e"]
    q = pd.DataFrame(queries, columns=QUERY_COLUMNS + ["k"])[QUERY_COLUMNS]
    l = pd.DataFrame(labels, columns=LABEL_COLUMNS + ["k"])[LABEL_COLUMNS]
    for frame in (q, l):
        frame["ts"] = pd.to_datetime(frame["ts"], format="ISO8601")
    q["confidence"] = pd.to_numeric(q["confidence"], errors="coerce")
    l["text"] = l["text"].astype("object")
    return q, l, events


def ingest_file(db: Database, path: Path, *, clock) -> IngestResult:
    """Store one spool file and delete it."""
    result = IngestResult(files=1)
    try:
        records = spool.read_batch(path)
        queries, labels, events = _frames(records)
        faults.point("ingest_after_read")
    except (ValueError, KeyError, TypeError, OSError, UnicodeDecodeError) as exc:
        rejected = path.parent / "rejected"
        rejected.mkdir(exist_ok=True)
        path.replace(rejected / path.name)
        with db.write() as con:
            add_event(con, ts=clock(), kind="ingest", severity="error",
                      message=f"Spool file {path.name} could not be read and was moved to {rejected}: {exc}")
        return IngestResult(files=1, rejected_files=1)
    with db.write() as con:
        result.queries = insert_queries(con, queries)
        result.labels = insert_labels(con, labels)
        for e in events:
            details = e.get("details")
            add_event(con, ts=_parse_ts(e["ts"]), kind=e.get("kind", "event"), severity=e.get("severity", "info"),
                      message=e.get("message", ""), version=e.get("version"),
                      details=details if isinstance(details, dict) else None)
        result.events = len(events)
        faults.point("ingest_before_commit")
    faults.point("ingest_after_commit")
    path.unlink(missing_ok=True)
    return result


def ingest_spool(db: Database, spool_dir: Path, *, clock, max_files: int = 200) -> IngestResult:
    """Store every waiting spool file (oldest first, at most ``max_files`` per call)."""
    total = IngestResult()
    for path in spool.pending(spool_dir)[:max_files]:
        r = ingest_file(db, path, clock=clock)
        total.files += r.files
        total.queries += r.queries
        total.labels += r.labels
        total.events += r.events
        total.rejected_files += r.rejected_files
    if total.queries or total.labels:
        log.debug("ingested %d queries, %d labels from %d files", total.queries, total.labels, total.files)
    return total
