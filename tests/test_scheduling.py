"""Tests for engine.scheduling: the three jobs, pause, catch-up and failing jobs, on an injected clock.

The clock is a ManualClock (naive UTC, the store's convention); the scheduler thinks in
the process's local time, so every expected moment is written in local time and
converted with ``to_utc``/``to_local``. ``request_retrain`` is a recording callback: the
scheduler under test is real, and so are its DuckDB store and jobs table.
"""

from __future__ import annotations

import os
import time
import uuid
from datetime import datetime, timedelta

import pandas as pd
import pytest

from engine.clock import ManualClock, to_local, to_utc
from engine.context import Context
from engine.scheduling import AdaptiveStatus, Scheduler, adaptive_status, is_paused, next_monthly, set_paused
from store.querylog import LABEL_COLUMNS, insert_labels
from store.retrains import finish_retrain, start_retrain
from store.state import read_jobs

WEEKLY = "weekly schedule"
PAUSED = "skipped: the scheduler is paused"


def _set_tz(value: str | None) -> None:
    if value is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = value
    time.tzset()


@pytest.fixture(autouse=True)
def local_time_zone():
    """Pin the process's local time zone (UTC unless a test asks for another), so expectations hold anywhere."""
    saved = os.environ.get("TZ")
    _set_tz("UTC")
    yield _set_tz
    _set_tz(saved)


class Recorder:
    """request_retrain for tests: records (trigger, why, local time of the call) and answers like the worker."""

    def __init__(self, clock: ManualClock, *, fail_times: int = 0):
        self.clock = clock
        self.calls: list[tuple[str, str, datetime]] = []
        self.fail_times = fail_times

    def __call__(self, trigger: str, why: str) -> str:
        self.calls.append((trigger, why, to_local(self.clock())))
        if len(self.calls) <= self.fail_times:
            raise RuntimeError("the executor is gone")
        return "retrain started"

    def triggers(self) -> list[tuple[str, datetime]]:
        return [(trigger, at) for trigger, _, at in self.calls]


def local(*args: int) -> datetime:
    return datetime(*args)


def make(settings, start_local: datetime, **overrides):
    """(ctx, clock, recorder, scheduler) on a fresh store, the clock at ``start_local`` (local time)."""
    clock = ManualClock(to_utc(start_local))
    ctx = Context.open(settings.replace(**overrides) if overrides else settings, clock=clock)
    recorder = Recorder(clock)
    return ctx, clock, recorder, Scheduler(ctx, request_retrain=recorder)


def run_until(scheduler: Scheduler, clock: ManualClock, end_local: datetime, step: timedelta) -> None:
    """Advance the clock by ``step`` until ``end_local``, calling run_pending at each step."""
    end = to_utc(end_local)
    while clock() + step <= end:
        clock.advance(seconds=step.total_seconds())
        scheduler.run_pending()


def jobs(ctx) -> dict[str, dict]:
    return {j["name"]: j for j in read_jobs(ctx.db)}


def add_labels(ctx, n: int, *, ts: datetime, prefix: str = "text", repeat: int = 1) -> None:
    """``n`` distinct human-labelled texts (each stored ``repeat`` times), through store.querylog.insert_labels."""
    texts = [f"{prefix} number {i}" for i in range(n) for _ in range(repeat)]
    frame = pd.DataFrame({"id": [uuid.uuid4().hex for _ in texts], "ts": ts, "query_id": None, "text": texts,
                          "label": "track_order", "source": "import"}, columns=LABEL_COLUMNS)
    with ctx.db.write() as con:
        assert insert_labels(con, frame) == len(texts)


def add_finished_retrain(ctx, *, at: datetime, status: str = "accepted") -> int:
    rid = start_retrain(ctx.db, trigger="manual", ts=at)
    with ctx.db.write() as con:
        finish_retrain(con, rid, {"status": status, "finished_at": at + timedelta(minutes=1), "reason": "test"})
    return rid


# --- next runs ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (local(2026, 3, 4, 12, 0), {"weekly": local(2026, 3, 8, 3, 0), "monthly": local(2026, 4, 1, 2, 0),
                                    "adaptive": local(2026, 3, 4, 12, 15)}),
        (local(2026, 1, 31, 23, 0), {"weekly": local(2026, 2, 1, 3, 0), "monthly": local(2026, 2, 1, 2, 0),
                                     "adaptive": local(2026, 1, 31, 23, 15)}),
        (local(2026, 3, 8, 3, 0), {"weekly": local(2026, 3, 15, 3, 0), "monthly": local(2026, 4, 1, 2, 0),
                                   "adaptive": local(2026, 3, 8, 3, 15)}),
        (local(2026, 12, 31, 2, 30), {"weekly": local(2027, 1, 3, 3, 0), "monthly": local(2027, 1, 1, 2, 0),
                                      "adaptive": local(2026, 12, 31, 2, 45)}),
    ],
    ids=["wednesday-noon", "eve-of-month", "sunday-at-the-slot", "new-year"],
)
def test_next_runs_and_the_jobs_table(settings, now, expected):
    ctx, clock, recorder, scheduler = make(settings, now)
    assert scheduler.start() == []
    expected_utc = {name: to_utc(t) for name, t in expected.items()}
    assert scheduler.next_runs() == expected_utc
    assert scheduler.next_due() == expected_utc["adaptive"]
    rows = jobs(ctx)
    assert {name: row["next_run"] for name, row in rows.items()} == expected_utc
    assert {name: (row["runs"], row["failures"], row["last_run"]) for name, row in rows.items()} == {
        "weekly": (0, 0, None), "monthly": (0, 0, None), "adaptive": (0, 0, None)}
    assert recorder.calls == []


@pytest.mark.parametrize(
    ("now", "day", "at", "expected"),
    [
        (local(2026, 1, 30, 0, 0), 1, "02:00", local(2026, 2, 1, 2, 0)),
        (local(2026, 2, 1, 1, 59), 1, "02:00", local(2026, 2, 1, 2, 0)),
        (local(2026, 2, 1, 2, 0), 1, "02:00", local(2026, 3, 1, 2, 0)),
        (local(2026, 2, 20, 9, 0), 28, "23:30", local(2026, 2, 28, 23, 30)),
    ],
    ids=["before-day-1", "a-minute-before", "at-the-slot", "day-28"],
)
def test_next_monthly(now, day, at, expected):
    assert next_monthly(now, day=day, at=at) == expected


def test_slots_are_in_the_process_local_time(settings, local_time_zone):
    """Sunday 03:00 means 03:00 where the worker runs: in Kolkata (UTC+05:30) that is Saturday 21:30 UTC."""
    local_time_zone("Asia/Kolkata")
    assert to_utc(datetime(2026, 3, 8, 3, 0)) == datetime(2026, 3, 7, 21, 30)
    ctx, clock, recorder, scheduler = make(settings, local(2026, 3, 4, 12, 0), adaptive_every_minutes=1440)
    assert clock() == datetime(2026, 3, 4, 6, 30)
    assert scheduler.next_runs()["weekly"] == datetime(2026, 3, 7, 21, 30)
    clock.set(datetime(2026, 3, 7, 21, 29))
    scheduler.run_pending()
    assert recorder.calls == []
    clock.set(datetime(2026, 3, 7, 21, 30))
    scheduler.run_pending()
    assert recorder.triggers() == [("weekly", datetime(2026, 3, 8, 3, 0))]
    assert jobs(ctx)["weekly"]["last_run"] == datetime(2026, 3, 7, 21, 30)  # the store keeps UTC


# --- weekly and monthly --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("step", "fired_at"),
    [
        (timedelta(hours=1), [local(2026, 3, 8, 3, 0), local(2026, 3, 15, 3, 0)]),
        # Coarse ticks (Wednesday 12:00 + k * 31 h): the first tick after each slot fires it, once.
        (timedelta(hours=31), [local(2026, 3, 8, 9, 0), local(2026, 3, 16, 3, 0)]),
    ],
    ids=["hourly-ticks", "31-hour-ticks"],
)
def test_weekly_fires_on_sunday_at_three_once_a_week(settings, step, fired_at):
    ctx, clock, recorder, scheduler = make(settings, local(2026, 3, 4, 12, 0), adaptive_every_minutes=1440)
    scheduler.start()
    run_until(scheduler, clock, local(2026, 3, 18, 12, 0), step)
    assert recorder.calls == [("weekly", WEEKLY, at) for at in fired_at]
    weekly = jobs(ctx)["weekly"]
    assert (weekly["runs"], weekly["failures"], weekly["last_result"], weekly["last_error"]) == (2, 0, "retrain started", None)
    assert weekly["last_run"] == to_utc(fired_at[-1])
    assert weekly["next_run"] == to_utc(local(2026, 3, 22, 3, 0))


def test_monthly_fires_only_on_day_one_at_two(settings):
    ctx, clock, recorder, scheduler = make(settings, local(2026, 1, 30, 0, 0), adaptive_every_minutes=1440)
    scheduler.start()

    run_until(scheduler, clock, local(2026, 1, 31, 3, 0), timedelta(hours=1))
    monthly = jobs(ctx)["monthly"]
    assert (monthly["runs"], monthly["last_run"], monthly["last_result"]) == (
        2, to_utc(local(2026, 1, 31, 2, 0)), "nothing to do: today is day 31, the monthly retrain runs on day 1")
    assert recorder.calls == []

    run_until(scheduler, clock, local(2026, 3, 2, 12, 0), timedelta(hours=1))
    monthly_calls = [call for call in recorder.calls if call[0] == "monthly"]
    assert monthly_calls == [("monthly", "monthly schedule", local(2026, 2, 1, 2, 0)),
                             ("monthly", "monthly schedule", local(2026, 3, 1, 2, 0))]
    # 1 February and 1 March 2026 are Sundays: the weekly job fires an hour after the monthly one.
    assert recorder.triggers() == [
        ("monthly", local(2026, 2, 1, 2, 0)), ("weekly", local(2026, 2, 1, 3, 0)),
        ("weekly", local(2026, 2, 8, 3, 0)), ("weekly", local(2026, 2, 15, 3, 0)), ("weekly", local(2026, 2, 22, 3, 0)),
        ("monthly", local(2026, 3, 1, 2, 0)), ("weekly", local(2026, 3, 1, 3, 0)),
    ]
    monthly = jobs(ctx)["monthly"]
    # One daily run from 30 January to 2 March: 2 + 28 + 2 days.
    assert (monthly["runs"], monthly["failures"]) == (32, 0)
    assert monthly["last_result"] == "nothing to do: today is day 2, the monthly retrain runs on day 1"
    assert monthly["next_run"] == to_utc(local(2026, 4, 1, 2, 0))


# --- adaptive --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("before", "after", "repeat", "expected_new", "expected_due"),
    [
        (0, 99, 1, 99, False),
        (0, 100, 1, 100, True),
        (500, 99, 1, 99, False),  # labels older than the last retrain do not count
        (0, 99, 3, 99, False),    # a text labelled three times counts once
        (0, 150, 2, 150, True),
    ],
    ids=["99-new", "100-new", "old-labels-ignored", "repeats-count-once", "150-new"],
)
def test_adaptive_status_counts_new_distinct_labelled_texts(ctx, clock, before, after, repeat, expected_new, expected_due):
    if before:
        add_labels(ctx, before, ts=clock() - timedelta(hours=1), prefix="old")
    add_finished_retrain(ctx, at=clock())
    clock.advance(hours=12)
    add_labels(ctx, after, ts=clock(), prefix="new", repeat=repeat)
    assert adaptive_status(ctx) == AdaptiveStatus(new_samples=expected_new, days_since=0.5, min_samples=100, max_days=7.0)
    assert adaptive_status(ctx).due is expected_due


def test_adaptive_status_before_any_retrain(ctx, clock):
    assert adaptive_status(ctx) == AdaptiveStatus(0, None, 100, 7.0)
    assert adaptive_status(ctx).due is False
    add_labels(ctx, 3, ts=clock())
    assert adaptive_status(ctx).due is True  # never retrained: any labelled data is reason enough
    assert adaptive_status(ctx).reason() == "3 of 100 new labelled samples; never retrained"


def test_adaptive_fires_at_100_new_labelled_texts_not_99(settings):
    ctx, clock, recorder, scheduler = make(settings, local(2026, 3, 4, 12, 0))
    add_finished_retrain(ctx, at=clock())
    clock.advance(minutes=1)
    add_labels(ctx, 99, ts=clock())
    scheduler.start()

    clock.advance(minutes=15)
    scheduler.run_pending()
    assert recorder.calls == []
    assert jobs(ctx)["adaptive"]["last_result"] == "not due: 99 of 100 new labelled samples; 0.0 of 7 days since the last retrain"

    add_labels(ctx, 1, ts=clock(), prefix="one more")
    clock.advance(minutes=15)
    scheduler.run_pending()
    assert recorder.calls == [("adaptive", "adaptive trigger: 100 of 100 new labelled samples; 0.0 of 7 days since the last retrain",
                               local(2026, 3, 4, 12, 31))]
    adaptive = jobs(ctx)["adaptive"]
    assert (adaptive["runs"], adaptive["last_result"], adaptive["next_run"]) == (
        2, "retrain started", to_utc(local(2026, 3, 4, 12, 46)))


def test_adaptive_fires_after_seven_days_not_six_point_nine(settings):
    ctx, clock, recorder, scheduler = make(settings, local(2026, 3, 4, 12, 0))
    add_finished_retrain(ctx, at=clock())
    scheduler.start()

    clock.advance(days=6.9)
    scheduler.run_pending()
    # The clock jumped past Sunday 03:00, so the weekly job ran once too; adaptive did not fire.
    assert recorder.triggers() == [("weekly", local(2026, 3, 11, 9, 36))]
    assert jobs(ctx)["adaptive"]["last_result"] == "not due: 0 of 100 new labelled samples; 6.9 of 7 days since the last retrain"

    clock.advance(days=0.1)
    scheduler.run_pending()
    assert recorder.calls[1:] == [("adaptive", "adaptive trigger: 0 of 100 new labelled samples; 7.0 of 7 days since the last retrain",
                                   local(2026, 3, 11, 12, 0))]


# --- pause and resume ------------------------------------------------------------------------


def test_paused_jobs_are_skipped_and_resume_fires_again(settings):
    ctx, clock, recorder, scheduler = make(settings, local(2026, 3, 4, 12, 0))
    add_labels(ctx, 5, ts=clock())  # never retrained and labelled data: adaptive is due
    scheduler.start()
    set_paused(ctx, True)
    assert is_paused(ctx) is True

    clock.set(to_utc(local(2026, 3, 8, 3, 0)))
    scheduler.run_pending()
    assert recorder.calls == []
    rows = jobs(ctx)
    assert {name: (row["runs"], row["last_result"]) for name, row in rows.items()} == {
        "weekly": (1, PAUSED),
        "adaptive": (1, PAUSED),
        "monthly": (1, "nothing to do: today is day 8, the monthly retrain runs on day 1"),
    }
    assert rows["weekly"]["next_run"] == to_utc(local(2026, 3, 15, 3, 0))

    set_paused(ctx, False)
    assert is_paused(ctx) is False
    clock.set(to_utc(local(2026, 3, 15, 3, 0)))
    scheduler.run_pending()
    assert recorder.calls == [
        ("adaptive", "adaptive trigger: 5 of 100 new labelled samples; never retrained", local(2026, 3, 15, 3, 0)),
        ("weekly", WEEKLY, local(2026, 3, 15, 3, 0)),
    ]
    assert jobs(ctx)["weekly"]["last_result"] == "retrain started"


# --- catch-up after downtime -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("restart_at", "expected"),
    [
        (local(2026, 3, 9, 10, 0), [("weekly", "weekly slot of 2026-03-08 03:00 was missed while no worker ran; caught up at start-up")]),
        # Two Sundays missed: still one catch-up.
        (local(2026, 3, 16, 10, 0), [("weekly", "weekly slot of 2026-03-08 03:00 was missed while no worker ran; caught up at start-up")]),
        (local(2026, 4, 6, 8, 0), [
            ("weekly", "weekly slot of 2026-03-08 03:00 was missed while no worker ran; caught up at start-up"),
            ("monthly", "monthly slot of 2026-04-01 02:00 was missed while no worker ran; caught up at start-up"),
        ]),
        (local(2026, 3, 8, 2, 59), []),  # restarted before the slot: nothing missed
    ],
    ids=["one-sunday", "two-sundays", "sunday-and-day-1", "before-the-slot"],
)
def test_catch_up_runs_each_missed_slot_once(settings, restart_at, expected):
    ctx, clock, first_recorder, first = make(settings, local(2026, 3, 4, 12, 0), adaptive_every_minutes=1440)
    assert first.start() == []
    first.run_pending()
    del first  # the worker stops

    clock.set(to_utc(restart_at))
    recorder = Recorder(clock)
    second = Scheduler(ctx, request_retrain=recorder)
    assert second.start() == [name for name, _ in expected]
    assert [(trigger, why) for trigger, why, _ in recorder.calls] == expected
    assert first_recorder.calls == []
    rows = jobs(ctx)
    assert rows["weekly"]["next_run"] == second.next_runs()["weekly"] > clock()
    # The adaptive job ran at start-up (it has a row from before) and found nothing to do.
    assert rows["adaptive"]["last_result"] == "not due: 0 of 100 new labelled samples; never retrained"

    # Right after start-up nothing is due again.
    second.run_pending()
    assert len(recorder.calls) == len(expected)


def test_no_catch_up_on_a_brand_new_store(settings):
    ctx, clock, recorder, scheduler = make(settings, local(2026, 3, 9, 10, 0))  # a Monday, after a Sunday slot
    assert scheduler.start() == []
    assert recorder.calls == []
    assert {name: (row["runs"], row["last_run"]) for name, row in jobs(ctx).items()} == {
        "weekly": (0, None), "monthly": (0, None), "adaptive": (0, None)}


# --- a job that raises ------------------------------------------------------------------------


def test_a_raising_request_is_recorded_and_the_job_rescheduled(settings):
    ctx, clock, _, _ = make(settings, local(2026, 3, 4, 12, 0), adaptive_every_minutes=1440)
    recorder = Recorder(clock, fail_times=1)
    scheduler = Scheduler(ctx, request_retrain=recorder)
    scheduler.start()

    clock.set(to_utc(local(2026, 3, 8, 3, 0)))
    scheduler.run_pending()
    weekly = jobs(ctx)["weekly"]
    assert (weekly["runs"], weekly["failures"], weekly["last_result"], weekly["last_error"]) == (
        1, 1, "failed", "RuntimeError: the executor is gone")
    assert weekly["next_run"] == to_utc(local(2026, 3, 15, 3, 0))
    assert weekly["next_run"] > clock()

    # The loop does not run it again at once, nor on the following ticks.
    for _ in range(3):
        scheduler.run_pending()
        clock.advance(minutes=30)
    assert len(recorder.calls) == 1
    assert jobs(ctx)["weekly"]["runs"] == 1

    clock.set(to_utc(local(2026, 3, 8, 5, 0)))
    run_until(scheduler, clock, local(2026, 3, 15, 4, 0), timedelta(hours=1))
    assert recorder.triggers() == [("weekly", local(2026, 3, 8, 3, 0)), ("weekly", local(2026, 3, 15, 3, 0))]
    weekly = jobs(ctx)["weekly"]
    assert (weekly["runs"], weekly["failures"], weekly["last_result"], weekly["last_error"]) == (2, 1, "retrain started", None)
