"""Faults in the environment: a full disk, a damaged or deleted model file, an unusable data directory.

A full disk is injected (``engine.faults.arm`` raising ``OSError(ENOSPC)`` at the exact
step where a real one would hit); files, the store and worker processes are real.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import sqlite3
import subprocess
from datetime import datetime
from pathlib import Path

import pytest

from engine import faults, registry, spool
from engine.classifier import Classifier
from engine.clock import ManualClock
from engine.config import load_settings
from engine.context import Context
from engine.importer import import_file
from engine.lock import WorkerLock
from engine.retrain import run_cycle
from engine.status import system_status
from engine.worker import Worker
from store.events import recent_events
from store.models import list_models
from tests.conftest import labelled_frame, run_cli


@pytest.fixture(scope="module")
def two_versions(tmp_path_factory) -> Path:
    """A store with v0001 (retired) and v0002 (active), built once; tests copy it."""
    root = tmp_path_factory.mktemp("faults-base")
    csv = root / "labelled.csv"
    labelled_frame(15).to_csv(csv, index=False)
    ctx = Context.open(load_settings(env={}, home=root / "home"), clock=ManualClock(datetime(2026, 3, 4, 12, 0)))
    import_file(ctx, csv, labeled=True)
    assert [run_cycle(ctx, trigger="manual", force=True).status for _ in range(2)] == ["accepted", "accepted"]
    return root / "home"


@pytest.fixture
def store(two_versions, tmp_path):
    home = tmp_path / "home"
    shutil.copytree(two_versions, home, ignore=shutil.ignore_patterns("*.lock"))
    settings = load_settings(env={}, home=home, flush_seconds=0.05, reload_seconds=0.1)
    return Context.open(settings, clock=ManualClock(datetime(2026, 3, 5, 9, 0)))


def disk_full():
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- a full disk ---------------------------------------------------------------------------------------


def test_disk_full_while_saving_a_model_fails_the_cycle_and_deploys_nothing(store, armed):
    ctx = store
    pointer_before = (ctx.settings.registry_dir / registry.ACTIVE_FILE).read_bytes()
    armed("atomic_write_before_replace", disk_full)  # the temporary file is written, the rename never happens

    result = run_cycle(ctx, trigger="manual", force=True)

    assert (result.status, result.reason, result.deployed) == (
        "failed", "unexpected error: OSError: [Errno 28] No space left on device", False)
    assert (ctx.settings.registry_dir / registry.ACTIVE_FILE).read_bytes() == pointer_before
    assert sorted(p.name for p in ctx.settings.registry_dir.iterdir()) == [
        "ACTIVE.json", "v0001.pkl", "v0001.probe.json", "v0002.pkl", "v0002.probe.json"]
    assert {m["version"]: m["status"] for m in list_models(ctx.db)} == {"v0001": "retired", "v0002": "champion"}
    event = recent_events(ctx.db, kind="retrain", limit=1)[0]
    assert (event["severity"], event["message"]) == (
        "error", "Retrain #3 (manual) failed: unexpected error: OSError: [Errno 28] No space left on device")


def test_disk_full_while_deploying_keeps_the_previous_pointer(store, armed):
    """The model file was saved; writing the new pointer hits the full disk: v0002 keeps serving."""
    ctx = store
    calls = []

    def full_on_second_write():  # the 1st atomic write of a cycle is the model, the 2nd the pointer
        calls.append(1)
        if len(calls) == 2:
            disk_full()

    armed("atomic_write_before_replace", full_on_second_write)
    result = run_cycle(ctx, trigger="manual", force=True)

    assert (result.status, result.candidate, result.deployed) == ("failed", "v0003", False)
    assert result.reason == "unexpected error: OSError: [Errno 28] No space left on device"
    assert registry.read_active(ctx.settings.registry_dir).active.version == "v0002"
    assert {m["version"]: m["status"] for m in list_models(ctx.db)} == {
        "v0001": "retired", "v0002": "champion", "v0003": "failed"}
    assert list(ctx.settings.registry_dir.glob(".*.tmp")) == []


def test_disk_full_while_writing_a_spool_batch_keeps_the_batch_and_writes_it_later(store, armed):
    ctx = store
    clf = Classifier(settings=ctx.settings, background=False)
    ids = [p.query_id for p in clf.predict_many([f"where is my order {i}" for i in range(7)])]
    armed("spool_before_replace", disk_full)

    with pytest.raises(OSError, match="No space left on device"):
        clf.flush()
    assert spool.pending(ctx.settings.spool_dir) == []
    assert list(ctx.settings.spool_dir.glob(".*.tmp")) == []  # no half file left behind
    more = [clf.predict("i want my money back").query_id]

    faults.arm("spool_before_replace", None)  # space again
    clf.close()
    assert len(spool.pending(ctx.settings.spool_dir)) == 1
    Worker(ctx, synchronous=True).ingest()
    with ctx.db.read() as con:
        stored = dict(con.execute("SELECT id, count(*) FROM queries WHERE source = 'classifier' GROUP BY id").fetchall())
    assert stored == {qid: 1 for qid in ids + more}


# --- a damaged or deleted model file -------------------------------------------------------------------


def corrupt(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (corrupt, "model v0002: checksum mismatch (file "),
        (Path.unlink, "model v0002: file {file} is missing"),
    ],
    ids=["corrupted", "deleted"],
)
def test_a_damaged_active_model_is_refused_and_the_fallback_serves_and_is_recorded(store, damage, reason):
    ctx = store
    file = registry.model_file(ctx.settings.registry_dir, "v0002")
    damage(file)
    reason = reason.format(file=file)

    clf = Classifier(settings=ctx.settings, background=False)
    prediction = clf.predict("where is my order")
    status = clf.status()
    assert (prediction.version, prediction.fallback, status.active_version) == ("v0001", True, "v0002")
    assert status.fallback_reason.startswith(f"active model v0002 cannot be loaded ({reason}")
    assert status.fallback_reason.endswith("; serving v0001")
    clf.close()

    worker = Worker(ctx, synchronous=True)
    worker.check_model(force=True)
    worker.ingest()  # the classifier's own fallback event, from its spool
    worker.predictor.close()
    messages = [(e["severity"], e["message"]) for e in reversed(recent_events(ctx.db, kind="fallback"))]
    assert messages == [
        ("error", f"Fallback in use: {status.fallback_reason}."),             # the worker's own check
        ("error", f"A serving process fell back: {status.fallback_reason}."),  # the classifier's, via the spool
    ]
    # What the dashboard's overview shows.
    assert system_status(ctx)["fallback"] == {"reason": status.fallback_reason, "serving": "v0001", "active": "v0002"}


# --- an unusable data directory, a foreign database file, a second worker --------------------------------


def test_a_database_file_that_is_not_duckdb_stops_the_worker_and_is_not_touched(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    db_path = home / "retrainer.duckdb"
    with sqlite3.connect(db_path) as con:  # somebody's SQLite file where the store should be
        con.execute("CREATE TABLE t (x INTEGER)")
        con.execute("INSERT INTO t VALUES (42)")
    before = sha(db_path)

    done = run_cli("worker", home=home, timeout=60)

    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        f"error: {db_path} is not a DuckDB database file written by this version of Retrainer; "
        "move it away or point RETRAINER_HOME at another directory (nothing was changed)")
    assert "Traceback" not in done.stderr
    assert sha(db_path) == before


def test_a_data_directory_under_a_file_stops_the_worker_naming_the_path(tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the data directory should be")
    home = blocker / "home"

    done = run_cli("worker", home=home, timeout=60)

    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        f"error: cannot create the data directory {home}: Not a directory (set RETRAINER_HOME to a writable directory)")
    assert blocker.read_text() == "a file where the data directory should be"


@pytest.fixture
def read_only_store(store, tmp_path):
    """The store on a tmpfs remounted read-only (needs mount privileges: skipped without them)."""
    mnt = tmp_path / "ro"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("no privilege to mount a tmpfs: the read-only case is covered by the file-as-directory test")
    try:
        shutil.copytree(store.settings.home, mnt / "home", ignore=shutil.ignore_patterns("*.lock"))
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
        yield mnt / "home"
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def test_a_read_only_data_directory_stops_the_worker_naming_the_path(read_only_store):
    home = read_only_store
    before = sha(home / "retrainer.duckdb")

    done = run_cli("worker", home=home, timeout=60)

    assert sha(home / "retrainer.duckdb") == before  # nothing overwritten, whatever the message
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert str(home) in done.stderr.strip().splitlines()[-1]


def test_a_second_worker_is_refused(store):
    lock = WorkerLock(store.settings.worker_lock_path).acquire()  # the first worker: this process
    try:
        done = run_cli("worker", home=store.settings.home, timeout=60)
    finally:
        lock.release()
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith(
        f"error: a worker is already running on {store.settings.home} (pid {os.getpid()} on ")
    assert "Traceback" not in done.stderr


def test_a_model_from_another_scikit_learn_is_refused_and_a_retrain_is_requested(settings, tmp_path):
    """The pointer says the active version was pickled by another scikit-learn and it has no fingerprint to
    verify it against: it is never loaded, the previous version serves, and the worker asks for a retrain
    that deploys a fresh model. (With a fingerprint it would be verified: tests/test_verified_load.py.)"""
    import dataclasses

    from engine import registry
    from engine.context import Context
    from engine.importer import import_file
    from engine.retrain import run_cycle
    from engine.worker import Worker
    from store.events import recent_events
    from store.retrains import recent_retrains
    from tests.conftest import labelled_frame

    ctx = Context.open(settings)
    path = tmp_path / "labelled.csv"
    labelled_frame().to_csv(path, index=False)
    import_file(ctx, path, labeled=True)
    assert run_cycle(ctx, trigger="manual", force=True).status == "accepted"
    assert run_cycle(ctx, trigger="manual", force=True).status in ("accepted", "rejected")
    pointer = registry.read_active(settings.registry_dir)
    if not pointer.history:  # the second cycle was rejected: deploy it by hand to get two versions
        pytest.skip("needs two deployed versions")
    registry.fingerprint_file(settings.registry_dir, pointer.active.version).unlink()
    stale = dataclasses.replace(pointer.active, sklearn_version="0.24.2")
    registry.write_active(settings.registry_dir, dataclasses.replace(pointer, active=stale))

    worker = Worker(ctx, synchronous=True)
    worker.check_model(force=True)

    retrains = recent_retrains(ctx.db, limit=1)
    assert retrains[0]["trigger"] == "fallback"
    assert retrains[0]["status"] == "accepted"
    messages = [e["message"] for e in recent_events(ctx.db, limit=20)]
    assert any("was pickled by scikit-learn 0.24.2" in m and m.startswith("Fallback in use") for m in messages)
    assert any(m.startswith("Retrain requested because the active model comes from another scikit-learn") for m in messages)
    fresh = registry.read_active(settings.registry_dir).active
    assert fresh.version == retrains[0]["candidate_version"] and fresh.sklearn_version == registry.SKLEARN_VERSION
