"""One worker per data directory: an exclusive ``flock`` on the data directory itself.

The lock is held on an open descriptor of the directory, not on a file in it: a lock file
can be deleted from under a running worker (``rm worker.lock``) and a second worker would
then lock a new file of the same name and start beside the first. A directory that holds the
store cannot be removed while it holds anything. The kernel drops the lock when the holder
dies, even by SIGKILL, so a crashed worker never blocks the next one.

``<home>/worker.lock`` only tells who holds the lock (pid, host, since), for messages; the
worker writes it at start and writes it again if it goes missing (see :meth:`WorkerLock.refresh`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from pathlib import Path

from engine.clock import utcnow
from engine.errors import StoreError, WorkerLockedError

# A reader checking whether a worker runs holds a shared lock for microseconds: a worker
# starting at that instant tries again before it concludes that another worker runs.
ATTEMPTS = 5
RETRY_SECONDS = 0.02


class WorkerLock:
    """The single-worker lock of the data directory that holds ``path`` (``<home>/worker.lock``)."""

    def __init__(self, path: Path, *, role: str = "worker"):
        """``role`` is written in the holder file for messages: "worker" (it takes queued commands), or "cli",
        "demo", "rebuild-rollups" for a process that holds the lock only for its own work."""
        self.path = Path(path)
        self.role = role
        self._fd: int | None = None
        self._holder: dict | None = None

    def acquire(self) -> "WorkerLock":
        """Take the lock or raise WorkerLockedError naming the process that holds it.

        Raises :class:`StoreError` when the data directory does not exist or cannot be opened.
        """
        fd = _open_directory(self.path.parent)
        for attempt in range(ATTEMPTS):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError as exc:
                if attempt == ATTEMPTS - 1:
                    os.close(fd)
                    holder = read_holder(self.path)
                    who = (f"pid {holder.get('pid')} on {holder.get('host')}, since {holder.get('since')}"
                           if holder else "another process")
                    raise WorkerLockedError(
                        f"a worker is already running on {self.path.parent} ({who}); "
                        "one worker per data directory: stop that one first, or let it do the work"
                    ) from exc
                time.sleep(RETRY_SECONDS)
        self._fd = fd
        self._holder = {"pid": os.getpid(), "host": socket.gethostname(), "since": utcnow().isoformat(timespec="seconds"),
                        "role": self.role}
        self.refresh()
        return self

    def refresh(self) -> None:
        """Write the holder file again if it is missing or names someone else (cheap when it is right)."""
        if self._fd is None or read_holder(self.path) == self._holder:
            return
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        with contextlib.suppress(OSError):  # informational only: a full disk must not stop the worker
            tmp.write_text(json.dumps(self._holder))
            os.replace(tmp, self.path)

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "WorkerLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _open_directory(directory: Path) -> int:
    try:
        return os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except FileNotFoundError as exc:
        raise StoreError(f"the data directory {directory} does not exist: create it or set RETRAINER_HOME") from exc
    except OSError as exc:
        raise StoreError(f"cannot open the data directory {directory}: {exc.strerror}") from exc


def read_holder(path: Path) -> dict | None:
    try:
        holder = json.loads(Path(path).read_text() or "null")
    except (OSError, ValueError):
        return None
    return holder if isinstance(holder, dict) else None


def worker_running(path: Path) -> dict | None:
    """Who holds the worker lock of ``path``'s directory (pid, host, since, role; {} if unknown), or None."""
    try:
        fd = os.open(Path(path).parent, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return read_holder(path) or {}
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
