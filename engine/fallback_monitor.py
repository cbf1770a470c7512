"""The worker's fallback monitor: loads the champion as a predictor would, and records entering
and leaving fallback once each.

Pure core: :func:`fallback_change` says what a change of the predictor's status means (the
state to store, the event to record), or None when nothing changed. :class:`FallbackMonitor`
adds the I/O: it repairs a damaged pointer first (``ModelRegistry.repair_pointer``), reloads
the worker's own predictor, stores the change, and asks once for a retrain when the champion
was built by another scikit-learn (refused, or served after a verified load).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Callable

from engine import registry
from engine.classifier import Classifier, ClassifierStatus
from engine.context import Context
from engine.errors import ModelLoadError
from engine.lifecycle import ModelRegistry
from engine.status import FALLBACK_KEY
from store.events import record_event
from store.state import set_state
from store.vocabulary import EventKind, Severity, Trigger

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FallbackChange:
    """What to store when the predictor's fallback reason changed."""

    state: dict[str, Any] | None   # the FALLBACK_KEY fact (None: not in fallback)
    event: dict[str, Any] | None   # record_event's keyword arguments (without ts), or None


def in_memory_note(version: str) -> str:
    """What running processes do while ``version``'s file is damaged after they loaded it (appended to the reason).

    >>> in_memory_note("v0010")
    'processes that loaded v0010 before its file changed keep serving it from memory (it was verified when loaded) until the next deployment, rollback or their restart'
    """
    return (f"processes that loaded {version} before its file changed keep serving it from memory (it was verified "
            "when loaded) until the next deployment, rollback or their restart")


def fallback_change(previous: str | None, status: ClassifierStatus, *,
                    in_memory: str | None = None) -> FallbackChange | None:
    """The change from the last seen fallback reason ``previous`` to ``status``, or None if the same.

    ``in_memory``: the active version whose file was damaged after running processes loaded it (they keep
    serving it): the reason says so, and the state names it under ``"in_memory"``.

    >>> fallback_change(None, ClassifierStatus("v0001", "v0001", None)) is None
    True
    >>> fallback_change("file missing", ClassifierStatus("v0002", "v0002", None)).event["message"]
    'Fallback over: v0002 serves again.'
    >>> fallback_change(None, ClassifierStatus("v0001", "v0002", "v0002 is missing; serving v0001"),
    ...                 in_memory="v0002").state["in_memory"]
    'v0002'
    """
    reason = status.fallback_reason
    if reason and in_memory:
        reason = f"{reason}; {in_memory_note(in_memory)}"
    if reason == previous:
        return None
    if reason:
        state = {"reason": reason, "serving": status.version, "active": status.active_version}
        if in_memory:
            state["in_memory"] = in_memory
        return FallbackChange(
            state,
            {"kind": EventKind.FALLBACK, "severity": Severity.ERROR, "version": status.active_version,
             "message": f"Fallback in use: {reason}.",
             "details": {"serving": status.version, **({"in_memory": in_memory} if in_memory else {})}})
    event = None
    if previous is not None:
        event = {"kind": EventKind.FALLBACK, "severity": Severity.INFO, "version": status.version,
                 "message": f"Fallback over: {status.version} serves again."}
    return FallbackChange(None, event)


class FallbackMonitor:
    """Checks, at most every ``heartbeat_seconds`` (unless forced), that the champion loads and that its
    file on disk still matches its checksum.

    A running process loads a version once, when the pointer names it, so a file damaged afterwards
    (truncated, overwritten, deleted) changes nothing for it; a process started since falls back.
    The monitor checks the active file itself (``registry.FileCheck``: one ``stat`` while unchanged,
    a SHA-256 when it changed) and, when it no longer matches, reloads the worker's predictor as a
    new process would: the fallback it then finds is recorded once (state and event), saying that
    processes which loaded the version before keep serving it from memory.
    """

    def __init__(self, ctx: Context, *, predictor: Classifier, request_retrain: Callable[[str, str], str]):
        self.ctx = ctx
        self.predictor = predictor
        self.request_retrain = request_retrain
        self._last_check = 0.0
        self._reason: str | None = None
        self._stale_retrain_asked = False
        self._verified_noted: str | None = None
        self._files = registry.FileCheck(ctx.settings.registry_dir)
        # (pointer's version, deployed_at) when its file was found damaged after processes had loaded it.
        self._damaged_after_load: tuple[str, str] | None = None
        self._file_damaged = False  # the active file's state at the last check

    def check(self, *, force: bool = False) -> None:
        """Load the champion as a predictor would; record entering and leaving fallback."""
        if not force and time.monotonic() - self._last_check < self.ctx.settings.heartbeat_seconds:
            return
        self._last_check = time.monotonic()
        ModelRegistry(self.ctx).repair_pointer(ts=self.ctx.clock())  # a damaged pointer: rewritten from the store
        self.predictor.reload()
        damaged, in_memory = self._active_file_damaged()
        if damaged != self._file_damaged:  # damaged, or restored, since the last check: load as a new process would
            self.predictor.reload(force=True)
        self._file_damaged = damaged
        status = self.predictor.status()
        self._note_verified(status)
        change = fallback_change(self._reason, status, in_memory=in_memory if status.fallback else None)
        if change is None:
            return
        now = self.ctx.clock()
        with self.ctx.db.write() as con:
            set_state(con, FALLBACK_KEY, change.state, ts=now)
            if change.event is not None:
                record_event(con, ts=now, **change.event)
        self._reason = change.state["reason"] if change.state else None
        if status.active_stale and not self._stale_retrain_asked:
            # A pickle from another scikit-learn is never loaded: ask for a model built by this one.
            self._stale_retrain_asked = True
            outcome = self.request_retrain(
                Trigger.FALLBACK, f"the active model was built by another scikit-learn ({status.fallback_reason})")
            record_event(self.ctx.db, ts=self.ctx.clock(), kind=EventKind.FALLBACK, severity=Severity.WARNING,
                         version=status.active_version,
                         message=f"Retrain requested because the active model comes from another scikit-learn: {outcome}.")

    def _active_file_damaged(self) -> tuple[bool, str | None]:
        """(damaged, in_memory): whether the active version's file no longer matches its checksum, and that
        version when the damage came after processes had loaded it (the worker's predictor served it then),
        which stays so until the pointer switches or the file matches again."""
        try:
            pointer = registry.read_active(self.ctx.settings.registry_dir)
        except ModelLoadError:  # damaged again since the repair: the predictor's reload says so
            return False, None
        if pointer is None:
            self._damaged_after_load = None
            return False, None
        identity = (pointer.active.version, pointer.deployed_at)
        if self._damaged_after_load != identity:
            self._damaged_after_load = None  # none yet, or a switch since: every running process reloaded
        problem = self._files.problem(pointer.active)
        if problem is None:
            self._damaged_after_load = None
            return False, None
        status = self.predictor.status()
        if self._damaged_after_load is None and status.version == pointer.active.version and not status.fallback:
            log.error("the active model's file changed after it was loaded: %s", problem)
            self._damaged_after_load = identity
        return True, (pointer.active.version if self._damaged_after_load == identity else None)

    def _note_verified(self, status: ClassifierStatus) -> None:
        """A champion pickled by another scikit-learn that reproduced its fingerprint serves: say so once,
        and ask for a retrain so a version pickled by this scikit-learn follows."""
        if not status.verified or status.fallback or status.verified == self._verified_noted:
            return
        self._verified_noted = status.verified
        outcome = self.request_retrain(Trigger.FALLBACK, f"{status.verified}: a native version should follow")
        record_event(self.ctx.db, ts=self.ctx.clock(), kind=EventKind.FALLBACK, severity=Severity.WARNING,
                     version=status.version,
                     message=f"Verified load: {status.verified}; it serves. A retrain was requested so a version "
                             f"pickled by this scikit-learn follows ({outcome}).",
                     details={"verified": status.verified})
