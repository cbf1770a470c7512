"""The HTTP API as it runs: ``python -m engine serve`` (uvicorn) and ``python -m engine worker`` as real
processes on one data directory, talked to over TCP on a free loopback port, as a Go or Node service would.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx2 as httpx
import pytest

from engine.config import load_settings
from engine.context import Context
from store.events import recent_events
from store.querylog import query_logged
from store.retrains import recent_retrains
from tests.conftest import ROOT

FAST = {"RETRAINER_POLL_SECONDS": "0.05", "RETRAINER_HEARTBEAT_SECONDS": "0.5", "RETRAINER_FLUSH_SECONDS": "0.05"}
ANNOUNCED = re.compile(r"Retrainer API on http://127\.0\.0\.1:(\d+) ")


def start(args: list[str], home: Path, log: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RETRAINER_")}
    env.update({"RETRAINER_HOME": str(home), "PYTHONPATH": str(ROOT), "HOME": str(log.parent), **FAST})
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "engine", *args], cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    proc.log = log
    return proc


def wait_until(what: str, check, *, timeout: float, procs: list[subprocess.Popen]):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        for proc in procs:
            if proc.poll() is not None:
                pytest.fail(f"{proc.args[3]} exited with {proc.returncode} while waiting for {what}:\n{proc.log.read_text()}")
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} within {timeout}s:\n" + "\n".join(p.log.read_text()[-3000:] for p in procs))
        time.sleep(0.1)


@pytest.fixture
def running(demo_copy, tmp_path):
    """A worker and the API (port 0: the kernel picks a free one) on a copy of the demo store."""
    logs = tmp_path / "logs"
    logs.mkdir()
    worker = start(["worker"], demo_copy, logs / "worker.log")
    server = start(["serve", "--port", "0"], demo_copy, logs / "serve.log")
    procs = [worker, server]
    try:
        port = wait_until("announced port", lambda: (m := ANNOUNCED.search(server.log.read_text())) and int(m.group(1)),
                          timeout=60, procs=procs)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            wait_until("ready API", lambda: _ready(client), timeout=60, procs=procs)
            yield client, Context.open(load_settings(env={}, home=demo_copy)), worker, server
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def _ready(client) -> bool:
    try:
        return client.get("/readyz").status_code == 200
    except httpx.TransportError:
        return False


@pytest.mark.slow
def test_predict_feedback_retrain_and_the_decision_over_http(running):
    client, ctx, worker, server = running
    procs = [worker, server]
    answer = client.post("/predict", json={"text": "my parcel never arrived, where is it"}).json()
    assert answer["version"] == "v0002"
    feedback = client.post("/feedback", json={"query_id": answer["query_id"], "label": "delivery_delay"})
    assert feedback.json() == {"query_id": answer["query_id"], "label": "delivery_delay", "recorded": True}

    # The worker ingests what the API's Classifier spooled: the query and its label reach the store.
    wait_until("the query in the store", lambda: query_logged(ctx.db, answer["query_id"]), timeout=30, procs=procs)

    def label_stored():
        with ctx.db.read() as con:
            return con.execute("SELECT label, source FROM labels WHERE query_id = ?", [answer["query_id"]]).fetchall()

    assert wait_until("the label in the store", label_stored, timeout=30, procs=procs) == [("delivery_delay", "feedback")]
    with ctx.db.read() as con:
        assert con.execute("SELECT source FROM queries WHERE id = ?", [answer["query_id"]]).fetchone() == ("api",)

    queued = client.post("/retrain")
    assert queued.status_code == 202
    command_id = queued.json()["id"]
    assert (queued.json()["source"], queued.json()["worker_running"]) == ("api", True)

    def finished():
        row = client.get(f"/commands/{command_id}").json()
        return row if row["status"] in ("done", "failed") else None

    row = wait_until("the retrain's end", finished, timeout=180, procs=procs)
    assert row["status"] == "done", row
    status = client.get("/retrain/status").json()
    stored = recent_retrains(ctx.db, limit=1)[0]
    assert status["last"]["command_id"] == command_id == stored["command_id"]
    assert status["last"]["decision"] == stored["decision"]
    assert stored["decision"] in ("accepted", "rejected")
    assert status["queued"] == []
    # The worker ends the command, then clears its progress note: the status shows none soon after.
    wait_until("no retrain in progress", lambda: client.get("/retrain/status").json()["in_progress"] is None,
               timeout=10, procs=procs)
    gate = client.get("/events", params={"kind": "gate", "limit": 1}).json()["events"][0]
    assert gate["id"] == recent_events(ctx.db, kind="gate", limit=1)[0]["id"]
    assert client.get("/retrain/metrics", params={"limit": 1}).json()["retrains"][0]["id"] == stored["id"]

    server.send_signal(signal.SIGTERM)
    assert server.wait(timeout=15) == 0
    log = server.log.read_text()
    assert "Traceback" not in log
    assert "Application shutdown complete." in log
