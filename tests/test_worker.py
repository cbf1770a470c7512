"""Tests for engine.worker: one worker per data directory, clean stops, commands, one retrain at a time, crash repair.

Workers run as real ``python -m engine worker`` subprocesses on the test's data directory;
the test process talks to them only through the store (commands, events), as the
dashboard and the CLI do.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest

from engine import faults
from engine.commands import submit, wait_for
from engine.context import Context
from engine.importer import import_file
from engine.lock import worker_running
from engine.scheduling import is_paused
from engine.worker import Worker, open_worker
from store.commands import get_command
from store.events import recent_events
from store.models import list_models
from store.retrains import get_retrain, recent_retrains
from tests.conftest import ROOT

STARTUP_TIMEOUT = 60.0
FAST = {"RETRAINER_POLL_SECONDS": "0.05", "RETRAINER_HEARTBEAT_SECONDS": "0.5"}


class Workers:
    """Worker subprocesses started by one test; each is ended at teardown (by its own pid)."""

    def __init__(self, home: Path, logs: Path):
        self.home = home
        self.logs = logs
        self.procs: list[subprocess.Popen] = []

    def start(self, **env: str) -> subprocess.Popen:
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("RETRAINER_")}
        full_env.update({"RETRAINER_HOME": str(self.home), "PYTHONPATH": str(ROOT), **FAST, **env})
        log = open(self.logs / f"worker-{len(self.procs)}.log", "w")
        proc = subprocess.Popen([sys.executable, "-m", "engine", "worker"], cwd=ROOT, env=full_env,
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        proc.log_path = log.name
        log.close()
        self.procs.append(proc)
        return proc

    @staticmethod
    def output(proc: subprocess.Popen) -> str:
        return Path(proc.log_path).read_text()

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


@pytest.fixture
def workers(settings, tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    pool = Workers(settings.home, logs)
    yield pool
    pool.stop_all()


@pytest.fixture
def labelled(ctx, labelled_csv):
    """The store with 40 labelled examples per intent, labelled long before the workers' (real) clock."""
    ctx.clock.set(datetime(2020, 1, 1))
    report = import_file(ctx, labelled_csv, labeled=True)
    assert report.rejected == 0
    return ctx


def worker_events(ctx) -> list[str]:
    return [e["message"] for e in reversed(recent_events(ctx.db, kind="worker", limit=100))]


def wait_started(ctx, proc: subprocess.Popen) -> None:
    """Until the worker has recorded its start (after the lock, repair and signal handlers)."""
    expected = f"Worker started (pid {proc.pid})."
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while expected not in worker_events(ctx):
        if proc.poll() is not None:
            pytest.fail(f"worker exited with {proc.returncode}:\n{Workers.output(proc)}")
        if time.monotonic() > deadline:
            pytest.fail(f"worker did not start within {STARTUP_TIMEOUT}s:\n{Workers.output(proc)}")
        time.sleep(0.05)


def wait_exit(proc: subprocess.Popen, timeout: float = 30.0) -> int:
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"worker {proc.pid} still runs after {timeout}s:\n{Workers.output(proc)}")


# --- one worker per data directory, clean stops ---------------------------------------------------


def assert_stops_cleanly(ctx, workers, proc, signum) -> None:
    proc.send_signal(signum)
    assert wait_exit(proc, timeout=15) == 0
    assert "worker stopped cleanly" in workers.output(proc)
    assert worker_events(ctx)[-1] == "Worker stopped."
    assert worker_running(ctx.settings.worker_lock_path) is None


@pytest.mark.slow
def test_a_second_worker_exits_2_naming_the_first(ctx, settings, workers):
    first = workers.start()
    wait_started(ctx, first)
    assert worker_running(settings.worker_lock_path)["pid"] == first.pid

    second = workers.start()
    assert wait_exit(second) == 2
    out = workers.output(second)
    assert f"error: a worker is already running on {settings.home} (pid {first.pid} on " in out
    assert "one worker per data directory: stop that one first, or let it do the work" in out
    assert "Traceback" not in out
    assert first.poll() is None  # the refusal did not disturb the first worker

    assert_stops_cleanly(ctx, workers, first, signal.SIGTERM)
    assert worker_events(ctx) == [f"Worker started (pid {first.pid}).", "Worker stopped."]


@pytest.mark.slow
def test_sigint_stops_the_worker_cleanly(ctx, workers):
    worker = workers.start()
    wait_started(ctx, worker)
    assert_stops_cleanly(ctx, workers, worker, signal.SIGINT)
    assert worker_events(ctx) == [f"Worker started (pid {worker.pid}).", "Worker stopped."]


# --- commands against a running worker -------------------------------------------------------------


@pytest.mark.slow
def test_commands_end_in_final_states(labelled, workers):
    ctx = labelled
    # Queued while no worker runs: it waits, it is not lost.
    first_retrain = submit(ctx, "retrain", args={"force": True}, source="test")
    time.sleep(0.3)
    assert get_command(ctx.db, first_retrain)["status"] == "queued"

    worker = workers.start()
    wait_started(ctx, worker)
    row = wait_for(ctx, first_retrain, timeout=90, poll=0.05)
    assert (row["status"], row["progress"]) == ("done", 1.0)
    assert row["message"] == f"retrain #1 accepted: {get_retrain(ctx.db, 1)['reason']}"
    assert row["message"].startswith("retrain #1 accepted: Accepted as the first model: accuracy ")
    assert row["started_at"] is not None and row["finished_at"] is not None

    def run(kind, **args):
        row = wait_for(ctx, submit(ctx, kind, args=args, source="test"), timeout=90, poll=0.05)
        return row["status"], row["message"]

    assert run("pause") == ("done", "scheduler paused")
    assert is_paused(ctx) is True
    assert run("resume") == ("done", "scheduler resumed")
    assert is_paused(ctx) is False
    assert run("rollback") == (
        "failed", "rollback refused: v0001 is the only version ever deployed: there is no earlier version to roll back to")
    assert run("rollback", to="v0099") == (
        "failed", "rollback refused: version v0099 does not exist: deployable versions are v0001")

    # The same data again, forced (otherwise skipped as unchanged): an identical candidate, accepted since
    # nothing got worse.
    status, message = run("retrain", force=True)
    reason = get_retrain(ctx.db, 2)["reason"]
    assert reason.startswith("Accepted: ")  # the summary leaves out the decision word it already says
    assert (status, message) == ("done", f"retrain #2 accepted: {reason.removeprefix('Accepted: ')}")
    assert message.startswith("retrain #2 accepted: no metric got worse. (accuracy ")
    assert run("rollback") == ("done", "Rolled back from v0002 to v0001 (requested from test (command #7)).")
    assert {m["version"]: m["status"] for m in list_models(ctx.db)} == {"v0001": "champion", "v0002": "retired"}

    assert_stops_cleanly(ctx, workers, worker, signal.SIGTERM)
    scheduler_events = [e["message"] for e in reversed(recent_events(ctx.db, kind="scheduler"))]
    assert scheduler_events == ["Scheduler paused (command #2, from test).", "Scheduler resumed (command #3, from test)."]


# --- never two retrains at once ----------------------------------------------------------------------


@pytest.fixture
def hold_first_cycle():
    """Hold each retrain at 'worker_before_cycle' until released; say when the first got there."""
    reached, release = threading.Event(), threading.Event()

    def gate():
        reached.set()
        release.wait(timeout=60)

    faults.arm("worker_before_cycle", gate)
    yield reached, release
    release.set()
    faults.arm("worker_before_cycle", None)


def test_never_two_retrains_at_once(settings, labelled_csv, hold_first_cycle):
    reached, release = hold_first_cycle
    ctx = Context.open(settings)  # the real clock: the retrains' intervals are compared
    import_file(ctx, labelled_csv, labeled=True)
    worker = Worker(ctx, synchronous=False)
    worker.start()
    try:
        assert worker.request_retrain("manual", "first") == "retrain started"
        assert reached.wait(timeout=30)
        # The same data: forced, so the second trains rather than being skipped as unchanged.
        assert worker.request_retrain("weekly", "second", force=True) == "queued behind the running task"
        assert worker.request_retrain("adaptive", "third") == "joined the retrain already waiting (weekly)"
        release.set()
        deadline = time.monotonic() + 90
        while len([r for r in recent_retrains(ctx.db) if r["status"] != "running"]) < 2 or worker._running or worker._tasks:
            assert time.monotonic() < deadline, "the retrains did not finish"
            time.sleep(0.05)
    finally:
        release.set()
        worker.stop_event.set()
        worker._executor.join(timeout=30)
        worker.shutdown()
    retrains = sorted(recent_retrains(ctx.db), key=lambda r: r["id"])
    assert [(r["trigger"], r["status"]) for r in retrains] == [("manual", "accepted"), ("weekly", "accepted")]
    first, second = retrains
    assert first["started_at"] < first["finished_at"] <= second["started_at"] < second["finished_at"]


# --- a task that crashes --------------------------------------------------------------------------------


def test_a_crashing_retrain_fails_its_command_and_the_worker_goes_on(labelled):
    ctx = labelled
    worker = Worker(ctx, synchronous=True)

    def out_of_memory():
        raise RuntimeError("out of memory")

    faults.arm("worker_before_cycle", out_of_memory)
    try:
        crashed = submit(ctx, "retrain", args={"force": True}, source="test")
        worker.process_commands()
    finally:
        faults.arm("worker_before_cycle", None)
    row = get_command(ctx.db, crashed)
    assert (row["status"], row["message"]) == ("failed", "the retrain crashed: RuntimeError: out of memory")
    event = recent_events(ctx.db, kind="worker", limit=1)[0]
    assert (event["severity"], event["message"]) == (
        "error", f"The retrain (requested from test (command #{crashed})) crashed: RuntimeError: out of memory.")

    again = submit(ctx, "retrain", args={"force": True}, source="test")
    worker.process_commands()
    assert get_command(ctx.db, again)["status"] == "done"
    assert [(r["id"], r["status"]) for r in recent_retrains(ctx.db)] == [(1, "accepted")]
    worker.predictor.close()


# --- a crash mid-command is repaired at the next start ----------------------------------------------


@pytest.mark.slow
def test_a_command_running_when_the_worker_is_killed_is_failed_at_the_next_start(labelled, workers):
    ctx = labelled
    doomed = workers.start(RETRAINER_KILL_AT="cycle_before_fit")
    wait_started(ctx, doomed)
    command = submit(ctx, "retrain", args={"force": True}, source="test")
    assert wait_exit(doomed, timeout=90) == -signal.SIGKILL
    assert get_command(ctx.db, command)["status"] == "running"
    assert get_retrain(ctx.db, 1)["status"] == "running"

    # The next worker start (in this process: the same open_worker + start the CLI runs).
    expected_fixes = [
        "retrain #1 was left running by a stopped worker: marked failed",
        f"command #{command} was left running by a stopped worker: marked failed",
    ]
    worker, lock = open_worker(Context.open(ctx.settings), synchronous=True)
    try:
        assert worker.start() == expected_fixes
    finally:
        worker.shutdown()
        lock.release()

    row = wait_for(ctx, command, timeout=5, poll=0.05)
    assert (row["status"], row["message"]) == ("failed", "the worker stopped while this command ran; run it again")
    retrain = get_retrain(ctx.db, 1)
    assert (retrain["status"], retrain["reason"]) == ("failed", "the worker stopped while this retrain ran")
    assert retrain["finished_at"] is not None
    repairs = [e["message"] for e in reversed(recent_events(ctx.db, kind="repair"))]
    assert repairs == [f"Start-up repair: {fix}." for fix in expected_fixes]
    started = next(e for e in recent_events(ctx.db, kind="worker") if e["message"] == f"Worker started (pid {os.getpid()}).")
    assert started["details"]["repairs"] == expected_fixes
    assert [r["id"] for r in recent_retrains(ctx.db)] == [1]  # nothing re-ran it behind the user's back
    # The killed worker could not say goodbye; the next one did.
    assert worker_events(ctx) == [f"Worker started (pid {doomed.pid}).", f"Worker started (pid {os.getpid()}).", "Worker stopped."]
