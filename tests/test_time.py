"""Time from the outside world: future timestamps, naive times, daylight saving, and the demo's end.

Claimed times (a row's ``ts``) come from other machines and files; the adaptive trigger counts
by arrival (``arrived_at``, this machine's clock), so a wrong claim cannot make it retrain forever.
"""

from __future__ import annotations

import os
import time
from datetime import datetime, timedelta

import pandas as pd
import pytest

from engine import spool
from engine.cli import main
from engine.clock import ManualClock, zone_named
from engine.config import load_settings
from engine.context import Context
from engine.errors import InputError
from engine.importer import import_file, read_ts
from engine.ingest import ingest_spool
from engine.retrain import run_cycle
from engine.scheduling import Scheduler, adaptive_status
from store.state import read_jobs
from tests.conftest import labelled_frame

NOW = datetime(2026, 3, 4, 12, 0)


# -- claimed times in the future ---------------------------------------------------------------------


def feedback_records(n: int, *, ts: datetime) -> list[dict]:
    """``n`` human labels as a serving process writes them to the spool, all claiming ``ts``."""
    return [{"k": "f", "id": f"f{i}", "ts": ts.isoformat(), "query_id": None, "text": f"my parcel number {i} is late",
             "label": "delivery_delay", "source": "feedback"} for i in range(n)]


@pytest.mark.slow
def test_labels_claiming_a_future_time_are_new_once_not_at_every_check(settings, tmp_path):
    clock = ManualClock(NOW - timedelta(days=1))
    ctx = Context.open(settings, clock=clock)
    path = tmp_path / "labelled.csv"
    labelled_frame(15).to_csv(path, index=False)
    import_file(ctx, path, labeled=True)
    assert run_cycle(ctx, trigger="manual").status == "accepted"
    clock.set(NOW)
    # A client whose clock is 9 hours ahead (naive local time of UTC+9 sent as UTC).
    spool.write_batch(settings.spool_dir, feedback_records(120, ts=NOW + timedelta(hours=9)))

    ingested = ingest_spool(ctx.db, settings.spool_dir, clock=clock)

    assert (ingested.labels, ingested.future) == (120, 120)
    with ctx.db.read() as con:
        assert con.execute("SELECT min(ts), max(ts), min(arrived_at) FROM labels WHERE source = 'feedback'").fetchone() \
            == (NOW, NOW, NOW)
        event = con.execute("SELECT severity, message FROM events WHERE kind = 'ingest'").fetchall()
    assert event == [("warning", "120 logged queries or labels claimed a time more than 5 minutes ahead of this "
                                 "machine's clock; they were stored at their arrival time instead (is a client's "
                                 "clock or time zone wrong?).")]
    assert adaptive_status(ctx).new_samples == 120
    clock.advance(minutes=1)
    assert run_cycle(ctx, trigger="adaptive").status in ("accepted", "rejected")
    clock.advance(minutes=15)  # the next adaptive check
    assert (adaptive_status(ctx).new_samples, adaptive_status(ctx).due) == (0, False)


def test_a_clamped_record_written_again_is_stored_once_before_and_after_its_claim_has_passed(ctx, settings):
    """The log has no primary-key index (schema 3): a repeat is found by id within the batch's span of
    claimed times, and a clamped row keeps its claim in claimed_ts, where that search finds it."""
    clock = ctx.clock
    clock.set(NOW)
    records = feedback_records(3, ts=NOW + timedelta(hours=1)) + [
        {"k": "q", "id": "q1", "ts": (NOW + timedelta(hours=1)).isoformat(), "text": "where is my parcel",
         "predicted_label": "track_order", "confidence": 0.9, "model_version": None, "source": "app"}]

    def ingest_copy():  # a crash between the commit and the delete leaves the file to be ingested again
        spool.write_batch(settings.spool_dir, records)
        return ingest_spool(ctx.db, settings.spool_dir, clock=clock)

    first = ingest_copy()
    clock.advance(minutes=10)
    again_in_the_future = ingest_copy()
    clock.advance(hours=2)  # the claim is the past now: the batch is not clamped, its copy was
    again_in_the_past = ingest_copy()

    assert [(r.queries, r.labels, r.future) for r in (first, again_in_the_future, again_in_the_past)] == [
        (1, 3, 4), (0, 0, 4), (0, 0, 0)]
    with ctx.db.read() as con:
        assert con.execute("SELECT id, ts, claimed_ts, arrived_at FROM labels ORDER BY id").fetchall() == [
            (f"f{i}", NOW, NOW + timedelta(hours=1), NOW) for i in range(3)]
        assert con.execute("SELECT id, ts, claimed_ts FROM queries").fetchall() == [("q1", NOW, NOW + timedelta(hours=1))]
    # A record claiming a time within the allowed skew keeps it, with no claimed_ts.
    in_range = [dict(feedback_records(1, ts=clock() + timedelta(minutes=4))[0], id="f-in-range")]
    spool.write_batch(settings.spool_dir, in_range)
    assert ingest_spool(ctx.db, settings.spool_dir, clock=clock).future == 0
    with ctx.db.read() as con:
        assert con.execute("SELECT ts, claimed_ts, arrived_at FROM labels WHERE id = 'f-in-range'").fetchone() == (
            clock() + timedelta(minutes=4), None, clock())


def test_labels_imported_after_a_retrain_are_new_whatever_time_they_claim(ctx, tmp_path):
    """A backfill of old labels arrives after the last retrain: new by arrival, though their ts is older."""
    ctx.clock.set(NOW)
    with ctx.db.write() as con:
        con.execute("INSERT INTO retrains (started_at, finished_at, trigger, status) VALUES (?, ?, 'manual', 'rejected')",
                    [NOW - timedelta(hours=1), NOW - timedelta(minutes=59)])
    path = tmp_path / "backfill.csv"
    pd.DataFrame({"text": [f"refund for order {i}" for i in range(30)], "label": "refund",
                  "ts": "2025-01-01T00:00:00"}).to_csv(path, index=False)

    assert import_file(ctx, path, labeled=True).labels == 30
    assert adaptive_status(ctx).new_samples == 30


# -- naive times and --tz ------------------------------------------------------------------------------


def test_naive_times_from_a_zone_east_of_utc_refuse_the_file_until_the_zone_is_given(ctx, tmp_path):
    """Refused whole, not row by row: the rows in the past would be stored 9 hours late, and importing the
    file again with --tz would need --again and store them twice."""
    ctx.clock.set(NOW)
    path = tmp_path / "tokyo.csv"
    # Written on a machine in Tokyo at 20:30 and 20:00 local time (11:30, 11:00 UTC), without an offset.
    pd.DataFrame({"text": ["where is my order", "cancel my order", "refund please"],
                  "label": ["track_order", "cancel", "refund"],
                  "ts": ["2026-03-04 20:30:00", "2026-03-04 20:00:00", "2026-03-04 11:00:00"]}).to_csv(path, index=False)

    with pytest.raises(InputError) as refused:
        import_file(ctx, path, labeled=True)

    assert str(refused.value) == (
        "tokyo.csv: 2 rows claim a time more than 5 minutes ahead of this machine's clock (up to 8.5 hours; the first "
        "at line 2: ts '2026-03-04 20:30:00'). A time without an offset is read as UTC: if the file was written in "
        "another zone, name it with --tz ZONE (e.g. --tz Asia/Tokyo); otherwise correct those times.")
    with ctx.db.read() as con:
        assert con.execute("SELECT count(*) FROM labels").fetchone() == (0,)

    in_tokyo = import_file(ctx, path, labeled=True, tz="Asia/Tokyo")

    assert (in_tokyo.labels, in_tokyo.rejected) == (3, 0)
    with ctx.db.read() as con:
        stored = con.execute("SELECT text, ts FROM labels ORDER BY ts").fetchall()
    assert stored == [("refund please", datetime(2026, 3, 4, 2, 0)), ("cancel my order", datetime(2026, 3, 4, 11, 0)),
                      ("where is my order", datetime(2026, 3, 4, 11, 30))]


def test_import_tz_on_the_command_line(monkeypatch, tmp_path, capsys):
    home = tmp_path / "home"
    monkeypatch.setenv("RETRAINER_HOME", str(home))
    path = tmp_path / "log.jsonl"
    path.write_text('{"text": "where is my order", "label": "track_order", "ts": "2020-06-01T09:00:00"}\n')

    assert main(["import", str(path), "--labeled", "--tz", "America/New_York"]) == 0
    assert main(["import", str(path), "--labeled", "--tz", "Mars/Olympus"]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        "error: unknown time zone 'Mars/Olympus': use an IANA name such as Europe/Berlin, Asia/Tokyo or UTC")
    ctx = Context.open(load_settings(env={}, home=home))
    with ctx.db.read() as con:
        assert con.execute("SELECT ts FROM labels").fetchall() == [(datetime(2020, 6, 1, 13, 0),)]


@pytest.mark.parametrize("value, zone, expected", [
    ("2026-03-04 18:00", None, datetime(2026, 3, 4, 18, 0)),                        # naive: UTC
    ("2026-03-04T18:00:00+09:00", None, datetime(2026, 3, 4, 9, 0)),               # an offset wins
    ("2026-03-04T18:00:00Z", "Asia/Tokyo", datetime(2026, 3, 4, 18, 0)),           # ... over --tz too
    ("2026-10-25 02:30", "Europe/Berlin", datetime(2026, 10, 25, 0, 30)),          # repeated hour: the first
    ("2026-03-29 02:30", "Europe/Berlin", datetime(2026, 3, 29, 1, 30)),           # skipped hour: offset before
    ("2026-07-01 12:00", "Europe/Berlin", datetime(2026, 7, 1, 10, 0)),            # summer time
    (pd.Timestamp("2026-03-04 18:00", tz="Asia/Tokyo"), None, datetime(2026, 3, 4, 9, 0)),
], ids=["naive", "offset", "offset-over-tz", "ambiguous", "nonexistent", "summer", "timestamp"])
def test_stored_times_are_utc(value, zone, expected):
    assert read_ts(value, now=datetime(2099, 1, 1), zone=zone_named(zone) if zone else None) == expected


def test_an_unknown_zone_is_refused_naming_the_fix():
    with pytest.raises(InputError, match=r"unknown time zone 'Tokyo': use an IANA name such as Europe/Berlin"):
        zone_named("Tokyo")


# -- the schedule across daylight-saving changes -------------------------------------------------------


@pytest.fixture
def new_york(monkeypatch):
    """The process's local zone is America/New_York (clocks change on 2026-03-08 and 2026-11-01)."""
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def walk(settings, *, start: datetime, end: datetime, step_minutes: int = 5):
    """Run a Scheduler on a clock moved from ``start`` to ``end`` (UTC) in steps; return its requests and jobs."""
    clock = ManualClock(start)
    ctx = Context.open(settings, clock=clock)
    requests: list[tuple[str, datetime]] = []

    def request(trigger: str, why: str) -> str:
        requests.append((trigger, clock()))
        return "retrain started"

    scheduler = Scheduler(ctx, request_retrain=request)
    scheduler.start()
    adaptive_runs = []
    while clock() < end:
        clock.advance(minutes=step_minutes)
        before = scheduler._jobs["adaptive"].last_run
        scheduler.run_pending()
        if scheduler._jobs["adaptive"].last_run != before:
            adaptive_runs.append(clock())
    return requests, adaptive_runs, {j["name"]: j for j in read_jobs(ctx.db)}


@pytest.mark.parametrize("day, at, expected_utc, next_utc", [
    # Spring forward, 2026-03-08: 02:00 EST becomes 03:00 EDT; 02:30 never happens: run at 03:00 EDT.
    (datetime(2026, 3, 8), "02:30", datetime(2026, 3, 8, 7, 0), datetime(2026, 3, 15, 6, 30)),
    # Fall back, 2026-11-01: 01:00-02:00 happens twice (EDT, then EST): run once, at the first 01:30.
    (datetime(2026, 11, 1), "01:30", datetime(2026, 11, 1, 5, 30), datetime(2026, 11, 8, 6, 30)),
    # The default slot, 03:00, on the spring-forward Sunday: 07:00 UTC, then 07:00 UTC a week later.
    (datetime(2026, 3, 8), "03:00", datetime(2026, 3, 8, 7, 0), datetime(2026, 3, 15, 7, 0)),
], ids=["weekly-in-skipped-hour", "weekly-in-repeated-hour", "weekly-default-on-spring-day"])
def test_weekly_runs_once_on_a_daylight_saving_sunday(settings, new_york, day, at, expected_utc, next_utc):
    settings = settings.replace(weekly_day="sunday", weekly_time=at, monthly_day=15, adaptive_every_minutes=24 * 60)
    requests, _, jobs = walk(settings, start=day - timedelta(hours=12), end=day + timedelta(hours=24))
    assert [r for r in requests if r[0] == "weekly"] == [("weekly", expected_utc)]
    assert jobs["weekly"]["next_run"] == next_utc


@pytest.mark.parametrize("day, at, expected_utc", [
    (datetime(2026, 3, 8), "02:30", datetime(2026, 3, 8, 7, 0)),
    (datetime(2026, 11, 1), "01:30", datetime(2026, 11, 1, 5, 30)),
], ids=["monthly-in-skipped-hour", "monthly-in-repeated-hour"])
def test_monthly_runs_once_on_a_daylight_saving_day(settings, new_york, day, at, expected_utc):
    settings = settings.replace(weekly_day="wednesday", monthly_day=day.day, monthly_time=at,
                                adaptive_every_minutes=24 * 60)
    requests, _, _ = walk(settings, start=day - timedelta(hours=12), end=day + timedelta(hours=24))
    assert [r for r in requests if r[0] == "monthly"] == [("monthly", expected_utc)]


@pytest.mark.parametrize("day", [datetime(2026, 3, 8), datetime(2026, 11, 1)], ids=["spring", "fall"])
def test_the_adaptive_check_keeps_its_interval_across_a_daylight_saving_change(settings, new_york, day):
    settings = settings.replace(weekly_day="wednesday", monthly_day=15, adaptive_every_minutes=15)
    start, end = day + timedelta(hours=3), day + timedelta(hours=9)   # 22:00 the evening before to 04:00 local
    _, runs, _ = walk(settings, start=start, end=end)
    gaps = {b - a for a, b in zip(runs, runs[1:])}
    assert gaps == {timedelta(minutes=15)}
    assert len(runs) == 6 * 4


# -- the demo ends at the present -------------------------------------------------------------------------


@pytest.mark.slow
def test_the_demo_ends_at_its_end_after_an_incident_and_its_recovery(settings):
    from demo.replay import build_demo

    end = datetime(2026, 3, 4, 0, 30)  # 30 minutes into a 12-hour block: the last block is cut short
    build_demo(settings, days=7, seed=3, end=end)

    ctx = Context.open(settings)
    with ctx.db.read() as con:
        latest = {name: con.execute(sql).fetchone()[0] for name, sql in {
            "queries": "SELECT max(ts) FROM queries", "labels": "SELECT max(ts) FROM labels",
            "retrains": "SELECT max(started_at) FROM retrains", "jobs": "SELECT max(last_run) FROM jobs",
            "deployments": "SELECT max(ts) FROM deployments", "models": "SELECT max(created_at) FROM models",
        }.items()}
        last_event = con.execute("SELECT ts, message FROM events WHERE kind = 'demo' ORDER BY id DESC LIMIT 1").fetchone()
        retrains = con.execute("SELECT trigger, status, quarantined FROM retrains ORDER BY id").fetchall()
        quarantines = con.execute("SELECT message FROM events WHERE kind = 'quarantine'").fetchall()
    assert {name: moment <= end for name, moment in latest.items()} == dict.fromkeys(latest, True), latest
    assert latest["queries"] > end - timedelta(hours=12)  # traffic up to the end, not stopped a block early
    assert last_event == (end, "Demo: replayed 7 days of traffic.")
    # The incident and its recovery: the kiosk's rows poison the scheduled retrains; the operator's
    # quarantine and retrain get a model in again.
    assert retrains == [("demo", "accepted", 0), ("monthly", "rejected", 0), ("weekly", "rejected", 0),
                        ("manual", "accepted", 5000)]
    assert len(quarantines) == 1 and quarantines[0][0].startswith("Quarantine #1 (source kiosk, from ")
    assert ": 5,000 logged queries and 0 labels are left out of training and evaluation." in quarantines[0][0]
