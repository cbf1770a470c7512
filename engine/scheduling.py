"""Scheduled retrains, on top of the ``schedule`` library.

Three jobs, from settings (local time of the worker):

- ``weekly``: every ``weekly_day`` at ``weekly_time`` (Sunday 03:00).
- ``monthly``: ``schedule`` has no monthly unit, so a daily job at ``monthly_time``
  that acts only on day ``monthly_day`` of the month.
- ``adaptive``: every ``adaptive_every_minutes``, retrains when at least
  ``adaptive_min_samples`` new human-labelled texts arrived or ``adaptive_max_days``
  days passed since the last retrain.

Weekly and monthly follow the wall clock (03:00 is 03:00 local time in summer and winter; a
slot in the hour skipped when clocks go forward runs at the first moment after it, one in the
repeated hour runs once, at its first occurrence); the adaptive check runs every N minutes of
UTC, so a daylight saving change neither delays nor doubles it. tests/test_time.py walks both
changes of America/New_York.

What ``schedule`` lacks is added here (DESIGN.md): every job is wrapped, so one that
raises is recorded as a failed run and rescheduled instead of looping; next and last
runs live in the store, so a slot missed while the worker was down runs once at
start-up; the clock is injected (``schedule`` reads ``datetime.datetime.now``, which
is pointed at the context's clock while it runs).
"""

from __future__ import annotations

import datetime as _dt
import logging
import threading
import time
import traceback
import types
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator

import schedule

from engine.clock import to_local, to_utc
from engine.context import Context
from engine.errors import RetrainerError
from store.state import define_job, read_jobs, record_job_run, scheduler_facts, set_state
from store.vocabulary import SCHEDULED_TRIGGERS, Trigger

log = logging.getLogger(__name__)

JOB_NAMES = SCHEDULED_TRIGGERS
PAUSED_KEY = "scheduler_paused"
# A failure to record the scheduler's runs (a full disk) is logged again only after this many seconds.
FLUSH_LOG_SECONDS = 60.0

RequestRetrain = Callable[[str, str], str]  # (trigger, why) -> what happened, in words

_patch_lock = threading.RLock()


@contextmanager
def _clocked(local_now: Callable[[], _dt.datetime]) -> Iterator[None]:
    """Make ``schedule`` read time from ``local_now`` for the duration of the block."""

    class _Datetime(_dt.datetime):
        @classmethod
        def now(cls, tz=None):  # noqa: D401 - mirrors datetime.now
            return local_now()

    shim = types.SimpleNamespace(datetime=_Datetime, timedelta=_dt.timedelta, time=_dt.time, date=_dt.date,
                                 tzinfo=_dt.tzinfo, timezone=_dt.timezone)
    with _patch_lock:
        original = schedule.datetime
        schedule.datetime = shim
        try:
            yield
        finally:
            schedule.datetime = original


@dataclass(frozen=True)
class AdaptiveStatus:
    new_samples: int
    days_since: float | None      # None: never retrained
    min_samples: int
    max_days: float

    @property
    def due(self) -> bool:
        if self.new_samples >= self.min_samples:
            return True
        if self.days_since is None:  # never retrained: any labelled data is reason enough
            return self.new_samples > 0
        return self.days_since >= self.max_days

    def reason(self) -> str:
        days = "never retrained" if self.days_since is None else f"{self.days_since:.1f} of {self.max_days:g} days since the last retrain"
        return f"{self.new_samples} of {self.min_samples} new labelled samples; {days}"


def adaptive_status(ctx: Context, facts: dict | None = None) -> AdaptiveStatus:
    """The adaptive trigger's counters: new labelled texts and days since the last retrain (of any outcome)."""
    facts = facts or scheduler_facts(ctx.db, paused_key=PAUSED_KEY)
    since = facts["last_retrain_at"]
    days = None if since is None else (ctx.clock() - since).total_seconds() / 86400
    return AdaptiveStatus(facts["new_labelled"], days, ctx.settings.adaptive_min_samples, ctx.settings.adaptive_max_days)


def is_paused(ctx: Context) -> bool:
    return scheduler_facts(ctx.db, paused_key=PAUSED_KEY)["paused"]


def set_paused(ctx: Context, paused: bool) -> None:
    with ctx.db.write() as con:
        set_state(con, PAUSED_KEY, paused, ts=ctx.clock())


def next_monthly(local_now: _dt.datetime, *, day: int, at: str) -> _dt.datetime:
    """The next local moment that is day ``day`` of a month at ``at`` (HH:MM), after ``local_now``.

    >>> next_monthly(_dt.datetime(2026, 1, 1, 1, 0), day=1, at="02:00")
    datetime.datetime(2026, 1, 1, 2, 0)
    >>> next_monthly(_dt.datetime(2026, 12, 1, 2, 0), day=1, at="02:00")
    datetime.datetime(2027, 1, 1, 2, 0)
    """
    hour, minute = (int(x) for x in at.split(":"))
    candidate = local_now.replace(day=day, hour=hour, minute=minute, second=0, microsecond=0)
    if candidate <= local_now:
        year, month = (local_now.year + 1, 1) if local_now.month == 12 else (local_now.year, local_now.month + 1)
        candidate = candidate.replace(year=year, month=month)
    return candidate


class Scheduler:
    """The worker's three jobs. ``request_retrain(trigger, why)`` starts or queues a cycle."""

    def __init__(self, ctx: Context, *, request_retrain: RequestRetrain):
        self.ctx = ctx
        self._request = request_retrain
        # Calendar jobs keep the wall clock (local time); the interval job runs on UTC, so a daylight
        # saving change neither delays it by an hour (clocks go back) nor runs it twice.
        self._schedule = schedule.Scheduler()
        self._interval = schedule.Scheduler()
        self._jobs: dict[str, schedule.Job] = {}
        self._runs: list[tuple[str, _dt.datetime, str, str | None]] = []
        self._saved: dict[str, _dt.datetime] = {}
        self._flush_failed_at = -FLUSH_LOG_SECONDS  # monotonic time of the last logged failure to record runs
        s = ctx.settings
        with self._clock():
            self._jobs[Trigger.WEEKLY] = getattr(self._schedule.every(), s.weekly_day).at(s.weekly_time).do(self._wrapped, Trigger.WEEKLY)
            self._jobs[Trigger.MONTHLY] = self._schedule.every().day.at(s.monthly_time).do(self._wrapped, Trigger.MONTHLY)
        with _clocked(self.ctx.clock):
            self._jobs[Trigger.ADAPTIVE] = self._interval.every(s.adaptive_every_minutes).minutes.do(self._wrapped, Trigger.ADAPTIVE)

    def _local_now(self) -> _dt.datetime:
        return to_local(self.ctx.clock())

    def _clock(self):
        return _clocked(self._local_now)

    # -- public -------------------------------------------------------------------

    def start(self) -> list[str]:
        """Persist next runs and run, once, each slot missed while no worker ran. Returns what it caught up."""
        previous = {j["name"]: j for j in read_jobs(self.ctx.db)}
        now = self.ctx.clock()
        missed = [name for name in (Trigger.WEEKLY, Trigger.MONTHLY)
                  if previous.get(name) and previous[name]["next_run"] is not None and previous[name]["next_run"] <= now]
        self._flush()
        done = []
        for name in missed:
            log.info("catching up the %s slot of %s", name, previous[name]["next_run"])
            self._run_job(name, catch_up=previous[name]["next_run"])
            done.append(name)
        if previous.get(Trigger.ADAPTIVE):
            self._run_job(Trigger.ADAPTIVE)
        self._flush()
        return done

    def run_pending(self) -> None:
        """Run the jobs that are due now (by the context's clock)."""
        # Both schedulers' due jobs, in the order of their due times (UTC), each under its own clock.
        with self._clock():
            due = [(to_utc(job.next_run), job, self._clock) for job in self._schedule.jobs if job.should_run]
        with _clocked(self.ctx.clock):
            due += [(job.next_run, job, lambda: _clocked(self.ctx.clock)) for job in self._interval.jobs
                    if job.should_run]
        for _, job, clock in sorted(due, key=lambda entry: entry[0]):
            with clock():
                job.run()
        if self._runs:
            self._flush()

    def next_runs(self) -> dict[str, _dt.datetime]:
        """Each job's next run, as naive UTC."""
        s = self.ctx.settings
        runs = {Trigger.WEEKLY: to_utc(self._jobs[Trigger.WEEKLY].next_run),
                Trigger.MONTHLY: to_utc(next_monthly(self._local_now(), day=s.monthly_day, at=s.monthly_time)),
                Trigger.ADAPTIVE: self._jobs[Trigger.ADAPTIVE].next_run}
        return runs

    def next_due(self) -> _dt.datetime:
        """The earliest moment (naive UTC) at which ``schedule`` will run something."""
        return min(to_utc(self._jobs[Trigger.WEEKLY].next_run), to_utc(self._jobs[Trigger.MONTHLY].next_run),
                   self._jobs[Trigger.ADAPTIVE].next_run)

    # -- jobs ---------------------------------------------------------------------

    def _wrapped(self, name: str) -> None:
        # Called by schedule inside run_pending (clock already patched).
        self._run_job(name)

    def _run_job(self, name: str, *, catch_up: _dt.datetime | None = None) -> None:
        ran_at = self.ctx.clock()
        error = None
        try:
            result = self._act(name, catch_up=catch_up)
        except Exception as exc:  # a job that raises is recorded and rescheduled, never fatal
            log.error("job %s failed:\n%s", name, traceback.format_exc())
            result, error = "failed", f"{type(exc).__name__}: {exc}"
        self._runs.append((name, ran_at, result, error))

    def _act(self, name: str, *, catch_up: _dt.datetime | None) -> str:
        local = self._local_now()
        if name == Trigger.MONTHLY and catch_up is None and local.day != self.ctx.settings.monthly_day:
            return f"nothing to do: today is day {local.day}, the monthly retrain runs on day {self.ctx.settings.monthly_day}"
        facts = scheduler_facts(self.ctx.db, paused_key=PAUSED_KEY)
        if facts["paused"]:
            return "skipped: the scheduler is paused"
        if name == Trigger.ADAPTIVE:
            status = adaptive_status(self.ctx, facts)
            if not status.due:
                return f"not due: {status.reason()}"
            return self._request(Trigger.ADAPTIVE, f"adaptive trigger: {status.reason()}")
        why = f"{name} schedule"
        if catch_up is not None:
            why = f"{name} slot of {to_local(catch_up):%Y-%m-%d %H:%M} was missed while no worker ran; caught up at start-up"
        return self._request(name, why)

    def _flush(self) -> None:
        """Record the job runs made since the last flush and every job's next run, in one write."""
        runs = self.next_runs()
        if runs == self._saved and not self._runs:
            return
        records, self._runs = self._runs, []
        try:
            with self.ctx.db.write() as con:
                for name in JOB_NAMES:
                    if runs[name] != self._saved.get(name):
                        define_job(con, name, next_run=runs[name])
                for name, ran_at, result, error in records:
                    record_job_run(con, name, ran_at=ran_at, result=result, error=error, next_run=None)
        except RetrainerError as exc:  # a full disk: keep the runs for the next try, say so once a minute
            self._runs = records + self._runs
            if time.monotonic() - self._flush_failed_at >= FLUSH_LOG_SECONDS:
                self._flush_failed_at = time.monotonic()
                log.error("could not record the scheduler's runs: %s", exc)
            return
        except Exception:
            log.exception("could not record the scheduler's runs")
            return
        self._saved = runs
