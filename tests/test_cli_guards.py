"""The CLI's guards found by testers: a second ``retrain --wait`` beside a first, ``run`` beside a worker and the
exit code it gives a service manager, ports and numeric options, settings a running worker ignores, a training-only
setting, read-only commands on a missing store, ``make run``'s demo, ``predict`` on a read-only data directory.

Real processes where the story needs them (a second CLI waiting on the real worker lock); ``engine.cli.main``
in this process for what the parser and one command decide.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from engine.api import listen
from engine.cli import MAX_EVENTS, build_parser, main
from engine.classifier import Classifier
from engine.config import load_settings
from engine.context import Context
from engine.errors import SettingsError
from engine.importer import import_file
from engine.lock import WorkerLock, worker_running
from engine.retrain import run_cycle
from engine.status import HEARTBEAT_KEY
from engine.supervisor import Process, Supervisor
from engine.worker import settings_record
from store.commands import get_command, recent_commands
from store.events import recent_events
from store.state import set_state
from tests.conftest import ROOT, labelled_frame

HOST = socket.gethostname()
NO_STORE = ("error: there is no store in {home} (no retrainer.duckdb there): check RETRAINER_HOME, or create one by "
            "importing data (`python -m engine import FILE --labeled`), starting the worker (`python -m engine worker`, "
            "`make run`) or building the demo (`python -m engine demo`)\n")


def parse_error(capsys, *args: str) -> str:
    """The last stderr line of an argparse refusal, which must exit 2."""
    with pytest.raises(SystemExit) as stop:
        main(list(args))
    assert stop.value.code == 2
    return capsys.readouterr().err.splitlines()[-1]


def trained(home: Path) -> Context:
    ctx = Context.open(load_settings(env={}, home=home))
    path = home.parent / "labelled.csv"
    labelled_frame(10).to_csv(path, index=False)
    import_file(ctx, path, labeled=True)
    assert run_cycle(ctx, trigger="manual", force=True).status == "accepted"
    return ctx


def cli_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RETRAINER_")}
    env.update({"RETRAINER_HOME": str(home), "PYTHONPATH": str(ROOT), **extra})
    return env


def wait_until(predicate, *, what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


# -- 1. a second retrain --wait beside a first -----------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_command_queued_while_another_cli_holds_the_lock_runs_once_that_one_ends(tmp_path):
    ctx = trained(tmp_path / "home")
    first = WorkerLock(ctx.settings.worker_lock_path, role="cli").acquire()  # a first `retrain --wait` running its own
    try:
        queued = subprocess.run([sys.executable, "-m", "engine", "retrain"], cwd=ROOT, env=cli_env(ctx.settings.home),
                                capture_output=True, text=True, timeout=120)
        assert (queued.returncode, queued.stderr) == (0, "")
        assert queued.stdout == (f"command #1 (retrain) queued; nobody takes it yet: the data directory is held by a "
                                 f"command the CLI runs itself, pid {os.getpid()} on {HOST}, which runs only its own "
                                 "work; start a worker (`python -m engine worker`), or run the command with --wait\n")
        second = subprocess.Popen([sys.executable, "-m", "engine", "retrain", "--wait", "--force"], cwd=ROOT,
                                  env=cli_env(ctx.settings.home), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_until(lambda: get_command(ctx.db, 2) is not None, what="the second command to be queued")
        time.sleep(1.0)
        assert get_command(ctx.db, 2)["status"] == "queued" and second.poll() is None  # it waits for the lock
    finally:
        first.release()
    out, err = second.communicate(timeout=180)
    assert second.returncode == 0, err
    assert (f"command #2 (retrain) queued; the data directory is held by a command the CLI runs itself, pid "
            f"{os.getpid()} on {HOST}: waiting for it to end, then the command runs here") in err.splitlines()
    assert ("command #2 (retrain): the process that held the data directory ended without running it, so it runs here"
            in err.splitlines())
    assert out.splitlines()[0] == "command #2 retrain: done"
    assert get_command(ctx.db, 2)["status"] == "done"
    assert get_command(ctx.db, 1)["status"] == "queued"  # the one queued without --wait waits for a worker, as it said
    assert worker_running(ctx.settings.worker_lock_path) is None


def test_a_command_left_running_by_a_stopped_worker_is_reported_failed_not_waited_for(cli_here, monkeypatch):
    from engine.cli import _see_through
    from store import commands as queue

    ctx = Context.open(load_settings(env={}, home=cli_here.home))
    command_id = queue.enqueue(ctx.db, kind="retrain", args={}, source="cli", ts=ctx.clock())
    queue.mark_running(ctx.db, command_id, ts=ctx.clock(), stage="training")  # its worker died (no lock held)

    code = _see_through(ctx, command_id, "retrain", poll=0.05)

    assert code == 1
    row = get_command(ctx.db, command_id)
    assert (row["status"], row["message"]) == ("failed", "the worker stopped while this command ran; run it again")


# -- 2. run beside a worker, and the exit code a service manager sees ------------------------------------


def test_run_refuses_a_data_directory_whose_worker_lock_is_held_before_starting_anything(cli_here):
    Context.open(load_settings(env={}, home=cli_here.home))
    with WorkerLock(cli_here.home / "worker.lock"):
        code, out, err = cli_here("run", "--port", "1", "--api-port", "2")  # ports never reached: the lock first
    assert (code, out) == (2, "")
    assert err == (f"error: a worker is already running on {cli_here.home} (the worker, pid {os.getpid()} on {HOST}): one "
                   "worker per data directory: stop that one first, or use another RETRAINER_HOME\n")


@pytest.mark.parametrize("code, expected", [(2, 2), (3, 1), (1, 1)])
def test_a_child_exit_2_passes_through_the_supervisor_other_codes_become_1(code, expected):
    processes = [Process("worker", (sys.executable, "-c", f"import sys; sys.exit({code})")),
                 Process("api", (sys.executable, "-c", "import time; time.sleep(60)"))]
    assert Supervisor(processes, stop_seconds=10).run() == expected


def test_a_demo_step_refused_with_2_ends_the_run_with_2():
    processes = [Process("demo", (sys.executable, "-c", "import sys; sys.exit(2)"), step=True),
                 Process("worker", (sys.executable, "-c", "import time; time.sleep(60)"))]
    assert Supervisor(processes, stop_seconds=10).run() == 2


def _readme_units() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```ini\n(.*?)```", text, flags=re.S)


def test_the_readme_unit_stops_restarting_on_exit_2_and_wraps_a_command_the_cli_accepts():
    [unit] = _readme_units()
    lines = unit.splitlines()
    assert "Restart=on-failure" in lines and "RestartPreventExitStatus=2" in lines
    [exec_start] = [line.partition("=")[2] for line in lines if line.startswith("ExecStart=")]
    argv = shlex.split(exec_start)
    assert argv[:3] == ["/opt/retrainer/.venv/bin/python", "-m", "engine"]
    args = build_parser().parse_args(argv[3:])
    assert (args.command, args.port, args.api_port, args.demo_if_empty) == ("run", 8501, 8000, False)
    [home] = [line.partition("=")[2] for line in lines if line.startswith("Environment=")]
    assert home == "RETRAINER_HOME=/srv/retrainer"


# -- 3 and 4. ports and every numeric option -------------------------------------------------------------


@pytest.mark.parametrize("args, message", [
    (("serve", "--port", "99999"), "python -m engine serve: error: argument --port: '99999' is not a port: use a whole "
                                   "number from 0 to 65535 (0: any free port)"),
    (("serve", "--port", "-5"), "python -m engine serve: error: argument --port: '-5' is not a port: use a whole "
                                "number from 0 to 65535 (0: any free port)"),
    (("run", "--port", "-1"), "python -m engine run: error: argument --port: '-1' is not a port: use a whole number "
                              "from 1 to 65535"),
    (("run", "--api-port", "0"), "python -m engine run: error: argument --api-port: '0' is not a port: use a whole "
                                 "number from 1 to 65535"),
    (("run", "--api-port", "http"), "python -m engine run: error: argument --api-port: 'http' is not a port: use a "
                                    "whole number from 1 to 65535"),
    (("events", "--limit", "-5"), "python -m engine events: error: argument --limit: '-5' is not a number of events: "
                                  "use a whole number from 1 to 1000000"),
    (("events", "--limit", "99999999999999999999"), "python -m engine events: error: argument --limit: "
     "'99999999999999999999' is not a number of events: use a whole number from 1 to 1000000"),
    (("events", "--limit", "0"), "python -m engine events: error: argument --limit: '0' is not a number of events: "
                                 "use a whole number from 1 to 1000000"),
    (("run", "--demo-if-empty", "--demo-days", "3"), "python -m engine run: error: argument --demo-days: '3' is not a "
                                                     "number of days: use a whole number from 7 to 365"),
    (("demo", "--days", "400"), "python -m engine demo: error: argument --days: '400' is not a number of days: use a "
                                "whole number from 7 to 365"),
    (("demo", "--seed", "-1"), "python -m engine demo: error: argument --seed: '-1' is not a seed: use a whole number "
                               "from 0 to 4294967295"),
    (("import", "x.csv", "--show", "-2"), "python -m engine import: error: argument --show: '-2' is not a count: use "
                                          "a whole number from 0 to 1000000"),
    (("unquarantine", "0"), "python -m engine unquarantine: error: argument id: '0' is not a rule number: use a whole "
                            "number from 1 to 9223372036854775807"),
], ids=["serve-99999", "serve-negative", "run-negative", "api-port-0", "api-port-word", "limit-negative", "limit-huge",
        "limit-0", "demo-days-3", "days-400", "seed-negative", "show-negative", "rule-0"])
def test_a_numeric_option_out_of_range_is_refused_by_the_parser_with_exit_2(capsys, args, message):
    assert parse_error(capsys, *args) == message


def test_serve_port_0_still_means_any_free_port():
    assert build_parser().parse_args(["serve", "--port", "0"]).port == 0


@pytest.mark.parametrize("port", [-5, 65_536, 99_999, True])
def test_listen_refuses_a_port_outside_the_tcp_range(port):
    with pytest.raises(SettingsError) as caught:
        listen("127.0.0.1", port)
    assert str(caught.value) == f"port {port!r} is not a TCP port: use a whole number from 1 to 65535 (0: any free port)"


NUMERIC = {  # (command, option): (low, high), every numeric option of the CLI
    ("run", "--port"): (1, 65_535), ("run", "--api-port"): (1, 65_535), ("run", "--demo-days"): (7, 365),
    ("demo", "--days"): (7, 365), ("demo", "--seed"): (0, 2**32 - 1), ("import", "--show"): (0, 1_000_000),
    ("serve", "--port"): (0, 65_535), ("events", "--limit"): (1, MAX_EVENTS), ("unquarantine", None): (1, 2**63 - 1),
}


def test_every_integer_option_of_the_parser_is_range_checked():
    """No option is left with a bare ``type=int`` (unbounded: a negative LIMIT, a port modulo 65536)."""
    parser = build_parser()
    [sub] = [a for a in parser._actions if a.dest == "command"]
    found = set()
    for name, command in sub.choices.items():
        for action in command._actions:
            assert action.type is not int, (name, action.option_strings)
            if getattr(action.type, "__qualname__", "").startswith("_whole"):
                found.add((name, action.option_strings[0] if action.option_strings else None))
    assert found == set(NUMERIC)


@hsettings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(option=st.sampled_from(sorted(NUMERIC, key=str)),
       value=st.one_of(st.integers(min_value=-2**80, max_value=2**80).map(str),
                       st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30)))
def test_hostile_values_for_numeric_options_are_parsed_in_range_or_refused_with_exit_2(option, value):
    command, flag = option
    argv = [command, *(["x.csv"] if command == "import" else []), *([flag] if flag else []), value]
    if flag is None:
        argv = [command, "--", value]
    low, high = NUMERIC[option]
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as stop:
        assert stop.code == 2
        return
    parsed = getattr(args, "id" if flag is None else flag.lstrip("-").replace("-", "_"))
    assert isinstance(parsed, int) and low <= parsed <= high
    assert parsed == int(value)


def test_events_limit_1_shows_one_event_and_the_store_refuses_a_bad_limit(cli_here):
    ctx = trained(cli_here.home)
    code, out, err = cli_here("events", "--limit", "1")
    [newest] = recent_events(ctx.db, limit=1)
    assert (code, err, len(out.splitlines())) == (0, "", 1)
    assert out.endswith(f"{newest['message']}\n")
    for bad in (0, -5, 2**63, True):
        with pytest.raises(ValueError) as caught:
            recent_events(ctx.db, limit=bad)
        assert str(caught.value) == f"limit {bad!r} is out of range: use a whole number from 1 to {2**63 - 1}"


# -- 5. settings a running worker does not share ---------------------------------------------------------


def test_a_command_handed_to_a_worker_names_the_settings_that_differ_from_the_workers(cli_here, monkeypatch):
    ctx = Context.open(load_settings(env={}, home=cli_here.home))
    worker_settings = load_settings()  # this environment before the two variables below are set
    set_state(ctx.db, HEARTBEAT_KEY, {"pid": os.getpid(), "host": HOST, "busy": None,
                                      "settings": settings_record(worker_settings)}, ts=ctx.clock())
    monkeypatch.setenv("RETRAINER_PIPELINE", "word")
    monkeypatch.setenv("RETRAINER_TOLERANCE", "0.02")
    with WorkerLock(ctx.settings.worker_lock_path):
        code, out, err = cli_here("retrain")
    assert (code, out) == (0, "command #1 (retrain) queued; the worker will take it\n")
    assert err == ("note: the worker runs this command with its own settings, not this process's: tolerance '0.02' "
                   "here, '0.01' in the worker (RETRAINER_TOLERANCE); pipeline 'word' here, 'char' in the worker "
                   "(RETRAINER_PIPELINE); restart the worker with these settings for them to apply\n")


def test_without_the_workers_settings_the_note_names_this_environments_variables(cli_here, monkeypatch):
    Context.open(load_settings(env={}, home=cli_here.home))
    monkeypatch.setenv("RETRAINER_PIPELINE", "word")
    with WorkerLock(cli_here.home / "worker.lock"):
        code, out, err = cli_here("retrain")
    assert (code, out) == (0, "command #1 (retrain) queued; the worker will take it\n")
    assert err == ("note: the worker runs this command with its own settings; this environment's "
                   "RETRAINER_DASHBOARD_PRIVATE, RETRAINER_PIPELINE apply only if the worker was started with them\n")


def test_the_same_settings_give_no_note(cli_here):
    ctx = Context.open(load_settings(home=cli_here.home))
    set_state(ctx.db, HEARTBEAT_KEY, {"pid": 1, "host": HOST, "busy": None, "settings": settings_record(ctx.settings)},
              ts=ctx.clock())
    with WorkerLock(ctx.settings.worker_lock_path):
        assert cli_here("retrain") == (0, "command #1 (retrain) queued; the worker will take it\n", "")


# -- 6. a training-only setting --------------------------------------------------------------------------

MISSING_FACTORY = ("error: setting 'pipeline' = 'nonexist:make': module 'nonexist' cannot be imported (No module named "
                   "'nonexist'); install the package that provides it in this environment (`pip install ...`) or put "
                   "its folder on PYTHONPATH\n")


def test_a_factory_that_cannot_be_imported_does_not_stop_reading_or_serving(cli_here, monkeypatch):
    ctx = trained(cli_here.home)
    monkeypatch.setenv("RETRAINER_PIPELINE", "nonexist:make")
    code, out, err = cli_here("status")
    assert (code, err) == (0, "") and out.startswith(f"data directory   {cli_here.home}\nactive model     v0001 ")
    code, out, err = cli_here("events", "--limit", "1")
    assert (code, err) == (0, "")
    with Classifier(home=cli_here.home, log_queries=False) as clf:
        assert clf.predict("where is my order").version == "v0001"
    assert load_settings().pipeline == "nonexist:make"
    for args in (("retrain", "--wait"), ("retrain",), ("worker",), ("run", "--port", "1", "--api-port", "2")):
        assert cli_here(*args) == (2, "", MISSING_FACTORY), args
    assert recent_commands(ctx.db) == []  # nothing queued by the refused retrains


# -- 7. read-only commands on a missing store ------------------------------------------------------------


@pytest.mark.parametrize("args", [("status",), ("status", "--json"), ("events",), ("predict", "hello"),
                                  ("quarantine", "--list"), ("unquarantine", "1"), ("rollback", "--wait"),
                                  ("export-log", "--parquet", "out"), ("rebuild-rollups",)])
def test_a_command_on_a_missing_store_says_so_and_creates_nothing(cli_here, args):
    assert cli_here(*args) == (2, "", NO_STORE.format(home=cli_here.home))
    assert not cli_here.home.exists()


# -- 8. make run's demo ----------------------------------------------------------------------------------


def _make_run_line(env_home: str | None, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RETRAINER_") and k != "HOME_DIR"}
    if env_home is not None:
        env["RETRAINER_HOME"] = env_home
    done = subprocess.run(["make", "-n", "run", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    [line] = [line for line in done.stdout.splitlines() if "-m engine run" in line]
    return line


def test_make_run_builds_the_demo_only_into_the_default_data_directory():
    assert _make_run_line(None) == ('RETRAINER_HOME="./data" exec .venv/bin/python -m engine run --port 8501 '
                                    '--api-port 8000 --demo-if-empty')
    assert _make_run_line("/srv/retrainer") == ('RETRAINER_HOME="/srv/retrainer" exec .venv/bin/python -m engine run '
                                                '--port 8501 --api-port 8000 ')
    assert _make_run_line(None, "HOME_DIR=/srv/x") == ('RETRAINER_HOME="/srv/x" exec .venv/bin/python -m engine run '
                                                       '--port 8501 --api-port 8000 ')


# -- 9. predict on a read-only data directory ------------------------------------------------------------


@pytest.fixture
def read_only(tmp_path):
    """Make a directory unwritable (chattr +i for root, whom permissions do not stop); undone at the end."""
    made = []

    def make(path: Path) -> None:
        path.chmod(0o555)
        made.append(path)
        if os.geteuid() == 0:
            if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
                pytest.skip("cannot make a directory read-only for root here (no chattr +i on this file system)")
        probe = path / ".probe"
        try:
            probe.write_text("x")
        except OSError:
            return
        probe.unlink()
        pytest.skip("the directory stays writable for this user")

    yield make
    for path in made:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(path)], capture_output=True)
        path.chmod(0o755)


def test_predict_that_cannot_log_its_queries_says_so_and_exits_1(cli_here, read_only):
    ctx = trained(cli_here.home)
    read_only(ctx.settings.spool_dir)
    code, out, err = cli_here("predict", "where is my order")
    assert code == 1
    assert re.fullmatch(r"\w+\t\d\.\d{3}\tv0001\t[0-9a-f]{32}\twhere is my order\n", out)
    assert err.splitlines()[-1].startswith(
        f"error: the queries were answered but could not be logged: the spool directory {ctx.settings.spool_dir} is "
        "not writable (")
    assert err.splitlines()[-1].endswith(f"); give the user running this write access to {cli_here.home}, or set "
                                         "RETRAINER_HOME to a writable data directory")
    assert "warning: the queries wait in the spool" not in err and "Traceback" not in err
