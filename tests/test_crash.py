"""Crash safety: a worker killed by SIGKILL at any step, then restarted, loses and doubles nothing.

Every case copies one prepared store (v0001 retired, v0002 champion, scheduler paused),
puts three spool files of logged queries in front of the worker and queues one command,
then starts a real ``python -m engine worker`` with ``RETRAINER_KILL_AT`` naming a kill
point (``engine.faults``): the process SIGKILLs itself exactly there. The restart runs
in this process (``open_worker`` + ``start``, as the CLI does) and must find:

- the active model loadable with the checksum the pointer and the registry record;
- one 'champion' row, the pointer's version, and the last deployment naming it;
- every repair announced by an event (the exact fixes are expected per case);
- every spooled query stored exactly once, and the spool empty;
- no command left 'running'; queued ones then run to a final state.

A ``Classifier`` killed mid-batch is tested at the end: only what it had not yet
written to the spool may be missing.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pytest

from engine import registry, spool
from engine.classifier import load_serving_model
from engine.clock import ManualClock
from engine.commands import submit
from engine.config import load_settings
from engine.context import Context
from engine.importer import import_file
from engine.retrain import run_cycle
from engine.scheduling import set_paused
from engine.worker import open_worker
from store.commands import FINAL, recent_commands
from store.events import recent_events
from store.models import list_deployments, list_models
from tests.conftest import ROOT, labelled_frame

pytestmark = pytest.mark.slow

FAST = {"RETRAINER_POLL_SECONDS": "0.05", "RETRAINER_HEARTBEAT_SECONDS": "0.5"}
FILES, PER_FILE = 3, 10


# --- the prepared store -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def base_home(tmp_path_factory) -> Path:
    """v0001 then v0002 deployed from the same labelled data; the scheduler paused (no surprise retrains)."""
    root = tmp_path_factory.mktemp("crash-base")
    home = root / "home"
    csv = root / "labelled.csv"
    labelled_frame(15).to_csv(csv, index=False)
    ctx = Context.open(load_settings(env={}, home=home), clock=ManualClock(datetime(2026, 3, 4, 12, 0)))
    assert import_file(ctx, csv, labeled=True).rejected == 0
    assert [run_cycle(ctx, trigger="manual", force=True).status for _ in range(2)] == ["accepted", "accepted"]
    set_paused(ctx, True)
    assert {m["version"]: m["status"] for m in list_models(ctx.db)} == {"v0001": "retired", "v0002": "champion"}
    return home


def copy_store(base: Path, dest: Path) -> Path:
    shutil.copytree(base, dest, ignore=shutil.ignore_patterns("*.lock"))
    return dest


def spool_queries(settings, tag: str) -> list[str]:
    """Three spool files of ten logged queries each, as a Classifier writes them; return their ids."""
    ids = []
    for f in range(FILES):
        records = []
        for i in range(PER_FILE):
            qid = f"{tag}-{f}-{i}"
            ids.append(qid)
            records.append({"k": "q", "id": qid, "ts": "2026-03-04T12:00:00", "text": f"where is my order {f} {i}",
                            "predicted_label": "order_status", "confidence": 0.9, "model_version": "v0002",
                            "source": "test"})
        spool.write_batch(settings.spool_dir, records)
    return ids


def start_worker(home: Path, log_path: Path, **env: str) -> subprocess.Popen:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("RETRAINER_")}
    full_env.update({"RETRAINER_HOME": str(home), "PYTHONPATH": str(ROOT), **FAST, **env})
    with open(log_path, "w") as log:
        return subprocess.Popen([sys.executable, "-m", "engine", "worker"], cwd=ROOT, env=full_env,
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def kill_at(home: Path, point: str, log_path: Path) -> None:
    """Run a worker until it SIGKILLs itself at ``point``; fail if it ends any other way."""
    proc = start_worker(home, log_path, RETRAINER_KILL_AT=point)
    try:
        code = proc.wait(timeout=90)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail(f"the worker never reached {point}:\n{log_path.read_text()}")
    assert code == -signal.SIGKILL, f"worker ended with {code}, not SIGKILL at {point}:\n{log_path.read_text()}"


# --- the cases -----------------------------------------------------------------------------------------

RUNNING = "command #{cid} was left running by a stopped worker: marked failed"
RETRAIN = "retrain #3 was left running by a stopped worker: marked failed"


@dataclass(frozen=True)
class Case:
    point: str                       # RETRAINER_KILL_AT
    command: str                     # what is queued before the worker starts
    fixes: tuple[str, ...]           # what the restart must repair, in order
    command_after: str               # the command's status after the restart and the queue ran
    active: str                      # the version serving at the end
    statuses: dict[str, str] = field(default_factory=dict)  # model statuses at the end
    before: str | None = None        # a first kill, to leave something for a killed repair
    args: dict = field(default_factory=dict)


V2 = {"v0001": "retired", "v0002": "champion"}
V3 = {"v0001": "retired", "v0002": "retired", "v0003": "champion"}
BACK = {"v0001": "champion", "v0002": "retired"}
DEPLOYED_V3 = ("v0003 serves but was recorded as candidate: now recorded as champion",
               "v0002 was recorded as champion but does not serve: now retired",
               "the switch to v0003 was not recorded (crash): deployment recorded now")
ROLLED_BACK = ("v0001 serves but was recorded as retired: now recorded as champion",
               "v0002 was recorded as champion but does not serve: now retired",
               "the switch to v0001 was not recorded (crash): deployment recorded now")

CASES = [
    # ingesting the spool (before any command is taken): the queued retrain then runs after the restart
    Case("ingest_after_read", "retrain", (), "done", "v0003", V3),
    Case("ingest_before_commit", "retrain", (), "done", "v0003", V3),
    Case("ingest_after_commit", "retrain", (), "done", "v0003", V3),
    Case("ingest_after_delete", "retrain", (), "done", "v0003", V3),  # one of the three files deleted
    # taking a command
    Case("command_after_mark_running", "pause", (RUNNING,), "failed", "v0002", V2),
    Case("pause_after_set", "pause", (RUNNING,), "failed", "v0002", V2),
    # a retrain, step by step
    Case("worker_before_cycle", "retrain", (RUNNING,), "failed", "v0002", V2),  # before the retrain row
    Case("cycle_read", "retrain", (RETRAIN, RUNNING), "failed", "v0002", V2),
    Case("cycle_before_fit", "retrain", (RETRAIN, RUNNING), "failed", "v0002", V2),
    Case("cycle_after_fit", "retrain", (RETRAIN, RUNNING), "failed", "v0002", V2),
    Case("save_model_before_write", "retrain", (RETRAIN, RUNNING), "failed", "v0002", V2),
    Case("atomic_write_before_replace", "retrain",
         ("removed the unfinished temporary file .v0003.pkl.{pid}.tmp", RETRAIN, RUNNING), "failed", "v0002", V2),
    Case("atomic_write_after_replace", "retrain",
         (RETRAIN, RUNNING, "v0003.pkl was saved but never recorded (crash): moved to {home}/models/orphans"),
         "failed", "v0002", V2),
    Case("save_model_after_write", "retrain",
         (RETRAIN, RUNNING, "v0003.pkl was saved but never recorded (crash): moved to {home}/models/orphans"),
         "failed", "v0002", V2),
    Case("cycle_after_save", "retrain",
         (RETRAIN, RUNNING, "v0003 was left a candidate by a retrain that did not finish: now recorded as failed"),
         "failed", "v0002", {**V2, "v0003": "failed"}),
    Case("cycle_after_gate", "retrain",
         (RETRAIN, RUNNING, "v0003 was left a candidate by a retrain that did not finish: now recorded as failed"),
         "failed", "v0002", {**V2, "v0003": "failed"}),
    Case("deploy_after_validate", "retrain",
         (RETRAIN, RUNNING, "v0003 was left a candidate by a retrain that did not finish: now recorded as failed"),
         "failed", "v0002", {**V2, "v0003": "failed"}),
    # the pointer's temporary file written, not yet moved over ACTIVE.json (the 2nd atomic write of a retrain)
    Case("atomic_write_before_replace:2", "retrain",
         ("removed the unfinished temporary file .ACTIVE.json.{pid}.tmp", RETRAIN, RUNNING,
          "v0003 was left a candidate by a retrain that did not finish: now recorded as failed"),
         "failed", "v0002", {**V2, "v0003": "failed"}),
    # between switching the active version and recording it
    Case("deploy_after_switch", "retrain", (RETRAIN, RUNNING, *DEPLOYED_V3), "failed", "v0003", V3),
    Case("deploy_after_check", "retrain", (RETRAIN, RUNNING, *DEPLOYED_V3), "failed", "v0003", V3),
    Case("deploy_before_event", "retrain", (RETRAIN, RUNNING, *DEPLOYED_V3), "failed", "v0003", V3),
    # the retrain recorded, its command not yet finished
    Case("worker_after_cycle", "retrain", (RUNNING,), "failed", "v0003", V3),
    Case("commands_before_commit", "retrain", (RUNNING,), "failed", "v0003", V3),
    # a rollback, step by step
    Case("rollback_before_deploy", "rollback", (RUNNING,), "failed", "v0002", V2),
    Case("atomic_write_after_replace", "rollback", (RUNNING, *ROLLED_BACK), "failed", "v0001", BACK),
    Case("rollback_after_deploy", "rollback", (RUNNING,), "failed", "v0001", BACK),
    Case("worker_after_rollback", "rollback", (RUNNING,), "failed", "v0001", BACK),
    Case("commands_before_commit", "rollback", (RUNNING,), "failed", "v0001", BACK),
    # the restart itself killed while repairing what a crash between switch and record left
    Case("repair_after_running", "retrain", DEPLOYED_V3, "failed", "v0003", V3, before="deploy_after_switch"),
    Case("repair_after_pointer", "retrain", (), "failed", "v0003", V3, before="deploy_after_switch"),
    Case("repair_before_orphan_move", "retrain",
         ("v0003.pkl was saved but never recorded (crash): moved to {home}/models/orphans",), "failed", "v0002", V2,
         before="save_model_after_write"),
]


def case_id(case: Case) -> str:
    return f"{case.point.replace(':', '#')}-{case.command}" + (f"-after-{case.before}" if case.before else "")


def test_the_cases_cover_at_least_20_distinct_kill_points():
    points = {c.point.partition(":")[0] for c in CASES} | {c.before for c in CASES if c.before}
    assert len(points) == 28


@dataclass
class Killed:
    """A store a worker died in: what the case prepared and what the corpse left."""
    settings: object
    command_id: int
    query_ids: list
    pid: str


def prepare_and_kill(case: Case, base: Path, root: Path) -> Killed:
    root.mkdir(parents=True)
    home = copy_store(base, root / "home")
    settings = load_settings(env={}, home=home, poll_seconds=0.05, heartbeat_seconds=0.5)
    ctx = Context.open(settings)
    ids = spool_queries(settings, "crash")
    # Every retrain here is on unchanged data: --force, so it trains rather than being skipped.
    cid = submit(ctx, case.command, args={"force": True, **case.args} if case.command == "retrain" else case.args,
                 source="test")
    if case.before:
        kill_at(home, case.before, root / "worker-before.log")
    kill_at(home, case.point, root / "worker.log")
    # The pid in a temporary file's name is the dead worker's: read it from the leftover itself.
    leftovers = sorted(p.name for p in settings.registry_dir.glob(".*.tmp"))
    return Killed(settings, cid, ids, leftovers[0].split(".")[-2] if leftovers else "?")


@pytest.fixture(scope="module")
def killed(base_home, tmp_path_factory):
    """Every case's worker, started and killed a few at a time (they are independent: each has its own store)."""
    root = tmp_path_factory.mktemp("crash-cases")
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {case_id(c): pool.submit(prepare_and_kill, c, base_home, root / case_id(c)) for c in CASES}
        yield futures
        for future in futures.values():
            future.cancel()


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_a_worker_killed_at_a_point_is_repaired_at_restart(case, killed):
    k = killed[case_id(case)].result(timeout=600)  # a kill that went wrong fails here
    settings, cid, ids, pid, home = k.settings, k.command_id, k.query_ids, k.pid, k.settings.home
    ctx = Context.open(settings)

    worker, lock = open_worker(Context.open(settings), synchronous=True)
    try:
        fixes = worker.start()
        expected = [f.format(cid=cid, pid=pid, home=home) for f in case.fixes]
        assert fixes == expected
        # Every fix was announced by an event, stored with the fix (a killed repair's events included).
        repair_events = [e["message"] for e in reversed(recent_events(ctx.db, kind="repair", limit=100))]
        assert repair_events[len(repair_events) - len(fixes):] == [f"Start-up repair: {f}." for f in fixes]
        assert not any(c["status"] == "running" for c in recent_commands(ctx.db, limit=100))

        worker.ingest()
        worker.process_commands()  # a command the dead worker never took runs now
    finally:
        worker.shutdown()
        lock.release()

    assert_consistent(ctx, settings, case)
    assert_stored_once(ctx, settings, ids)
    commands = recent_commands(ctx.db, limit=100)
    assert [(c["id"], c["status"]) for c in commands] == [(cid, case.command_after)]
    assert all(c["status"] in FINAL for c in commands)


def assert_consistent(ctx, settings, case: Case) -> None:
    """Pointer, registry rows, deployments and the file on disk tell one story."""
    pointer = registry.read_active(settings.registry_dir)
    loaded, status = load_serving_model(settings.registry_dir)
    assert (loaded.version, status.fallback_reason) == (case.active, None)
    models = {m["version"]: m for m in list_models(ctx.db)}
    assert {v: m["status"] for v, m in models.items()} == case.statuses
    assert pointer.active.version == case.active
    data = registry.model_file(settings.registry_dir, case.active).read_bytes()
    assert hashlib.sha256(data).hexdigest() == pointer.active.sha256 == models[case.active]["sha256"]
    assert list_deployments(ctx.db, limit=1)[0]["version"] == case.active
    assert sorted(p.name for p in settings.registry_dir.glob(".*.tmp")) == []


def assert_stored_once(ctx, settings, ids: list[str]) -> None:
    with ctx.db.read() as con:
        counts = dict(con.execute("SELECT id, count(*) FROM queries WHERE id LIKE 'crash-%' GROUP BY id").fetchall())
    assert counts == {qid: 1 for qid in ids}
    assert spool.pending(settings.spool_dir) == []


# --- a serving process killed mid-batch -------------------------------------------------------------------

CLASSIFIER_SCRIPT = r"""
import sys, time
from engine.classifier import Classifier
out = sys.argv[1]
clf = Classifier(background=False)
def batch(n, tag):
    return [p.query_id for p in clf.predict_many([f"where is my order {tag} {i}" for i in range(n)])]
flushed = batch(40, "a") + batch(40, "b")
clf.flush()                                    # on disk: may not be lost
open(out + ".flushed", "w").write("\n".join(flushed))
buffered = batch(25, "c")                      # only in memory
open(out + ".buffered", "w").write("\n".join(buffered))
if sys.argv[2] == "flush-again":
    clf.flush()                                # with RETRAINER_KILL_AT=spool_before_replace:2 it dies in here
print("ready", flush=True)
time.sleep(600)
"""


@pytest.mark.parametrize(
    ("kill_at_point", "lost_buffered"),
    [(None, True), ("spool_before_replace:2", True)],
    ids=["killed-with-a-full-buffer", "killed-while-writing-the-buffer"],
)
def test_a_classifier_killed_mid_batch_loses_only_what_it_had_not_written(kill_at_point, lost_buffered, base_home, tmp_path):
    home = copy_store(base_home, tmp_path / "home")
    settings = load_settings(env={}, home=home)
    out = tmp_path / "ids"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RETRAINER_")}
    env.update({"RETRAINER_HOME": str(home), "PYTHONPATH": str(ROOT), "RETRAINER_FLUSH_ROWS": "1000000",
                "RETRAINER_FLUSH_SECONDS": "60"})
    if kill_at_point is not None:
        env["RETRAINER_KILL_AT"] = kill_at_point
    # Without a kill point the 25 stay in memory (no second flush) until the test kills the process.
    mode = "keep-buffer" if kill_at_point is None else "flush-again"
    proc = subprocess.Popen([sys.executable, "-c", CLASSIFIER_SCRIPT, str(out), mode], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        if kill_at_point is None:
            assert proc.stdout.readline() == "ready\n", proc.stderr.read()
            proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=60) == -signal.SIGKILL, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    flushed = (out.with_suffix(".flushed")).read_text().split("\n")
    buffered = (out.with_suffix(".buffered")).read_text().split("\n")
    assert (len(flushed), len(buffered)) == (80, 25)
    # A write cut short leaves at most a temporary file, which is never ingested.
    tmp_files = list(settings.spool_dir.glob(".*.tmp"))
    assert len(tmp_files) == (0 if kill_at_point is None else 1)

    ctx = Context.open(settings)
    worker, lock = open_worker(ctx, synchronous=True)
    try:
        worker.start()
        worker.ingest()
    finally:
        worker.shutdown()
        lock.release()
    with ctx.db.read() as con:
        stored = dict(con.execute("SELECT id, count(*) FROM queries WHERE source = 'classifier' GROUP BY id").fetchall())
    assert stored == {qid: 1 for qid in flushed}  # every flushed query once; the buffered ones are the loss
    assert set(buffered).isdisjoint(stored) is lost_buffered
