"""Start-up repair: make the store agree with the registry after a crash.

The active pointer file is the truth that serving follows. At start-up the worker
(holding the worker lock, so nothing else changes the registry):

- marks retrains and commands left 'running' by a dead worker as failed, with why;
- gives the pointer's version the status 'active' (and records the deployment if the
  crash came between the switch and the record), retiring any other 'active' row;
- records a version a dead cycle left as 'candidate' (saved, never deployed) as failed;
- removes temporary files a crash left in the registry and the spool;
- records a version whose file exists but has no row as an orphan (file moved aside).

Each fix is an event saying what was found.
"""

from __future__ import annotations

import logging

from engine import registry
from engine.context import Context
from store.commands import fail_running_commands
from store.events import add_event
from store.models import add_deployment, list_deployments, list_models, set_model_status
from store.retrains import fail_running_retrains

log = logging.getLogger(__name__)


def repair(ctx: Context) -> list[str]:
    """Fix what a crash left behind; return the fixes in words (also recorded as events)."""
    fixes: list[str] = []
    now = ctx.clock()
    reg = ctx.settings.registry_dir
    for tmp in list(reg.glob(".*.tmp")) + list(ctx.settings.spool_dir.glob(".*.tmp")):
        tmp.unlink(missing_ok=True)
        fixes.append(f"removed the unfinished temporary file {tmp.name}")
    with ctx.db.write() as con:
        for rid in fail_running_retrains(con, reason="the worker stopped while this retrain ran", ts=now):
            fixes.append(f"retrain #{rid} was left running by a stopped worker: marked failed")
        for cid in fail_running_commands(con, message="the worker stopped while this command ran; run it again", ts=now):
            fixes.append(f"command #{cid} was left running by a stopped worker: marked failed")
    models = {m["version"]: m for m in list_models(ctx.db)}
    pointer = registry.read_active(reg)
    if pointer is not None:
        version = pointer.active.version
        row = models.get(version)
        with ctx.db.write() as con:
            if row is None:
                fixes.append(f"the active pointer names {version}, which the store does not know")
            else:
                if row["status"] != "active":
                    set_model_status(con, version, "active")
                    fixes.append(f"{version} serves but was recorded as {row['status']}: now recorded as active")
                for other, m in models.items():
                    if other != version and m["status"] == "active":
                        set_model_status(con, other, "retired")
                        fixes.append(f"{other} was recorded as active but does not serve: now retired")
        last = list_deployments(ctx.db, limit=1)
        if row is not None and (not last or last[0]["version"] != version):
            previous = last[0]["version"] if last else None
            with ctx.db.write() as con:
                add_deployment(con, ts=now, version=version, previous_version=previous, kind="repair",
                               reason="the deployment happened but was not recorded before a crash")
            fixes.append(f"the switch to {version} was not recorded (crash): deployment recorded now")
    else:
        with ctx.db.write() as con:
            for version, m in models.items():
                if m["status"] == "active":
                    set_model_status(con, version, "retired")
                    fixes.append(f"{version} was recorded as active but nothing is deployed: now retired")
    serving = pointer.active.version if pointer is not None else None
    leftovers = [v for v, m in models.items() if m["status"] == "candidate" and v != serving]
    if leftovers:  # no cycle runs while the worker lock is held here: these cycles died
        with ctx.db.write() as con:
            for version in leftovers:
                set_model_status(con, version, "failed")
                fixes.append(f"{version} was left a candidate by a retrain that did not finish: now recorded as failed")
    for path in reg.glob("v*" + registry.MODEL_SUFFIX):
        if path.stem not in models and registry.VERSION_PATTERN.match(path.stem):
            orphans = reg / "orphans"
            orphans.mkdir(exist_ok=True)
            path.replace(orphans / path.name)
            fixes.append(f"{path.name} was saved but never recorded (crash): moved to {orphans}")
    if fixes:
        with ctx.db.write() as con:
            for fix in fixes:
                add_event(con, ts=now, kind="repair", severity="warning", message=f"Start-up repair: {fix}.")
        for fix in fixes:
            log.warning("repair: %s", fix)
    return fixes
