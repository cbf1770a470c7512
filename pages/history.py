"""Retraining history: every retrain, what the gate decided and why, and what the data cleaning kept."""

from datetime import datetime, timedelta

import streamlit as st

from pages import _charts_history as charts, _ui
from store.views import funnel, history as views

_ui.page_header(
    "Retraining history",
    "Every retrain: what triggered it, what the gate decided and why, the metrics before and after, "
    "and how many rows each data-quality filter removed.",
)


@_ui.cached()
def options():
    return views.filter_options(_ui.context().db)


@_ui.cached()
def matching(statuses: tuple, triggers: tuple, start: datetime | None, end: datetime | None):
    return views.retrains(_ui.context().db, statuses=statuses, triggers=triggers, start=start, end=end)


@_ui.cached()
def summary(statuses: tuple, triggers: tuple, start: datetime | None, end: datetime | None):
    return views.totals(_ui.context().db, statuses=statuses, triggers=triggers, start=start, end=end)


@_ui.cached()
def one_retrain(retrain_id: int):
    return views.retrain(_ui.context().db, retrain_id)


@_ui.cached()
def gate(retrain_id: int):
    return views.gate_decision(_ui.context().db, retrain_id)


found = options()
if not found["statuses"]:
    _ui.empty("No retrain has run yet. Build the demo with `python -m engine demo`, or import labelled data "
              "(`python -m engine import FILE --labeled`) and press **Retrain now** on the Models page; the worker "
              "also retrains on its weekly, monthly and adaptive schedule.")

f = st.columns([2, 2, 3])
statuses = f[0].multiselect("Decision", found["statuses"], placeholder="any decision", key="decision")
triggers = f[1].multiselect("Trigger", found["triggers"], placeholder="any trigger", key="trigger")
days = f[2].date_input("Started between", (), key="days",
                       help=f"Retrains ran from {_ui.when(found['first'])} to {_ui.when(found['last'])}; empty means any date")
start = _ui.utc_midnight(days[0]) if days else None
end = _ui.utc_midnight(days[1] + timedelta(days=1)) if len(days) == 2 else None
chosen = (tuple(statuses), tuple(triggers), start, end)

totals = summary(*chosen)
k = st.columns(6)
k[0].metric("Retrains", f"{totals['retrains']:,}")
k[1].metric("Accepted", f"{totals['accepted']:,}")
k[2].metric("Rejected", f"{totals['rejected']:,}")
k[3].metric("Failed", f"{totals['failed']:,}",
            f"{totals['skipped']:,} skipped (nothing new)" if totals.get("skipped") else None, delta_color="off",
            delta_arrow="off", help="Skipped: the training set had not changed since the champion was trained, so "
                                    "no version was made (python -m engine retrain --force trains anyway)")
k[4].metric("Acceptance rate", _ui.pct(totals["acceptance_rate"]), help="Accepted among accepted and rejected")
k[5].metric("Training time", charts.seconds(totals["total_duration_s"]),
            f"median {charts.seconds(totals['median_duration_s'])} each" if totals["retrains"] else None,
            delta_color="off", delta_arrow="off")
if totals["retrains"] == 0:
    _ui.empty("No retrain matches these filters: clear one of them to see more.")

rows = matching(*chosen)
ids = rows["id"].tolist()
clicked = st.dataframe(charts.retrain_table(rows), hide_index=True, key="retrains", placeholder="–",
             on_select="rerun", selection_mode="single-row",
             height=min(35 * (len(rows) + 1) + 3, 560),
             column_config={"#": st.column_config.NumberColumn(width=50), "Started": st.column_config.TextColumn(width=122),
                            "Versions": st.column_config.TextColumn(width=115, help="champion → candidate"),
                            "Accuracy": st.column_config.TextColumn(width=75, help="The candidate's"),
                            "Macro-F1": st.column_config.TextColumn(width=75, help="The candidate's"),
                            "Δ accuracy": st.column_config.TextColumn(width=85, help="Candidate minus champion, same evaluation set"),
                            "Δ macro-F1": st.column_config.TextColumn(width=85, help="Candidate minus champion, same evaluation set"),
                            "Reason": st.column_config.TextColumn(help="The gate's reason; click a row to read it whole below")})
# A click on a row chooses the retrain shown below (the box still chooses one by its words).
selected = clicked.selection.rows if clicked is not None else []
if selected and selected[0] < len(ids) and st.session_state.get("_history_clicked") != ids[selected[0]]:
    st.session_state["_history_clicked"] = st.session_state["retrain"] = ids[selected[0]]

st.subheader("One retrain and its data")
described = {r.id: f"#{r.id} · {r.trigger} · {r.status} · {_ui.when(r.started_at)}" for r in rows.itertuples()}
if st.session_state.get("retrain") not in described:
    st.session_state.pop("retrain", None)
pick = st.selectbox("Retrain", ids, index=0, format_func=described.get, key="retrain")
one = one_retrain(pick)
if one["status"] == "running":
    st.markdown(f"{_ui.STATUS_ICONS['running']} **Running** since {_ui.when(one['started_at'])}")
else:
    st.markdown(f"{_ui.STATUS_ICONS.get(one['status'], '')} **Retrain #{one['id']}** ({_ui.literal(one['trigger'])}, "
                f"{charts.seconds(one['duration_s'])}): {_ui.literal(_ui.redact(one['reason'] or 'no reason recorded'))}")
decision = gate(pick)
if decision is None:
    st.caption({"running": f"Retrain #{pick} is still running: the gate has not decided yet.",
                "failed": f"Retrain #{pick} has no gate decision: it failed before the gate."}.get(
        one["status"], f"The gate decision of retrain #{pick} was not recorded."))
else:
    cards = st.columns(5)
    for card, (label, value, second, explain) in zip(cards, charts.gate_metrics(decision)):
        card.metric(label, value, second, delta_color="off", delta_arrow="off",
                    help=_ui.literal(explain) if explain else None)
    st.caption(_ui.literal(charts.gate_note(decision)))
    if decision["paired"]:
        _ui.chart(charts.gate_intervals, pick, decision, key="gate_intervals")
left, right = st.columns(2)
with left:
    if one["funnel"] is None:
        st.info(f"Retrain #{pick} stopped before it read the data: there is no funnel to show.", icon="ℹ️")
    elif not one["funnel"]["rows_in"]:
        st.info(f"Retrain #{pick} found no rows to learn from: import labelled data first.", icon="ℹ️")
    else:
        _ui.chart(charts.funnel, funnel.steps(one["funnel"]), title=f"Data-quality funnel of retrain #{pick}", key="funnel")
with right:
    _ui.chart(charts.funnels_over_time, rows, key="funnels")
