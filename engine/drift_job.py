"""The worker's daily drift job: judge each completed UTC day once (see ``engine.drift``).

Pure core: :func:`days_to_judge` (which days are due, given the last judged one) and
:func:`retrain_target` (which alarm, if any, asks for a retrain). :class:`DriftJob` adds the
I/O: it reads and records the last judged day, records one ``drift`` warning event per alarmed
day in the same transaction, and asks the worker for a retrain through ``request_retrain``.
"""

from __future__ import annotations

import logging
import time
from datetime import date, timedelta
from typing import Callable, Sequence

from engine import drift
from engine.context import Context
from engine.errors import ModelLoadError
from engine.lifecycle import ModelRegistry
from engine.scheduling import is_paused
from store.events import record_event
from store.state import read_state, set_state
from store.vocabulary import EventKind, Severity, Trigger

log = logging.getLogger(__name__)

# The last UTC day judged for drift (ISO date): each day is judged once, across restarts.
DRIFT_KEY = "drift_judged_through"
# With no record (a first start) or after a long stop, at most this many past days are judged.
DRIFT_CATCH_UP_DAYS = 31
# After a failed drift check, the next try waits this long (the loop must not spin on it).
DRIFT_RETRY_SECONDS = 60.0

RETRAIN_REQUESTED = "A retrain (trigger 'drift') was requested."
NOT_SERVING = "No retrain requested: the version that drifted no longer serves."
PAUSED = "No retrain requested: the scheduler is paused."


def days_to_judge(judged_through: date, today: date, *, catch_up: int = DRIFT_CATCH_UP_DAYS) -> tuple[date, date] | None:
    """The first and last day to judge now (both inclusive), or None when every completed day is judged.

    Days end at UTC midnight, so yesterday is the last complete one; at most ``catch_up`` days
    are judged after a long stop.

    >>> days_to_judge(date(2026, 3, 1), date(2026, 3, 4))
    (datetime.date(2026, 3, 2), datetime.date(2026, 3, 3))
    >>> days_to_judge(date(2026, 3, 3), date(2026, 3, 4)) is None
    True
    >>> days_to_judge(date.min, date(2026, 3, 4), catch_up=7)
    (datetime.date(2026, 2, 25), datetime.date(2026, 3, 3))
    """
    last = today - timedelta(days=1)
    if judged_through >= last:
        return None
    return max(judged_through + timedelta(days=1), last - timedelta(days=catch_up - 1)), last


def retrain_target(verdicts: Sequence[drift.Verdict], *, serving: str | None, enabled: bool,
                   paused: bool) -> tuple[drift.Verdict | None, str | None]:
    """The alarmed day that asks for a retrain (the newest of the serving version), or None; and the note.

    Nothing is asked when there are no alarms or ``drift_retrain`` is off (note None), when no
    alarm concerns the serving version, or when the scheduler is ``paused`` (the note says which).
    """
    if not verdicts or not enabled:
        return None, None
    mine = [v for v in verdicts if serving is not None and v.version == serving]
    if not mine:
        return None, NOT_SERVING
    if paused:
        return None, PAUSED
    return mine[-1], RETRAIN_REQUESTED


class DriftJob:
    """Judges the completed days not judged yet; cheap (a date comparison) when there are none."""

    def __init__(self, ctx: Context, *, request_retrain: Callable[[str, str], str]):
        self.ctx = ctx
        self.request_retrain = request_retrain
        self._through: date | None = None   # read from the store at the first run
        self._retry_at = 0.0

    def run(self) -> list[drift.Verdict]:
        """Judge every completed UTC day not judged yet (see engine.drift); return the alarmed days.

        Each alarmed day of each version becomes a ``drift`` warning event, written in the same
        transaction as the last judged day, so a day is judged once even across restarts. With
        ``drift_retrain`` on, a warning about the serving version requests a retrain (trigger
        'drift') through the same path as the scheduler's, unless the scheduler is paused.
        """
        today = self.ctx.clock().date()
        if self._through is not None and days_to_judge(self._through, today) is None:
            return []
        if time.monotonic() < self._retry_at:
            return []
        try:
            if self._through is None:
                stored = read_state(self.ctx.db).get(DRIFT_KEY)
                self._through = date.fromisoformat(stored[0]) if stored and stored[0] else date.min
            due = days_to_judge(self._through, today)
            if due is None:
                return []
            first, last = due
            verdicts = drift.judge(self.ctx.db, self.ctx.settings, first=first, last=last)
            target, note = self._target(verdicts)
            now = self.ctx.clock()
            with self.ctx.db.write() as con:
                for verdict in verdicts:
                    # With a retrain asked for, the note goes with the day that asked; otherwise with every day.
                    noted = note if target is None or verdict is target else None
                    record_event(con, ts=now, kind=EventKind.DRIFT, severity=Severity.WARNING, version=verdict.version,
                                 message=verdict.message() + (f" {noted}" if noted else ""),
                                 details={**verdict.details(), "retrain_requested": verdict is target,
                                          "retrain_note": noted})
                set_state(con, DRIFT_KEY, last.isoformat(), ts=now)
        except Exception:
            self._retry_at = time.monotonic() + DRIFT_RETRY_SECONDS
            raise
        self._through = last
        if verdicts:
            log.warning("drift: %d alarmed day(s) up to %s", len(verdicts), last)
        if target is not None:
            outcome = self.request_retrain(Trigger.DRIFT, f"drift warning: {target.message()}")
            log.info("drift retrain: %s", outcome)
        return verdicts

    def _target(self, verdicts: list[drift.Verdict]) -> tuple[drift.Verdict | None, str | None]:
        if not verdicts or not self.ctx.settings.drift_retrain:
            return None, None
        try:
            pointer = ModelRegistry(self.ctx).pointer()
        except ModelLoadError:
            pointer = None
        return retrain_target(verdicts, serving=pointer.active.version if pointer else None, enabled=True,
                              paused=is_paused(self.ctx))
