"""The Overview page, through Streamlit's AppTest, on an empty store and on the demo store."""

from __future__ import annotations


from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from engine.clock import utcnow
from engine.config import load_settings
from engine.context import Context
from engine.errors import InputError
from engine.status import system_status
from store.commands import recent_commands
from store.events import recent_events
from store.retrains import recent_retrains
from store.views import overview as views
from pages import _ui
from pages._charts import SERIES
from tests.conftest import ROOT, open_app, shown as read, values, vega_chart, vega_charts


@pytest.fixture
def open_overview(monkeypatch):
    def open_(home) -> AppTest:
        return open_app(monkeypatch, home)

    return open_


def metric(at: AppTest, label: str):
    found = [m for m in at.metric if m.label == label]
    assert len(found) == 1, f"no single metric {label!r} in {[m.label for m in at.metric]}"
    return found[0]


def test_empty_store_says_how_to_get_a_model_and_warns_the_worker_is_down(open_overview, tmp_path):
    at = open_overview(tmp_path / "empty")
    assert at.title[0].value == "Overview"
    assert at.warning[0].value.startswith("**The worker is not running**")
    assert metric(at, "Active model").value == "none"
    assert metric(at, "Worker").value == "down"
    assert [i.value for i in at.info] == [
        "No model is deployed yet. Build the demo with `python -m engine demo`, or import labelled data "
        "(`python -m engine import FILE --labeled`) and press **Retrain now** on the Models page."
    ]
    assert not vega_charts(at)


def test_demo_store_shows_the_store_numbers(open_overview, demo_copy):
    at = open_overview(demo_copy)
    ctx = Context.open(load_settings(env={}, home=demo_copy))
    status = system_status(ctx)
    active = status["active"]
    assert metric(at, "Active model").value == active["version"]
    assert metric(at, "Accuracy").value == f"{100 * active['accuracy']:.1f}%"
    assert metric(at, "Macro-F1").value == f"{100 * active['macro_f1']:.1f}%"
    before = views.previous_metrics(ctx.db, active["version"])
    assert before is not None
    shown = 100 * (active["accuracy"] - before["accuracy"])
    assert metric(at, "Accuracy").delta == (f"{shown:+.1f} pts vs {before['version']}" if abs(shown) >= 0.05
                                            else f"±0.0 pts vs {before['version']}")

    now = utcnow().replace(second=0, microsecond=0)
    day_start = now.replace(hour=0, minute=0)
    traffic = views.traffic(ctx.db, now=now, day_start=day_start, min_confidence=ctx.settings.min_confidence)
    assert metric(at, "Queries, 7 days").value == f"{traffic['queries_7d']:,}"
    assert metric(at, "With feedback (7 d)").value == f"{100 * traffic['feedback_share_7d']:.1f}%"
    assert metric(at, "Low confidence (7 d)").value == f"{100 * traffic['low_confidence_share_7d']:.1f}%"
    assert metric(at, "Scheduler").value == "running"

    # The chart holds every decided retrain: accepted and rejected candidates as markers.
    chart = vega_chart(at, "Accuracy and macro-F1 over time")
    candidates = values(chart, "candidates")
    assert {c["series"] for c in candidates} == {"candidate accepted", "candidate rejected"}
    marked = views.markers(ctx.db)
    assert [m["series"] for m in values(chart, "markers")] == marked["kind"].tolist()
    # The legend names exactly what is drawn: no "fallback" or "drift" entry for a store that has none.
    legend = chart["layer"][0]["encoding"]["color"]["scale"]["domain"]
    assert legend == [name for name, _ in SERIES if name in {"accuracy (serving)", "macro-F1 (serving)",
                                                            "candidate accepted", "candidate rejected",
                                                            *marked["kind"]}]
    assert "rollback" in marked["kind"].tolist()
    timeline = views.timeline(ctx.db)
    assert [c["version"] for c in candidates] == timeline["candidate_version"].tolist()
    assert [c["value"] for c in candidates] == pytest.approx(timeline["candidate_accuracy"].tolist())

    # Recent activity: one line per retrain (its gate decision and the deployment it caused together).
    newest = views.activity(ctx.db, limit=12)
    lines = activity_lines(at)
    assert len(lines) == len(newest) == 12
    # Each message is shown as written (escaped Markdown, pages/_ui.literal), its paths hidden.
    assert [line.split("** · ", 1)[1] for line in lines] == [_ui.literal(_ui.redact(n["text"])) for n in newest]
    last = recent_retrains(ctx.db, limit=1)[0]
    assert sum(f"#{last['id']} (" in read(line) for line in lines) == 1
    assert not any(n["kind"] == "deploy" and n["text"].startswith(f"Deployed {last['candidate_version']} ") for n in newest)


def activity_lines(at: AppTest) -> list[str]:
    [block] = [m.value for m in at.markdown if "` **" in m.value]
    return block.split("  \n")


@pytest.mark.parametrize(("new", "old", "words"), [
    (0.6316, 0.4895, "+14.2 pts vs v0007"),  # as the gate's reason says; the rounded 63.2% and 48.9% differ by 14.3
    (0.8599, 0.8574, "+0.2 pts vs v0007"),   # 0.25 points, rounded once
    (0.857, 0.860, "-0.3 pts vs v0007"),
    (0.86, 0.8601, "±0.0 pts vs v0007"),
], ids=["gate-reason", "rounded-once", "down", "none"])
def test_a_change_is_the_difference_of_the_stored_values_rounded_once(new, old, words):
    from pages import _ui

    assert _ui.change(new, old, against="v0007")["delta"] == words
    assert ("delta_arrow" in _ui.change(new, old, against="v0007")) == words.startswith("±")


def test_retrain_now_queues_one_manual_retrain(open_overview, demo_copy):
    at = open_overview(demo_copy)
    ctx = Context.open(load_settings(env={}, home=demo_copy))
    before = [c["id"] for c in recent_commands(ctx.db)]
    at.button(key="retrain").click().run()
    assert not at.exception
    commands = [c for c in recent_commands(ctx.db) if c["id"] not in before]
    assert [(c["kind"], c["source"], c["status"]) for c in commands] == [("retrain", "dashboard", "queued")]


def test_a_drift_warning_is_in_recent_activity_and_on_the_timeline(ctx, labelled_csv, monkeypatch):
    from tests.test_drift_worker import warned_store

    [verdict] = warned_store(ctx, labelled_csv)
    at = open_app(monkeypatch, ctx.settings.home, timezone="UTC")
    [event] = recent_events(ctx.db, kind="drift")
    lines = [read(line) for line in activity_lines(at) if "**drift**" in line]
    assert lines == [f":orange[:material/warning:] `{event['ts']:%Y-%m-%d %H:%M}` **drift** · {verdict.message()}"]
    [marker] = [m for m in values(vega_chart(at, "Accuracy and macro-F1 over time"), "markers") if m["series"] == "drift"]
    assert marker["message"] == verdict.message()


def test_a_refused_rollback_is_no_marker_on_the_timeline(ctx, labelled_csv):
    from engine.importer import import_file
    from engine.retrain import run_cycle
    from engine.worker import Worker
    from store import commands as queue
    from store.vocabulary import CommandKind
    from tests.conftest import run_cli

    assert import_file(ctx, labelled_csv, labeled=True).rejected == 0
    assert run_cycle(ctx, trigger="manual").status == "accepted"
    # One version only: there is nothing to roll back to. The CLI refuses before queuing (exit 2); a
    # rollback queued earlier (by a client that did not check) is refused by the worker, which records why.
    refused = run_cli("rollback", "--wait", home=ctx.settings.home)
    assert refused.returncode == 2 and "nothing to roll back to" in refused.stderr, refused.stdout + refused.stderr
    queue.enqueue(ctx.db, kind=CommandKind.ROLLBACK, args={}, source="cli", ts=ctx.clock())
    worker = Worker(ctx, synchronous=True)
    try:
        worker.process_commands()
    finally:
        worker.predictor.close()
    [event] = recent_events(ctx.db, kind="rollback")
    assert event["message"].startswith("Rollback refused") and event["version"] is None
    assert views.markers(ctx.db).empty


def test_recent_activity_shows_no_server_path(ctx, tmp_path, monkeypatch, labelled_csv):
    from engine.importer import import_file
    from engine.retrain import run_cycle

    assert import_file(ctx, labelled_csv, labeled=True).rejected == 0
    assert run_cycle(ctx, trigger="manual").status == "accepted"  # a model, so the page shows its activity
    missing = tmp_path / "exports" / "nope.csv"
    with pytest.raises(InputError):
        import_file(ctx, missing, labeled=True)
    event = recent_events(ctx.db, kind="import")[0]
    assert str(missing) in event["message"]  # the operator's record keeps the path (the CLI's `events` shows it)
    at = open_app(monkeypatch, ctx.settings.home, timezone="UTC")
    [line] = [read(line) for line in activity_lines(at) if "nope\\.csv" in line]
    assert str(tmp_path) not in line and "Import of nope.csv refused: <path> does not exist or is not a file" in line


@pytest.mark.parametrize(("zone", "now", "midnight"), [
    ("UTC", datetime(2026, 3, 1, 20, 0), datetime(2026, 3, 1, 0, 0)),
    # Kathmandu is UTC+5:45: 20:00 UTC on 1 March is 01:45 on 2 March there, whose midnight was 18:15 UTC.
    ("Asia/Kathmandu", datetime(2026, 3, 1, 20, 0), datetime(2026, 3, 1, 18, 15)),
    # New York on the day clocks went forward (8 March 2026): midnight was still EST, 05:00 UTC.
    ("America/New_York", datetime(2026, 3, 8, 23, 0), datetime(2026, 3, 8, 5, 0)),
])
def test_queries_today_count_from_the_viewers_midnight(monkeypatch, zone, now, midnight):
    from pages import _ui

    monkeypatch.setattr(_ui, "user_zone", lambda: ZoneInfo(zone))
    assert _ui.local_day_start(now) == midnight
