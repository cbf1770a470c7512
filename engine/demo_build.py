"""The demo build's progress, shared with the dashboard while ``python -m engine demo`` runs.

``make run`` on an empty data directory starts the dashboard first and builds the demo beside it
(engine/supervisor.py), so a person sees the pages fill in rather than a dead port for a minute.
The build writes its progress to ``<home>/demo-build.json`` (replaced atomically at each simulated
day, removed when the build ends, however it ends); the dashboard reads it with :func:`read_progress`.
A file rather than the store: the progress is transient, is written once per simulated day while the
build itself holds the store's write lock in turns, and must be readable before the store exists.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

FILE_NAME = "demo-build.json"


@dataclass(frozen=True)
class DemoBuild:
    """A running demo build: simulated ``day`` of ``days``, its process id, start (UTC), latest note."""

    pid: int
    day: int
    days: int
    started_at: str
    note: str = ""

    @property
    def elapsed_s(self) -> float:
        """Seconds since the build started (wall clock)."""
        started = datetime.fromisoformat(self.started_at)
        return max(0.0, (datetime.now(timezone.utc) - started).total_seconds())

    @property
    def remaining_s(self) -> float | None:
        """Seconds left at the pace so far (elapsed / day * days left), or None before the first day ends."""
        if self.day <= 0:
            return None
        return self.elapsed_s / self.day * (self.days - self.day)


def progress_path(home: Path) -> Path:
    """Where the build's progress is written: ``<home>/demo-build.json``."""
    return Path(home) / FILE_NAME


def write_progress(home: Path, build: DemoBuild) -> None:
    """Replace the progress file with ``build`` (write to a temporary file, then rename: readers never see half).

    Raises OSError when the data directory cannot be written (the build itself would fail there too).
    """
    path = progress_path(home)
    temporary = path.with_name(f".{FILE_NAME}.{os.getpid()}")
    temporary.write_text(json.dumps(asdict(build)), encoding="utf-8")
    os.replace(temporary, path)


def clear_progress(home: Path) -> None:
    """Remove the progress file (nothing to do if it is gone)."""
    with contextlib.suppress(FileNotFoundError):
        progress_path(home).unlink()


def read_progress(home: Path) -> DemoBuild | None:
    """The running build's progress, or None when no build runs.

    A file left by a build that was killed (its process is gone) or that cannot be read counts as
    no build: the dashboard then shows the store as it is.
    """
    try:
        raw = json.loads(progress_path(home).read_text(encoding="utf-8"))
        build = DemoBuild(pid=int(raw["pid"]), day=int(raw["day"]), days=int(raw["days"]),
                          started_at=str(raw["started_at"]), note=str(raw.get("note", "")))
        datetime.fromisoformat(build.started_at)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    try:
        os.kill(build.pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:  # alive, owned by another user
        return build
    return build
