"""A damaged home (issue 13, cases 13, 16, 17): a full disk at start, a deleted lock file, control during a retrain.

Each case was found against a real worker: with the disk full it exited 1 with a DuckDB traceback;
after ``rm worker.lock`` a second worker started and both took commands; a rollback or a pause
queued during a long retrain waited behind it for over 90 s.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time

import pytest

from engine import faults, registry
from engine.commands import submit
from engine.config import load_settings
from engine.context import Context
from engine.importer import import_file
from engine.lock import WorkerLock, read_holder, worker_running
from engine.retrain import run_cycle
from engine.scheduling import is_paused
from engine.worker import Worker
from store.commands import get_command
from store.retrains import recent_retrains
from tests.conftest import ROOT
from tests.test_worker import Workers, wait_exit, wait_started, worker_events


def wait_for(condition, *, timeout: float = 30.0, what: str = "the condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout} s"
        time.sleep(0.05)


@pytest.fixture
def workers(settings, tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    pool = Workers(settings.home, logs)
    yield pool
    pool.stop_all()


# --- 16: single instance without a file that can be deleted ------------------------------------------------


@pytest.mark.slow
def test_deleting_worker_lock_does_not_let_a_second_worker_start(ctx, settings, workers):
    first = workers.start()
    wait_started(ctx, first)
    settings.worker_lock_path.unlink()          # the report's `rm worker.lock`
    assert worker_running(settings.worker_lock_path) == {}  # still running; who is unknown for a moment

    second = workers.start()
    assert wait_exit(second, timeout=60) == 2
    assert "a worker is already running on" in workers.output(second)
    assert first.poll() is None
    # The first worker writes the holder file again with its next heartbeat (every 0.5 s here).
    wait_for(lambda: (read_holder(settings.worker_lock_path) or {}).get("pid") == first.pid, what="the holder file")
    assert worker_running(settings.worker_lock_path)["pid"] == first.pid


def test_the_lock_is_on_the_directory_in_process(settings):
    settings.home.mkdir(parents=True)
    lock = WorkerLock(settings.worker_lock_path).acquire()
    try:
        settings.worker_lock_path.unlink()
        with pytest.raises(Exception, match="a worker is already running on"):
            WorkerLock(settings.worker_lock_path).acquire()
    finally:
        lock.release()
    assert worker_running(settings.worker_lock_path) is None
    WorkerLock(settings.worker_lock_path).acquire().release()  # free again once released


# --- 17: control commands at once while a retrain runs --------------------------------------------------------


@pytest.fixture
def two_versions(ctx, labelled_csv):
    import_file(ctx, labelled_csv, labeled=True)
    assert run_cycle(ctx, trigger="manual").candidate == "v0001"
    assert run_cycle(ctx, trigger="manual", force=True).candidate == "v0002"  # the same data: forced
    return ctx


@pytest.fixture
def held_after_gate():
    """The next retrain cycle stops after its gate (before deploying) until released."""
    reached, release = threading.Event(), threading.Event()

    def hold():
        reached.set()
        release.wait(timeout=120)

    faults.arm("cycle_after_gate", hold)
    yield reached, release
    release.set()
    faults.arm("cycle_after_gate", None)


def test_rollback_and_pause_run_at_once_during_a_retrain_which_then_does_not_deploy(two_versions, held_after_gate):
    ctx = two_versions
    reached, release = held_after_gate
    worker = Worker(ctx, synchronous=False)
    worker.start(schedule=False)
    try:
        retrain_id = submit(ctx, "retrain", args={"force": True}, source="test")  # the same data: forced
        worker.process_commands()
        assert reached.wait(timeout=60), "the retrain did not reach its gate"
        rollback_id = submit(ctx, "rollback", source="test")
        pause_id = submit(ctx, "pause", source="test")
        worker.process_commands()  # what the loop does every poll_seconds

        assert get_command(ctx.db, pause_id)["status"] == "done" and is_paused(ctx)
        wait_for(lambda: get_command(ctx.db, rollback_id)["status"] == "done", timeout=60, what="the rollback")
        assert registry.read_active(ctx.settings.registry_dir).active.version == "v0001"
        assert not release.is_set() and get_command(ctx.db, retrain_id)["status"] == "running"  # still held

        release.set()
        wait_for(lambda: get_command(ctx.db, retrain_id)["status"] != "running", timeout=120, what="the retrain")
    finally:
        release.set()
        worker.stop_event.set()
        worker._executor.join(timeout=60)
        worker.shutdown()
    active = registry.read_active(ctx.settings.registry_dir).active.version
    assert active == "v0001"  # the candidate judged against v0002 never replaced the rollback
    message = get_command(ctx.db, retrain_id)["message"]
    assert "the active version changed from v0002 to v0001 while this retrain ran (a rollback)" in message, message
    third = max(recent_retrains(ctx.db), key=lambda r: r["id"])
    assert (third["status"], third["candidate_version"]) == ("rejected", "v0003")


def test_with_no_worker_a_cli_retrain_takes_control_commands_while_it_runs(two_versions, held_after_gate, capsys):
    """`retrain --wait` with no worker runs the retrain in the CLI; a pause or rollback sent meanwhile runs at once."""
    from engine import cli

    ctx = two_versions
    reached, release = held_after_gate
    outcome = {}
    runner = threading.Thread(target=lambda: outcome.setdefault(
        "code", cli._run_command(ctx.settings, "retrain", {"force": True}, wait=True, source="test")))
    runner.start()
    try:
        assert reached.wait(timeout=60), "the CLI's retrain did not reach its gate"
        pause_id = submit(ctx, "pause", source="test")
        rollback_id = submit(ctx, "rollback", source="test")
        wait_for(lambda: get_command(ctx.db, pause_id)["status"] == "done", timeout=60, what="the pause")
        wait_for(lambda: get_command(ctx.db, rollback_id)["status"] == "done", timeout=60, what="the rollback")
        assert is_paused(ctx) and registry.read_active(ctx.settings.registry_dir).active.version == "v0001"
        assert runner.is_alive()  # the retrain is still held at its gate
    finally:
        release.set()
        runner.join(timeout=120)
    assert outcome["code"] == 0
    assert "the active version changed from v0002 to v0001 while this retrain ran" in capsys.readouterr().out
    assert registry.read_active(ctx.settings.registry_dir).active.version == "v0001"


# --- 13: a full disk when the worker starts ---------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    """A 16 MB tmpfs of its own (skipped where this user may not mount)."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({done.stderr.strip() or done.returncode}); "
                    "tests/test_faults.py covers a full disk during ingest")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


@pytest.mark.slow
def test_a_full_disk_at_start_is_named_and_the_worker_keeps_serving(small_disk, tmp_path):
    home = small_disk / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RETRAINER_")}
    env.update(RETRAINER_HOME=str(home), PYTHONPATH=str(ROOT), RETRAINER_POLL_SECONDS="0.05",
               RETRAINER_HEARTBEAT_SECONDS="0.5")
    Context.open(load_settings(env={}, home=home))  # the empty store, made while there is room
    filler = small_disk / "filler"
    subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=64k"], capture_output=True)
    assert shutil.disk_usage(small_disk).free < 2**20

    log = tmp_path / "worker.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "engine", "worker"], cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        wait_for(lambda: "disk full at" in log.read_text(), timeout=60, what="the disk-full message")
        time.sleep(1.0)
        assert proc.poll() is None, log.read_text()  # still running: serving processes keep spooling to it
        text = log.read_text()
        assert f"disk full at {home}, free 0 MB: make room there" in text
        assert "Traceback" not in text and "CHECKPOINT" not in text

        filler.unlink()  # room again: the worker finishes its start by itself
        ctx = Context.open(load_settings(env={}, home=home))
        wait_for(lambda: f"Worker started (pid {proc.pid})." in worker_events(ctx), timeout=60,
                 what="the start event after space was freed")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert proc.returncode == 0
