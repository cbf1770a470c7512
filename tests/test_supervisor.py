"""`make run` stops like a service: SIGTERM or SIGINT to make ends the worker, the API and the dashboard.

Real processes throughout: make, the supervisor, the worker, the API (uvicorn) and Streamlit on free ports.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from engine.context import Context
from engine.supervisor import Process, Supervisor, service_processes
from store.events import recent_events
from tests.conftest import ROOT

STARTUP_TIMEOUT = 90.0
STOP_TIMEOUT = 30.0  # a generous bound for a test on a busy machine; the figure is printed, not asserted


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def worker_messages(ctx) -> list[str]:
    return [e["message"] for e in reversed(recent_events(ctx.db, kind="worker", limit=50))]


@pytest.fixture
def make_run(ctx, tmp_path):
    """Start `make run` on a prepared store in its own process group; yield (proc, port, output path)."""
    port, api_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RETRAINER_")}
    env.update({"RETRAINER_POLL_SECONDS": "0.1", "RETRAINER_HEARTBEAT_SECONDS": "0.5",
                "STREAMLIT_SERVER_HEADLESS": "true", "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false"})
    out = tmp_path / "make-run.log"
    with open(out, "w") as log:
        # -o: never rebuild the shared virtualenv from a test.
        proc = subprocess.Popen(["make", "-s", "-o", ".venv/.installed", "run", f"HOME_DIR={ctx.settings.home}",
                                 f"PORT={port}", f"API_PORT={api_port}", f"PYTHON={sys.executable}"],
                                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    try:
        yield proc, (port, api_port), out
    finally:
        if group_alive(proc.pid):  # the test failed: end what it started (its own process group only)
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def wait_serving(ctx, proc, ports: tuple[int, ...], out: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while not (all(port_open(p) for p in ports) and any(m.startswith("Worker started") for m in worker_messages(ctx))):
        if proc.poll() is not None:
            pytest.fail(f"make run exited with {proc.returncode}:\n{out.read_text()}")
        if time.monotonic() > deadline:
            pytest.fail(f"make run did not serve within {STARTUP_TIMEOUT}s:\n{out.read_text()}")
        time.sleep(0.2)


@pytest.mark.slow
@pytest.mark.parametrize("signum, to_group", [(signal.SIGTERM, False), (signal.SIGINT, True)],
                         ids=["SIGTERM to make (a service manager)", "SIGINT to the group (Ctrl-C)"])
def test_a_signal_to_make_run_stops_every_process(ctx, make_run, signum, to_group):
    proc, ports, out = make_run
    wait_serving(ctx, proc, ports, out)
    started = time.monotonic()
    if to_group:  # a terminal's Ctrl-C reaches every process of the foreground group
        os.killpg(proc.pid, signum)
    else:  # a service manager or container runtime signals the main process alone
        os.kill(proc.pid, signum)
    try:
        code = proc.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"make run still runs {STOP_TIMEOUT}s after {signum.name}:\n{out.read_text()}")
    print(f"make run stopped {time.monotonic() - started:.1f}s after {signum.name}")
    # make ends by re-raising the signal it got once its child is done: that is its clean stop.
    assert code in (0, -signum), out.read_text()
    assert not group_alive(proc.pid), "a child of make run outlived it"
    assert not any(port_open(p) for p in ports)
    assert worker_messages(ctx)[-1] == "Worker stopped."
    assert "worker stopped cleanly" in out.read_text()
    assert "Traceback" not in out.read_text()


def test_the_service_is_the_worker_the_api_and_the_dashboard():
    processes = service_processes(port=8600, api_port=8700, python="py")
    assert [p.name for p in processes] == ["worker", "api", "dashboard"]
    assert processes[0].argv == ("py", "-m", "engine", "worker")
    assert processes[1].argv == ("py", "-m", "engine", "serve", "--port", "8700")
    assert processes[2].argv == ("py", "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.port", "8600")


def sleeper(name: str, *, seconds: float = 60, ignore_term: bool = False, code: int | None = None) -> Process:
    body = "import signal, sys, time\n"
    if ignore_term:
        body += "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    body += f"time.sleep({seconds})\n"
    if code is not None:
        body += f"sys.exit({code})\n"
    return Process(name, (sys.executable, "-c", body))


def test_a_child_that_ends_by_itself_stops_the_others_and_the_run_fails():
    supervisor = Supervisor([sleeper("steady"), sleeper("brief", seconds=0.2, code=3)], stop_seconds=10)
    assert supervisor.run() == 1
    assert supervisor.children["brief"].returncode == 3
    assert supervisor.children["steady"].returncode == -signal.SIGTERM


def test_a_child_that_ignores_sigterm_is_killed_after_stop_seconds():
    supervisor = Supervisor([sleeper("stubborn", ignore_term=True), sleeper("polite")], stop_seconds=0.5)
    threading.Timer(0.5, supervisor.stop).start()
    assert supervisor.run() == 1
    assert supervisor.children["stubborn"].returncode == -signal.SIGKILL
    assert supervisor.children["polite"].returncode == -signal.SIGTERM


def test_a_stop_asked_for_ends_the_run_cleanly():
    supervisor = Supervisor([sleeper("a"), sleeper("b")], stop_seconds=10)
    threading.Timer(0.3, supervisor.stop).start()
    assert supervisor.run() == 0
    assert [c.returncode for c in supervisor.children.values()] == [-signal.SIGTERM, -signal.SIGTERM]


@pytest.mark.parametrize("kwargs, message", [
    ({"processes": []}, "no processes to run"),
    ({"processes": [Process("x", ("true",))], "stop_seconds": 0}, "stop_seconds = 0"),
], ids=["no processes", "zero stop time"])
def test_bad_arguments_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Supervisor(**kwargs)


def test_with_the_demo_the_dashboard_starts_first_and_the_demo_is_a_step():
    processes = service_processes(port=8600, api_port=8700, demo=True, demo_days=7, python="py")
    assert [(p.name, p.step) for p in processes] == [("dashboard", False), ("demo", True), ("worker", False),
                                                     ("api", False)]
    assert processes[1].argv == ("py", "-m", "engine", "demo", "--days", "7")


def test_processes_after_a_step_start_only_once_it_has_succeeded(tmp_path):
    done = tmp_path / "step-done"
    step = Process("step", (sys.executable, "-c", f"import time, pathlib; time.sleep(0.5); pathlib.Path({str(done)!r}).touch()"),
                   step=True)
    # Exits 5 (ending the run) if it starts before the step's file exists.
    after = Process("after", (sys.executable, "-c", f"import pathlib, sys, time\nif not pathlib.Path({str(done)!r}).exists(): sys.exit(5)\ntime.sleep(60)"))
    supervisor = Supervisor([sleeper("dashboard"), step, after], stop_seconds=10)
    threading.Timer(3.0, supervisor.stop).start()
    assert supervisor.run() == 0
    assert list(supervisor.children) == ["dashboard", "after"]  # the finished step is no longer a child
    assert supervisor.children["after"].returncode == -signal.SIGTERM


def test_a_failing_step_ends_the_run_and_nothing_after_it_starts():
    supervisor = Supervisor([sleeper("dashboard"), replace(sleeper("demo", seconds=0.2, code=2), step=True),
                             sleeper("worker")], stop_seconds=10)
    assert supervisor.run() == 2  # the step's exit 2 (bad input) passes through: a service manager must not restart
    assert list(supervisor.children) == ["dashboard", "demo"]
    assert supervisor.children["demo"].returncode == 2
    assert supervisor.children["dashboard"].returncode == -signal.SIGTERM


def test_a_stop_during_a_step_stops_it_and_starts_nothing_more():
    supervisor = Supervisor([sleeper("dashboard"), replace(sleeper("demo"), step=True), sleeper("worker")], stop_seconds=10)
    threading.Timer(0.5, supervisor.stop).start()
    assert supervisor.run() == 0
    assert list(supervisor.children) == ["dashboard", "demo"]
    assert supervisor.children["demo"].returncode == -signal.SIGTERM


def health_ok(port: int) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=1) as answer:
            return answer.read() == b"ok"
    except OSError:
        return False


@pytest.mark.slow
def test_on_an_empty_data_directory_the_dashboard_answers_while_the_demo_is_built(tmp_path):
    from engine.config import load_settings
    from engine.demo_build import read_progress
    from store.retrains import recent_retrains

    home = tmp_path / "empty-home"
    port, api_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RETRAINER_")}
    env.update({"RETRAINER_HOME": str(home), "RETRAINER_POLL_SECONDS": "0.1", "RETRAINER_HEARTBEAT_SECONDS": "0.5",
                "STREAMLIT_SERVER_HEADLESS": "true", "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false"})
    out = tmp_path / "run.log"
    with open(out, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "engine", "run", "--port", str(port), "--api-port", str(api_port),
                                 "--demo-if-empty", "--demo-days", "21"], cwd=ROOT, env=env, stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        answered_during_build = False
        deadline = time.monotonic() + STARTUP_TIMEOUT * 2
        while time.monotonic() < deadline and proc.poll() is None:
            building = read_progress(home)
            if building is not None and health_ok(port):
                answered_during_build = True
                assert not port_open(api_port), "the API started before the demo was built"
            if (home / "retrainer.duckdb").exists() and read_progress(home) is None and port_open(api_port):
                break
            time.sleep(0.2)
        assert proc.poll() is None, out.read_text()
        assert answered_during_build, f"the dashboard did not answer while the demo was built:\n{out.read_text()}"
        ctx = Context.open(load_settings(env={}, home=home))
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not any(m.startswith("Worker started") for m in worker_messages(ctx)):
            assert time.monotonic() < deadline, out.read_text()
            time.sleep(0.2)
        assert recent_retrains(ctx.db, limit=100)  # the demo's history is there
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=STOP_TIMEOUT) == 0, out.read_text()
        assert not (home / "demo-build.json").exists()
        assert "Traceback" not in out.read_text()
    finally:
        if group_alive(proc.pid):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_run_refuses_a_port_in_use_and_names_the_option_to_change_it(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith("RETRAINER_")}
        env["RETRAINER_HOME"] = str(tmp_path / "home")
        done = subprocess.run([sys.executable, "-m", "engine", "run", "--port", str(port), "--api-port", str(free_port())],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (f"error: port {port} for the dashboard is already in use (another Retrainer or another "
                           "program): stop it, or choose a free port with --port N (make run PORT=N)\n")
