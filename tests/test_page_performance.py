"""The Performance page, rendered by AppTest on real stores: empty, one model, and the demo."""

from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

import engine.clock
from engine.config import load_settings
from engine.context import Context
from engine.importer import import_file
from engine.retrain import run_cycle
from store.rollups import bucket_floor
from store.views import performance as views
from tests.conftest import ROOT, labelled_frame, open_app, values, vega_charts

PAGE = "pages/performance.py"


def open_page(home, monkeypatch, *, timezone: str | None = None) -> AppTest:
    return open_app(monkeypatch, home, PAGE, timezone=timezone)


def figure(at: AppTest, title: str) -> dict:
    found = [c for c in vega_charts(at) if (c.get("title") or {}).get("text", "").startswith(title)]
    assert len(found) == 1, [(c.get("title") or {}).get("text") for c in vega_charts(at)]
    return found[0]


def cells(chart: dict) -> list[list[int]]:
    """The confusion matrix a heatmap draws, rows in its order."""
    drawn = values(chart, "cells")
    order = list(dict.fromkeys(c["true"] for c in drawn))
    counts = {(c["true"], c["predicted"]): c["count"] for c in drawn}
    return [[counts[(t, p)] for p in order] for t in order]


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def pct(value: float) -> str:
    return f"{100 * value:.1f}%"


@pytest.fixture
def demo_db(demo_home):
    return Context.open(load_settings(env={}, home=demo_home)).db


@pytest.fixture
def pinned_now(demo_db, monkeypatch):
    """The page's 'now' pinned to the demo's last logged query (the clock is the only thing mocked)."""
    with demo_db.read() as con:
        last = con.execute("SELECT max(ts) FROM queries").fetchone()[0]
    now = last.replace(second=0, microsecond=0) + timedelta(minutes=1)
    monkeypatch.setattr(engine.clock, "utcnow", lambda: now)
    return now


def test_empty_store_says_what_to_do(tmp_path, monkeypatch):
    at = open_page(tmp_path / "home", monkeypatch)
    assert [i.value for i in at.info] == [
        "No model has been evaluated yet, so there is nothing to show here. Build the demo with "
        "`python -m engine demo`, or import labelled data (`python -m engine import FILE --labeled`) and "
        "press **Retrain now** on the Models page: every retrain scores its candidate and the serving model."
    ]
    assert vega_charts(at) == [] and len(at.selectbox) == 0


def test_one_model_without_feedback(tmp_path, monkeypatch):
    settings = load_settings(env={}, home=tmp_path / "home")
    ctx = Context.open(settings)
    csv = tmp_path / "labelled.csv"
    labelled_frame(12).to_csv(csv, index=False)
    import_file(ctx, csv, labeled=True)
    assert run_cycle(ctx, trigger="manual", force=True).status == "accepted"

    at = open_page(settings.home, monkeypatch)
    report = views.class_report(ctx.db, "v0001")
    assert [i.value for i in at.info] == [
        "No feedback yet: live accuracy needs people to give the true label of answered queries "
        "(the Playground, the Data page, or `Classifier.feedback` in your client).",
        "v0001 has answered no logged query: there is no live traffic to judge for drift.",
        "Only one version has been evaluated: a comparison needs a second one (it comes with the next retrain).",
    ]
    assert at.selectbox(key="version").options == ["v0001 · champion · accuracy " + pct(report["accuracy"])]
    assert metrics(at)["Accuracy"] == pct(report["accuracy"])
    shown = at.dataframe[0].value
    assert shown["Support"].sum() == report["eval_rows"]
    pd.testing.assert_frame_equal(shown.set_axis(views.CLASS_COLUMNS, axis=1), report["per_class"], check_dtype=False)


def test_demo_numbers_equal_the_store(demo_home, demo_db, pinned_now, monkeypatch):
    at = open_page(demo_home, monkeypatch)
    models = views.versions_with_metrics(demo_db)
    active = models[models["status"] == "champion"].iloc[0]
    daily, week = views.live_accuracy(demo_db, since=bucket_floor(pinned_now - timedelta(days=7)))  # as the page
    assert week["labelled"] > 100  # the demo gives ~10% of a week's queries a label
    shown = metrics(at)
    assert shown["Live accuracy, last 7 days"] == pct(week["correct"] / week["labelled"])
    assert shown["Queries with feedback, last 7 days"] == f"{week['labelled']:,}"
    assert shown[f"Offline accuracy of {active['version']}"] == pct(active["accuracy"])

    # The evaluations chart: one candidate marker per retrain, coloured by decision, champions in blue.
    evals = views.evaluations(demo_db)
    for metric, title in (("accuracy", "Accuracy"), ("macro_f1", "Macro-F1")):
        timeline = figure(at, title)
        for status in ("accepted", "rejected"):
            expected = evals[(evals["role"] == "candidate") & (evals["status"] == status)]
            drawn = [c["value"] for c in values(timeline, "candidates") if c["series"] == f"candidate {status}"]
            assert drawn == expected[metric].tolist()
        assert [c["value"] for c in values(timeline, "champion")] == evals[evals["role"] == "champion"][metric].tolist()

    # Live accuracy per day: bars are the labelled counts, the line the share right.
    live = figure(at, "Live accuracy per day")
    assert [d["labelled"] for d in values(live, "labelled")] == daily["labelled"].tolist()
    assert [d["accuracy"] for d in values(live, "accuracy")] == daily["accuracy"].tolist()
    reference = values(live, "reference")
    assert [r["value"] for r in reference] == [active["accuracy"]] * 2  # the serving model's offline accuracy
    days = pd.to_datetime(daily["day"])  # only over the days it served: from its deployment, not the first day
    assert days.min() < pd.Timestamp(reference[0]["day"]) <= pd.Timestamp(reference[1]["day"]) == days.max()
    with demo_db.read() as con:
        answered_with_feedback = con.execute(
            "SELECT count(DISTINCT l.query_id) FROM labels l JOIN queries q ON q.id = l.query_id "
            "WHERE q.predicted_label IS NOT NULL").fetchone()[0]
    assert sum(daily["labelled"]) == answered_with_feedback > 0

    # The chosen version defaults to the active one: metrics, per-class table and confusion matrix.
    assert at.selectbox(key="version").value == active["version"]
    report = views.class_report(demo_db, active["version"])
    assert shown["Accuracy"] == pct(report["accuracy"]) and shown["Macro-F1"] == pct(report["macro_f1"])
    assert shown["Evaluation rows"] == f"{report['eval_rows']:,}"
    pd.testing.assert_frame_equal(at.dataframe[0].value.set_axis(views.CLASS_COLUMNS, axis=1), report["per_class"],
                                  check_dtype=False)
    heatmap = figure(at, f"Confusion matrix of {active['version']}")
    assert cells(heatmap) == report["confusion"]
    assert list(dict.fromkeys(c["predicted"] for c in values(heatmap, "cells"))) == report["labels"]


def test_choosing_a_version_shows_its_report(demo_home, demo_db, monkeypatch):
    at = open_page(demo_home, monkeypatch)
    rejected = views.versions_with_metrics(demo_db).query("status == 'rejected'").iloc[0]["version"]
    at.selectbox(key="version").set_value(rejected).run()
    assert not at.exception
    report = views.class_report(demo_db, rejected)
    assert metrics(at)["Accuracy"] == pct(report["accuracy"])
    assert metrics(at)["Status"] == "rejected"
    pd.testing.assert_frame_equal(at.dataframe[0].value.set_axis(views.CLASS_COLUMNS, axis=1), report["per_class"],
                                  check_dtype=False)
    assert cells(figure(at, f"Confusion matrix of {rejected}")) == report["confusion"]


def test_two_versions_side_by_side(demo_home, demo_db, monkeypatch):
    at = open_page(demo_home, monkeypatch)
    evals = views.evaluations(demo_db)
    # A retrain where the candidate was rejected: the two versions met on one evaluation set.
    met = evals[(evals["role"] == "candidate") & (evals["status"] == "rejected")].iloc[-1]
    a, b = met["champion_version"], met["candidate_version"]
    at.selectbox(key="compare_a").set_value(a)
    at.selectbox(key="compare_b").set_value(b).run()
    assert not at.exception
    diff = views.compare(demo_db, a, b)

    overall = at.dataframe[1].value
    same_set = f"same set, retrain #{met['retrain_id']}"
    assert overall.columns.tolist() == ["Metric", "Measured on", a, b, "Change"]
    assert overall[["Metric", "Measured on"]].values.tolist() == [
        ["Accuracy", "own retrain"], ["Macro-F1", "own retrain"], ["Accuracy", same_set], ["Macro-F1", same_set]]
    own = views.versions_with_metrics(demo_db).set_index("version")
    head = evals[(evals["retrain_id"] == met["retrain_id"])].set_index("version")
    assert overall[a].tolist() == [own.loc[a, "accuracy"], own.loc[a, "macro_f1"], head.loc[a, "accuracy"], head.loc[a, "macro_f1"]]
    assert overall[b].tolist() == [own.loc[b, "accuracy"], own.loc[b, "macro_f1"], head.loc[b, "accuracy"], head.loc[b, "macro_f1"]]
    # A change is the difference of the stored values, rounded once where it is shown.
    assert overall["Change"].tolist() == [y - x for x, y in zip(overall[a], overall[b])]
    assert overall["Change"].iloc[2] < 0  # the gate rejected b: it scored worse on the shared set
    assert f"in retrain #{met['retrain_id']} both were scored on the same texts" in at.caption[-1].value

    per_class = at.dataframe[2].value
    assert per_class["Label"].tolist() == diff["per_class"]["label"].tolist()
    def shown(metric: str) -> list[float]:
        rows = diff["per_class"]
        return [y - x for x, y in zip(rows[f"{metric}_a"], rows[f"{metric}_b"])]

    assert per_class["F1 change"].tolist() == pytest.approx(shown("f1"))
    assert per_class["Recall change"].tolist() == pytest.approx(shown("recall"))
    assert per_class.columns.tolist() == ["Label", f"F1 {a}", f"F1 {b}", "F1 change", "Precision change",
                                          "Recall change", f"Support {b}"]
    worst = diff["per_class"].iloc[0]
    assert worst["f1_change"] == diff["per_class"]["f1_change"].min() < 0  # biggest loss first

    bars = values(figure(at, f"Change in F1 per class, {b} against {a}"), "bars")
    assert sorted(b["change"] for b in bars) == pytest.approx(sorted((100 * diff["per_class"]["f1_change"]).tolist()))


@pytest.mark.parametrize("same", ["v0001", "v0003"], ids=["oldest", "rejected"])
def test_the_same_version_twice_is_refused(demo_home, monkeypatch, same):
    at = open_page(demo_home, monkeypatch)
    at.selectbox(key="compare_a").set_value(same)
    at.selectbox(key="compare_b").set_value(same).run()
    assert not at.exception
    assert at.info[-1].value == "Choose two different versions to compare."
    assert len(at.dataframe) == 1  # only the per-class table of the chosen version


def test_live_accuracy_days_are_the_users_days(demo_home, demo_db, monkeypatch):
    at = open_page(demo_home, monkeypatch, timezone="Asia/Kolkata")  # UTC+5:30 all year
    daily, _ = views.live_accuracy(demo_db, offset_minutes=330)
    live = values(figure(at, "Live accuracy per day"), "labelled")
    assert [d["labelled"] for d in live] == daily["labelled"].tolist()
    assert [pd.Timestamp(d["day"]) for d in live] == pd.to_datetime(daily["day"]).tolist()
    assert daily["labelled"].tolist() != views.live_accuracy(demo_db)[0]["labelled"].tolist()


def test_live_accuracy_counts_each_query_once_with_its_latest_label(ctx):
    from store.querylog import insert_labels, insert_queries

    t0 = datetime(2026, 3, 2, 10)
    queries = pd.DataFrame({
        "id": ["q1", "q2", "q3", "q4"], "ts": [t0, t0, t0 + timedelta(hours=13), t0 + timedelta(days=1)],
        "text": ["a", "b", "c", "d"], "predicted_label": ["x", "y", "x", None], "confidence": [0.9] * 4,
        "model_version": ["v0001"] * 4, "source": ["classifier"] * 4,
    })
    labels = pd.DataFrame({
        "id": ["l1", "l2", "l3", "l4", "l5"], "ts": [t0, t0 + timedelta(hours=1), t0, t0, t0],
        "query_id": ["q1", "q1", "q2", "q3", "q4"], "text": [None] * 5,
        "label": ["y", "x", "z", "x", "x"], "source": ["feedback"] * 5,
    })
    with ctx.db.write() as con:
        insert_queries(con, queries)
        insert_labels(con, labels)
    # q1 was corrected to its predicted label (right), q2 wrong, q3 right at 23:00 UTC, q4 never answered.
    daily, everything = views.live_accuracy(ctx.db)
    assert everything == {"labelled": 3, "correct": 2, "accuracy": 2 / 3}
    assert daily.to_dict("list") == {
        "day": [pd.Timestamp("2026-03-02")], "labelled": [3], "correct": [2], "accuracy": [2 / 3],
    }
    # Two hours east of UTC, q3 falls on the next day.
    assert views.live_accuracy(ctx.db, offset_minutes=120)[0].to_dict("list") == {
        "day": [pd.Timestamp("2026-03-02"), pd.Timestamp("2026-03-03")],
        "labelled": [2, 1], "correct": [1, 1], "accuracy": [0.5, 1.0],
    }
    assert views.live_accuracy(ctx.db, since=t0 + timedelta(hours=1))[1] == {"labelled": 1, "correct": 1, "accuracy": 1.0}
    assert views.live_accuracy(ctx.db, since=t0 + timedelta(days=2))[1] == {"labelled": 0, "correct": 0, "accuracy": None}


def test_versions_that_never_met_are_compared_on_their_own_sets(demo_home, demo_db, monkeypatch):
    evals = views.evaluations(demo_db)
    oldest, newest = evals["version"].iloc[0], evals["version"].iloc[-1]
    assert not set(evals[evals["version"] == oldest]["retrain_id"]) & set(evals[evals["version"] == newest]["retrain_id"])
    at = open_page(demo_home, monkeypatch)
    at.selectbox(key="compare_a").set_value(oldest)
    at.selectbox(key="compare_b").set_value(newest).run()
    assert not at.exception
    own = views.versions_with_metrics(demo_db).set_index("version")
    overall = at.dataframe[1].value
    assert overall["Measured on"].tolist() == ["own retrain", "own retrain"]
    assert overall[newest].tolist() == [own.loc[newest, "accuracy"], own.loc[newest, "macro_f1"]]
    assert at.caption[-1].value == (
        f"Changes are {newest} minus {oldest}. Each was scored on the evaluation set of its own retrain "
        f"({own.loc[oldest, 'eval_rows']} and {own.loc[newest, 'eval_rows']} texts); the sets differ, so small changes "
        "may be noise.")


def test_drift_figures_and_the_recorded_warning(ctx, labelled_csv, monkeypatch):
    """v0001's seeded synthetic traffic, its last day shifted, judged by a worker: the page draws the
    store's daily figures and marks the warned day on each panel whose figure moved."""
    from engine.drift import version_figures
    from tests.test_drift_worker import SHIFTED_DAY, warned_store

    assert [v.day for v in warned_store(ctx, labelled_csv)] == [SHIFTED_DAY]

    at = open_page(ctx.settings.home, monkeypatch)
    daily, mix = version_figures(ctx.db, "v0001", min_confidence=0.5)
    assert len(daily) == 15 and mix == "training set of v0001"
    titles = ["mean confidence", "low-confidence share", "JS distance from the training mix"]
    for title, metric in zip(titles, ("mean_confidence", "low_share", "js_distance")):
        chart = figure(at, f"{title} of v0001 per day (UTC)")
        days = values(chart, "points")
        assert [d["value"] for d in days] == pytest.approx(daily[metric].tolist())
        assert days[0]["day"].startswith("2026-03-05") and days[-1]["day"].startswith("2026-03-19")
        [warned] = values(chart, "warnings")
        assert warned["day"].startswith("2026-03-19")
        assert warned["value"] == pytest.approx(daily[metric].iloc[-1])
        assert warned["message"].startswith("Drift in the live traffic of v0001 on 2026-03-19 (300 queries): ")
    assert views.drift_warnings(ctx.db, "v0001")["metric"].tolist() == ["mean_confidence", "low_share", "js_distance"]
    assert "v0001 has answered no logged query: there is no live traffic to judge for drift." not in [i.value for i in at.info]
