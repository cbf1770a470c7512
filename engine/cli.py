"""The command line: ``python -m engine <command>``. Each command is a function; ``main`` wires them.

Errors a user can cause end as one line on stderr (``error: ...``) and exit code 2;
no traceback. Exit codes: 0 done (a retrain whose candidate the gate kept out is done too),
1 the work ran and failed (a failed retrain or rollback, an import that stored nothing),
2 bad input or a state that prevents the work (no model yet, an unreadable store), 130 Ctrl-C.
A reader that closes the pipe early (``status --json | head``) ends the command quietly with 0.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

from engine.clock import to_local, to_utc
from engine.commands import submit, wait_for
from engine.config import Settings, check_training, load_settings
from engine.context import Context
from engine.errors import InputError, RetrainerError, StoreError, WorkerLockedError
from engine.lock import worker_running
from store.vocabulary import CommandKind, CommandStatus, Trigger

log = logging.getLogger("engine")


def _fmt_time(value: Any) -> str:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if isinstance(value, datetime):
        return f"{to_local(value):%Y-%m-%d %H:%M:%S}"
    return "-" if value is None else str(value)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _progress_printer(stream=sys.stderr):
    def show(row: dict[str, Any]) -> None:
        pct = f"{100 * (row.get('progress') or 0):5.1f}%"
        print(f"  [{row['status']:>7}] {pct}  {row.get('stage') or ''}", file=stream, flush=True)

    return show


# -- commands -------------------------------------------------------------------------------


def cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    from engine.worker import open_worker

    check_training(settings)  # a pipeline factory that cannot be imported is refused now (exit 2), not at the first retrain
    ctx = Context.open(settings)
    worker, lock = open_worker(ctx)
    def stop(signum, frame):
        log.info("signal %s: stopping", signum)
        worker.stop_event.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("worker on %s (pid lock %s)", settings.home, lock.path)
    try:
        worker.run()
    finally:
        lock.release()
    log.info("worker stopped cleanly")
    return 0


def _port_in_use(port: int) -> bool:
    """Whether something already listens on ``port`` (1-65535; connecting to it on loopback succeeds)."""
    import socket

    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _no_store(settings: Settings) -> str:
    return (f"there is no store in {settings.home} (no {settings.db_path.name} there): check RETRAINER_HOME, or create "
            "one by importing data (`python -m engine import FILE --labeled`), starting the worker "
            "(`python -m engine worker`, `make run`) or building the demo (`python -m engine demo`)")


def _open_existing(settings: Settings) -> Context:
    """The store of a command that only reads (or needs what is stored): InputError, creating nothing, when there is none.

    A typo in RETRAINER_HOME is reported instead of answered with an empty store made at the wrong place.
    """
    if not settings.db_path.is_file():
        raise InputError(_no_store(settings))
    return Context.open(settings, create=False)


def _refuse_if_locked(settings: Settings) -> None:
    """InputError (exit 2) when a process holds the data directory's worker lock: one worker per directory."""
    holder = worker_running(settings.worker_lock_path)
    if holder is not None:
        raise WorkerLockedError(f"a worker is already running on {settings.home} ({_holder_words(holder)}): one worker "
                                "per data directory: stop that one first, or use another RETRAINER_HOME")


def cmd_run(settings: Settings, args: argparse.Namespace) -> int:
    from engine.supervisor import run_service

    check_training(settings)
    _refuse_if_locked(settings)  # before the API and the dashboard start, not after (exit 2: a restart would not help)
    for name, port, option in (("dashboard", args.port, "--port N (make run PORT=N)"),
                               ("API", args.api_port, "--api-port N (make run API_PORT=N)")):
        if _port_in_use(port):
            raise InputError(f"port {port} for the {name} is already in use (another Retrainer or another program): "
                             f"stop it, or choose a free port with {option}")

    empty = not settings.db_path.exists()
    demo = args.demo_if_empty and empty
    if demo:
        print(f"[demo] The data directory is empty: building the {args.demo_days}-day demo (30-80 seconds for 90). The dashboard on "
              f"http://localhost:{args.port} shows its progress; the worker and the API start when it is done.",
              file=sys.stderr)
    elif empty:
        print(f"[empty] No store in {settings.home} yet: starting with none (the worker creates it). Import your data with "
              "`python -m engine import FILE --labeled` and train with `python -m engine retrain --wait`; the demo is "
              "built only into the default ./data (`make run` without RETRAINER_HOME), or by `python -m engine demo`.",
              file=sys.stderr)
    return run_service(port=args.port, api_port=args.api_port, demo=demo, demo_days=args.demo_days)


# Commands that a CLI running its own retrain also takes while it runs (engine.worker.CONTROL_KINDS).
CONTROL_KINDS = (CommandKind.PAUSE, CommandKind.RESUME, CommandKind.ROLLBACK)
ROLES = {"worker": "the worker", "cli": "a command the CLI runs itself", "demo": "the demo build",
         "rebuild-rollups": "a rollup rebuild"}


def _holder_words(holder: dict[str, Any]) -> str:
    """Who holds the worker lock, for messages: 'the worker, pid 12 on HOST' (or the CLI's, the demo build's...)."""
    role = ROLES.get(holder.get("role") or "worker", str(holder.get("role")))
    where = f"pid {holder['pid']}" if holder.get("pid") else "pid unknown"
    if holder.get("host"):
        where += f" on {holder['host']}"
    return f"{role}, {where}"


def _is_worker(holder: dict[str, Any] | None) -> bool:
    """Whether the lock's holder is a worker that takes queued commands (not a CLI, demo or rollup rebuild)."""
    return holder is not None and (holder.get("role") or "worker") == "worker"


def _run_command(settings: Settings, kind: str, cargs: dict[str, Any], *, wait: bool, source: str = "cli") -> int:
    """Queue a command for the worker; with ``wait``, see it through (running it here if no worker runs).

    A command queued while another process holds the worker lock without taking commands (a second
    ``retrain --wait`` beside a first) waits for that process to end, then runs here; without ``wait`` the
    message says that nobody takes it until a worker starts.
    """
    ctx = Context.open(settings)
    holder = worker_running(settings.worker_lock_path)
    if not wait or holder is not None:
        command_id = submit(ctx, kind, args=cargs, source=source)
        if _is_worker(holder):
            _compare_settings(settings, ctx)
        if not wait:
            if _is_worker(holder):
                note = "the worker will take it"
            elif holder is not None:
                note = (f"nobody takes it yet: the data directory is held by {_holder_words(holder)}, which runs only its "
                        "own work; start a worker (`python -m engine worker`), or run the command with --wait")
            else:
                note = "no worker is running: start one with `python -m engine worker` (or add --wait to run it now)"
            print(f"command #{command_id} ({kind}) queued; {note}")
            return 0
        if _is_worker(holder):
            print(f"command #{command_id} ({kind}) queued; waiting for the worker", file=sys.stderr)
        elif holder.get("role") == "cli" and kind in CONTROL_KINDS:  # Worker.taking_control_commands
            print(f"command #{command_id} ({kind}) queued; the data directory is held by {_holder_words(holder)}, "
                  "which takes it at once", file=sys.stderr)
        else:
            print(f"command #{command_id} ({kind}) queued; the data directory is held by {_holder_words(holder)}: "
                  "waiting for it to end, then the command runs here", file=sys.stderr)
        return _see_through(ctx, command_id, kind)
    return _run_here(ctx, kind, cargs, source=source)


def _run_here(ctx: Context, kind: str, cargs: dict[str, Any], *, source: str) -> int:
    """Take the worker lock and run the command in this process; if a worker took the lock meanwhile, queue it."""
    from engine.worker import open_worker

    try:
        worker, lock = open_worker(ctx, synchronous=True)
    except WorkerLockedError:  # a worker (or another CLI) took the lock meanwhile: queue and see it through
        return _run_command(ctx.settings, kind, cargs, wait=True, source=source)
    try:
        worker.start(schedule=False)
        command_id = submit(ctx, kind, args=cargs, source=source)
        print(f"command #{command_id} ({kind}): no worker is running, so it runs here", file=sys.stderr)
        return _run_queued(ctx, worker, command_id)
    finally:
        worker.shutdown()
        lock.release()


def _run_queued(ctx: Context, worker: Any, command_id: int) -> int:
    from store.commands import get_command

    with worker.taking_control_commands(skip=command_id):  # pause, resume, rollback from others: at once
        worker.run_command(command_id)  # only this one of the rest: others wait for the worker
    return _report(get_command(ctx.db, command_id))


def _see_through(ctx: Context, command_id: int, kind: str, *, poll: float = 0.25) -> int:
    """Wait for a queued command's result. When no process holds the worker lock any more and the command was
    not finished (the holder was another CLI command, or a worker that stopped), take the lock and run it here
    (a command left 'running' by a stopped worker is marked failed by the start's repair, and reported)."""
    from engine.worker import open_worker
    from store.commands import get_command

    show = _progress_printer()
    last = None
    while True:
        row = wait_for(ctx, command_id, timeout=1.0, poll=poll)
        seen = (row["status"], row["stage"], row["progress"])
        if seen != last:
            show(row)
            last = seen
        if row["status"] in (CommandStatus.DONE, CommandStatus.FAILED):
            return _report(row)
        if worker_running(ctx.settings.worker_lock_path) is not None:
            continue
        try:
            worker, lock = open_worker(ctx, synchronous=True)
        except WorkerLockedError:  # someone else took the lock first: keep waiting
            continue
        try:
            worker.start(schedule=False)  # its repair fails a command that a stopped worker left running
            row = get_command(ctx.db, command_id)
            if row["status"] != CommandStatus.QUEUED:
                return _report(row)
            print(f"command #{command_id} ({kind}): the process that held the data directory ended without running "
                  "it, so it runs here", file=sys.stderr)
            return _run_queued(ctx, worker, command_id)
        finally:
            worker.shutdown()
            lock.release()


def _compare_settings(settings: Settings, ctx: Context) -> None:
    """Say on stderr when the worker that takes this command trains with other settings than this process loaded.

    The worker records its settings with its heartbeat (engine.worker.settings_record); a worker that has not
    written them yet is named with the RETRAINER_* variables of this environment that it may not share.
    """
    from engine.status import HEARTBEAT_KEY
    from engine.worker import settings_record
    from store.state import read_state

    beat = (read_state(ctx.db).get(HEARTBEAT_KEY) or (None, None))[0] or {}
    theirs = beat.get("settings")
    if isinstance(theirs, dict):
        mine = settings_record(settings)
        differ = [key for key in mine if key in theirs and mine[key] != theirs[key]]
        if differ:
            shown = "; ".join(f"{key} {mine[key]!r} here, {theirs[key]!r} in the worker (RETRAINER_{key.upper()})"
                              for key in differ)
            print(f"note: the worker runs this command with its own settings, not this process's: {shown}; restart "
                  "the worker with these settings for them to apply", file=sys.stderr)
        return
    from engine.config import NOT_SETTINGS

    names = sorted(name for name in os.environ
                   if name.startswith("RETRAINER_") and name not in NOT_SETTINGS and name != "RETRAINER_HOME")
    if names:
        print(f"note: the worker runs this command with its own settings; this environment's {', '.join(names)} "
              "apply only if the worker was started with them", file=sys.stderr)


def _report(row: dict[str, Any]) -> int:
    print(f"command #{row['id']} {row['kind']}: {row['status']}")
    if row.get("message"):
        print(row["message"])
    return 0 if row["status"] == CommandStatus.DONE else 1  # queued or running (timed out), or failed


def cmd_retrain(settings: Settings, args: argparse.Namespace) -> int:
    check_training(settings)
    return _run_command(settings, CommandKind.RETRAIN, {"force": True} if args.force else {}, wait=args.wait)


def cmd_rollback(settings: Settings, args: argparse.Namespace) -> int:
    from engine.commands import check_rollback

    from engine import registry

    # Refused here (exit 2) when it cannot succeed, rather than queued to fail later: the name first, then the store.
    if args.to is not None:
        registry.check_version(str(args.to).strip())
    to = check_rollback(_open_existing(settings), to=args.to)
    return _run_command(settings, CommandKind.ROLLBACK, {"to": to} if to else {}, wait=args.wait)


def cmd_adopt(settings: Settings, args: argparse.Namespace) -> int:
    from engine.adopt import SMOKE_ROWS, precheck
    from store.querylog import known_labels, recent_texts

    # A file that cannot be adopted is refused here (exit 2), not recorded as a failed retrain by the worker.
    db = Context.open(settings).db
    precheck(Path(args.path).expanduser(), texts=recent_texts(db, limit=SMOKE_ROWS), known_labels=set(known_labels(db)))
    return _run_command(settings, CommandKind.ADOPT, {"path": args.path, "note": args.note or ""}, wait=True)


def cmd_pause(settings: Settings, args: argparse.Namespace) -> int:
    return _run_command(settings, CommandKind.PAUSE, {}, wait=True)


def cmd_resume(settings: Settings, args: argparse.Namespace) -> int:
    return _run_command(settings, CommandKind.RESUME, {}, wait=True)


def cmd_status(settings: Settings, args: argparse.Namespace) -> int:
    from engine.status import next_retrain, system_status

    status = system_status(_open_existing(settings))
    if args.json:
        print(json.dumps(status, indent=2, default=str))
        return 0
    active = status["active"]
    print(f"data directory   {status['home']}")
    if active:
        print(f"active model     {active['version']} since {_fmt_time(active['deployed_at'])}: "
              f"accuracy {_pct(active['accuracy'])}, macro-F1 {_pct(active['macro_f1'])}")
    else:
        print("active model     none yet (import labelled data and run `python -m engine retrain --wait`, or `python -m engine demo`)")
    fb = status["fallback"]
    print(f"fallback         {'IN USE: ' + fb['reason'] if fb else 'no'}")
    w = status["worker"]
    if w["alive"]:
        print(f"worker           alive (pid {w['pid']}, heartbeat {w['heartbeat_age_s']:.0f}s ago{', busy: ' + w['busy'] if w['busy'] else ''})")
    else:
        print("worker           DOWN: start it with `python -m engine worker` (or `make run`)")
    sched = status["scheduler"]
    state = "PAUSED" if sched["paused"] else "running"
    print(f"scheduler        {state}" + ("" if w["alive"] else " (as set; no job runs until a worker does)"))
    for job in sched["jobs"]:
        print(f"  {job['name']:<9} next {_fmt_time(job['next_run'])}   last run {_fmt_time(job['last_run'])}: "
              f"{job['last_result'] or '-'}")
    a = status["adaptive"]
    days = ("no retrain yet" if a["days_since_last_retrain"] is None
            else f"{a['days_since_last_retrain']:.1f} of {a['max_days']:g} days since the last retrain")
    adaptive_ran = any(job["name"] == Trigger.ADAPTIVE and job["last_run"] for job in sched["jobs"])
    print(f"adaptive now     {a['new_samples']} of {a['min_samples']} new labelled samples; {days} "
          f"({'due: the next check retrains' if a['due'] else 'not due'}"
          + ("; the adaptive line above is its last check)" if adaptive_ran else ")"))
    plan = next_retrain(sched["jobs"], a, paused=sched["paused"], every_minutes=settings.adaptive_every_minutes)
    if plan.at is not None:
        print(f"next retrain     {_fmt_time(plan.at)} ({plan.job}), unless the adaptive job retrains sooner")
    elif plan.paused:
        print("next retrain     none while the scheduler is paused")
    if status["spool_backlog_files"]:
        print(f"spool            {status['spool_backlog_files']} batch file(s) of logged queries wait for the worker")
    return 0


def cmd_import(settings: Settings, args: argparse.Namespace) -> int:
    from engine.importer import import_file

    ctx = Context.open(settings)
    started = time.perf_counter()
    shown = [0.0]

    def progress(rows: int, done: int, total: int) -> None:
        now = time.perf_counter() - started
        if now - shown[0] < 2 and done < total:
            return
        shown[0] = now
        pct = 100 * done / total if total else 100.0
        print(f"  {pct:5.1f}%  {rows:,} rows read ({done / 1e6:,.1f} of {total / 1e6:,.1f} MB, {now:.1f}s)",
              file=sys.stderr, flush=True)

    report = import_file(ctx, Path(args.path), labeled=args.labeled, again=args.again, encoding=args.encoding,
                         tz=args.tz, progress=progress)
    for where, reason in report.problems[:args.show]:
        print(f"  rejected {where}: {reason}")
    hidden = report.rejected - min(len(report.problems), args.show)
    if hidden > 0:
        print(f"  ... and {hidden} more rejected rows (use --show N to list more)")
    if report.encoding:
        print(f"  read as {report.encoding} ({report.encoding_how}; --encoding NAME overrides)"
              + (f", {report.dialect}" if report.dialect else ""))
    if report.ignored_columns:
        print(f"  ignored columns: {', '.join(report.ignored_columns)}")
    print(f"  {report.new_labels_line()}")
    for label, other, difference in report.confusable:
        print(f"  warning: label {label!r} looks like {other!r} ({difference}): fix the file if they are one class")
    if report.labels_in_store > settings.max_labels:
        print(f"  warning: the store now has {report.labels_in_store:,} labels; retrains stop above "
              f"{settings.max_labels:,} (setting max_labels)")
    print(report.summary())
    return 1 if report.rejected else 0


def cmd_predict(settings: Settings, args: argparse.Namespace) -> int:
    from engine.classifier import Classifier
    from engine.ingest import ingest_spool

    if not settings.db_path.is_file():
        raise InputError(_no_store(settings))
    unlogged = None
    with Classifier(settings=settings) as clf:
        predictions = clf.predict_many(args.text)
        for text, p in zip(args.text, predictions):
            top = ", ".join(f"{label} {_pct(prob)}" for label, prob in p.top)
            print(f"{p.label}\t{p.confidence:.3f}\t{p.version}{' (fallback)' if p.fallback else ''}\t{p.query_id}\t{text}")
            if args.top:
                print(f"\ttop: {top}")
        status = clf.status()
        sys.stdout.flush()
        try:
            clf.flush()  # here, to know whether the queries reached the spool (closing would only log it)
        except OSError as exc:
            unlogged = exc
    if status.fallback:
        print(f"warning: fallback in use: {status.fallback_reason}", file=sys.stderr)
    if unlogged is not None:
        print(f"error: the queries were answered but could not be logged: the spool directory {settings.spool_dir} is "
              f"not writable ({unlogged.strerror or unlogged}); give the user running this write access to "
              f"{settings.home}, or set RETRAINER_HOME to a writable data directory", file=sys.stderr)
        return 1
    if not worker_running(settings.worker_lock_path):
        # The predictions are made and in the spool; storing them now is a courtesy the worker would do.
        try:
            ctx = Context.open(settings)
            ingest_spool(ctx.db, settings.spool_dir, clock=ctx.clock)
        except StoreError as exc:
            print(f"warning: the queries wait in the spool ({settings.spool_dir}) and are stored when a worker "
                  f"runs or the next command can reach the store: {exc}", file=sys.stderr)
    return 0


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    from engine.api import serve

    serve(settings, host=args.host, port=args.port, access_log=not args.no_access_log,
          announce=lambda line: print(line, flush=True))
    return 0


def cmd_quarantine(settings: Settings, args: argparse.Namespace) -> int:
    from engine.quarantine import Rule, list_rules, quarantine

    ctx = _open_existing(settings) if args.list else Context.open(settings)
    if args.list:
        if any(v is not None for v in (args.source, args.version, args.since, args.until, args.reason)):
            raise InputError("--list shows the rules: give it alone, or leave it out to add a rule")
        found = list_rules(ctx)
        if not found:
            print("no quarantine rules")
        for row in found:
            state = "active" if row["lifted_at"] is None else f"lifted {_fmt_time(row['lifted_at'])}"
            print(f"#{row['id']:<4} {state:<24} {Rule.from_row(row).describe()}: {row['queries']:,} logged queries, "
                  f"{row['labels']:,} labels; added {_fmt_time(row['created_at'])}: {row['reason']}")
        return 0
    rule = Rule(source=args.source, version=args.version, since=args.since, until=args.until, reason=args.reason or "")
    rule_id, counts = quarantine(ctx, rule, by="cli")
    print(f"quarantine #{rule_id} ({rule.describe()}): {counts['queries']:,} logged queries and {counts['labels']:,} "
          "labels are left out of training and evaluation from the next retrain; undo with "
          f"`python -m engine unquarantine {rule_id}`")
    return 0


def cmd_unquarantine(settings: Settings, args: argparse.Namespace) -> int:
    from engine.quarantine import unquarantine

    rule = unquarantine(_open_existing(settings), args.id, by="cli")
    print(f"quarantine #{args.id} ({rule.describe()}) lifted: its rows count again from the next retrain")
    return 0


def cmd_events(settings: Settings, args: argparse.Namespace) -> int:
    from store.events import recent_events

    events = recent_events(_open_existing(settings).db, limit=args.limit)
    if args.json:
        print(json.dumps(events, indent=2, default=str))
        return 0
    if not events:
        print("no events yet")
    for e in events:
        print(f"{_fmt_time(e['ts'])}  {e['severity']:<7} {e['kind']:<9} {e['message']}")
    return 0


def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    from demo.replay import build_demo
    from engine.demo_build import DemoBuild, clear_progress, write_progress

    started = time.perf_counter()
    started_at = datetime.now(timezone.utc).isoformat()

    def progress(day: int, days: int, note: str) -> None:
        width = 30
        done = int(width * day / days)
        print(f"\r  [{'#' * done}{'.' * (width - done)}] day {day}/{days} {note:<60.60}", end="", file=sys.stderr, flush=True)
        # The dashboard shows this while the build runs (make run starts it first: engine/supervisor.py).
        write_progress(settings.home, DemoBuild(pid=os.getpid(), day=day, days=days, started_at=started_at, note=note))

    try:
        summary = build_demo(settings, days=args.days, seed=args.seed, force=args.force, progress=progress)
    finally:
        clear_progress(settings.home)
    print(file=sys.stderr)
    print(summary.text())
    print(f"demo built in {time.perf_counter() - started:.1f}s")
    return 0


def cmd_export_log(settings: Settings, args: argparse.Namespace) -> int:
    from engine.export import export_log

    report = export_log(_open_existing(settings), Path(args.parquet), since=args.since)
    print(report.summary())
    print(f"read it in place, e.g. in DuckDB: SELECT day, count(*) FROM read_parquet("
          f"'{Path(args.parquet) / 'queries'}/*/*.parquet', hive_partitioning = true) GROUP BY day ORDER BY day")
    return 0


def cmd_rebuild_rollups(settings: Settings, args: argparse.Namespace) -> int:
    """Rebuild the dashboard's rollups from the log, holding the worker lock so no worker writes meanwhile."""
    from engine.lock import WorkerLock
    from store.rollups import rebuild_store

    ctx = _open_existing(settings)
    try:
        lock = WorkerLock(settings.worker_lock_path, role="rebuild-rollups").acquire()
    except WorkerLockedError as exc:
        holder = worker_running(settings.worker_lock_path) or {}
        raise InputError(f"a worker is running (pid {holder.get('pid', '?')}): stop it first, then run rebuild-rollups "
                         "again (a worker also checks the rollups when it starts, and rebuilds them if they "
                         "disagree with the log)") from exc
    try:
        print("rebuilding the rollups from the log (about 0.5 s per million logged queries)...", file=sys.stderr, flush=True)
        rebuilt = rebuild_store(ctx.db, ts=ctx.clock(), always=True, why="on request (rebuild-rollups)")
    finally:
        lock.release()
    found = f"they disagreed with the log: {rebuilt.disagreement}" if rebuilt.disagreement else "their totals agreed with the log"
    print(f"rollups rebuilt from {rebuilt.queries:,} logged queries and {rebuilt.labels:,} labels in "
          f"{rebuilt.seconds:.1f}s ({found})")
    return 0


def _moment(text: str) -> datetime:
    """A time on the command line as naive UTC: with an offset as given, without one in this machine's zone."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a time: use YYYY-MM-DD or YYYY-MM-DDTHH:MM (local time), or add an offset (+09:00, Z)") from None
    return to_utc(moment) if moment.tzinfo is None else moment.astimezone(timezone.utc).replace(tzinfo=None)


def _whole(low: int, high: int, *, what: str, note: str = ""):
    """An argparse type: an integer from ``low`` to ``high``, or an error naming the range (argparse exits 2)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}: use a whole number from {low} to {high}{note}")
        return value

    return parse


# A TCP port: 1-65535; `serve` also takes 0, meaning any free port (the one taken is printed).
PORT = _whole(1, 65_535, what="a port")
ANY_PORT = _whole(0, 65_535, what="a port", note=" (0: any free port)")
# DuckDB's LIMIT takes a BIGINT; a million events is more than any terminal wants.
MAX_EVENTS = 1_000_000


def _day(text: str):
    try:
        return datetime.strptime(text, "%Y-%m-%d").date()
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a day: use YYYY-MM-DD, e.g. 2026-03-04") from None


# -- wiring -------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    prog = "retrainer" if Path(sys.argv[0]).name == "retrainer" else "python -m engine"  # the console script, or -m
    parser = argparse.ArgumentParser(prog=prog, description="Retrainer: keep a text classifier improving without ever silently getting worse.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser("worker", help="run the worker until SIGTERM or Ctrl-C").set_defaults(func=cmd_worker)

    p = sub.add_parser("run", help="run the worker, the HTTP API and the dashboard together until SIGTERM or Ctrl-C (make run)")
    p.add_argument("--port", type=PORT, default=8501, help="the dashboard's port, 1-65535 (default 8501)")
    p.add_argument("--api-port", type=PORT, default=8000, help="the HTTP API's port, 1-65535 (default 8000)")
    p.add_argument("--demo-if-empty", action="store_true",
                   help="with no store yet, build the demo first while the dashboard already shows its progress")
    p.add_argument("--demo-days", type=_whole(7, 365, what="a number of days"), default=90,
                   help="days of demo history to build, 7-365 (with --demo-if-empty; default 90)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("demo", help="build the 90-day demo history into an empty data directory")
    p.add_argument("--days", type=_whole(7, 365, what="a number of days"), default=90,
                   help="days of history to replay, 7-365 (default 90)")
    p.add_argument("--seed", type=_whole(0, 2**32 - 1, what="a seed"), default=7,
                   help="random seed (default 7)")
    p.add_argument("--force", action="store_true", help="delete existing data in the data directory first")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("retrain", help="ask for a retrain (trigger 'manual')")
    p.add_argument("--wait", action="store_true", help="wait for the decision (runs it here if no worker runs)")
    p.add_argument("--force", action="store_true",
                   help="train even if the training set is unchanged since the champion (otherwise skipped)")
    p.set_defaults(func=cmd_retrain)

    p = sub.add_parser("rollback", help="go back to the previous deployed version, or to --to VERSION")
    p.add_argument("--to", metavar="VERSION", help="a version that served before, e.g. v0003")
    p.add_argument("--wait", action="store_true", help="wait for the result (runs it here if no worker runs)")
    p.set_defaults(func=cmd_rollback)

    p = sub.add_parser("adopt", help="make a fitted model you trust (joblib/pickle file) a version: the first champion, "
                                     "or a candidate gated against the champion")
    p.add_argument("path", help="a file saved with joblib.dump or pickle.dump; loading it runs code: only files you trust")
    p.add_argument("--note", metavar="TEXT", help="why, or where the model comes from (kept with the version)")
    p.set_defaults(func=cmd_adopt)

    sub.add_parser("pause", help="pause the scheduler (persists across restarts)").set_defaults(func=cmd_pause)
    sub.add_parser("resume", help="resume the scheduler").set_defaults(func=cmd_resume)

    p = sub.add_parser("status", help="active model, fallback, worker, scheduler, adaptive counters")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("import", help="import logged queries or labelled examples (CSV, JSON Lines, Parquet); "
                                      "exit 0 all rows stored, 1 some rows rejected, 2 file refused (nothing stored)")
    p.add_argument("path", help="a .csv/.tsv/.txt (delimited text), .jsonl/.ndjson or .parquet file with a 'text' column")
    p.add_argument("--labeled", action="store_true", help="rows carry true labels in a 'label' column")
    p.add_argument("--tz", metavar="ZONE", help="the IANA zone of 'ts' values written without an offset, e.g. "
                   "Asia/Tokyo (default: such times are UTC)")
    p.add_argument("--show", type=_whole(0, 1_000_000, what="a count"), default=20, metavar="N",
                   help="list at most N rejected rows (default 20)")
    p.add_argument("--again", action="store_true",
                   help="import a file whose bytes were imported before (its rows are stored a second time)")
    p.add_argument("--encoding", metavar="NAME", help="the file's text encoding, e.g. cp1252 (default: detected)")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("predict", help="classify texts with the active model (and log them)")
    p.add_argument("text", nargs="+", help="one or more queries")
    p.add_argument("--top", action="store_true", help="also show the top three labels")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("export-log", help="write the query log and labels as Parquet, one folder per day")
    p.add_argument("--parquet", required=True, metavar="DIR",
                   help="directory to write DIR/queries/day=YYYY-MM-DD/data.parquet and DIR/labels/... into")
    p.add_argument("--since", type=_day, metavar="YYYY-MM-DD", help="only the days from this one on (default: all)")
    p.set_defaults(func=cmd_export_log)

    p = sub.add_parser("serve", help="the HTTP API (FastAPI; OpenAPI docs at /docs) until SIGTERM or Ctrl-C")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1; any other needs action_token in .streamlit/secrets.toml)")
    p.add_argument("--port", type=ANY_PORT, default=8000, help="TCP port, 1-65535 (default 8000; 0: any free port)")
    p.add_argument("--no-access-log", action="store_true", help="do not log one line per request")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("quarantine", help="leave matching logged queries and labels out of training and evaluation "
                       "(reversible), or --list the rules")
    p.add_argument("--source", metavar="NAME", help="rows logged or imported with this source (e.g. a client's name)")
    p.add_argument("--version", metavar="VERSION", help="queries answered by this model version, and their labels")
    p.add_argument("--since", type=_moment, metavar="TIME", help="rows from this time on (local time unless an offset is given)")
    p.add_argument("--until", type=_moment, metavar="TIME", help="rows before this time")
    p.add_argument("--reason", metavar="TEXT", help="why (required to add a rule)")
    p.add_argument("--list", action="store_true", help="show every rule, active and lifted, with what it matches")
    p.set_defaults(func=cmd_quarantine)

    p = sub.add_parser("unquarantine", help="lift a quarantine rule: its rows count again from the next retrain")
    p.add_argument("id", type=_whole(1, 2**63 - 1, what="a rule number"),
                   help="the rule's number, from `quarantine --list`")
    p.set_defaults(func=cmd_unquarantine)

    sub.add_parser("rebuild-rollups", help="recompute the dashboard's rollups (counts per 15 minutes) from the query "
                   "log and labels; stop the worker first").set_defaults(func=cmd_rebuild_rollups)

    p = sub.add_parser("events", help="recent events, newest first")
    p.add_argument("--limit", type=_whole(1, MAX_EVENTS, what="a number of events"), default=20,
                   help=f"how many, 1-{MAX_EVENTS:,} (default 20)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_events)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO if args.command in ("worker", "serve", "run") else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        settings = load_settings()
        code = args.func(settings, args)
        sys.stdout.flush()  # here, so a closed pipe is caught below rather than at interpreter exit
        return code
    except RetrainerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`status --json | head`): what it read was written; end quietly.
        # Python's own flush at exit would raise again, so point stdout at /dev/null first.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
