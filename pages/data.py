"""Data: what traffic looks like, how sure the model is, what it learns from; browse queries and label them."""

from datetime import date, datetime, timedelta

import streamlit as st

from engine.classifier import Classifier
from engine.clock import utcnow
from engine.errors import InputError
from engine.label_mix import EXACT_MIX_LIMIT, known_labels, training_mix
from engine.quarantine import Rule, choices, list_rules, preview, quarantine, unquarantine
from pages import _charts_data as charts
from pages import _charts_history as history_charts
from pages import _ui
from store.views import data as views
from store.views.funnel import share as funnel_share

_ui.page_header("Data", "Traffic by predicted label, how sure the model is, what the training data is made of, and "
                        "every logged query: search them and give any of them its true label.")
settings = _ui.context().settings
FEEDBACK_CHOICES = {"any": None, "with a true label": True, "without a true label": False}


@st.cache_resource(show_spinner=False, on_release=lambda clf: clf.close())
def classifier() -> Classifier:
    """The same Classifier a client uses: feedback goes to the spool, the worker stores it."""
    return Classifier(settings=_ui.context().settings, log_queries=True, source="dashboard")


@_ui.cached(ttl=30)
def span():
    return views.span(_ui.context().db)


@_ui.cached(ttl=30)
def labels():
    db = _ui.context().db
    return views.predicted_labels(db), known_labels(db)


@_ui.cached(ttl=10)
def volume(since, offset):
    return views.volume_by_label(_ui.context().db, since=since, offset_minutes=offset)


@_ui.cached(ttl=10)
def confidence(since, offset, min_confidence):
    db = _ui.context().db
    return (views.confidence_histogram(db, since=since),
            views.low_confidence_by_day(db, since=since, min_confidence=min_confidence, offset_minutes=offset))


@_ui.cached(ttl=60)
def mix(since):
    s = _ui.context().settings
    return training_mix(_ui.context().db, since=since, min_confidence=s.min_confidence,
                        max_text_length=s.max_text_length, eval_percent=s.eval_percent,
                        use_pseudo_labels=s.use_pseudo_labels)


@_ui.cached(ttl=10)
def quality():
    return views.quality(_ui.context().db)


@_ui.cached(ttl=5)
def search(text, chosen, low, high, has_feedback, since, until, limit):
    return views.search_queries(_ui.context().db, text=text, labels=chosen, low=low, high=high,
                                has_feedback=has_feedback, since=since, until=until, limit=limit)


@_ui.cached(ttl=10)
def quarantine_choices():
    return choices(_ui.context())


@_ui.cached(ttl=5)
def quarantine_preview(rule: Rule):
    return preview(_ui.context(), rule)


@_ui.cached(ttl=5)
def quarantine_rules():
    return list_rules(_ui.context())


def utc_offset_minutes() -> int:
    """The viewer's current offset from UTC, in minutes (days are their calendar days)."""
    offset = datetime.now(_ui.user_zone()).utcoffset()
    return int(offset.total_seconds() // 60) if offset is not None else 0


def record_true_label(query_id: str | None, label: str | None) -> None:
    """Send a person's label for a logged query through the Classifier; say what happened."""
    if not query_id or not query_id.strip():
        st.error("Choose a query first: pick one of the results above.")
        return
    if not label or not label.strip():
        st.error("Choose the true label first.")
        return
    if not _ui.send_feedback(classifier(), query_id, label):
        return
    st.success(f"Recorded **{_ui.literal(label)}** as the true label of query {_ui.literal(query_id)}. The worker stores it with its next "
               "ingest (a few seconds when it runs); the next retrain learns from it.", icon=":material/check_circle:")


known_span = span()
predicted, known = labels()
if known_span["queries"] == 0 and not known:
    _ui.empty("No data yet: no query has been logged and no labelled example imported. Build the demo with "
              "`python -m engine demo`, import data with `python -m engine import FILE [--labeled]`, or serve a model "
              "with `engine.Classifier` (every query it answers is logged, and the worker stores it).")

offset = utc_offset_minutes()
now = utcnow().replace(second=0, microsecond=0)
days = st.radio("Period", [7, 14, 30, 90], index=2, horizontal=True, format_func=lambda d: f"last {d} days", key="period")
since = views.since_day(now, days=days, offset_minutes=offset)

# -- traffic ---------------------------------------------------------------------------------------
st.subheader("Traffic")
by_label = volume(since, offset)
if by_label.empty:
    st.info(f"No queries in the last {days} days. Queries appear here once a client using `engine.Classifier` answers "
            "them and the worker ingests its log (or after `python -m engine import FILE`).", icon="ℹ️")
else:
    histogram, by_day = confidence(since, offset, settings.min_confidence)
    total, low = int(by_day["queries"].sum()), int(by_day["low_confidence"].sum())
    k = st.columns(4)
    k[0].metric("Queries", f"{int(by_label['queries'].sum()):,}", help=f"In the last {days} days")
    k[1].metric("Per day", f"{by_label['queries'].sum() / days:,.0f}", help="Average over the period")
    k[2].metric(f"Below {settings.min_confidence:g} confidence", _ui.pct(low / total if total else None),
                help=f"{low:,} of {total:,} predictions: not used as pseudo labels for training")
    k[3].metric("Labels predicted", f"{by_label['label'].nunique()}")
    _ui.chart(charts.volume_by_label, by_label, key="volume")
    left, right = st.columns(2)
    with left:
        _ui.chart(charts.confidence_histogram, histogram, min_confidence=settings.min_confidence, key="histogram")
    with right:
        _ui.chart(charts.low_confidence_share, by_day, min_confidence=settings.min_confidence, key="low_share")

# -- training data ----------------------------------------------------------------------------------
st.subheader("Training data")
TRAFFIC_DAYS = 7
label_mix, method = mix(views.since_day(now, days=TRAFFIC_DAYS, offset_minutes=offset))
if label_mix.empty:
    st.info("No labelled data yet: import labelled examples with `python -m engine import FILE --labeled`.", icon="ℹ️")
else:
    if method == "exact":
        st.caption("Training set: rebuilt now from the store with the retrain's own cleaning rules "
                   "(`engine.dataset.build_training_set`): what a retrain started now would train on.")
    else:
        st.caption(f"Training set: an estimate. The store holds more than {EXACT_MIX_LIMIT:,} candidate rows, too many "
                   f"to rebuild on every view, so this counts every human label plus every prediction with confidence "
                   f"≥ {settings.min_confidence:g} (before de-duplication, conflicts and the evaluation split).")
    _ui.chart(charts.label_mix, label_mix, traffic_days=TRAFFIC_DAYS, key="mix")

st.subheader("Data quality")
funnel = quality()
if funnel["last"] is None:
    st.info("No retrain has built a training set yet: press **Retrain now** on the Models page.", icon="ℹ️")
else:
    last, steps = funnel["last"], funnel["steps"]
    rows = dict(zip(steps["step"], steps["rows"]))
    shares = dict(zip(steps["step"], steps["share"]))
    removed = rows["rows_in"] - rows["train_rows"] - rows["eval_rows"]
    st.caption(f"The latest retrain that built a training set: #{last['id']} ({_ui.literal(last['trigger'])}, "
               f"{_ui.literal(last['status'])}), "
               f"finished {_ui.when(last['ts'])}. Every retrain rebuilds the set from the whole store; the "
               "Retraining history page shows each one's funnel.")
    quiet = {"delta_color": "off", "delta_arrow": "off"}
    q = st.columns(4)
    q[0].metric("Rows in", f"{rows['rows_in']:,}", help="Every labelled and pseudo-labelled row the retrain read")
    q[1].metric("Removed", f"{removed:,}", f"{funnel_share(removed, rows['rows_in'])} of rows in", **quiet)
    q[2].metric("Training rows", f"{rows['train_rows']:,}", f"{shares['train_rows']} of rows in", **quiet)
    q[3].metric("Evaluation rows", f"{rows['eval_rows']:,}", f"{shares['eval_rows']} of rows in", **quiet)
    left, right = st.columns([2, 3])
    left.dataframe(
        steps[["name", "rows", "share"]], hide_index=True, key="funnel_table", width="stretch",
        column_config={"name": st.column_config.TextColumn("step", width=190),
                       "rows": st.column_config.NumberColumn(f"retrain #{last['id']}", format="localized"),
                       "share": st.column_config.TextColumn("of rows in")},
    )
    with right:
        _ui.chart(history_charts.funnel, steps, title=f"Where the rows of retrain #{last['id']} went", key="funnel")

# -- quarantine ---------------------------------------------------------------------------------------
st.subheader("Quarantine")
st.caption("Take a client's or a model version's rows out of training and evaluation, for example after a "
           "misconfigured client logged confidently wrong answers (the gate then rejects retrain after retrain). "
           "Nothing is deleted: lift the rule and the rows count again from the next retrain.")
picks = quarantine_choices()
ANY = "any"
r = st.columns([3, 3, 4])
q_source = r[0].selectbox("Source", [ANY] + [name for name, _ in picks["sources"]], key="q_source",
                          format_func=lambda x: x if x == ANY else f"{x} ({dict(picks['sources'])[x]:,} rows)")
q_version = r[1].selectbox("Model version", [ANY] + [name for name, _ in picks["versions"]], key="q_version",
                           format_func=lambda x: x if x == ANY else f"{x} ({dict(picks['versions'])[x]:,} queries)")
q_dates = r[2].date_input("Dates (leave empty for any time)", (), key="q_dates")
q_reason = st.text_input("Reason", key="q_reason", placeholder="e.g. the kiosk served a broken model file")
q_since = views.local_day_start(q_dates[0], offset_minutes=offset) if len(q_dates) > 0 else None
q_until = (views.local_day_start((q_dates[1] if len(q_dates) > 1 else q_dates[0]) + timedelta(days=1),
                                 offset_minutes=offset) if len(q_dates) > 0 else None)
try:
    rule = Rule(source=None if q_source == ANY else q_source, version=None if q_version == ANY else q_version,
                since=q_since, until=q_until, reason=q_reason or "(preview)")
except InputError as exc:
    rule = None
    st.caption(f"Choose what to take out: {_ui.literal(_ui.redact(str(exc)))}.")
if rule is not None:
    would = quarantine_preview(rule)
    st.caption(f"This rule would leave out **{would['queries']:,}** logged queries and **{would['labels']:,}** labels.")
guard = _ui.guarded("Leave these rows out of every retrain until the rule is lifted")
if st.button("Quarantine these rows", key="q_add", disabled=rule is None or guard["disabled"], help=guard["help"]) \
        and _ui.action_allowed():
    try:
        rule_id, counts = quarantine(_ui.context(), Rule(source=rule.source, version=rule.version, since=rule.since,
                                                         until=rule.until, reason=q_reason), by="dashboard")
    except InputError as exc:
        st.error(f"Not quarantined: {_ui.literal(_ui.redact(str(exc)))}.")
    else:
        st.cache_data.clear()
        st.success(f"Quarantine #{rule_id}: {counts['queries']:,} logged queries and {counts['labels']:,} labels are "
                   "left out from the next retrain.", icon=":material/block:")
rules_now = quarantine_rules()
if rules_now:
    st.dataframe(
        [{"rule": f"#{x['id']}", "what": Rule.from_row(x).describe(), "queries": x["queries"], "labels": x["labels"],
          "reason": x["reason"], "added": _ui.local(x["created_at"]),
          "lifted": _ui.local(x["lifted_at"]) if x["lifted_at"] is not None else None} for x in rules_now],
        hide_index=True, key="q_rules", placeholder="–",
        # Widths that fit a 1440 px window: the description and the reason share what the dates leave.
        column_config={"rule": st.column_config.TextColumn(width=45),
                       "what": st.column_config.TextColumn(width=260),
                       "queries": st.column_config.NumberColumn(width=65),
                       "labels": st.column_config.NumberColumn(width=55),
                       "reason": st.column_config.TextColumn(width=250),
                       "added": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm", width=125),
                       "lifted": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm", width=125,
                                                                 help="When the rule was lifted; – while it is in force")})
    active = [x["id"] for x in rules_now if x["lifted_at"] is None]
    if active:
        a, b = st.columns([3, 2], vertical_alignment="bottom")
        lift_id = a.selectbox("Active rule", active, key="q_lift_id", format_func=lambda i: f"#{i}")
        if b.button("Lift the rule", key="q_lift", **_ui.guarded("Let these rows back into the next retrain")) \
                and _ui.action_allowed():
            try:
                unquarantine(_ui.context(), lift_id, by="dashboard")
            except InputError as exc:
                st.error(f"Not lifted: {_ui.literal(_ui.redact(str(exc)))}.")
            else:
                st.cache_data.clear()
                st.success(f"Quarantine #{lift_id} lifted: its rows count again from the next retrain.")

# -- query browser ------------------------------------------------------------------------------------
st.subheader("Query browser")
if known_span["queries"] == 0:
    st.info("No queries logged yet: there is nothing to browse.", icon="ℹ️")
    st.stop()
first_day = _ui.local(known_span["first"]).date()
last_day = max(_ui.local(known_span["last"]).date(), _ui.local(now).date())
f = st.columns([3, 3, 2, 2])
text = f[0].text_input("Text contains", key="search_text", placeholder="e.g. refund (case-insensitive)")
chosen = f[1].multiselect("Predicted label", predicted, key="search_labels", placeholder="any label")
low, high = f[2].slider("Confidence", 0.0, 1.0, (0.0, 1.0), step=0.05, key="search_confidence")
feedback_choice = f[3].selectbox("True label", list(FEEDBACK_CHOICES), key="search_feedback")
g = st.columns([3, 3, 4])
dates = g[0].date_input("Dates", (first_day, last_day), min_value=first_day - timedelta(days=1),
                        max_value=last_day + timedelta(days=1), key="search_dates")
limit = g[1].number_input("Rows to show", min_value=10, max_value=5000, value=200, step=50, key="search_limit")

start_day: date | None = dates[0] if len(dates) > 0 else None
end_day: date | None = dates[1] if len(dates) > 1 else start_day
results, matches = search(
    text.strip() or None, tuple(chosen), low if low > 0 else None, high if high < 1 else None,
    FEEDBACK_CHOICES[feedback_choice],
    views.local_day_start(start_day, offset_minutes=offset) if start_day else None,
    views.local_day_start(end_day + timedelta(days=1), offset_minutes=offset) if end_day else None,
    int(limit),
)
found = f"{matches:,}" if matches <= views.COUNT_CAP else f"more than {views.COUNT_CAP:,}"
st.caption(f"Showing {len(results):,} of {found} matching queries, newest first.")
shown = results.assign(ts=[_ui.local(t) for t in results["ts"]], confidence=100 * results["confidence"])
st.dataframe(
    shown, hide_index=True, key="results", placeholder="–",
    column_order=["ts", "text", "predicted_label", "confidence", "true_label", "model_version", "source", "id"],
    # Widths that fit a 1440 px window up to the source; the query id (32 characters) comes last.
    column_config={
        "ts": st.column_config.DatetimeColumn("time", format="YYYY-MM-DD HH:mm", width=125),
        "text": st.column_config.TextColumn("text", width=300),
        "predicted_label": st.column_config.TextColumn("predicted", width=140),
        "confidence": st.column_config.ProgressColumn("confidence", format="%.1f%%", min_value=0.0, max_value=100.0,
                                                      width=105),
        "true_label": st.column_config.TextColumn("true label", width=120),
        "model_version": st.column_config.TextColumn("version", width=60),
        "source": st.column_config.TextColumn("source", width=75),
        "id": st.column_config.TextColumn("query id", width=90),
    },
)

st.markdown("##### Give a query its true label")
if results.empty:
    st.caption("No query matches the filters.")
    st.stop()
texts = dict(zip(results["id"], results["text"]))
predictions = dict(zip(results["id"], results["predicted_label"]))
serving = set(classifier().labels())
choices = sorted(set(known) | serving)
a, b, c = st.columns([5, 3, 2], vertical_alignment="bottom")
query_id = a.selectbox("Query", list(texts), index=None, key="label_query", placeholder="choose one of the results",
                       format_func=lambda i: f"{texts[i][:80]} · predicted {predictions[i]} · {i[:8]}")
label = b.selectbox("True label", choices, index=None, key="label_value", placeholder="choose a label",
                    format_func=lambda x: x if not serving or x in serving else f"{x} (unknown to the serving model)")
_ui.actions_notice()
if c.button("Record true label", type="primary", key="label_record", **_ui.guarded()):
    record_true_label(query_id, label)
