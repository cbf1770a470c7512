"""One worker per data directory: an exclusive ``flock`` on ``<home>/worker.lock``.

The kernel drops the lock when the holder dies, even by SIGKILL, so a crashed
worker never blocks the next one. The file records who holds it, for messages.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
from pathlib import Path

from engine.clock import utcnow
from engine.errors import StoreError, WorkerLockedError


class WorkerLock:
    def __init__(self, path: Path):
        self.path = Path(path)
        self._fd: int | None = None

    def acquire(self) -> "WorkerLock":
        """Take the lock or raise WorkerLockedError naming the process that holds it."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StoreError(f"cannot create {self.path}: {exc.strerror} (the data directory must be writable)") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            os.close(fd)
            holder = read_holder(self.path)
            who = f"pid {holder.get('pid')} on {holder.get('host')}, since {holder.get('since')}" if holder else "another process"
            raise WorkerLockedError(
                f"a worker is already running on {self.path.parent} ({who}); "
                "one worker per data directory: stop that one first, or let it do the work"
            ) from exc
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": utcnow().isoformat(timespec="seconds")}).encode())
        os.fsync(fd)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "WorkerLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def read_holder(path: Path) -> dict | None:
    try:
        return json.loads(Path(path).read_text() or "null")
    except (OSError, ValueError):
        return None


def worker_running(path: Path) -> dict | None:
    """Who holds the worker lock (pid, host, since), or None when no worker runs."""
    if not Path(path).exists():
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return read_holder(path) or {}
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
