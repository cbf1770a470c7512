"""Scheduler: when the worker retrains by itself, what each job last did, and the adaptive trigger's counters."""

from datetime import datetime, timezone

import pandas as pd
import streamlit as st

from engine.clock import utcnow
from engine.scheduling import JOB_NAMES, adaptive_status
from pages import _ui
from store.state import read_jobs
from store.views import scheduler as views
from store.views.overview import without_decision_word

current = _ui.page_header("Scheduler", "When the worker retrains by itself, what each job did last, and what the next one waits for.")
settings = _ui.context().settings

WHAT = {
    "weekly": f"Every {settings.weekly_day.capitalize()} at {settings.weekly_time}: retrains on all clean labelled data; "
              "the quality gate decides whether the candidate replaces the active model.",
    "monthly": f"On day {settings.monthly_day} of every month at {settings.monthly_time}: the same retrain, a regular refresh "
               f"even in quiet months (it checks daily at {settings.monthly_time} and acts only on day {settings.monthly_day}).",
    "adaptive": f"Every {settings.adaptive_every_minutes} minutes: retrains as soon as {settings.adaptive_min_samples} new "
                f"labelled texts arrived or {settings.adaptive_max_days:g} days passed since the last retrain.",
}


@_ui.cached()
def jobs() -> dict[str, dict]:
    return {j["name"]: j for j in read_jobs(_ui.context().db)}


@_ui.cached()
def counters():
    return adaptive_status(_ui.context())


@_ui.cached()
def pending():
    return views.pending_toggle(_ui.context().db)


@_ui.cached()
def retrains() -> pd.DataFrame:
    return views.scheduled_retrains(_ui.context().db, limit=10)


@_ui.cached()
def outcomes() -> dict[str, dict[str, int]]:
    return views.outcomes(_ui.context().db)


def until(moment, *, worker_alive: bool) -> str:
    """How far away a stored naive-UTC moment is, in words."""
    seconds = (moment - utcnow()).total_seconds()
    if seconds < 0:
        return "due now" if worker_alive else "overdue: runs once when the worker starts"
    if seconds < 5400:
        return f"in {seconds / 60:.0f} min"
    if seconds < 172800:
        return f"in {seconds / 3600:.1f} h"
    return f"in {seconds / 86400:.1f} days"


def sentence(text: str | None) -> str:
    """A reason as a sentence: its first letter upper-case ("–" when there is none)."""
    return text[:1].upper() + text[1:] if text else "–"


def zones() -> str:
    """Which clock each time on the page is on: the job times in the settings are the worker's local time."""
    worker = datetime.now().astimezone().tzinfo
    viewer = _ui.user_zone()
    now = datetime.now(timezone.utc)
    if now.astimezone(worker).utcoffset() == now.astimezone(viewer).utcoffset():
        return f"Every time on this page, the job times included, is in your time zone ({now.astimezone(viewer):%Z})."
    return (f"The job times in the descriptions (e.g. {settings.weekly_time}) are the worker's local time "
            f"({now.astimezone(worker):%Z}); every other time is in your time zone ({now.astimezone(viewer):%Z}).")


def toggle(kind: str) -> None:
    _ui.queue_command(kind, label="Pause the scheduler" if kind == "pause" else "Resume the scheduler", in_callback=True)
    pending.clear()


@st.fragment(run_every=5)
def state() -> None:
    _ui.show_notices()  # what the Pause/Resume callback said: this fragment's rerun is the one the click starts
    now = _ui.status()
    paused = now["scheduler"]["paused"]
    left, right = st.columns([1, 3], vertical_alignment="center")
    left.metric("Scheduler", "paused" if paused else "running",
                None if now["worker"]["alive"] else "but the worker is down", delta_color="off", delta_arrow="off",
                help="While paused, the jobs still run on time but start no retrain; manual retrains still work.")
    with right:
        if paused:
            st.button("Resume", key="resume", type="primary", on_click=toggle, args=("resume",),
                      **_ui.guarded("Queue a 'resume' command: scheduled retrains start again"))
        else:
            st.button("Pause", key="pause", on_click=toggle, args=("pause",),
                      **_ui.guarded("Queue a 'pause' command: scheduled jobs stop starting retrains until resumed"))
        _ui.actions_notice()
        asked = pending()
        if asked:
            st.caption(f"{asked['kind'].capitalize()} requested (command #{asked['id']}, {_ui.when(asked['created_at'])}): "
                       + ("the worker will take it within seconds." if now["worker"]["alive"] else "the worker runs it when it starts."))

    st.subheader("Jobs")
    known = jobs()
    if not known:
        st.info("No job has been scheduled yet: the worker creates the jobs when it starts. "
                "Start it with `python -m engine worker`.", icon="ℹ️")
    done = outcomes()
    for name in JOB_NAMES:
        job = known.get(name)
        with st.container(border=True):
            text, nxt, last = st.columns([3, 1.2, 1.2])
            text.markdown(f"**{name.capitalize()}** · {WHAT[name]}")
            o = done[name]
            ran = f"Ran {job['runs']} times ({job['failures']} failed) and started" if job else "Started"
            text.caption(f"{ran} {o['retrains']} {'retrain' if o['retrains'] == 1 else 'retrains'}: "
                         f"{o['accepted']} accepted, {o['rejected']} rejected, {o['failed']} failed.")
            if job is None:
                nxt.metric("Next run", "–")
                last.metric("Last run", "never")
                continue
            alive = now["worker"]["alive"]
            nxt.metric("Next run", until(job["next_run"], worker_alive=alive) if job["next_run"] else "–",
                       _ui.when(job["next_run"]), delta_color="off", delta_arrow="off")
            last.metric("Last run", _ui.ago((utcnow() - job["last_run"]).total_seconds()) if job["last_run"] else "never",
                        _ui.when(job["last_run"]) if job["last_run"] else None,
                        delta_color="off", delta_arrow="off")
            if job["last_error"]:
                text.error(f"Last run failed: {_ui.literal(_ui.redact(job['last_error']))}")
            elif job["last_result"]:
                text.markdown(f"Last result: {_ui.literal(_ui.redact(job['last_result']))}")
            else:
                text.markdown("Last result: has not run yet.")

    st.subheader("Adaptive trigger")
    a = counters()
    st.caption("The adaptive job retrains when either counter reaches its threshold. Now: "
               + ("**due**, the next check retrains." if a.due else "not due yet."))
    samples, days = st.columns(2, gap="large")
    with samples:
        st.metric("New labelled samples since the last retrain", f"{a.new_samples:,} of {a.min_samples:,}")
        st.progress(min(1.0, a.new_samples / a.min_samples), text=f"{_ui.pct(a.new_samples / a.min_samples, digits=0)} of the threshold")
    with days:
        if a.days_since is None:
            st.metric("Days since the last retrain", f"never retrained (threshold {a.max_days:g})")
            st.progress(0.0, text="no retrain yet")
        else:
            st.metric("Days since the last retrain", f"{a.days_since:.1f} of {a.max_days:g}")
            st.progress(min(1.0, a.days_since / a.max_days), text=f"{_ui.pct(a.days_since / a.max_days, digits=0)} of the threshold")


state()

st.subheader("Recent scheduled retrains")
recent = retrains()
if recent.empty:
    st.caption("No scheduled job has started a retrain yet.")
else:
    # A static table: the reasons wrap instead of being cut, and the decision is a coloured word.
    st.table(pd.DataFrame({
        "Started": [_ui.when(t) for t in recent["started_at"]],
        "Job": recent["trigger"],
        "Decision": recent["status"],
        "Candidate": [_ui.literal(v) for v in recent["candidate_version"].fillna("–")],
        # st.table reads every cell as Markdown: a reason holds class names, shown as written.
        "Reason": [_ui.literal(_ui.redact(sentence(without_decision_word(r)))) for r in recent["reason"]],
    }).style.hide(axis="index").map(
        lambda s: f"color: {_ui.COLORS[s]}; font-weight: bold" if s in _ui.COLORS else "", subset=["Decision"]))
st.caption(f"{zones()} A weekly or monthly slot missed while no worker ran is run once when the worker starts.")
