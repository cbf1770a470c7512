"""The worker: the one long-running process per data directory: its loop and its dispatch.

Its loop (every ``poll_seconds``) writes a heartbeat, ingests the query spool, takes
queued commands, runs due scheduler jobs, runs the drift job (``engine.drift_job``: each
completed day's traffic judged once) and the fallback monitor (``engine.fallback_monitor``:
the champion loads, or the fallback is recorded).
Retrains run one at a time on an executor thread; a retrain asked for while one runs
waits (at most one waits: later requests join it). Control commands never wait behind a
retrain: pause and resume run in the loop, rollbacks at once on a control thread of their
own (one at a time). A retrain that a rollback overtook does not deploy its candidate (see
``engine.retrain``: it was judged against a champion that no longer serves).

A store the worker cannot write (a full disk) does not stop it: it logs
``disk full at PATH, free N MB`` once a minute, keeps the loop going and finishes its start
(repairs, the start event) as soon as a write succeeds.

``synchronous=True`` runs retrains and rollbacks inline (the CLI without a worker,
the demo, tests).
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import os
import socket
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator

from engine import drift, faults, fingerprint, registry
from engine.classifier import Classifier
from engine.config import Settings
from engine.context import Context
from engine.dataset import normalize_text
from engine.deployment import rollback
from engine.drift_job import DriftJob
from engine.errors import DiskFullError, ModelLoadError, RetrainerError, StoreBusyError
from engine.fallback_monitor import FallbackMonitor
from engine.ingest import IngestResult, ingest_spool
from engine.lock import WorkerLock
from engine.repair import repair
from engine.retrain import AdoptRequest, CycleResult, run_cycle
from engine.scheduling import Scheduler, set_paused
from engine.status import HEARTBEAT_KEY, PROGRESS_KEY
from store import commands as queue
from store.events import record_event
from store.models import list_models
from store.querylog import training_rows
from store.rollups import rebuild_store
from store.state import set_state
from store.vocabulary import CommandKind, CommandStatus, EventKind, ModelStatus, RetrainStatus, Severity, Trigger

log = logging.getLogger(__name__)

# While another program holds the store open: the first wait, doubled up to the longest (seconds).
STORE_BACKOFF_FIRST = 1.0
STORE_BACKOFF_MAX = 30.0
# The same failure of a loop step is logged again only after this many seconds.
REPEAT_LOG_SECONDS = 60.0
# Commands that never wait behind a retrain.
CONTROL_KINDS = (CommandKind.PAUSE, CommandKind.RESUME, CommandKind.ROLLBACK)


@dataclass
class _Task:
    kind: CommandKind              # retrain, adopt or rollback
    trigger: Trigger = Trigger.MANUAL
    why: str = ""
    args: dict[str, Any] = field(default_factory=dict)
    command_ids: list[int] = field(default_factory=list)
    actor: str = "worker"          # who asked: the command's source (dashboard, cli, demo operator)


class Worker:
    def __init__(self, ctx: Context, *, synchronous: bool = False):
        self.ctx = ctx
        self.synchronous = synchronous
        self.stop_event = threading.Event()
        self._tasks: collections.deque[_Task] = collections.deque()
        self._cond = threading.Condition()
        self._running: _Task | None = None
        self._last_heartbeat = 0.0
        self.scheduler = Scheduler(ctx, request_retrain=self.request_retrain)
        self.predictor = Classifier(settings=ctx.settings, log_queries=False, background=False, report_events=False)
        self.drift = DriftJob(ctx, request_retrain=self.request_retrain)
        self.fallback = FallbackMonitor(ctx, predictor=self.predictor, request_retrain=self.request_retrain)
        self._executor: threading.Thread | None = None
        self._store_down_since: float | None = None   # monotonic time the store was first found held
        self._store_backoff = STORE_BACKOFF_FIRST
        self._store_reason = ""
        self._control: threading.Thread | None = None
        self._controls: collections.deque[_Task] = collections.deque()
        self._started = False                      # repairs and the start event written
        self._logged: dict[str, tuple[str, float]] = {}   # step -> (last message, when)
        self.lock: WorkerLock | None = None         # set by open_worker; its holder file is kept written
        self.last_result: CycleResult | None = None

    # -- life ------------------------------------------------------------------------

    def start(self, *, schedule: bool = True) -> list[str]:
        """Repair, announce, catch up missed slots; start the executor. Returns the repairs made.

        ``schedule=False`` (the CLI running one command itself) skips the scheduler's catch-up.
        """
        try:
            fixes = self._finish_start()
        except DiskFullError as exc:  # serve on, finish the start from the loop; other faults stop the start
            log.error("worker started without writing to the store: %s", exc)
            fixes = []
        if not self.synchronous:
            self._executor = threading.Thread(target=self._execute_forever, name="executor", daemon=True)
            self._executor.start()
            self._control = threading.Thread(target=self._control_forever, name="control", daemon=True)
            self._control.start()
        try:
            caught_up = self.scheduler.start() if schedule else []
        except DiskFullError as exc:
            log.error("missed slots not caught up: %s", exc)
            caught_up = []
        if caught_up:
            log.info("caught up missed slots: %s", ", ".join(caught_up))
        return fixes

    def _finish_start(self) -> list[str]:
        """Repairs, the start event and the first heartbeat, once (again from the loop until they succeed)."""
        if self._started:
            return []
        fixes = repair(self.ctx)
        # Rollups an older Retrainer or SQL run by hand left behind the log (a few ms when they agree).
        rebuilt = rebuild_store(self.ctx.db, ts=self.ctx.clock(), always=False, why="at the worker's start-up")
        if rebuilt is not None:
            log.warning("rollups rebuilt from the log in %.1f s: %s", rebuilt.seconds, rebuilt.disagreement)
            fixes.append(f"rollups rebuilt from the log ({rebuilt.disagreement})")
        try:
            self.backfill_fingerprints()
        except RetrainerError as exc:  # never a reason not to start
            log.warning("could not record missing fingerprints: %s", exc)
        record_event(self.ctx.db, ts=self.ctx.clock(), kind=EventKind.WORKER, message=f"Worker started (pid {os.getpid()}).",
                     details={"pid": os.getpid(), "host": socket.gethostname(), "repairs": fixes})
        self._started = True
        self.heartbeat(force=True)
        return fixes

    def run(self) -> None:
        """Loop until ``stop_event`` is set (SIGTERM/SIGINT in the CLI).

        While another program holds the store open, the loop waits STORE_BACKOFF_FIRST seconds,
        doubling up to STORE_BACKOFF_MAX, between tries (one warning when it starts, one line
        and an event when the store is back), instead of failing every ``poll_seconds``.
        """
        while not self.stop_event.is_set():
            try:
                self.start()
                break
            except StoreBusyError as exc:
                self._store_unavailable(exc)
                self.stop_event.wait(self._store_backoff)
        else:
            self.predictor.close()
            return
        try:
            while not self.stop_event.is_set():
                self.tick()
                self.stop_event.wait(self._store_backoff if self._store_down_since is not None
                                     else self.ctx.settings.poll_seconds)
        finally:
            self.shutdown()

    def shutdown(self) -> None:
        with self._cond:
            waiting = list(self._tasks) + list(self._controls)
            self._tasks.clear()
            self._controls.clear()
            self._cond.notify_all()
        for task in waiting:
            self._finish_commands(task, ok=False, message="the worker stopped before this ran; run it again")
        message = "Worker stopped."
        if self._running is not None:
            message = f"Worker stopped during a {self._running.kind}; it will be marked failed at the next start."
        try:
            # Drain the spool, not just one batch of files: a clean stop leaves nothing waiting
            # (bounded, in case serving processes keep writing while the worker stops).
            for _ in range(100):
                if not self.ingest().files:
                    break
        except RetrainerError as exc:
            log.error("could not drain the spool before stopping (the next start ingests it): %s", exc)
        # The stop is recorded even when the drain failed; a store held a moment longer by a process
        # that is stopping too (Ctrl-C reaches the whole group) gets a few short retries.
        for attempt in range(5):
            try:
                # The longest this worker waited for the store's lock: the figure the soak test reports.
                record_event(self.ctx.db, ts=self.ctx.clock(), kind=EventKind.WORKER, message=message,
                             details={"longest_store_wait_s": round(self.ctx.db.longest_wait, 4)})
                break
            except RetrainerError as exc:
                if attempt == 4:
                    log.error("could not record the stop: %s", exc)
                else:
                    time.sleep(0.5)
        self.predictor.close()

    def tick(self) -> None:
        """One pass of the loop; every part is guarded so the loop never dies.

        A store held open by another program ends the pass at once (the other parts would fail
        the same way); see :meth:`run` for the back-off.
        """
        for part in (self._finish_start, self.heartbeat, self.ingest, self.process_commands, self.scheduler.run_pending,
                     self.check_drift, self.check_model):
            name = getattr(part, "__name__", str(part))
            try:
                part()
            except StoreBusyError as exc:
                self._store_unavailable(exc)
                return
            except RetrainerError as exc:  # a full disk, a store that cannot be read: one line, not once a tick
                self._log_failure(name, str(exc))
            except Exception:
                log.exception("worker step %s failed; continuing", name)
        if self._store_down_since is not None:
            try:
                self._store_available()
            except StoreBusyError as exc:
                self._store_unavailable(exc)

    def _store_unavailable(self, exc: StoreBusyError) -> None:
        if self._store_down_since is None:
            self._store_down_since = time.monotonic()
            self._store_backoff = STORE_BACKOFF_FIRST
            log.warning("%s; the worker waits and tries again (every %g s at first, at most every %g s)",
                        exc, STORE_BACKOFF_FIRST, STORE_BACKOFF_MAX)
            self._store_reason = str(exc)
        else:
            self._store_backoff = min(2 * self._store_backoff, STORE_BACKOFF_MAX)

    def _store_available(self) -> None:
        waited = time.monotonic() - self._store_down_since
        record_event(self.ctx.db, ts=self.ctx.clock(), kind=EventKind.WORKER, severity=Severity.WARNING,
                     message=f"The store was held by another program for {waited:.0f} s; the worker waited and "
                             f"went on ({self._store_reason}).", details={"waited_s": round(waited, 1)})
        self._store_down_since = None
        log.warning("the store is reachable again after %.0f s", waited)

    def _log_failure(self, step: str, message: str) -> None:
        last, when = self._logged.get(step, ("", 0.0))
        if message != last or time.monotonic() - when >= REPEAT_LOG_SECONDS:
            log.error("worker step %s failed: %s; retrying", step, message)
            self._logged[step] = (message, time.monotonic())

    # -- loop parts -------------------------------------------------------------------

    def heartbeat(self, *, force: bool = False) -> None:
        if not force and time.monotonic() - self._last_heartbeat < self.ctx.settings.heartbeat_seconds:
            return
        self._last_heartbeat = time.monotonic()
        if self.lock is not None:
            self.lock.refresh()
        running = self._running
        with self.ctx.db.write() as con:
            set_state(con, HEARTBEAT_KEY, {"pid": os.getpid(), "host": socket.gethostname(),
                                           "busy": running.kind if running else None,
                                           "settings": settings_record(self.ctx.settings)}, ts=self.ctx.clock())

    def ingest(self) -> IngestResult:
        return ingest_spool(self.ctx.db, self.ctx.settings.spool_dir, clock=self.ctx.clock)

    def process_commands(self) -> None:
        """Take every queued command, oldest first."""
        for command in queue.queued_commands(self.ctx.db):
            self._take(command)

    @contextmanager
    def taking_control_commands(self, *, skip: int | None = None) -> Iterator[None]:
        """While inside, a thread takes queued pause, resume and rollback commands every ``poll_seconds``.

        For the CLI running one command itself with no worker (a long ``retrain --wait``): control
        commands sent meanwhile run at once instead of waiting for a worker. ``skip`` is the
        command the caller runs itself.
        """
        done = threading.Event()

        def take() -> None:
            while not done.wait(self.ctx.settings.poll_seconds):
                try:
                    for command in queue.queued_commands(self.ctx.db):
                        if command["kind"] in CONTROL_KINDS and command["id"] != skip:
                            self._take(command)
                except Exception:  # the store may be busy or full: the next poll tries again
                    log.exception("taking control commands failed; retrying")

        thread = threading.Thread(target=take, name="control-commands", daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join(timeout=30)

    def run_command(self, command_id: int) -> None:
        """Take one queued command (the CLI running its own request without a worker)."""
        command = queue.get_command(self.ctx.db, command_id)
        if command is not None and command["status"] == CommandStatus.QUEUED:
            self._take(command)

    def check_model(self, *, force: bool = False) -> None:
        """Load the champion as a predictor would; record entering and leaving fallback (see FallbackMonitor)."""
        self.fallback.check(force=force)

    def backfill_fingerprints(self) -> list[str]:
        """Record a fingerprint for every version pickled by this scikit-learn that has none (stores from before
        fingerprints existed), probing it on the store's human-labelled texts; return the versions done."""
        from sklearn import __version__ as running

        versions = [m for m in list_models(self.ctx.db) if m["sklearn_version"] == running
                    and m["status"] != ModelStatus.FAILED
                    and not registry.fingerprint_file(self.ctx.settings.registry_dir, m["version"]).exists()
                    and registry.model_file(self.ctx.settings.registry_dir, m["version"]).exists()]
        if not versions:
            return []
        texts = fingerprint.probe_texts(normalize_text(t) for t in training_rows(self.ctx.db, include_pseudo=False)["text"]
                                        if isinstance(t, str))
        done = []
        for row in versions if texts else []:
            try:
                model = registry.load_model(self.ctx.settings.registry_dir, row["version"], sha256=row["sha256"],
                                            sklearn_version=row["sklearn_version"])
                registry.save_fingerprint(self.ctx.settings.registry_dir, row["version"],
                                          fingerprint.take(model, texts, sklearn_version=running))
            except (ModelLoadError, OSError, ValueError) as exc:
                log.warning("no fingerprint for %s: %s", row["version"], exc)
                continue
            done.append(row["version"])
        if done:
            record_event(self.ctx.db, ts=self.ctx.clock(), kind=EventKind.WORKER,
                         message=f"Fingerprints recorded for {', '.join(done)} ({len(texts)} probe texts), so they can "
                                 "be verified after a scikit-learn upgrade.")
        return done

    def check_drift(self) -> list[drift.Verdict]:
        """Judge every completed UTC day not judged yet; return the alarmed days (see DriftJob)."""
        return self.drift.run()

    # -- commands and tasks --------------------------------------------------------------

    def _take(self, command: dict[str, Any]) -> None:
        cid, kind, args = command["id"], command["kind"], command["args"]
        now = self.ctx.clock()
        if kind in (CommandKind.PAUSE, CommandKind.RESUME):
            queue.mark_running(self.ctx.db, cid, ts=now, stage=kind)
            faults.point("command_after_mark_running")
            set_paused(self.ctx, kind == CommandKind.PAUSE)
            faults.point("pause_after_set")
            word = "paused" if kind == CommandKind.PAUSE else "resumed"
            with self.ctx.db.write() as con:
                record_event(con, ts=now, kind=EventKind.SCHEDULER,
                             message=f"Scheduler {word} (command #{cid}, from {command['source']}).")
                queue.finish_command(con, cid, ok=True, message=f"scheduler {word}", ts=now)
            return
        if kind == CommandKind.RETRAIN:
            queue.mark_running(self.ctx.db, cid, ts=now, stage="queued behind the running task" if self._running else "starting")
            self.request_retrain(Trigger.MANUAL, f"requested from {command['source']} (command #{cid})", command_id=cid,
                                 force=bool((args or {}).get("force")))
            return
        if kind == CommandKind.ROLLBACK:
            queue.mark_running(self.ctx.db, cid, ts=now, stage="rolling back")
            task = _Task(CommandKind.ROLLBACK, args=args, why=f"requested from {command['source']} (command #{cid})",
                         command_ids=[cid], actor=command["source"])
            if self.synchronous and self._running is None:
                self._run_task(task)
            elif self.synchronous:  # the CLI's own retrain runs in another thread: at once, beside it
                self._run_control(task)
            else:  # at once, whatever the executor is doing
                with self._cond:
                    self._controls.append(task)
                    self._cond.notify_all()
            return
        if kind == CommandKind.ADOPT:
            queue.mark_running(self.ctx.db, cid, ts=now, stage="queued behind the running task" if self._running else "adopting")
            self._submit(_Task(CommandKind.ADOPT, trigger=Trigger.ADOPT, args=args, why=f"requested from {command['source']} (command #{cid})",
                               command_ids=[cid]))
            return
        queue.finish_command(self.ctx.db, cid, ok=False, message=f"unknown command {kind!r}", ts=now)

    def request_retrain(self, trigger: str, why: str, *, command_id: int | None = None, force: bool = False) -> str:
        """Start a retrain, or queue it behind the running one (joining a waiting one).

        ``force``: train even when the training set equals the champion's (``retrain --force``).
        """
        ids = [command_id] if command_id is not None else []
        with self._cond:
            waiting = next((t for t in self._tasks if t.kind == CommandKind.RETRAIN), None)
            if waiting is not None:
                waiting.command_ids.extend(ids)
                if force:
                    waiting.args["force"] = True
                return f"joined the retrain already waiting ({waiting.trigger})"
            task = _Task(CommandKind.RETRAIN, trigger=trigger, why=why, command_ids=ids, args={"force": True} if force else {})
            if not self.synchronous:
                busy = self._running is not None or bool(self._tasks)
                self._tasks.append(task)
                self._cond.notify_all()
                return "queued behind the running task" if busy else "retrain started"
        return self._run_task(task)

    def _submit(self, task: _Task) -> None:
        if self.synchronous:
            self._run_task(task)
            return
        with self._cond:
            self._tasks.append(task)
            self._cond.notify_all()

    def _execute_forever(self) -> None:
        while not self.stop_event.is_set():
            with self._cond:
                while not self._tasks and not self.stop_event.is_set():
                    self._cond.wait(timeout=0.5)
                if self.stop_event.is_set():
                    return
                task = self._tasks.popleft()
                self._running = task  # under the lock: a request now sees it running, not idle
            try:
                self._run_task(task)
            except Exception:
                log.exception("task %s crashed", task.kind)

    def _control_forever(self) -> None:
        while not self.stop_event.is_set():
            with self._cond:
                while not self._controls and not self.stop_event.is_set():
                    self._cond.wait(timeout=0.5)
                if self.stop_event.is_set():
                    return
                task = self._controls.popleft()
            self._run_control(task)

    def _run_control(self, task: _Task) -> None:
        """Run a rollback beside whatever task runs (``_running`` stays the executor's)."""
        try:
            self._run_rollback(task)
        except Exception as exc:  # a bug or a store fault: its command ends failed, the loop goes on
            log.exception("rollback crashed")
            try:
                self._finish_commands(task, ok=False, message=f"the rollback crashed: {type(exc).__name__}: {exc}")
            except Exception:
                log.exception("could not record that the rollback crashed")

    def _run_task(self, task: _Task) -> str:
        self._running = task
        try:
            if task.kind in (CommandKind.RETRAIN, CommandKind.ADOPT):
                return self._run_retrain(task)
            return self._run_rollback(task)
        except Exception as exc:  # a bug or a store fault: its commands end failed, the loop goes on
            log.exception("%s crashed", task.kind)
            message = f"the {task.kind} crashed: {type(exc).__name__}: {exc}"
            try:
                self._finish_commands(task, ok=False, message=message)
                record_event(self.ctx.db, ts=self.ctx.clock(), kind=EventKind.WORKER, severity=Severity.ERROR,
                             message=f"The {task.kind} ({task.why or task.trigger}) crashed: {type(exc).__name__}: {exc}.")
            except Exception:
                log.exception("could not record that the %s crashed", task.kind)
            return message
        finally:
            self._running = None
            self._set_progress(None)

    def _run_retrain(self, task: _Task) -> str:
        last_write = [0.0]

        def progress(fraction: float, stage: str) -> None:
            if fraction < 1.0 and time.monotonic() - last_write[0] < 0.2:
                return
            last_write[0] = time.monotonic()
            try:
                for cid in task.command_ids:
                    queue.set_progress(self.ctx.db, cid, progress=fraction, stage=stage)
                self._set_progress({"trigger": task.trigger, "progress": fraction, "stage": stage,
                                    "started_at": self.ctx.clock().isoformat()})
            except RetrainerError:
                log.warning("could not record progress")

        faults.point("worker_before_cycle")
        adopt = AdoptRequest(task.args["path"], task.args.get("note") or "") if task.kind == CommandKind.ADOPT else None
        result = run_cycle(self.ctx, trigger=task.trigger, command_id=task.command_ids[0] if task.command_ids else None,
                           progress=progress, adopt=adopt, force=bool(task.args.get("force")))
        self.last_result = result
        faults.point("worker_after_cycle")
        self.check_model(force=True)
        # Accepted, rejected or inconclusive: the retrain did its work. Failed: its command failed too.
        self._finish_commands(task, ok=result.status != RetrainStatus.FAILED, message=result.summary())
        return result.summary()

    def _run_rollback(self, task: _Task) -> str:
        try:
            result = rollback(self.ctx, to=task.args.get("to"), why=task.why, actor=task.actor)
        except RetrainerError as exc:
            message = f"rollback refused: {exc}"
            record_event(self.ctx.db, ts=self.ctx.clock(), kind=EventKind.ROLLBACK, severity=Severity.WARNING,
                         message=f"Rollback refused: {exc}.")
            self._finish_commands(task, ok=False, message=message)
            return message
        faults.point("worker_after_rollback")
        self.check_model(force=True)
        self._finish_commands(task, ok=result.deployed, message=result.message)
        return result.message

    def _finish_commands(self, task: _Task, *, ok: bool, message: str) -> None:
        if not task.command_ids:
            return
        with self.ctx.db.write() as con:
            for cid in task.command_ids:
                queue.finish_command(con, cid, ok=ok, message=message, ts=self.ctx.clock())
            faults.point("commands_before_commit")

    def _set_progress(self, value: dict[str, Any] | None) -> None:
        with self.ctx.db.write() as con:
            set_state(con, PROGRESS_KEY, value, ts=self.ctx.clock())


def settings_record(settings: Settings) -> dict[str, str]:
    """Every setting but ``home`` as text, as the worker records it with its heartbeat: the CLI compares its own
    with it when it hands a command to the worker (a RETRAINER_* variable set only for the CLI does not apply)."""
    return {f.name: str(getattr(settings, f.name)) for f in dataclasses.fields(settings) if f.name != "home"}


def open_worker(ctx: Context, *, synchronous: bool = False) -> tuple[Worker, WorkerLock]:
    """Take the single-worker lock (or raise WorkerLockedError) and build the worker."""
    lock = WorkerLock(ctx.settings.worker_lock_path, role="cli" if synchronous else "worker").acquire()
    try:
        worker = Worker(ctx, synchronous=synchronous)
        worker.lock = lock
        return worker, lock
    except BaseException:
        lock.release()
        raise
