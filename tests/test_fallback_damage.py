"""The active model's file damaged while processes run: the worker notices, and says so once.

A running process loads a version when the pointer names it and never again, so a file truncated
afterwards changed nothing for the worker or the API: `status` said "fallback no" for minutes while
every `python -m engine predict` (a new process) fell back and recorded one more error event (a
tester's report). The worker's fallback monitor now checks the active file against its checksum
(one stat while it is unchanged), records the fallback once with what serves where, and events the
serving processes report are stored once per version and problem.

Real store, real fitted models on disk; the last test runs the worker and the API as real processes
and the CLI's `predict` and `status` as the user does.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess

import pytest

from engine import registry
from engine.classifier import Classifier
from engine.context import Context
from engine.importer import import_file
from engine.ingest import ingest_spool
from engine.retrain import run_cycle
from engine.status import system_status
from engine.worker import Worker
from store.events import recent_events
from tests.conftest import run_cli
from tests.test_api_server import ANNOUNCED, _ready, start, wait_until

MEMORY_NOTE = ("processes that loaded v0002 before its file changed keep serving it from memory (it was verified "
               "when loaded) until the next deployment, rollback or their restart")


@pytest.fixture
def served(settings, labelled_csv):
    """v0001 then v0002 trained on the same 800 labelled texts (forced); v0002 serves. A real clock:
    the worker processes of the last test stamp their events with it too."""
    ctx = Context.open(settings)
    import_file(ctx, labelled_csv, labeled=True)
    assert run_cycle(ctx, trigger="manual").candidate == "v0001"
    assert run_cycle(ctx, trigger="manual", force=True).candidate == "v0002"
    return ctx


def damage(ctx, version: str, size: int = 1000) -> bytes:
    """Truncate ``version``'s file to ``size`` bytes (`truncate -s 1000`); return what it held."""
    path = registry.model_file(ctx.settings.registry_dir, version)
    intact = path.read_bytes()
    os.truncate(path, size)
    return intact


def checksum_problem(ctx, version: str) -> str:
    row = registry.read_active(ctx.settings.registry_dir)
    ref = row.active if row.active.version == version else next(r for r in row.history if r.version == version)
    data = registry.model_file(ctx.settings.registry_dir, version).read_bytes()
    return (f"model {version}: checksum mismatch (file {registry.sha256_of(data)[:12]}…, registry {ref.sha256[:12]}…): "
            "the file was changed or damaged after it was written; it will not be loaded")


def fallback_events(ctx) -> list[tuple[str, str | None, str]]:
    return [(e["severity"], e["version"], e["message"]) for e in reversed(recent_events(ctx.db, kind="fallback"))]


# --- the file check ------------------------------------------------------------------------------------------


def test_the_file_check_finds_a_changed_missing_or_rewritten_file_and_passes_an_intact_one(served):
    ctx = served
    pointer = registry.read_active(ctx.settings.registry_dir)
    files = registry.FileCheck(ctx.settings.registry_dir)
    path = registry.model_file(ctx.settings.registry_dir, "v0002")
    assert files.problem(pointer.active) is None
    assert files.problem(pointer.active) is None  # unchanged: passes again (one stat)

    intact = path.read_bytes()
    st = os.stat(path)
    flipped = bytearray(intact)
    flipped[len(flipped) // 2] ^= 0xFF  # the same size, and the mtime set back below: only the ctime tells
    path.write_bytes(bytes(flipped))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (os.stat(path).st_size, os.stat(path).st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    assert files.problem(pointer.active) == checksum_problem(ctx, "v0002")

    path.write_bytes(intact)
    assert files.problem(pointer.active) is None
    path.unlink()
    assert files.problem(pointer.active) == f"model v0002: file {path} is missing"


# --- the monitor, in process ----------------------------------------------------------------------------------


def test_the_worker_records_a_file_damaged_after_loading_once_and_running_processes_keep_their_model(served):
    ctx = served
    worker = Worker(ctx, synchronous=True)
    running = Classifier(settings=ctx.settings, log_queries=False, background=False)  # a server started before
    try:
        worker.check_model(force=True)
        assert system_status(ctx)["fallback"] is None and fallback_events(ctx) == []

        intact = damage(ctx, "v0002")
        worker.check_model(force=True)
        reason = f"active model v0002 cannot be loaded ({checksum_problem(ctx, 'v0002')}); serving v0001; {MEMORY_NOTE}"
        assert system_status(ctx)["fallback"] == {"reason": reason, "serving": "v0001", "active": "v0002",
                                                  "in_memory": "v0002"}
        assert fallback_events(ctx) == [("error", "v0002", f"Fallback in use: {reason}.")]
        assert (worker.predictor.status().version, worker.predictor.status().fallback) == ("v0001", True)

        running.reload()  # the pointer did not change: a running server keeps the model it verified
        assert (running.predict("where is my parcel").version, running.status().fallback) == ("v0002", False)

        for _ in range(3):
            worker.check_model(force=True)
        assert len(fallback_events(ctx)) == 1  # recorded once

        registry.model_file(ctx.settings.registry_dir, "v0002").write_bytes(intact)  # the operator restores it
        worker.check_model(force=True)
        assert system_status(ctx)["fallback"] is None
        assert fallback_events(ctx)[1:] == [("info", "v0002", "Fallback over: v0002 serves again.")]
        assert worker.predictor.status() == running.status()
    finally:
        running.close()
        worker.predictor.close()


def test_a_file_damaged_before_the_worker_started_is_the_fallback_without_the_memory_note(served):
    ctx = served
    damage(ctx, "v0002")
    worker = Worker(ctx, synchronous=True)
    try:
        worker.check_model(force=True)
        reason = f"active model v0002 cannot be loaded ({checksum_problem(ctx, 'v0002')}); serving v0001"
        assert system_status(ctx)["fallback"] == {"reason": reason, "serving": "v0001", "active": "v0002"}
        assert fallback_events(ctx) == [("error", "v0002", f"Fallback in use: {reason}.")]
    finally:
        worker.predictor.close()


def test_each_new_process_reports_its_fallback_and_the_store_keeps_one_per_version_and_problem(served):
    ctx = served
    damage(ctx, "v0002")
    for _ in range(3):  # three `python -m engine predict`s: each a new Classifier that falls back
        with Classifier(settings=ctx.settings) as clf:
            assert clf.predict("where is my parcel").version == "v0001"
        ingest_spool(ctx.db, ctx.settings.spool_dir, clock=ctx.clock)
    reason = f"active model v0002 cannot be loaded ({checksum_problem(ctx, 'v0002')}); serving v0001"
    assert fallback_events(ctx) == [("error", "v0002", f"A serving process fell back: {reason}.")]

    os.truncate(registry.model_file(ctx.settings.registry_dir, "v0002"), 500)  # another problem: stored too
    with Classifier(settings=ctx.settings) as clf:
        clf.predict("where is my parcel")
    ingest_spool(ctx.db, ctx.settings.spool_dir, clock=ctx.clock)
    other = f"active model v0002 cannot be loaded ({checksum_problem(ctx, 'v0002')}); serving v0001"
    assert other != reason
    assert fallback_events(ctx)[1:] == [("error", "v0002", f"A serving process fell back: {other}.")]


# --- the whole thing, as the tester ran it ----------------------------------------------------------------------


def test_with_the_worker_and_the_api_running_a_truncated_active_file_shows_in_status_the_api_and_one_event(
        served, tmp_path):
    ctx = served
    home = ctx.settings.home
    logs = tmp_path / "logs"
    logs.mkdir()
    worker = start(["worker"], home, logs / "worker.log")
    server = start(["serve", "--port", "0"], home, logs / "serve.log")
    procs = [worker, server]
    try:
        port = wait_until("announced port", lambda: (m := ANNOUNCED.search(server.log.read_text())) and int(m.group(1)),
                          timeout=60, procs=procs)
        import httpx2 as httpx

        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            wait_until("ready API", lambda: _ready(client), timeout=60, procs=procs)
            wait_until("the worker's heartbeat", lambda: system_status(ctx)["worker"]["alive"], timeout=60, procs=procs)
            assert client.get("/model/status").json()["fallback"] is None

            os.truncate(registry.model_file(ctx.settings.registry_dir, "v0002"), 1000)  # truncate -s 1000
            fallback = wait_until("the fallback recorded", lambda: system_status(ctx)["fallback"], timeout=60,
                                  procs=procs)
            reason = f"active model v0002 cannot be loaded ({checksum_problem(ctx, 'v0002')}); serving v0001; {MEMORY_NOTE}"
            assert fallback == {"reason": reason, "serving": "v0001", "active": "v0002", "in_memory": "v0002"}

            status = run_cli("status", home=home)
            assert f"fallback         IN USE: {reason}\n" in status.stdout, status.stdout
            body = client.get("/model/status").json()
            assert body["fallback"] == fallback
            assert {k: body["serving"][k] for k in ("version", "active_version", "fallback")} == {
                "version": "v0002", "active_version": "v0002", "fallback": False}  # this server: from memory
            assert client.post("/predict", json={"text": "where is my parcel"}).json()["version"] == "v0002"

            for _ in range(3):
                out = run_cli("predict", "where is my parcel", home=home)
                assert out.returncode == 0 and re.search(r"\tv0001 \(fallback\)\t", out.stdout), out.stdout + out.stderr
            wait_until("the spool ingested", lambda: system_status(ctx)["spool_backlog_files"] == 0, timeout=60,
                       procs=procs)
            plain = f"active model v0002 cannot be loaded ({checksum_problem(ctx, 'v0002')}); serving v0001"
            assert fallback_events(ctx) == [("error", "v0002", f"Fallback in use: {reason}."),
                                            ("error", "v0002", f"A serving process fell back: {plain}.")]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
