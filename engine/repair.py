"""Start-up repair: make the store agree with the registry after a crash.

The active pointer file is the truth that serving follows. At start-up the worker
(holding the worker lock, so nothing else changes the registry):

- marks retrains and commands left 'running' by a dead worker as failed, with why;
- gives the pointer's version the status 'active' (and records the deployment if the
  crash came between the switch and the record), retiring any other 'active' row;
- records a version a dead cycle left as 'candidate' (saved, never deployed) as failed;
- removes temporary files a crash left in the registry and the spool;
- records a version whose file exists but has no row as an orphan (file moved aside).

Each fix is an event saying what was found, stored in the same transaction as the fix
(for files, the event is stored first: a crash in between makes the next start repeat it).
"""

from __future__ import annotations

import logging
import time

from engine import faults, registry
from engine.context import Context
from store.commands import fail_running_commands
from store.events import add_event
from store.models import add_deployment, list_deployments, list_models, set_model_status
from store.retrains import fail_running_retrains

log = logging.getLogger(__name__)

# Spool temporary files younger than this may belong to a serving process writing right now.
SPOOL_TMP_GRACE_SECONDS = 60.0


def _fixed(con, fixes: list[str], fix: str, *, now) -> None:
    """Note a fix and record its event in the same transaction as the fix itself.

    A crash can then never leave a fix made but unexplained: either both are stored or neither.
    """
    fixes.append(fix)
    add_event(con, ts=now, kind="repair", severity="warning", message=f"Start-up repair: {fix}.")


def repair(ctx: Context) -> list[str]:
    """Fix what a crash left behind; return the fixes in words (also recorded as events)."""
    fixes: list[str] = []
    now = ctx.clock()
    reg = ctx.settings.registry_dir
    # A serving process may be writing a spool file right now: only old temporary files are leftovers.
    fresh = time.time() - SPOOL_TMP_GRACE_SECONDS
    leftovers = list(reg.glob(".*.tmp")) + [p for p in ctx.settings.spool_dir.glob(".*.tmp") if _mtime(p) < fresh]
    for tmp in leftovers:
        with ctx.db.write() as con:  # the event first: a crash before the unlink only repeats it
            _fixed(con, fixes, f"removed the unfinished temporary file {tmp.name}", now=now)
        tmp.unlink(missing_ok=True)
    with ctx.db.write() as con:
        for rid in fail_running_retrains(con, reason="the worker stopped while this retrain ran", ts=now):
            _fixed(con, fixes, f"retrain #{rid} was left running by a stopped worker: marked failed", now=now)
        for cid in fail_running_commands(con, message="the worker stopped while this command ran; run it again", ts=now):
            _fixed(con, fixes, f"command #{cid} was left running by a stopped worker: marked failed", now=now)
    faults.point("repair_after_running")
    models = {m["version"]: m for m in list_models(ctx.db)}
    pointer = registry.read_active(reg)
    if pointer is not None:
        version = pointer.active.version
        row = models.get(version)
        last = list_deployments(ctx.db, limit=1)
        with ctx.db.write() as con:
            if row is None:
                _fixed(con, fixes, f"the active pointer names {version}, which the store does not know", now=now)
            else:
                if row["status"] != "active":
                    set_model_status(con, version, "active")
                    _fixed(con, fixes, f"{version} serves but was recorded as {row['status']}: now recorded as active", now=now)
                for other, m in models.items():
                    if other != version and m["status"] == "active":
                        set_model_status(con, other, "retired")
                        _fixed(con, fixes, f"{other} was recorded as active but does not serve: now retired", now=now)
                if not last or last[0]["version"] != version:
                    previous = last[0]["version"] if last else None
                    add_deployment(con, ts=now, version=version, previous_version=previous, kind="repair",
                                   reason="the deployment happened but was not recorded before a crash")
                    _fixed(con, fixes, f"the switch to {version} was not recorded (crash): deployment recorded now", now=now)
    else:
        with ctx.db.write() as con:
            for version, m in models.items():
                if m["status"] == "active":
                    set_model_status(con, version, "retired")
                    _fixed(con, fixes, f"{version} was recorded as active but nothing is deployed: now retired", now=now)
    faults.point("repair_after_pointer")
    serving = pointer.active.version if pointer is not None else None
    candidates = [v for v, m in models.items() if m["status"] == "candidate" and v != serving]
    if candidates:  # no cycle runs while the worker lock is held here: these cycles died
        with ctx.db.write() as con:
            for version in candidates:
                set_model_status(con, version, "failed")
                _fixed(con, fixes, f"{version} was left a candidate by a retrain that did not finish: now recorded as failed", now=now)
    for path in reg.glob("v*" + registry.MODEL_SUFFIX):
        if path.stem not in models and registry.VERSION_PATTERN.match(path.stem):
            orphans = reg / "orphans"
            orphans.mkdir(exist_ok=True)
            with ctx.db.write() as con:  # the event first: a crash before the move only repeats it
                _fixed(con, fixes, f"{path.name} was saved but never recorded (crash): moved to {orphans}", now=now)
            faults.point("repair_before_orphan_move")
            path.replace(orphans / path.name)
    for fix in fixes:
        log.warning("repair: %s", fix)
    return fixes


def _mtime(path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return float("inf")
