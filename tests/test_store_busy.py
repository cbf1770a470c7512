"""Another program holds the store open (a DuckDB shell, a notebook): nobody crashes, nobody floods the log.

The holder is a real second process with the DuckDB file open, exactly as `duckdb retrainer.duckdb` would be.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from engine.context import Context
from engine.errors import StoreBusyError
from store.events import recent_events
from store.querylog import count_rows
from tests.conftest import ROOT

# Takes the store's write lock (so no write is cut in half), opens the file with DuckDB, lets the
# lock go and keeps the file open until its stdin closes.
HOLDER = """
import sys, duckdb
from store.db import Database
db = Database(sys.argv[1])
with db.locked(write=True):
    con = duckdb.connect(sys.argv[1])
print("holding", flush=True)
sys.stdin.read()
con.close()
"""


@contextmanager
def store_held(db_path: Path):
    """Another process holds ``db_path`` open inside the block; yields its pid."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(db_path)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        assert proc.stdout.readline().strip() == "holding"
        yield proc.pid
    finally:
        proc.stdin.close()
        proc.wait(timeout=60)


def test_a_held_store_is_a_busy_error_naming_the_holder(ctx):
    with store_held(ctx.settings.db_path) as pid:
        with pytest.raises(StoreBusyError) as caught:
            count_rows(ctx.db)
    assert str(caught.value) == (
        f"another program holds the store {ctx.settings.db_path} open: {Path(sys.executable).resolve().name} "
        f"(pid {pid}). DuckDB lets one process open a file for writing; close that program, or read a copy "
        "of the file instead")
    assert count_rows(ctx.db) == {"queries": 0, "labels": 0}  # released: reachable again


@pytest.mark.slow
def test_the_worker_warns_once_backs_off_and_goes_on(settings, tmp_path):
    ctx = Context.open(settings)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RETRAINER_")}
    env.update({"RETRAINER_HOME": str(settings.home), "PYTHONPATH": str(ROOT), "RETRAINER_POLL_SECONDS": "0.05",
                "RETRAINER_HEARTBEAT_SECONDS": "0.2"})
    log_path = tmp_path / "worker.log"
    with open(log_path, "w") as log:
        worker = subprocess.Popen([sys.executable, "-m", "engine", "worker"], cwd=ROOT, env=env, stdout=log,
                                  stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not any(e["message"].startswith("Worker started") for e in recent_events(ctx.db, kind="worker")):
            assert worker.poll() is None and time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.1)
        with store_held(settings.db_path) as held:
            time.sleep(4)  # 80 polls of 0.05 s
        deadline = time.monotonic() + 60
        while not any(e["message"].startswith("The store was held") for e in recent_events(ctx.db, kind="worker")):
            assert worker.poll() is None and time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.2)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    output = log_path.read_text()
    assert "Traceback" not in output
    assert output.count("holds the store") == 1, output
    assert output.count("the store is reachable again after") == 1, output
    messages = [e["message"] for e in reversed(recent_events(ctx.db, kind="worker"))]
    assert messages[1].startswith("The store was held by another program for ")

    assert messages[1].endswith(" s; the worker waited and went on (another program holds the store "
                                f"{settings.db_path} open: {Path(sys.executable).resolve().name} (pid {held}). DuckDB "
                                "lets one process open a file for writing; close that program, or read a copy of the "
                                "file instead).")
    assert messages[-1] == "Worker stopped."
