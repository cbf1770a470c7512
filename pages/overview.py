"""Overview: is the system healthy, is the model good, what happened lately."""

from datetime import timedelta

import streamlit as st

from engine.clock import utcnow
from engine.status import next_retrain
from pages import _charts, _ui
from store.rollups import bucket_floor
from store.views import overview as views

current = _ui.page_header("Overview", "Health, quality and recent activity of the classifier in production.")


@_ui.cached()
def traffic(day_start, now):
    ctx = _ui.context()
    return views.traffic(ctx.db, now=now, day_start=day_start, min_confidence=ctx.settings.min_confidence)


@_ui.cached()
def timeline():
    db = _ui.context().db
    return views.timeline(db), views.markers(db)


@_ui.cached()
def activity(limit: int = 12):
    return views.activity(_ui.context().db, limit=limit)


@_ui.cached()
def previous(version: str):
    return views.previous_metrics(_ui.context().db, version)


@st.fragment(run_every=3)
def health() -> None:
    now = _ui.status()
    worker, active, sched = now["worker"], now["active"], now["scheduler"]
    cols = st.columns(5)
    quiet = {"delta_color": "off", "delta_arrow": "off"}
    if _ui.demo_building():  # the replay's simulated clock and worker are not the service's: say what is true
        cols[0].metric("Worker", "not started", "starts when the demo is built", **quiet)
        cols[1].metric("Active model", _ui.literal(active["version"]) if active else "none", "of the demo so far", **quiet)
        cols[4].metric("Next retrain", "–", "the worker schedules it", **quiet)
        return
    cols[0].metric("Worker", "alive" if worker["alive"] else "down",
                   f"heartbeat {_ui.ago(worker['heartbeat_age_s'])}" if worker["heartbeat_age_s"] is not None else None,
                   **quiet)
    cols[1].metric("Active model", _ui.literal(active["version"]) if active else "none",
                   f"since {_ui.when(active['deployed_at'])}" if active else None, **quiet)
    cols[2].metric("Fallback", "IN USE" if now["fallback"] else "no",
                   delta=("serving an older version" if now["fallback"] else None), delta_color="inverse", delta_arrow="off")
    cols[3].metric("Scheduler", "paused" if sched["paused"] else "running")
    plan = next_retrain(sched["jobs"], now["adaptive"], paused=sched["paused"],
                        every_minutes=_ui.context().settings.adaptive_every_minutes)
    clock = utcnow()
    cols[4].metric("Next retrain", _ui.day_time(plan.at) if plan.at else ("paused" if plan.paused else "–"),
                   f"{plan.job} · {_ui.until(plan.at, now=clock)}" if plan.at else None, **quiet,
                   help="The earliest scheduled retrain that starts if nothing else happens first; the adaptive job "
                        "retrains sooner at any check once enough new labels arrived.")
    if plan.check_at is not None:
        st.caption(f"Adaptive job: next check {_ui.day_time(plan.check_at)} ({_ui.until(plan.check_at, now=clock)}): "
                   f"{plan.counters}" + (", due: it retrains then." if plan.adaptive_due else ", not due yet.")
                   + (" The scheduler is paused: no scheduled retrain starts until it is resumed." if plan.paused else ""))
    progress = now.get("retrain_in_progress")
    if progress:
        st.progress(float(progress.get("progress") or 0),
                    text=f"Retrain running ({_ui.literal(progress.get('trigger'))}): {_ui.literal(progress.get('stage'))}")


health()

active = current["active"]
if active is None:
    _ui.empty("No model is deployed yet. Build the demo with `python -m engine demo`, or import labelled data "
              "(`python -m engine import FILE --labeled`) and press **Retrain now** on the Models page.")

st.subheader("Quality and traffic")
before = previous(active["version"])
now = utcnow().replace(second=0, microsecond=0)
day_start = _ui.local_day_start(now)  # the viewer's midnight, as every other page counts days
numbers = traffic(day_start, now)
week_from = f"since {_ui.when(bucket_floor(now - timedelta(days=7)))}, whole 15-minute buckets"
k = st.columns(6)
against = _ui.literal(before["version"]) if before else None
k[0].metric("Accuracy", _ui.pct(active["accuracy"]),
            **(_ui.change(active["accuracy"], before["accuracy"], against=against) if before else {}),
            help=f"On {active['eval_rows'] or 0:,} held-out human-labelled texts when it was trained; the change is "
                 f"against {against or 'nothing'}, the version that served before it, each on its own evaluation set")
k[1].metric("Macro-F1", _ui.pct(active["macro_f1"]),
            **(_ui.change(active["macro_f1"], before["macro_f1"], against=against) if before else {}))
k[2].metric("Queries today", f"{numbers['queries_today']:,}", help=f"Since {_ui.when(day_start)}, your midnight")
k[3].metric("Queries, 7 days", f"{numbers['queries_7d']:,}", help=f"Answered {week_from}")
k[4].metric("With feedback (7 d)", _ui.pct(numbers["feedback_share_7d"]),
            help=f"Share of the queries answered {week_from} that a person labelled")
k[5].metric("Low confidence (7 d)", _ui.pct(numbers["low_confidence_share_7d"]),
            help=f"Share of predictions below {_ui.context().settings.min_confidence:g}, {week_from}")

rows, markers = timeline()
_ui.chart(_charts.metric_timeline, rows, markers, key="timeline")

left, right = st.columns([3, 1])
with left:
    st.subheader("Recent activity")
    lines = []
    for event in activity():
        icon = {"error": ":red[:material/error:]", "warning": ":orange[:material/warning:]"}.get(event["severity"], ":green[:material/check_circle:]")
        # Stored messages keep the operator's paths (the CLI's `events` shows them); a visitor sees none.
        lines.append(f"{icon} `{_ui.when(event['ts'])}` **{_ui.literal(event['kind'])}** · {_ui.literal(_ui.redact(event['text']))}")
    st.markdown("  \n".join(lines))
with right:
    st.subheader("Actions")
    _ui.actions_notice()
    if st.button("Retrain now", type="primary", key="retrain", **_ui.guarded("Queue a manual retrain for the worker")):
        _ui.queue_command("retrain", label="Retrain")
