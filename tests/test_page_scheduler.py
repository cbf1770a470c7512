"""The Scheduler page, through Streamlit's AppTest, on an empty store and on the demo store."""

from __future__ import annotations

import shutil

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from engine.clock import utcnow
from engine.config import load_settings
from engine.context import Context
from engine.scheduling import adaptive_status, set_paused
from pages import _ui
from store.commands import recent_commands
from store.retrains import recent_retrains
from store.state import read_jobs
from tests.conftest import ROOT, open_app, shown as read


@pytest.fixture
def open_page(monkeypatch):
    """Open the Scheduler page on a data directory, with fresh caches."""

    def open_(home) -> AppTest:
        return open_app(monkeypatch, home, "pages/scheduler.py")

    return open_


def context(home) -> Context:
    return Context.open(load_settings(env={}, home=home))


def rerun(at: AppTest) -> AppTest:
    st.cache_data.clear()
    at.run()
    assert not at.exception
    return at


def metrics(at: AppTest) -> list[tuple[str, str, str]]:
    return [(m.label, m.value, m.delta) for m in at.metric]


def test_empty_store_shows_no_jobs_yet_and_counters_at_zero(open_page, tmp_path):
    at = open_page(tmp_path / "empty")
    assert [i.value for i in at.info] == [
        "No job has been scheduled yet: the worker creates the jobs when it starts. Start it with `python -m engine worker`."
    ]
    assert metrics(at) == [
        ("Scheduler", "running", "but the worker is down"),
        ("Next run", "–", ""), ("Last run", "never", ""),
        ("Next run", "–", ""), ("Last run", "never", ""),
        ("Next run", "–", ""), ("Last run", "never", ""),
        ("New labelled samples since the last retrain", "0 of 100", ""),
        ("Days since the last retrain", "never retrained (threshold 7)", ""),
    ]
    assert [p.value for p in at.progress] == [0, 0]
    assert [b.key for b in at.button] == ["pause"]
    assert [c.value for c in at.caption if c.value.startswith("Started ")] == [
        "Started 0 retrains: 0 accepted, 0 rejected, 0 failed."] * 3
    assert "No scheduled job has started a retrain yet." in [c.value for c in at.caption]


def test_jobs_explain_themselves_with_the_configured_times(open_page, tmp_path, monkeypatch):
    monkeypatch.setenv("RETRAINER_WEEKLY_DAY", "tuesday")
    monkeypatch.setenv("RETRAINER_MONTHLY_DAY", "15")
    monkeypatch.setenv("RETRAINER_ADAPTIVE_MIN_SAMPLES", "250")
    at = open_page(tmp_path / "empty")
    lines = [m.value for m in at.markdown if m.value.startswith("**")]
    assert lines[0].startswith("**Weekly** · Every Tuesday at 03:00: retrains on all clean labelled data;")
    assert lines[1].startswith("**Monthly** · On day 15 of every month at 02:00: the same retrain")
    assert lines[2] == ("**Adaptive** · Every 15 minutes: retrains as soon as 250 new labelled texts arrived "
                        "or 7 days passed since the last retrain.")
    assert ("New labelled samples since the last retrain", "0 of 250", "") in metrics(at)


def in_words(seconds: float, *, future: bool) -> str:
    """The page's relative times, written out again: future moments (worker down) and past ones."""
    if future:
        if seconds < 0:
            return "overdue: runs once when the worker starts"
        return f"in {seconds / 60:.0f} min" if seconds < 5400 else (
            f"in {seconds / 3600:.1f} h" if seconds < 172800 else f"in {seconds / 86400:.1f} days")
    return _ui.ago(seconds)


def test_demo_jobs_show_the_stored_next_run_last_run_and_result(open_page, demo_home):
    ctx = context(demo_home)
    before = utcnow()
    at = open_page(demo_home)
    after = utcnow()
    jobs = {j["name"]: j for j in read_jobs(ctx.db)}
    assert sorted(jobs) == ["adaptive", "monthly", "weekly"]
    shown = [m for m in metrics(at) if m[0] in ("Next run", "Last run")]
    assert [m[0] for m in shown] == ["Next run", "Last run"] * 3
    for (_, nxt, nxt_when), (_, last, last_when), name in zip(shown[::2], shown[1::2], ("weekly", "monthly", "adaptive")):
        j = jobs[name]
        assert nxt_when == _ui.when(j["next_run"])
        assert nxt in {in_words((j["next_run"] - t).total_seconds(), future=True) for t in (before, after)}
        assert last_when == _ui.when(j["last_run"])
        assert last in {in_words((t - j["last_run"]).total_seconds(), future=False) for t in (before, after)}
    results = [read(m.value) for m in at.markdown if m.value.startswith("Last result: ")]
    assert results == [f"Last result: {jobs[n]['last_result']}" for n in ("weekly", "monthly", "adaptive")]


def test_demo_outcomes_and_recent_scheduled_retrains_equal_the_store(open_page, demo_home):
    at = open_page(demo_home)
    retrains = recent_retrains(context(demo_home).db, limit=1000)
    jobs = {j["name"]: j for j in read_jobs(context(demo_home).db)}
    for name in ("weekly", "monthly", "adaptive"):
        mine = [r["status"] for r in retrains if r["trigger"] == name]
        line = (f"Ran {jobs[name]['runs']} times ({jobs[name]['failures']} failed) and started {len(mine)} "
                f"{'retrain' if len(mine) == 1 else 'retrains'}: {mine.count('accepted')} accepted, "
                f"{mine.count('rejected')} rejected, {mine.count('failed')} failed.")
        assert line in [c.value for c in at.caption]
    scheduled = [r for r in retrains if r["trigger"] in ("weekly", "monthly", "adaptive")][:10]
    assert len(scheduled) >= 3
    table = at.table[0].value
    assert list(table["Job"]) == [r["trigger"] for r in scheduled]
    assert list(table["Decision"]) == [r["status"] for r in scheduled]  # the word, no markup
    assert not any(str(reason).startswith(("Accepted:", "Rejected:")) for reason in table["Reason"])
    assert list(table["Candidate"]) == [r["candidate_version"] or "–" for r in scheduled]
    assert list(table["Started"]) == [_ui.when(r["started_at"]) for r in scheduled]


def test_demo_adaptive_counters_equal_the_engines(open_page, demo_home):
    ctx = context(demo_home)
    before = adaptive_status(ctx)
    at = open_page(demo_home)
    after = adaptive_status(ctx)  # days pass while the page renders: accept the value at either end
    assert before.new_samples == after.new_samples and before.days_since is not None
    shown = dict((label, value) for label, value, _ in metrics(at))
    assert shown["New labelled samples since the last retrain"] == f"{before.new_samples:,} of 100"
    assert shown["Days since the last retrain"] in {f"{a.days_since:.1f} of 7" for a in (before, after)}
    assert at.progress[0].value == int(100 * min(1.0, before.new_samples / 100))
    assert at.progress[0].proto.text == f"{_ui.pct(before.new_samples / 100, digits=0)} of the threshold"


@pytest.mark.parametrize(("paused", "button", "kind", "shown"), [
    (False, "pause", "pause", "running"),
    (True, "resume", "resume", "paused"),
], ids=["pause", "resume"])
def test_the_toggle_queues_the_right_command_once(open_page, tmp_path, paused, button, kind, shown):
    home = tmp_path / "home"
    ctx = context(home)
    set_paused(ctx, paused)
    at = open_page(home)
    assert metrics(at)[0] == ("Scheduler", shown, "but the worker is down")
    assert [b.key for b in at.button] == [button]
    at.button(key=button).click()
    rerun(at)
    commands = recent_commands(ctx.db)
    assert [(c["kind"], c["args"], c["source"], c["status"]) for c in commands] == [(kind, {}, "dashboard", "queued")]
    assert (f"{kind.capitalize()} requested (command #{commands[0]['id']}, {_ui.when(commands[0]['created_at'])}): "
            "the worker runs it when it starts.") in [c.value for c in at.caption]
    rerun(at)
    assert len(recent_commands(ctx.db)) == 1
