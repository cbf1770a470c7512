"""Performance: how each model scored when it was judged, how the serving one does live, where it errs."""

from datetime import datetime, timedelta

import streamlit as st

from engine import drift
from engine.clock import utcnow
from pages import _charts_performance as charts, _ui
from store.rollups import bucket_floor
from store.views import performance as views

current = _ui.page_header(
    "Performance",
    "How each model scored when it was judged, how the serving model does on live feedback, and where it goes wrong.",
)


@_ui.cached()
def evaluations():
    return views.evaluations(_ui.context().db)


@_ui.cached()
def live(offset_minutes: int, since: datetime):
    return views.live_accuracy(_ui.context().db, offset_minutes=offset_minutes, since=since)


@_ui.cached()
def versions():
    return views.versions_with_metrics(_ui.context().db)


@_ui.cached()
def report(version: str):
    return views.class_report(_ui.context().db, version)


@_ui.cached()
def drift_days(version: str):
    ctx = _ui.context()
    return drift.version_figures(ctx.db, version, min_confidence=ctx.settings.min_confidence)


@_ui.cached()
def drift_warnings(version: str):
    return views.drift_warnings(_ui.context().db, version)


@_ui.cached()
def comparison(a: str, b: str):
    return views.compare(_ui.context().db, a, b)


evals = evaluations()
if evals.empty:
    _ui.empty("No model has been evaluated yet, so there is nothing to show here. Build the demo with "
              "`python -m engine demo`, or import labelled data (`python -m engine import FILE --labeled`) and "
              "press **Retrain now** on the Models page: every retrain scores its candidate and the serving model.")

active = current["active"]["version"] if current["active"] else None

st.subheader("Accuracy and macro-F1 at every retrain")
st.caption("At each retrain the serving model (champion, blue) and the new candidate are scored on the same held-out, "
           "human-labelled texts; the candidate's colour is the gate's decision. The set grows as feedback arrives, "
           "so compare the two points of one retrain rather than points far apart.")
_ui.chart(charts.evaluation_timeline, evals, metric="accuracy", key="evaluations")
_ui.chart(charts.evaluation_timeline, evals, metric="macro_f1", key="evaluations_f1")

st.subheader("Live accuracy")
offset = int(datetime.now(_ui.user_zone()).utcoffset().total_seconds() // 60)
# The last 7 days in whole 15-minute buckets (the rollup's; see store/rollups.py).
week_start = bucket_floor(utcnow() - timedelta(days=7))
daily, week = live(offset, week_start)
if daily.empty:
    st.info("No feedback yet: live accuracy needs people to give the true label of answered queries "
            "(the Playground, the Data page, or `Classifier.feedback` in your client).", icon="ℹ️")
else:
    cols = st.columns(3)
    cols[0].metric("Live accuracy, last 7 days", _ui.pct(week["accuracy"]),
                   help=f"Share of the queries answered since {_ui.when(week_start)} (whole 15-minute buckets) whose "
                        "predicted label equals the label a person gave")
    cols[1].metric("Queries with feedback, last 7 days", f"{week['labelled']:,}",
                   help=f"Answered since {_ui.when(week_start)}, whole 15-minute buckets")
    cols[2].metric(f"Offline accuracy of {_ui.literal(active or 'the serving model')}",
                   _ui.pct(current["active"]["accuracy"]) if current["active"] else "–",
                   help="Measured on held-out labelled texts when the model was trained")
    deployed = _ui.local(current["active"]["deployed_at"]) if current["active"] else None
    _ui.chart(charts.live_accuracy, daily, reference=current["active"]["accuracy"] if current["active"] else None,
              reference_name=f"offline accuracy of {active}", reference_since=deployed.date() if deployed else None,
              key="live")

catalogue = versions()
names = catalogue["version"].tolist()
described = {r.version: f"{r.version} · {r.status} · accuracy {_ui.pct(r.accuracy)}" for r in catalogue.itertuples()}

st.subheader("One version in detail")
version = st.selectbox("Version", names, index=names.index(active) if active in names else len(names) - 1,
                       format_func=described.get, key="version")
detail = report(version)
k = st.columns(4)
k[0].metric("Accuracy", _ui.pct(detail["accuracy"]))
k[1].metric("Macro-F1", _ui.pct(detail["macro_f1"]))
k[2].metric("Evaluation rows", f"{detail['eval_rows']:,}")
k[3].metric("Status", _ui.literal(detail["status"]))
left, right = st.columns(2)
with left:
    st.dataframe(charts.class_table(detail["per_class"]), hide_index=True, height=35 * (len(detail["per_class"]) + 1) + 3,
                 key="classes", column_config={"Label": st.column_config.TextColumn(width="medium")})
    st.caption(charts.WEAK_F1)
with right:
    _ui.chart(charts.confusion_heatmap, detail["labels"], detail["confusion"], title=f"Confusion matrix of {version}",
              key="confusion")
    st.caption("Rows: the true label; columns: the predicted one. Numbers are counts; the colour is the share of "
               "the row, so a dark cell off the diagonal is a label mostly mistaken for another.")

shown_version = _ui.literal(version)
st.subheader(f"Drift warnings for {shown_version} (no labels needed)")
settings = _ui.context().settings
st.caption(f"Each UTC day of {shown_version}'s live traffic, judged against its own {settings.drift_reference_days} judged days "
           f"before it (a day is judged with at least {settings.drift_min_queries} queries and once it is over; hollow points "
           "were not): "
           f"a warning when mean confidence drops by more than {settings.drift_confidence_drop:g}, the share below "
           f"{settings.min_confidence:g} rises by more than {settings.drift_low_share_rise:g}, or the Jensen-Shannon "
           f"distance of the predicted-label mix from the training set's rises by more than {settings.drift_js_threshold:g}.")
daily_drift, mix = drift_days(version)
if daily_drift.empty:
    st.info(f"{shown_version} has answered no logged query: there is no live traffic to judge for drift.", icon="ℹ️")
else:
    warned = drift_warnings(version)
    for metric, _, _ in charts.DRIFT_ROWS:
        _ui.chart(charts.drift_days, daily_drift, warned, version=version, min_queries=settings.drift_min_queries,
                  metric=metric, today=utcnow().date(), key=f"drift_{metric}")
    if mix is None:
        st.caption(f"No training label mix was recorded for {shown_version} (it was trained before Retrainer recorded one), "
                   "so its Jensen-Shannon distance is not computed.")

st.subheader("Two versions side by side")
if len(names) < 2:
    st.info("Only one version has been evaluated: a comparison needs a second one (it comes with the next retrain).",
            icon="ℹ️")
    st.stop()
second = names.index(active) if active in names else len(names) - 1
c = st.columns(2)
a = c[0].selectbox("Compare", names, index=second - 1 if second > 0 else 1, format_func=described.get, key="compare_a")
b = c[1].selectbox("against", names, index=second, format_func=described.get, key="compare_b")
if a == b:
    st.info("Choose two different versions to compare.", icon="ℹ️")
    st.stop()
diff = comparison(a, b)
if diff["head_to_head"].empty:
    st.caption(f"Changes are {_ui.literal(b)} minus {_ui.literal(a)}. Each was scored on the evaluation set of its own retrain "
               f"({diff['eval_rows'][0]} and {diff['eval_rows'][1]} texts); the sets differ, so small changes may be noise.")
else:
    st.caption(f"Changes are {_ui.literal(b)} minus {_ui.literal(a)}. The rows measured on each version's own retrain use different "
               f"evaluation sets; in retrain #{diff['head_to_head']['retrain_id'].iloc[-1]} both were scored on the "
               f"same texts, the fairest comparison. Per-class figures come from each version's own retrain.")
st.dataframe(charts.overall_table(diff["overall"], a=a, b=b), hide_index=True, key="overall", placeholder="–")
st.dataframe(charts.comparison_table(diff["per_class"], a=a, b=b), hide_index=True, key="per_class_changes",
             placeholder="–", height=35 * (len(diff["per_class"]) + 1) + 3, width="stretch",
             column_config={"Label": st.column_config.TextColumn(width="medium")})
_ui.chart(charts.class_changes, diff["per_class"], a=a, b=b, key="class_changes")
