"""Start-up repair: make the store agree with the registry after a crash.

The active pointer file is the truth that serving follows. At start-up the worker
(holding the worker lock, so nothing else changes the registry):

- removes temporary files a crash left in the registry and the spool;
- marks retrains and commands left 'running' by a dead worker as failed, with why;
- then asks the model lifecycle to reconcile (``ModelRegistry.reconcile``): a damaged
  pointer is rewritten from the store; the pointer's version becomes the champion (its
  alias move recorded if the crash came between the switch and the record) and any other
  champion retired; a version a dead cycle left as candidate is failed; a model file
  without a row is moved aside as an orphan.

Each fix is an event saying what was found, stored in the same transaction as the fix
(for files, the event is stored first: a crash in between makes the next start repeat it).
"""

from __future__ import annotations

import logging
import time

from engine import faults
from engine.context import Context
from engine.lifecycle import ModelRegistry
from store.commands import fail_running_commands
from store.events import record_event
from store.retrains import fail_running_retrains
from store.vocabulary import EventKind, Severity

log = logging.getLogger(__name__)

# Spool temporary files younger than this may belong to a serving process writing right now.
SPOOL_TMP_GRACE_SECONDS = 60.0


def _fixed(con, fixes: list[str], fix: str, *, now) -> None:
    """Note a fix and record its event in the same transaction as the fix itself.

    A crash can then never leave a fix made but unexplained: either both are stored or neither.
    """
    fixes.append(fix)
    record_event(con, ts=now, kind=EventKind.REPAIR, severity=Severity.WARNING, message=f"Start-up repair: {fix}.")


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
    ModelRegistry(ctx).reconcile(ts=now, note=lambda con, fix: _fixed(con, fixes, fix, now=now))
    for fix in fixes:
        log.warning("repair: %s", fix)
    return fixes


def _mtime(path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return float("inf")
