"""Run the service's processes as one unit: start them, forward a stop, end them all.

``make run`` (and ``python -m engine run``) start the worker, the HTTP API and the dashboard through
:class:`Supervisor`, so a service manager's or container runtime's SIGTERM, or a Ctrl-C,
stops every child within ``stop_seconds`` and the worker records its "Worker stopped." event.
A shell ``trap`` cannot do that: a shell runs its trap only after the foreground child
(Streamlit) has exited, so a SIGTERM to the shell left both children running.

To run another process with the others, add a :class:`Process` to :func:`service_processes`.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

log = logging.getLogger(__name__)

# How long children get to stop after SIGTERM before SIGKILL: the worker drains the spool and
# records its stop (well under a second when idle), Streamlit closes its sessions (~1 s).
STOP_SECONDS = 10.0
# How often the supervisor looks for a child that ended by itself.
POLL_SECONDS = 0.2
# A child's exit code for bad input or a state that prevents the work (engine.cli): the run exits with it too.
EXIT_REFUSED = 2
# The checkout: the dashboard's entry file is found from here, wherever the command is run.
ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Process:
    """One child: a name for messages and its command line (``argv[0]`` is the program).

    A ``step`` is a one-off job (building the demo): the supervisor waits for it to exit before
    starting the processes after it, and a step that exits with a non-zero code ends the run.
    """

    name: str
    argv: tuple[str, ...]
    step: bool = False


def service_processes(*, port: int = 8501, api_port: int = 8000, demo: bool = False, demo_days: int = 90,
                      python: str = sys.executable) -> list[Process]:
    """What ``make run`` starts, in start order: the worker, the HTTP API on ``api_port``, the dashboard on ``port``.

    With ``demo``, the dashboard starts first and the demo is built (``python -m engine demo``) as a
    step while it already answers (its pages show the build's progress, engine.status.demo_build);
    the worker and the API start once the demo is built, since neither may run while history is written.
    Add a line here to run one more process with them (it is stopped with the others).
    """
    dashboard = Process("dashboard", (python, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.port", str(port)))
    service = [
        Process("worker", (python, "-m", "engine", "worker")),
        Process("api", (python, "-m", "engine", "serve", "--port", str(api_port))),
    ]
    if demo:
        return [dashboard, Process("demo", (python, "-m", "engine", "demo", "--days", str(demo_days)), step=True), *service]
    return [*service, dashboard]


class Supervisor:
    """Start ``processes``, wait for a stop signal or for one of them to end, then stop them all.

    ``run()`` returns 0 when a SIGTERM/SIGINT (or :meth:`stop`) ended the run and every child
    then exited cleanly; 2 when a child ended by itself with code 2 (bad input or a state that
    prevents the work, such as another worker on the data directory: passed through, so a service
    manager's ``RestartPreventExitStatus=2`` stops restarting a run that cannot succeed); 1 when a
    child ended by itself with another code (the others are stopped) or one had to be killed after
    ``stop_seconds``. Children get SIGTERM; the supervisor's own handlers are installed only when
    ``run()`` is called from the main thread.
    """

    def __init__(self, processes: Sequence[Process], *, stop_seconds: float = STOP_SECONDS,
                 env: Mapping[str, str] | None = None, cwd: Path | str | None = None):
        if not processes:
            raise ValueError("no processes to run: give at least one Process")
        if stop_seconds <= 0:
            raise ValueError(f"stop_seconds = {stop_seconds!r}: use a positive number of seconds")
        self.processes = list(processes)
        self.stop_seconds = stop_seconds
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.children: dict[str, subprocess.Popen] = {}
        self._stop = threading.Event()
        self._why = ""

    def stop(self, why: str = "asked to stop") -> None:
        """Ask the run to end (thread-safe; also what the signal handlers call)."""
        self._why = self._why or why
        self._stop.set()

    def run(self) -> int:
        previous = self._install_handlers()
        ended: str | None = None
        try:
            for process in self.processes:
                if self._stop.is_set():
                    break
                self.children[process.name] = subprocess.Popen(process.argv, env=self.env, cwd=self.cwd)
                log.info("started %s (pid %d)", process.name, self.children[process.name].pid)
                if process.step:
                    ended = self._finish_step(process.name)
                    if ended is not None:
                        break
            if ended is None and not self._stop.is_set():
                ended = self._wait()
            elif ended is None:
                log.info("%s: stopping %s", self._why, ", ".join(self.children))
            clean = self._stop_all()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        if ended is not None:
            code = self.children[ended].returncode
            if any(p.step and p.name == ended for p in self.processes):
                log.error("%s failed (exit code %s; its messages are above): the others were stopped", ended, code)
            else:
                log.error("%s exited by itself (code %s); the others were stopped", ended, code)
            return EXIT_REFUSED if code == EXIT_REFUSED else 1
        return 0 if clean else 1

    def _install_handlers(self) -> dict[int, object]:
        if threading.current_thread() is not threading.main_thread():
            return {}
        previous = {}
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.getsignal(signum)
            signal.signal(signum, lambda s, _f: self.stop(f"signal {signal.Signals(s).name}"))
        return previous

    def _finish_step(self, name: str) -> str | None:
        """Wait for the step ``name`` to exit: None when it succeeded (or a stop was asked), else the name
        of the child that ended the run (the step, on a non-zero code, or another child that ended meanwhile)."""
        step = self.children[name]
        while not self._stop.wait(POLL_SECONDS):
            if step.poll() is not None:
                if step.returncode != 0:
                    return name
                del self.children[name]
                log.info("%s finished", name)
                return None
            for other, child in self.children.items():
                if other != name and child.poll() is not None:
                    return other
        return None

    def _wait(self) -> str | None:
        """Until a stop is asked (None) or a child ends by itself (its name)."""
        while not self._stop.wait(POLL_SECONDS):
            for name, child in self.children.items():
                if child.poll() is not None:
                    return name
        log.info("%s: stopping %s", self._why, ", ".join(self.children))
        return None

    def _stop_all(self) -> bool:
        """SIGTERM every running child, wait up to ``stop_seconds``, SIGKILL what remains."""
        for child in self.children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.stop_seconds
        clean = True
        for name, child in self.children.items():
            try:
                child.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("%s (pid %d) did not stop within %.0f s: killed", name, child.pid, self.stop_seconds)
                child.kill()
                child.wait()
                clean = False
                continue
            # A child that stops on SIGTERM by dying of it (the default action) stopped cleanly too.
            clean = clean and child.returncode in (0, -signal.SIGTERM, -signal.SIGINT)
        return clean


def run_service(*, port: int = 8501, api_port: int = 8000, demo: bool = False, demo_days: int = 90,
                stop_seconds: float = STOP_SECONDS) -> int:
    """Run :func:`service_processes` under a :class:`Supervisor` from this process's directory."""
    processes = service_processes(port=port, api_port=api_port, demo=demo, demo_days=demo_days)
    return Supervisor(processes, stop_seconds=stop_seconds, env=os.environ.copy()).run()
