"""Moving spooled queries, feedback and events into the store (the worker's job).

The waiting spool files (up to ``max_files``) are parsed together by DuckDB's JSON
reader and go in with one transaction, then are deleted: one lock and one commit for
many files (about 100 times the rows/s of an INSERT per row; benchmarks/RESULTS.md).
Every row is stamped with its arrival time (the ``clock`` passed in); a row claiming a time more
than ``FUTURE_TOLERANCE`` past it (a client with a wrong clock or zone) is stored at its arrival
time instead, its claim kept beside it, and an event counts them. Ids make a repeat harmless (a
clamped one too, see store/querylog.py), so a crash between the commit and the deletes stores
nothing twice. When the batch does not parse, the files are taken one at a time: a file
that cannot be parsed is moved to ``spool/rejected`` and an event says so; nothing else
in the store changes.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from engine import faults, spool
from engine.clock import FUTURE_TOLERANCE
from store import Database
from store.events import record_event, same_event_since
from store.querylog import (LABEL_COLUMNS, QUERY_COLUMNS, SpoolParseError, insert_labels, insert_queries,
                            insert_spool_batch, read_spool_files)
from store.vocabulary import EventKind, Severity

log = logging.getLogger(__name__)

# A serving process reports its fallback once; each new process (every `python -m engine predict`) reports it again.
# Stored once per version and message within this window: the worker's fallback monitor records the state and its own event.
REPEAT_FALLBACK_WINDOW = timedelta(hours=1)


@dataclass
class IngestResult:
    files: int = 0
    queries: int = 0
    labels: int = 0
    events: int = 0
    rejected_files: int = 0
    future: int = 0          # queries and labels stamped past the allowed skew: stored at their arrival time


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
            record_event(con, ts=clock(), kind=EventKind.INGEST, severity=Severity.ERROR,
                         message=f"Spool file {path.name} could not be read and was moved to {rejected}: {exc}")
        return IngestResult(files=1, rejected_files=1)
    arrived_at = clock()
    latest = arrived_at + FUTURE_TOLERANCE
    result.future = int((queries["ts"] > latest).sum() + (labels["ts"] > latest).sum())
    with db.write() as con:
        result.queries = insert_queries(con, queries, arrived_at=arrived_at, latest=latest)
        result.labels = insert_labels(con, labels, arrived_at=arrived_at, latest=latest)
        _record_events(con, events)
        _note_future(con, result.future, arrived_at=arrived_at)
        result.events = len(events)
        faults.point("ingest_before_commit")
    faults.point("ingest_after_commit")
    path.unlink(missing_ok=True)
    return result


def _record_events(con, events: list[dict[str, Any]]) -> None:
    """Store the serving processes' events; a fallback event is stored once per version and message
    within ``REPEAT_FALLBACK_WINDOW`` (every new process that falls back reports the same problem)."""
    for e in events:
        if e.get("kind") == EventKind.FALLBACK and _repeated(con, e):
            continue
        details = e.get("details")
        if isinstance(details, str):  # from DuckDB's JSON reader: the JSON text
            try:
                details = json.loads(details)
            except ValueError:
                details = None
        record_event(con, ts=_parse_ts(e["ts"]), kind=e.get("kind") or "event",
                     severity=e.get("severity") or Severity.INFO, message=e.get("message") or "",
                     version=e.get("version"), details=details if isinstance(details, dict) else None)


def _repeated(con, event: dict[str, Any]) -> bool:
    """Whether the same fallback (version and message) was stored within REPEAT_FALLBACK_WINDOW before ``event``."""
    ts = _parse_ts(event["ts"])
    return same_event_since(con, kind=EventKind.FALLBACK, version=event.get("version"),
                            message=event.get("message") or "", since=ts - REPEAT_FALLBACK_WINDOW)


def _note_future(con, future: int, *, arrived_at: datetime) -> None:
    if future:
        record_event(con, ts=arrived_at, kind=EventKind.INGEST, severity=Severity.WARNING,
                     message=f"{future} logged queries or labels claimed a time more than "
                             f"{FUTURE_TOLERANCE.total_seconds() / 60:.0f} minutes ahead of this machine's clock; they "
                             "were stored at their arrival time instead (is a client's clock or time zone wrong?).",
                     details={"future_rows": future})


def ingest_batch(db: Database, paths: list[Path], *, clock) -> IngestResult | None:
    """Store many spool files with one parse and one transaction; None if they do not parse together."""
    try:
        batch = read_spool_files(paths)
    except SpoolParseError as exc:
        log.info("spool batch of %d files did not parse together (%s): taking them one by one", len(paths), exc)
        return None
    faults.point("ingest_after_read")
    result = IngestResult(files=len(paths))
    arrived_at = clock()
    with db.write() as con:
        result.queries, result.labels, events, result.future = insert_spool_batch(
            con, batch, arrived_at=arrived_at, latest=arrived_at + FUTURE_TOLERANCE)
        _record_events(con, events)
        _note_future(con, result.future, arrived_at=arrived_at)
        result.events = len(events)
        faults.point("ingest_before_commit")
    faults.point("ingest_after_commit")
    for path in paths:
        path.unlink(missing_ok=True)
        faults.point("ingest_after_delete")
    return result


def ingest_spool(db: Database, spool_dir: Path, *, clock, max_files: int = 200) -> IngestResult:
    """Store every waiting spool file (oldest first, at most ``max_files`` per call)."""
    paths = spool.pending(spool_dir)[:max_files]
    total = ingest_batch(db, paths, clock=clock) if paths else None
    if total is None:
        total = IngestResult()
        for path in paths:
            r = ingest_file(db, path, clock=clock)
            total.files += r.files
            total.queries += r.queries
            total.labels += r.labels
            total.events += r.events
            total.rejected_files += r.rejected_files
            total.future += r.future
    if total.queries or total.labels:
        log.debug("ingested %d queries, %d labels from %d files", total.queries, total.labels, total.files)
    return total
