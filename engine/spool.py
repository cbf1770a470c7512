"""The query spool: how serving processes hand logged queries to the worker without waiting.

A ``Classifier`` buffers its queries and feedback in memory and, from a background
thread, writes them as one JSON Lines file per batch into ``<home>/spool`` (written to
a temporary name, fsynced, renamed: a file is there whole or not at all). The worker
ingests each file in one transaction and then deletes it; every record carries an id
chosen by its writer, so a file ingested twice (a crash between commit and delete)
is stored once. Serving therefore never touches the database lock.

What can be lost: records still in a process's memory buffer when that process is
killed with SIGKILL (at most ``flush_seconds`` worth, or ``flush_rows`` rows).
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Iterable

from engine import faults

log = logging.getLogger(__name__)

SUFFIX = ".jsonl"
_sequence = itertools.count()


def write_batch(spool_dir: Path, records: Iterable[dict[str, Any]]) -> Path | None:
    """Write records as one spool file (atomically); return its path, None if empty."""
    lines = []
    for record in records:
        line = json.dumps(record, ensure_ascii=False, default=str)
        try:
            line.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate the caller let through: one record, not the batch
            log.error("spool: dropped a %s record that is not valid Unicode text (a lone surrogate)", record.get("k"))
            continue
        lines.append(line)
    if not lines:
        return None
    spool_dir.mkdir(parents=True, exist_ok=True)
    name = f"{time.time_ns():020d}-{os.getpid()}-{next(_sequence):08d}{SUFFIX}"
    final = spool_dir / name
    tmp = spool_dir / f".{name}.tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write("\n".join(lines))
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        faults.point("spool_before_replace")
        os.replace(tmp, final)
    except BaseException:  # disk full, say: no half file stays behind; the caller keeps the records
        tmp.unlink(missing_ok=True)
        raise
    return final


def pending(spool_dir: Path) -> list[Path]:
    """Spool files waiting for the worker, oldest first."""
    if not spool_dir.exists():
        return []
    return sorted(p for p in spool_dir.iterdir() if p.suffix == SUFFIX and not p.name.startswith("."))


def read_batch(path: Path) -> list[dict[str, Any]]:
    """The records of one spool file. Raises ValueError if a line is not JSON."""
    records = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{path.name} line {number}: {exc}") from None
    return records


def backlog(spool_dir: Path) -> int:
    """How many spool files wait to be ingested."""
    return len(pending(spool_dir))
