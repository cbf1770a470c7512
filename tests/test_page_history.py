"""The Retraining history page, rendered by AppTest on real stores: empty, failed/running, and the demo."""

from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from engine.config import load_settings
from engine.context import Context
from engine.clock import ManualClock
from engine.importer import import_file
from engine.retrain import run_cycle
from store.events import record_event, recent_events
from store.retrains import finish_retrain, start_retrain
from store.views import history as views
from pages import _charts_history as charts
from tests.conftest import ROOT, labelled_frame, open_app, shown, values, vega_charts

PAGE = "pages/history.py"


def open_page(home, monkeypatch, *, timezone: str | None = None) -> AppTest:
    return open_app(monkeypatch, home, PAGE, timezone=timezone)


def figure(at: AppTest, title: str) -> dict:
    found = [c for c in vega_charts(at) if (c.get("title") or {}).get("text", "").startswith(title)]
    assert len(found) == 1
    return found[0]


def training_bars(at: AppTest) -> list[dict]:
    return [v for v in values(figure(at, "Rows in per retrain"), "parts") if v["part"] == "training rows"]


TOTALS = ("Retrains", "Accepted", "Rejected", "Failed", "Acceptance rate", "Training time")


def metrics(at: AppTest) -> dict[str, str]:
    """The totals' cards (the chosen retrain's gate cards are read by ``cards``)."""
    return {m.label: m.value for m in at.metric if m.label in TOTALS}


def cards(at: AppTest) -> dict[str, tuple[str, str]]:
    """The chosen retrain's gate cards: label -> (value, second line)."""
    return {m.label: (m.value, m.delta) for m in at.metric if m.label not in TOTALS}


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
    # A retrain on an unchanged training set makes no version: counted beside the failures, not hidden.
    [failed] = [m for m in at.metric if m.label == "Failed"]
    assert failed.delta == (f"{totals['skipped']:,} skipped (nothing new)" if totals["skipped"] else "")

    total = totals["total_duration_s"]
    assert metrics(at)["Training time"] == (f"{total:.1f} s" if total < 90 else f"{total / 60:.1f} min")

    table = at.dataframe[0].value
    assert table["#"].tolist() == stored["id"].tolist()  # newest first
    assert table["Decision"].tolist() == stored["status"].tolist()
    assert table["Trigger"].tolist() == stored["trigger"].tolist()
    # The reason without the decision word the Decision column shows ("Accepted: no metric ..." -> "no metric ...").
    assert table["Reason"].tolist() == [r.split(": ", 1)[1] if r.split(":")[0] in ("Accepted", "Rejected", "Inconclusive")
                                        else r for r in stored["reason"]]
    assert "Duration" not in table.columns  # in the chosen retrain's line below the table
    assert table["Versions"].tolist() == [f"{'–' if pd.isna(a) else a} → {'–' if pd.isna(b) else b}" for a, b in
                                          zip(stored["champion_version"], stored["candidate_version"])]
    for column, source in (("Accuracy", "candidate_accuracy"), ("Macro-F1", "candidate_macro_f1")):
        assert table[column].tolist() == pytest.approx(stored[source].tolist(), nan_ok=True), column
    # A change is the difference of the stored values, rounded once where it is shown, as the gate's reason says it.
    for column, metric in (("Δ accuracy", "accuracy"), ("Δ macro-F1", "macro_f1")):
        expected = [None if pd.isna(a) or pd.isna(b) else f"{100 * (a - b):+.1f}"
                    for a, b in zip(stored[f"candidate_{metric}"], stored[f"champion_{metric}"])]
        assert [None if pd.isna(v) else f"{100 * v:+.1f}" for v in table[column]] == expected, column
    first = stored.iloc[-1]
    assert first["trigger"] == "demo" and table["Versions"].iloc[-1] == f"– → {first['candidate_version']}"  # no champion yet

    # The newest retrain's funnel: rows in, what is left after each filter, rows out.
    newest = views.retrain(demo_db, int(stored["id"].iloc[0]))["funnel"]
    removed = [newest[k] for k in views.REMOVED]
    assert newest["rows_in"] == sum(removed) + newest["train_rows"] + newest["eval_rows"]
    funnel = values(figure(at, f"Data-quality funnel of retrain #{stored['id'].iloc[0]}"), "bars")
    assert [f["rows"] for f in funnel] == [newest["rows_in"]] + [newest["rows_in"] - sum(removed[:i + 1])
                                                                 for i in range(5)] + [newest["train_rows"], newest["eval_rows"]]
    assert [f["stage"] for f in funnel] == ["rows in", "− malformed", "− low confidence", "− conflicting label",
                                            "− duplicate", "− held out, no human label", "training rows", "evaluation rows"]
    held = newest["reserved_for_eval"]
    left = newest["rows_in"] - sum(removed)
    assert funnel[5]["text"] == f"{left:,} left (−{held:,}, {100 * held / newest['rows_in']:.1f}%)"

    training = training_bars(at)
    assert [t["rows"] for t in training] == stored["train_rows"].tolist()[::-1]  # oldest first
    assert [t["retrain"] for t in training] == [f"#{i}" for i in stored["id"].tolist()[::-1]]


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
    assert [t["retrain"] for t in training_bars(at)] == [f"#{i}" for i in expected["id"].tolist()[::-1]]


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
    funnel = [f["rows"] for f in values(figure(at, f"Data-quality funnel of retrain #{oldest}"), "bars")]
    assert funnel[0] == one["funnel"]["rows_in"]
    assert funnel[-2:] == [one["funnel"]["train_rows"], one["funnel"]["eval_rows"]]
    assert shown(at.markdown[-1].value) == f":green[:material/check_circle:] **Retrain #{oldest}** (demo, {one['duration_s']:.1f} s): {one['reason']}"


def test_failed_and_running_retrains(tmp_path, monkeypatch):
    ctx = Context.open(load_settings(env={}, home=tmp_path / "home"))
    failed = run_cycle(ctx, trigger="manual", force=True)  # nothing to learn from
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
    assert shown(at.markdown[-1].value).endswith(f"s): {failed.reason}")


# --- the gate's decision and its paired statistics -----------------------------------------------

OLD_REASON = "Accepted: no metric got worse. (accuracy 91.0% vs 90.0% (+1.0 pts); macro-F1 90.5% vs 90.0% (+0.5 pts))"


@pytest.fixture
def gated(tmp_path):
    """A first model (no champion), a second judged against it, and a decision recorded the way the
    gate recorded it before it stored its statistics (no mode, tolerance, intervals, p-value or ECE)."""
    # The "word" preset: the pinned evidence below is its models'.
    ctx = Context.open(load_settings(env={}, home=tmp_path / "home", pipeline="word"),
                       clock=ManualClock(datetime(2026, 3, 4, 12, 0)))
    for seed in (1, 2):
        csv = tmp_path / f"labelled-{seed}.csv"
        labelled_frame(20, seed=seed).to_csv(csv, index=False)
        import_file(ctx, csv, labeled=True)
        assert run_cycle(ctx, trigger="manual", force=True).status == "accepted"
        ctx.clock.advance(hours=1)
    old = start_retrain(ctx.db, trigger="weekly", ts=ctx.clock())
    with ctx.db.write() as con:
        finish_retrain(con, old, {"status": "accepted", "reason": OLD_REASON, "finished_at": ctx.clock(),
                                  "candidate_version": "v0003", "champion_version": "v0002",
                                  "candidate_accuracy": 0.91, "champion_accuracy": 0.90,
                                  "candidate_macro_f1": 0.905, "champion_macro_f1": 0.90})
        record_event(con, ts=ctx.clock(), kind="gate", version="v0003",
                     message=f"Candidate v0003 accepted (weekly retrain #{old}). {OLD_REASON}",
                     details={"retrain_id": old, "trigger": "weekly", "candidate": "v0003", "champion": "v0002",
                           "rule": "accuracy and macro-F1 each >= champion's minus 0.01",
                           "deltas": {"accuracy": 0.01, "macro_f1": 0.005}, "accepted": True,
                           "candidate_metrics": {"accuracy": 0.91, "macro_f1": 0.905},
                           "champion_metrics": {"accuracy": 0.90, "macro_f1": 0.90},
                           "baseline_metrics": {"accuracy": 0.05, "macro_f1": 0.005}, "eval_rows": 150})
    return ctx


def gate_details(ctx, retrain_id: int) -> dict:
    """The gate event's details as stored (read without the page's read model)."""
    [event] = [e for e in recent_events(ctx.db, kind="gate") if e["details"]["retrain_id"] == retrain_id]
    return event["details"]


def test_a_retrain_with_a_champion_shows_both_differences_their_intervals_and_the_p_value(gated, monkeypatch):
    d = gate_details(gated, 2)
    paired = d["evidence"]["paired"]
    assert (d["champion"], d["candidate"], d["outcome"], d["evidence"]["mode"]) == ("v0001", "v0002", "accepted", "point")
    assert paired["resamples"] == 1000 and paired["confidence"] == 0.95 and paired["rows"] == d["eval_rows"]

    at = open_page(gated.settings.home, monkeypatch)
    at.selectbox(key="retrain").set_value(2).run()
    assert not at.exception

    def ival(m):
        return f"95% CI {100 * paired[m]['low']:+.1f} to {100 * paired[m]['high']:+.1f}"

    p = paired["mcnemar"]["p_value"]
    assert cards(at) == {
        "Gate outcome": ("accepted", "point mode"),
        "Accuracy vs champion": (f"{100 * d['deltas']['accuracy']:+.1f} pts", ival("accuracy")),
        "Macro-F1 vs champion": (f"{100 * d['deltas']['macro_f1']:+.1f} pts", ival("macro_f1")),
        "McNemar p-value": ("< 0.001" if p < 0.001 else f"{p:.3f}",
                            f"{paired['mcnemar']['candidate_only']:,} vs {paired['mcnemar']['champion_only']:,} discordant rows"),
        "Candidate ECE": (f"{d['candidate_ece']:.3f}", ""),
    }
    assert paired["accuracy"]["difference"] == pytest.approx(d["deltas"]["accuracy"], abs=1e-12)
    assert shown(at.caption[-1].value) == (
        "Tolerance line: each difference itself must lie above the tolerance line at -1.0 pts (the intervals inform, "
        f"they do not decide). McNemar's exact test on the {d['eval_rows']:,} evaluation rows: "
        f"{paired['mcnemar']['candidate_only']:,} only the candidate got right, {paired['mcnemar']['champion_only']:,} "
        "only the champion; intervals from 1,000 paired-bootstrap resamples (seed 0).")

    chart = figure(at, "Candidate − champion, retrain #2")
    dots = values(chart, "intervals")
    assert [d["metric"] for d in dots] == ["Accuracy", "Macro-F1"]
    assert [d["difference"] for d in dots] == pytest.approx([100 * paired[m]["difference"] for m in ("accuracy", "macro_f1")])
    assert [d["low"] for d in dots] == pytest.approx([100 * paired[m]["low"] for m in ("accuracy", "macro_f1")])
    assert [d["high"] for d in dots] == pytest.approx([100 * paired[m]["high"] for m in ("accuracy", "macro_f1")])
    assert values(chart, "zero") == [{"x": 0.0}]
    assert values(chart, "tolerance") == [{"x": -1.0, "text": "tolerance line (-1.0 pts)"}]


def test_an_old_decision_says_what_was_not_recorded(gated, monkeypatch):
    at = open_page(gated.settings.home, monkeypatch)
    assert at.selectbox(key="retrain").value == 3  # the newest
    assert cards(at) == {
        "Gate outcome": ("accepted", "mode not recorded"),
        "Accuracy vs champion": ("+1.0 pts", "interval not recorded"),
        "Macro-F1 vs champion": ("+0.5 pts", "interval not recorded"),
        "McNemar p-value": ("not recorded", ""),
        "Candidate ECE": ("not recorded", ""),
    }
    assert shown(at.caption[-1].value) == ("This decision was recorded before the gate stored its statistics: the mode, "
                                    "the tolerance line, the intervals and the p-value were not recorded.")
    assert not [c for c in vega_charts(at) if "Candidate − champion" in (c.get("title") or {}).get("text", "")]
    assert views.gate_decision(gated.db, 3)["paired"] is None


def test_a_first_deployment_was_judged_against_the_baseline(gated, monkeypatch):
    d = gate_details(gated, 1)
    assert d["champion"] is None and d["evidence"]["first_model"] is True
    at = open_page(gated.settings.home, monkeypatch)
    at.selectbox(key="retrain").set_value(1).run()
    assert not at.exception
    assert cards(at) == {
        "Gate outcome": ("accepted", "point mode"),
        "Accuracy vs baseline": (f"{100 * d['deltas']['accuracy']:+.1f} pts", "no interval"),
        "Macro-F1 vs baseline": (f"{100 * d['deltas']['macro_f1']:+.1f} pts", "no interval"),
        "McNemar p-value": ("no champion", ""),
        "Candidate ECE": (f"{d['candidate_ece']:.3f}", ""),
    }
    assert shown(at.caption[-1].value) == ("First deployment: there was no champion, so the candidate had to beat the "
                                    "majority-class baseline on both metrics; there is no paired comparison.")


def test_a_failed_retrain_has_no_gate_decision(tmp_path, monkeypatch):
    ctx = Context.open(load_settings(env={}, home=tmp_path / "home"))
    failed = run_cycle(ctx, trigger="manual", force=True)
    at = open_page(ctx.settings.home, monkeypatch)
    assert cards(at) == {}
    assert shown(at.caption[-1].value) == f"Retrain #{failed.retrain_id} has no gate decision: it failed before the gate."
    assert views.gate_decision(ctx.db, failed.retrain_id) is None


def test_an_inconclusive_decision_says_why_and_how_many_rows_might_settle_it(tmp_path, monkeypatch):
    # The "word" preset: the pinned evidence below is its models'.
    ctx = Context.open(load_settings(env={}, home=tmp_path / "home", pipeline="word"),
                       clock=ManualClock(datetime(2026, 3, 4, 12, 0)))
    for seed in (1, 2):
        csv = tmp_path / f"labelled-{seed}.csv"
        labelled_frame(20, seed=seed).to_csv(csv, index=False)
        import_file(ctx, csv, labeled=True)
        strict = Context(ctx.settings.replace(gate_mode="noninferiority", tolerance=0.0, min_eval_rows=0), ctx.db, ctx.clock)
        run_cycle(ctx if seed == 1 else strict, trigger="manual", force=True)
    d = gate_details(ctx, 2)
    thin = "class(es) invoice_request, payment_failed have fewer than 5 evaluation rows"
    assert (d["outcome"], d["evidence"]["too_little_evidence"], d["evidence"]["more_rows_needed"]) == (
        "inconclusive", thin, None)
    at = open_page(ctx.settings.home, monkeypatch)
    assert cards(at)["Gate outcome"] == ("inconclusive", "noninferiority mode")
    assert shown(at.caption[-1].value).startswith("Tolerance line: the lower end of each interval must lie above the "
                                           "tolerance line at +0.0 pts. McNemar's exact test on the ")
    assert shown(at.caption[-1].value).endswith(f"(seed 0). Too little evidence: {thin}.")

    # An interval across the line: the rows that would likely settle it (engine.stats.rows_to_settle).
    decision = views.gate_decision(ctx.db, 2)
    straddling = {**decision, "paired": {**decision["paired"], "more_rows_needed": 600, "too_little_evidence": None}}
    assert charts.gate_note(straddling).endswith(
        "(seed 0). About 600 more labelled evaluation rows would likely settle it.")
    on_the_line = {**decision, "paired": {**decision["paired"], "more_rows_needed": None, "too_little_evidence": None}}
    assert charts.gate_note(on_the_line).endswith(
        "No number of extra rows is likely to settle it: the difference sits on the tolerance line.")


def test_a_skipped_retrain_is_counted_beside_the_failures(ctx, labelled_csv, monkeypatch):
    from engine.importer import import_file
    from engine.retrain import run_cycle

    assert import_file(ctx, labelled_csv, labeled=True).rejected == 0
    assert run_cycle(ctx, trigger="manual").status == "accepted"
    assert run_cycle(ctx, trigger="manual").status == "skipped"  # the same training set: no new version
    at = open_page(ctx.settings.home, monkeypatch)
    [failed] = [m for m in at.metric if m.label == "Failed"]
    assert (failed.value, failed.delta) == ("0", "1 skipped (nothing new)")
    assert metrics(at)["Retrains"] == "2" and at.dataframe[0].value["Decision"].tolist() == ["skipped", "accepted"]


def test_a_rows_changes_read_as_its_gate_reason_writes_them():
    """63.16% against 48.95%: the gate's reason says +14.2 pts (the raw difference, rounded once), and so does
    the Δ column, although the rounded percentages 63.2% and 48.9% it shows differ by 14.3."""
    from engine.evaluation import Scores
    from engine.gate import decide

    decision = decide(candidate=Scores(0.6316, 0.6010, 190), champion=Scores(0.4895, 0.4711, 190), baseline=None,
                      tolerance=0.01)
    assert decision.reason == ("Accepted: no metric got worse. (accuracy 63.2% vs 48.9% (+14.2 pts); "
                               "macro-F1 60.1% vs 47.1% (+13.0 pts))")
    row = pd.DataFrame({"id": [7], "started_at": [datetime(2026, 3, 4, 12)], "trigger": ["manual"],
                        "status": ["accepted"], "champion_version": ["v0001"], "candidate_version": ["v0002"],
                        "candidate_accuracy": [0.6316], "champion_accuracy": [0.4895],
                        "candidate_macro_f1": [0.6010], "champion_macro_f1": [0.4711], "reason": [decision.reason]})
    header, line = charts.retrain_table(row).to_string(delimiter="|").splitlines()
    cells = dict(zip(header.split("|")[1:], line.split("|")[1:]))
    assert (cells["Accuracy"], cells["Δ accuracy"], cells["Macro-F1"], cells["Δ macro-F1"]) == (
        "63.2%", "+14.2 pts", "60.1%", "+13.0 pts")
    assert f"({cells['Δ accuracy']})" in cells["Reason"] and f"({cells['Δ macro-F1']})" in cells["Reason"]
