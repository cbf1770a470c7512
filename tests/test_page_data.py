"""The Data page and its read model (store/views/data.py): traffic, confidence, label mix, data quality,
the query browser and giving a query its true label (through engine.Classifier, into the spool)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from engine import spool
from engine.clock import utcnow
from engine.config import load_settings
from engine.context import Context
from engine.dataset import build_training_set, normalize_label
from engine.importer import import_file
from engine.label_mix import training_mix
from engine.retrain import run_cycle
from store import querylog
from store.querylog import insert_labels, insert_queries
from store.retrains import finish_retrain, recent_retrains, start_retrain
from store.views import data as views
from tests.conftest import ROOT, shown, values, vega_chart, labelled_frame

# --- a small hand-made store for the read model ------------------------------------------------------

QUERIES = [  # id, ts, text, predicted label, confidence
    ("q1", datetime(2026, 3, 4, 10, 0), "Where is my ORDER", "track_order", 0.9),
    ("q2", datetime(2026, 3, 4, 11, 0), "100% refund please", "request_refund", 0.3),
    ("q3", datetime(2026, 3, 3, 9, 0), "a_b test", "cancel_order", 0.55),
    ("q4", datetime(2026, 3, 3, 23, 30), "axb thing", "track_order", 0.96),
    ("q5", datetime(2026, 2, 20, 12, 0), "old query", "track_order", 0.7),
    ("q6", datetime(2026, 3, 4, 11, 30), "back\\slash", "cancel_order", 1.0),
]
LABELS = [  # id, ts, query id, text, label
    ("l1", datetime(2026, 3, 4, 10, 5), "q1", None, "track_order"),
    ("l2", datetime(2026, 3, 4, 11, 5), "q2", None, "cancel_order"),
    ("l3", datetime(2026, 3, 4, 11, 10), "q2", None, "request_refund"),  # the later label of q2 wins
    ("l4", datetime(2026, 3, 1, 8, 0), None, "what are your opening hours", "store_hours"),
]
FUNNEL = ("rows_in", "malformed", "low_confidence", "conflicts", "duplicates", "reserved_for_eval", "train_rows",
          "eval_rows")


@pytest.fixture
def db(ctx):
    queries = pd.DataFrame([
        {"id": i, "ts": ts, "text": t, "predicted_label": p, "confidence": c, "model_version": "v0001", "source": "test"}
        for i, ts, t, p, c in QUERIES
    ])
    labels = pd.DataFrame(
        [{"id": i, "ts": ts, "query_id": q, "text": t, "label": lab, "source": "test"} for i, ts, q, t, lab in LABELS]
    ).astype({"query_id": object, "text": object})
    with ctx.db.write() as con:
        insert_queries(con, queries)
        insert_labels(con, labels)
        # v0001 served: its answers may be pseudo labels (only deployed versions' answers are).
        con.execute("INSERT INTO alias_history (ts, alias, version, kind, actor, reason) "
                    "VALUES (?, 'champion', 'v0001', 'deploy', 'test', 'test')", [datetime(2026, 2, 1)])
    return ctx.db


def add_retrain(db, started: datetime, funnel: dict | None, *, status: str = "accepted") -> int:
    retrain_id = start_retrain(db, trigger="manual", ts=started)
    with db.write() as con:
        finish_retrain(con, retrain_id, {"finished_at": started + timedelta(minutes=1), "status": status,
                                         **(funnel or {})})
    return retrain_id


@pytest.mark.parametrize(
    "offset, expected",
    [
        (0, [("2026-03-03", "cancel_order", 1), ("2026-03-03", "track_order", 1), ("2026-03-04", "cancel_order", 1),
             ("2026-03-04", "request_refund", 1), ("2026-03-04", "track_order", 1)]),
        # One hour east of UTC, q4 (23:30 UTC on the 3rd) falls on the 4th.
        (60, [("2026-03-03", "cancel_order", 1), ("2026-03-04", "cancel_order", 1), ("2026-03-04", "request_refund", 1),
              ("2026-03-04", "track_order", 2)]),
    ],
    ids=["utc", "utc+1"],
)
def test_volume_by_label_counts_each_local_day(db, offset, expected):
    since = views.local_day_start(datetime(2026, 3, 3).date(), offset_minutes=offset)
    frame = views.volume_by_label(db, since=since, offset_minutes=offset)
    assert [(f"{d:%Y-%m-%d}", label, n) for d, label, n in frame.itertuples(index=False)] == expected


def test_since_day_is_the_start_of_the_first_local_day():
    now = datetime(2026, 3, 4, 23, 30)
    assert views.since_day(now, days=1) == datetime(2026, 3, 4)
    assert views.since_day(now, days=2, offset_minutes=60) == datetime(2026, 3, 3, 23, 0)  # local day: the 5th
    assert views.since_day(now, days=7, offset_minutes=-300) == datetime(2026, 2, 26, 5, 0)


def test_low_confidence_share_per_day(db):
    frame = views.low_confidence_by_day(db, since=datetime(2026, 3, 3), min_confidence=0.55)
    assert frame.assign(day=frame["day"].dt.strftime("%Y-%m-%d")).to_dict("records") == [
        {"day": "2026-03-03", "queries": 2, "low_confidence": 0, "share": 0.0},  # 0.55 itself is not low
        {"day": "2026-03-04", "queries": 3, "low_confidence": 1, "share": 1 / 3},
    ]


def test_confidence_histogram_has_every_bin_and_puts_one_in_the_last(db):
    frame = views.confidence_histogram(db, since=datetime(2026, 3, 3), bins=10)
    assert frame["queries"].tolist() == [0, 0, 0, 1, 0, 1, 0, 0, 0, 3]
    assert frame["bin_start"].tolist()[:3] == [0.0, 0.1, 0.2]
    assert frame["bin_end"].iloc[-1] == 1.0


@pytest.mark.parametrize(
    "filters, ids, matches",
    [
        ({}, ["q6", "q2", "q1", "q4", "q3", "q5"], 6),
        ({"text": "order"}, ["q1"], 1),
        ({"text": "%"}, ["q2"], 1),            # % is literal, not "anything"
        ({"text": "_"}, ["q3"], 1),            # _ is literal, not "any character"
        ({"text": "\\"}, ["q6"], 1),
        ({"text": "x'; DROP TABLE queries; --"}, [], 0),
        ({"labels": ("track_order",)}, ["q1", "q4", "q5"], 3),
        ({"labels": ("track_order", "cancel_order")}, ["q6", "q1", "q4", "q3", "q5"], 5),
        ({"low": 0.55, "high": 0.9}, ["q1", "q3", "q5"], 3),
        ({"has_feedback": True}, ["q2", "q1"], 2),
        ({"has_feedback": False}, ["q6", "q4", "q3", "q5"], 4),
        ({"since": datetime(2026, 3, 4), "until": datetime(2026, 3, 5)}, ["q6", "q2", "q1"], 3),
        ({"limit": 2}, ["q6", "q2"], 6),
        ({"text": "a", "has_feedback": False, "low": 0.5}, ["q6", "q4", "q3"], 3),
    ],
    ids=["all", "text", "percent", "underscore", "backslash", "quote", "label", "labels", "confidence",
         "with-feedback", "without-feedback", "dates", "limit", "combined"],
)
def test_search_queries_applies_every_filter(db, filters, ids, matches):
    frame, total = views.search_queries(db, **filters)
    assert frame["id"].tolist() == ids
    assert total == matches
    assert list(frame.columns) == views.RESULT_COLUMNS


@pytest.mark.parametrize("cap, matches", [(6, 6), (5, 6), (2, 3)], ids=["at-cap", "one-over", "far-over"])
def test_search_counts_matches_up_to_a_cap(db, cap, matches):
    frame, total = views.search_queries(db, limit=1, count_cap=cap)
    assert (len(frame), total) == (1, matches)  # cap + 1 says "more than cap"


@pytest.mark.parametrize("has_feedback", [True, None], ids=["feedback-filter", "newest-first-path"])
def test_search_shows_the_latest_true_label(db, has_feedback):
    frame, _ = views.search_queries(db, has_feedback=has_feedback)
    labelled = {i: t for i, t in zip(frame["id"], frame["true_label"]) if t is not None and t == t}
    assert labelled == {"q2": "request_refund", "q1": "track_order"}


def test_training_mix_proxy_counts_human_and_confident_pseudo_labels(db):
    frame, method = training_mix(db, since=datetime(2026, 3, 3), min_confidence=0.5, max_text_length=2000,
                                 eval_percent=20, use_pseudo_labels=True, exact_limit=0)
    assert method == "proxy"
    # humans: track 1, cancel 1, refund 1, hours 1; pseudo >= 0.5: track q1 q4 q5, cancel q3 q6.
    assert frame[["label", "training", "traffic"]].to_dict("records") == [
        {"label": "track_order", "training": 4, "traffic": 2},
        {"label": "cancel_order", "training": 3, "traffic": 2},
        {"label": "request_refund", "training": 1, "traffic": 1},
        {"label": "store_hours", "training": 1, "traffic": 0},
    ]
    assert frame["training_share"].tolist() == [4 / 9, 3 / 9, 1 / 9, 1 / 9]
    assert frame["traffic_share"].tolist() == [2 / 5, 2 / 5, 1 / 5, 0.0]


@pytest.mark.parametrize("use_pseudo", [True, False], ids=["pseudo", "human-only"])
def test_training_mix_exact_is_what_a_retrain_would_train_on(db, use_pseudo):
    frame, method = training_mix(db, since=datetime(2026, 3, 3), min_confidence=0.5, max_text_length=2000,
                                 eval_percent=0, use_pseudo_labels=use_pseudo)
    assert method == "exact"
    rows = querylog.training_rows(db, include_pseudo=use_pseudo)
    known = {normalize_label(x) for x in querylog.known_labels(db)}
    train = build_training_set(rows, known_labels=known, min_confidence=0.5, eval_percent=0,
                               use_pseudo_labels=use_pseudo).train
    assert dict(zip(frame["label"], frame["training"])) == {
        **{label: 0 for label in ("cancel_order", "track_order", "request_refund", "store_hours")},
        **train["label"].value_counts().to_dict(),
    }
    # By hand: with pseudo labels q1 (human wins), q2 (human: refund), q3, q4, q5, q6, and l4 -> 7 texts.
    assert int(frame["training"].sum()) == (7 if use_pseudo else 3)


def test_quality_is_the_last_retrains_funnel_never_a_sum_over_retrains(db):
    first = dict(zip(FUNNEL, (10, 1, 2, 1, 1, 1, 3, 1)))
    second = dict(zip(FUNNEL, (20, 0, 3, 2, 5, 2, 6, 2)))
    add_retrain(db, datetime(2026, 3, 1), first)
    last = add_retrain(db, datetime(2026, 3, 2), second, status="rejected")
    add_retrain(db, datetime(2026, 3, 3), None, status="failed")  # failed before it built a training set
    result = views.quality(db)
    assert result["retrains"] == 2
    assert result["last"] == {"id": last, "ts": datetime(2026, 3, 2, 0, 1), "status": "rejected", "trigger": "manual"}
    steps = result["steps"]
    assert steps["step"].tolist() == list(FUNNEL)
    assert steps["rows"].tolist() == list(second.values())
    assert steps["share"].tolist() == ["100.0%", "0.0%", "15.0%", "10.0%", "25.0%", "10.0%", "30.0%", "10.0%"]
    assert steps["left"].tolist() == [20, 20, 17, 15, 10, 8, 6, 2]
    assert steps["name"].tolist()[5] == "held out, no human label"


def test_quality_of_a_store_without_retrains(db):
    assert views.quality(db) == {"retrains": 0, "last": None, "steps": None}


# --- the page ---------------------------------------------------------------------------------------


pytestmark = pytest.mark.usefixtures("fresh_streamlit_caches")


def open_page(monkeypatch, home) -> AppTest:
    monkeypatch.setenv("RETRAINER_HOME", str(home))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=30)
    at.run()
    at.switch_page("pages/data.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def frame_with(at: AppTest, column: str) -> pd.DataFrame:
    (frame,) = [d.value for d in at.dataframe if column in d.value.columns]
    return frame


def feedback_records(home) -> list[dict]:
    return [r for path in spool.pending(home / "spool") for r in spool.read_batch(path) if r["k"] == "f"]


def local_offset_minutes() -> int:
    return int(datetime.now().astimezone().utcoffset().total_seconds() // 60)


def test_empty_store_says_what_to_do(monkeypatch, tmp_path):
    at = open_page(monkeypatch, tmp_path / "empty")
    assert [i.value for i in at.info] == [
        "No data yet: no query has been logged and no labelled example imported. Build the demo with "
        "`python -m engine demo`, import data with `python -m engine import FILE [--labeled]`, or serve a model "
        "with `engine.Classifier` (every query it answers is logged, and the worker stores it)."
    ]
    assert not at.metric and not at.dataframe


def test_a_store_with_labels_but_no_traffic(monkeypatch, tmp_path, labelled_csv):
    """The first day: labelled examples imported and v0001 trained, nothing served yet."""
    home = tmp_path / "first-day"
    ctx = Context.open(load_settings(env={}, home=home))
    import_file(ctx, labelled_csv, labeled=True)
    assert run_cycle(ctx, trigger="manual", force=True).status == "accepted"
    at = open_page(monkeypatch, home)
    assert [i.value.split(".")[0] for i in at.info] == ["No queries in the last 30 days",
                                                        "No queries logged yet: there is nothing to browse"]
    (retrain,) = recent_retrains(ctx.db)
    assert frame_with(at, "share")["rows"].tolist() == [retrain[k] for k in FUNNEL]
    mix = values(vega_chart(at, "Label mix: training set against recent traffic"), "shares")
    trained = {m["label"] for m in mix if m["series"] == "training set" and m["rows"] > 0}
    assert trained == set(labelled_frame()["label"])  # every imported intent is trained on
    assert not at.dataframe[1:]  # no query browser


def test_demo_numbers_are_the_stores(monkeypatch, demo_home):
    at = open_page(monkeypatch, demo_home)
    settings = load_settings(env={}, home=demo_home)
    db = Context.open(settings).db
    # Traffic over the last 30 local days, counted here from the raw log (all demo queries have a label).
    since = views.since_day(utcnow(), days=30, offset_minutes=local_offset_minutes())
    logged = querylog.training_rows(db)
    logged = logged[(logged["source"] == "pseudo") & (logged["ts"] >= since)]
    low = int((logged["confidence"] < settings.min_confidence).sum())
    shown = metrics(at)
    assert shown["Queries"] == f"{len(logged):,}"
    assert shown["Below 0.5 confidence"] == f"{100 * low / len(logged):.1f}%"
    assert shown["Labels predicted"] == str(logged["label"].nunique())
    # Data quality: the latest retrain's funnel, one number per step (the same as the Retraining history page's).
    newest = [r for r in recent_retrains(db, limit=1000) if r["rows_in"] is not None][0]
    assert shown["Rows in"] == f"{newest['rows_in']:,}"
    assert shown["Training rows"] == f"{newest['train_rows']:,}"
    assert shown["Evaluation rows"] == f"{newest['eval_rows']:,}"
    assert not any("all retrains" in label for label in shown)
    table = frame_with(at, "share")
    assert table["rows"].tolist() == [newest[k] for k in FUNNEL]
    assert table["share"].tolist()[-1] == f"{100 * newest['eval_rows'] / newest['rows_in']:.1f}%"
    # The demo store is small enough for the exact label mix; the chart shows those shares.
    assert "rebuilt now from the store with the retrain's own cleaning rules" in " ".join(c.value for c in at.caption)
    mix = values(vega_chart(at, "Label mix: training set against recent traffic"), "shares")
    expected, _ = training_mix(db, since=views.since_day(utcnow(), days=7, offset_minutes=local_offset_minutes()),
                               min_confidence=settings.min_confidence, max_text_length=settings.max_text_length,
                               eval_percent=settings.eval_percent, use_pseudo_labels=settings.use_pseudo_labels)
    assert [m["label"] for m in mix if m["series"] == "training set"] == expected["label"].tolist()
    assert [m["share"] for m in mix if m["series"] == "training set"] == pytest.approx(expected["training_share"].tolist())
    # Browser: the newest 200 queries, as the store returns them.
    results = frame_with(at, "text")
    stored, matches = views.search_queries(db, limit=200)
    assert results["id"].tolist() == stored["id"].tolist()
    assert results["confidence"].round(6).tolist() == (100 * stored["confidence"]).round(6).tolist()
    count = f"{matches:,}" if matches <= views.COUNT_CAP else f"more than {views.COUNT_CAP:,}"
    assert f"Showing 200 of {count} matching queries, newest first." in [c.value for c in at.caption]


def test_browser_filters_reach_the_store(monkeypatch, demo_home):
    at = open_page(monkeypatch, demo_home)
    at.text_input(key="search_text").input("order")
    at.multiselect(key="search_labels").select("cancel_order")
    at.selectbox(key="search_feedback").set_value("with a true label")
    at.number_input(key="search_limit").set_value(10)
    at.run()
    assert not at.exception
    db = Context.open(load_settings(env={}, home=demo_home)).db
    stored, matches = views.search_queries(db, text="order", labels=("cancel_order",), has_feedback=True, limit=10)
    results = frame_with(at, "text")
    assert len(results) == min(10, matches) > 0
    assert results["id"].tolist() == stored["id"].tolist()
    assert set(results["predicted_label"]) == {"cancel_order"}
    assert results["true_label"].notna().all()
    assert results["text"].str.lower().str.contains("order").all()


def test_a_true_label_given_on_the_page_reaches_the_spool(monkeypatch, demo_copy):
    at = open_page(monkeypatch, demo_copy)
    query_id = frame_with(at, "text")["id"].iloc[3]
    at.selectbox(key="label_query").set_value(query_id)
    at.selectbox(key="label_value").set_value("request_refund")
    at.button(key="label_record").click().run()
    assert not at.exception and not at.error
    assert shown(at.success[0].value).startswith(f"Recorded **request_refund** as the true label of query {query_id}.")
    assert [(r["query_id"], r["label"], r["source"]) for r in feedback_records(demo_copy)] == [
        (query_id, "request_refund", "feedback")
    ]


def add_label_unknown_to_the_model(home) -> None:
    """A person labelled something 'gift_card' after the last retrain: the serving model does not know it."""
    db = Context.open(load_settings(env={}, home=home)).db
    with db.write() as con:
        insert_labels(con, pd.DataFrame([{"id": "new", "ts": datetime(2026, 1, 1), "query_id": None,
                                          "text": "do you sell gift cards", "label": "gift_card", "source": "import"}]))


@pytest.mark.parametrize(
    "choose_query, label, message",
    [
        (False, "request_refund", "Choose a query first: pick one of the results above."),
        (True, None, "Choose the true label first."),
        (True, "gift_card", "Not recorded: unknown label 'gift_card': valid labels are apply_discount, cancel_order"),
    ],
    ids=["no-query", "no-label", "unknown-label"],
)
def test_bad_label_input_gets_a_message_and_records_nothing(monkeypatch, demo_copy, choose_query, label, message):
    add_label_unknown_to_the_model(demo_copy)
    at = open_page(monkeypatch, demo_copy)
    options = at.selectbox(key="label_value").options
    assert "gift_card (unknown to the serving model)" in options and "request_refund" in options
    if choose_query:
        at.selectbox(key="label_query").set_value(frame_with(at, "text")["id"].iloc[0])
    if label:
        at.selectbox(key="label_value").set_value(label)
    at.button(key="label_record").click().run()
    assert not at.exception
    assert [shown(e.value)[: len(message)] for e in at.error] == [message]
    assert not at.success
    assert feedback_records(demo_copy) == []
