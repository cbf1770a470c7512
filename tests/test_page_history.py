"""The Retraining history page, rendered by AppTest on real stores: empty, failed/running, and the demo."""

from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from engine.config import load_settings
from engine.context import Context
from engine.retrain import run_cycle
from store.retrains import start_retrain
from store.views import history as views
from tests.conftest import ROOT, open_app

PAGE = "pages/history.py"


def open_page(home, monkeypatch, *, timezone: str | None = None) -> AppTest:
    return open_app(monkeypatch, home, PAGE, timezone=timezone)


def decode(value):
    """Plotly JSON arrays: a list, or a typed array ``{"dtype", "bdata"}``."""
    if isinstance(value, dict) and "bdata" in value:
        return np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"])).tolist()
    return value


def figure(at: AppTest, title: str) -> dict:
    found = [json.loads(el.proto.spec) for el in at.get("plotly_chart")]
    found = [f for f in found if (f["layout"].get("title") or {}).get("text", "").startswith(title)]
    assert len(found) == 1
    return found[0]


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def shown_ids(at: AppTest) -> list[int]:
    return at.dataframe[0].value["#"].tolist()


def expected_metrics(totals: dict) -> dict[str, str]:
    rate = totals["acceptance_rate"]
    return {
        "Retrains": f"{totals['retrains']:,}", "Accepted": f"{totals['accepted']:,}",
        "Rejected": f"{totals['rejected']:,}", "Failed": f"{totals['failed']:,}",
        "Acceptance rate": "–" if rate is None else f"{100 * rate:.1f}%",
    }


@pytest.fixture
def demo_db(demo_home):
    return Context.open(load_settings(env={}, home=demo_home)).db


def test_empty_store_says_what_to_do(tmp_path, monkeypatch):
    at = open_page(tmp_path / "home", monkeypatch)
    assert [i.value for i in at.info] == [
        "No retrain has run yet. Build the demo with `python -m engine demo`, or import labelled data "
        "(`python -m engine import FILE --labeled`) and press **Retrain now** on the Models page; the worker "
        "also retrains on its weekly, monthly and adaptive schedule."
    ]
    assert len(at.dataframe) == 0 and len(at.multiselect) == 0


def test_demo_shows_every_retrain_as_stored(demo_home, demo_db, monkeypatch):
    at = open_page(demo_home, monkeypatch)
    stored = views.retrains(demo_db)
    totals = views.totals(demo_db)
    assert totals["retrains"] == len(stored) >= 5
    assert {k: v for k, v in metrics(at).items() if k != "Training time"} == expected_metrics(totals)
    assert metrics(at)["Training time"] == f"{totals['total_duration_s']:.1f} s"

    table = at.dataframe[0].value
    assert table["#"].tolist() == stored["id"].tolist()  # newest first
    assert table["Decision"].tolist() == stored["status"].tolist()
    assert table["Trigger"].tolist() == stored["trigger"].tolist()
    assert table["Reason"].tolist() == stored["reason"].tolist()
    for column, source in (("Accuracy before", "champion_accuracy"), ("Accuracy after", "candidate_accuracy"),
                           ("Macro-F1 change", "macro_f1_change"), ("Duration", "duration_s")):
        assert table[column].tolist() == pytest.approx(stored[source].tolist(), nan_ok=True), column
    first = stored.iloc[-1]
    assert first["trigger"] == "demo" and pd.isna(table["Accuracy before"].iloc[-1])  # no champion yet

    # The newest retrain's funnel: rows in, what is left after each filter, rows out.
    newest = views.retrain(demo_db, int(stored["id"].iloc[0]))["funnel"]
    removed = [newest[k] for k in views.REMOVED]
    assert newest["rows_in"] == sum(removed) + newest["train_rows"] + newest["eval_rows"]
    funnel = figure(at, f"Data-quality funnel of retrain #{stored['id'].iloc[0]}")["data"][0]
    assert decode(funnel["x"]) == [newest["rows_in"]] + [newest["rows_in"] - sum(removed[:i + 1]) for i in range(5)] + [
        newest["train_rows"], newest["eval_rows"]]
    assert funnel["y"][3] == f"no conflict (−{newest['conflicts']:,})"

    bars = figure(at, "Rows in per retrain and where they went")
    training = next(t for t in bars["data"] if t["name"] == "training rows")
    assert decode(training["y"]) == stored["train_rows"].tolist()[::-1]  # oldest first
    assert training["x"] == [f"#{i}" for i in stored["id"].tolist()[::-1]]


@pytest.mark.parametrize(
    "statuses, triggers",
    [(["rejected"], []), ([], ["adaptive"]), (["accepted"], ["adaptive", "weekly"])],
    ids=["rejected", "adaptive", "accepted-adaptive-or-weekly"],
)
def test_filters_choose_the_rows(demo_home, demo_db, monkeypatch, statuses, triggers):
    at = open_page(demo_home, monkeypatch)
    everything = shown_ids(at)
    at.multiselect(key="decision").set_value(statuses)
    at.multiselect(key="trigger").set_value(triggers).run()
    assert not at.exception
    expected = views.retrains(demo_db, statuses=statuses, triggers=triggers)
    assert 0 < len(expected) < len(everything)
    assert set(expected["status"]) <= set(statuses or expected["status"])
    assert set(expected["trigger"]) <= set(triggers or expected["trigger"])
    assert shown_ids(at) == expected["id"].tolist()
    assert {k: v for k, v in metrics(at).items() if k != "Training time"} == expected_metrics(
        views.totals(demo_db, statuses=statuses, triggers=triggers))
    assert at.selectbox(key="retrain").options[0].startswith(f"#{expected['id'].iloc[0]} · ")
    training = next(t for t in figure(at, "Rows in per retrain")["data"] if t["name"] == "training rows")
    assert training["x"] == [f"#{i}" for i in expected["id"].tolist()[::-1]]


def test_date_range_is_in_the_users_days(demo_home, demo_db, monkeypatch):
    at = open_page(demo_home, monkeypatch, timezone="Asia/Kolkata")  # UTC+5:30 all year
    stored = views.retrains(demo_db)
    local_day = (stored["started_at"] + pd.Timedelta(minutes=330)).dt.date
    first = local_day.min() + timedelta(days=3)
    last = first + timedelta(days=7)
    at.date_input(key="days").set_value((first, last)).run()
    assert not at.exception
    inside = stored[(local_day >= first) & (local_day <= last)]
    assert 0 < len(inside) < len(stored)
    assert shown_ids(at) == inside["id"].tolist()
    # The same bounds through the store: local midnights as naive UTC.
    start = datetime.combine(first, datetime.min.time()) - timedelta(minutes=330)
    end = datetime.combine(last + timedelta(days=1), datetime.min.time()) - timedelta(minutes=330)
    assert views.retrains(demo_db, start=start, end=end)["id"].tolist() == inside["id"].tolist()
    assert metrics(at)["Retrains"] == str(len(inside))


def test_no_match_says_so(demo_home, demo_db, monkeypatch):
    at = open_page(demo_home, monkeypatch)
    at.multiselect(key="decision").set_value(["rejected"])
    at.multiselect(key="trigger").set_value(["demo"]).run()  # the demo's first model is always accepted
    assert not at.exception
    assert views.totals(demo_db, statuses=["rejected"], triggers=["demo"])["retrains"] == 0
    assert metrics(at)["Retrains"] == "0"
    assert at.info[-1].value == "No retrain matches these filters: clear one of them to see more."
    assert len(at.dataframe) == 0


def test_choosing_a_retrain_shows_its_funnel(demo_home, demo_db, monkeypatch):
    at = open_page(demo_home, monkeypatch)
    oldest = int(views.retrains(demo_db)["id"].iloc[-1])
    at.selectbox(key="retrain").set_value(oldest).run()
    assert not at.exception
    one = views.retrain(demo_db, oldest)
    funnel = figure(at, f"Data-quality funnel of retrain #{oldest}")["data"][0]
    assert decode(funnel["x"])[0] == one["funnel"]["rows_in"]
    assert decode(funnel["x"])[-2:] == [one["funnel"]["train_rows"], one["funnel"]["eval_rows"]]
    assert at.markdown[-1].value == f":green[:material/check_circle:] **Retrain #{oldest}** (demo, {one['duration_s']:.1f} s): {one['reason']}"


def test_failed_and_running_retrains(tmp_path, monkeypatch):
    ctx = Context.open(load_settings(env={}, home=tmp_path / "home"))
    failed = run_cycle(ctx, trigger="manual")  # nothing to learn from
    assert failed.status == "failed"
    running = start_retrain(ctx.db, trigger="weekly", ts=datetime(2026, 3, 4, 12, 0))

    at = open_page(ctx.settings.home, monkeypatch)
    assert {k: v for k, v in metrics(at).items() if k != "Training time"} == {
        "Retrains": "2", "Accepted": "0", "Rejected": "0", "Failed": "1", "Acceptance rate": "–"}
    assert views.totals(ctx.db)["running"] == 1
    table = at.dataframe[0].value
    assert table["#"].tolist() == [failed.retrain_id, running]  # the running one started earlier (2026-03-04)
    assert table["Decision"].tolist() == ["failed", "running"]

    at.selectbox(key="retrain").set_value(running).run()
    assert at.info[-1].value == f"Retrain #{running} stopped before it read the data: there is no funnel to show."
    assert "**Running** since" in at.markdown[-1].value
    at.selectbox(key="retrain").set_value(failed.retrain_id).run()
    assert not at.exception
    assert at.info[-1].value == f"Retrain #{failed.retrain_id} found no rows to learn from: import labelled data first."
    assert at.markdown[-1].value.startswith(f":orange[:material/warning:] **Retrain #{failed.retrain_id}** (manual, ")
    assert at.markdown[-1].value.endswith(f"s): {failed.reason}")
