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

from engine.classifier import Classifier, ClassifierStatus
from engine.context import Context
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


def fallback_change(previous: str | None, status: ClassifierStatus) -> FallbackChange | None:
    """The change from the last seen fallback reason ``previous`` to ``status``, or None if the same.

    >>> fallback_change(None, ClassifierStatus("v0001", "v0001", None)) is None
    True
    >>> fallback_change("file missing", ClassifierStatus("v0002", "v0002", None)).event["message"]
    'Fallback over: v0002 serves again.'
    """
    reason = status.fallback_reason
    if reason == previous:
        return None
    if reason:
        return FallbackChange(
            {"reason": reason, "serving": status.version, "active": status.active_version},
            {"kind": EventKind.FALLBACK, "severity": Severity.ERROR, "version": status.active_version,
             "message": f"Fallback in use: {reason}.", "details": {"serving": status.version}})
    event = None
    if previous is not None:
        event = {"kind": EventKind.FALLBACK, "severity": Severity.INFO, "version": status.version,
                 "message": f"Fallback over: {status.version} serves again."}
    return FallbackChange(None, event)


class FallbackMonitor:
    """Checks, at most every ``heartbeat_seconds`` (unless forced), that the champion loads."""

    def __init__(self, ctx: Context, *, predictor: Classifier, request_retrain: Callable[[str, str], str]):
        self.ctx = ctx
        self.predictor = predictor
        self.request_retrain = request_retrain
        self._last_check = 0.0
        self._reason: str | None = None
        self._stale_retrain_asked = False
        self._verified_noted: str | None = None

    def check(self, *, force: bool = False) -> None:
        """Load the champion as a predictor would; record entering and leaving fallback."""
        if not force and time.monotonic() - self._last_check < self.ctx.settings.heartbeat_seconds:
            return
        self._last_check = time.monotonic()
        ModelRegistry(self.ctx).repair_pointer(ts=self.ctx.clock())  # a damaged pointer: rewritten from the store
        self.predictor.reload()
        status = self.predictor.status()
        self._note_verified(status)
        change = fallback_change(self._reason, status)
        if change is None:
            return
        now = self.ctx.clock()
        with self.ctx.db.write() as con:
            set_state(con, FALLBACK_KEY, change.state, ts=now)
            if change.event is not None:
                record_event(con, ts=now, **change.event)
        self._reason = status.fallback_reason
        if status.active_stale and not self._stale_retrain_asked:
            # A pickle from another scikit-learn is never loaded: ask for a model built by this one.
            self._stale_retrain_asked = True
            outcome = self.request_retrain(
                Trigger.FALLBACK, f"the active model was built by another scikit-learn ({status.fallback_reason})")
            record_event(self.ctx.db, ts=self.ctx.clock(), kind=EventKind.FALLBACK, severity=Severity.WARNING,
                         version=status.active_version,
                         message=f"Retrain requested because the active model comes from another scikit-learn: {outcome}.")

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
