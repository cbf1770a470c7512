"""Quarantine and pseudo-label rules: a poisoned log can be taken out, and the next retrain recovers.

The scenario test is the demo's incident in small: a client serving a broken model logs
confidently wrong answers under the deployed version; the gate keeps the poisoned candidate
out; the operator quarantines that client; the next retrain is accepted.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import pandas as pd
import pytest

from engine.cli import main
from engine.config import load_settings
from engine.context import Context
from engine.dataset import build_training_set
from engine.errors import InputError
from engine.importer import import_file
from engine.quarantine import Rule, list_rules, preview, quarantine, unquarantine
from engine.retrain import run_cycle
from store import querylog
from store.events import recent_events
from store.retrains import get_retrain
from tests.conftest import labelled_frame

NOW = datetime(2026, 3, 4, 12, 0)


def log_queries(ctx, frame: pd.DataFrame, *, source: str, version: str | None, ts: datetime,
                confidence: float = 0.95, labels: pd.Series | None = None) -> list[str]:
    """Store ``frame``'s texts as logged queries answered with ``frame.label`` (or ``labels``); return their ids."""
    ids = [uuid.uuid4().hex for _ in range(len(frame))]
    queries = pd.DataFrame({"id": ids, "ts": ts, "text": frame["text"].tolist(),
                            "predicted_label": (labels if labels is not None else frame["label"]).tolist(),
                            "confidence": confidence, "model_version": version, "source": source})
    with ctx.db.write() as con:
        querylog.insert_queries(con, queries, arrived_at=ctx.clock())
    return ids


def give_feedback(ctx, ids: list[str], labels: list[str], *, source: str, ts: datetime) -> None:
    frame = pd.DataFrame({"id": [uuid.uuid4().hex for _ in ids], "ts": ts, "query_id": ids, "text": None,
                          "label": labels, "source": source})
    frame["text"] = frame["text"].astype("object")
    with ctx.db.write() as con:
        querylog.insert_labels(con, frame, arrived_at=ctx.clock())


def wrong(labels: pd.Series) -> pd.Series:
    """Each label replaced by the next one in sorted order: confidently, systematically wrong."""
    names = sorted(set(labels))
    shift = {name: names[(i + 1) % len(names)] for i, name in enumerate(names)}
    return labels.map(shift)


# -- rules --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, message", [
    ({"reason": "x"}, "needs at least one of --source, --version, --since, --until"),
    ({"source": "kiosk"}, "--reason is empty"),
    ({"source": "  ", "reason": "x"}, "--source is empty"),
    ({"since": NOW, "until": NOW, "reason": "x"}, "is not before --until"),
    ({"version": "v0001", "reason": "x" * 501}, "--reason is 501 characters: keep it under 500"),
], ids=["no condition", "no reason", "blank source", "empty range", "long reason"])
def test_a_rule_that_makes_no_sense_is_refused(kwargs, message):
    with pytest.raises(InputError, match=message):
        Rule(**kwargs)


@pytest.fixture
def logged(ctx):
    """A log: web traffic (v0001) on day 1, kiosk traffic (v0001 and v0002) on day 2, feedback on some of each."""
    ctx.clock.set(NOW)
    frame = labelled_frame(5)
    web = log_queries(ctx, frame, source="web", version="v0001", ts=NOW - timedelta(days=2))
    kiosk1 = log_queries(ctx, frame.iloc[:30], source="kiosk", version="v0001", ts=NOW - timedelta(days=1, hours=2))
    kiosk2 = log_queries(ctx, frame.iloc[30:50], source="kiosk", version="v0002", ts=NOW - timedelta(hours=20))
    give_feedback(ctx, web[:10], frame["label"][:10].tolist(), source="feedback", ts=NOW - timedelta(days=2))
    give_feedback(ctx, kiosk1[:4], frame["label"][:4].tolist(), source="feedback", ts=NOW - timedelta(days=1))
    give_feedback(ctx, kiosk2[:3], frame["label"][30:33].tolist(), source="kiosk", ts=NOW - timedelta(hours=19))
    return ctx


@pytest.mark.parametrize("rule, expected", [
    (Rule(source="kiosk", reason="r"), {"queries": 50, "labels": 3}),
    (Rule(version="v0001", reason="r"), {"queries": len(labelled_frame(5)) + 30, "labels": 14}),
    (Rule(source="kiosk", version="v0001", reason="r"), {"queries": 30, "labels": 0}),
    (Rule(since=NOW - timedelta(days=1, hours=3), reason="r"), {"queries": 50, "labels": 7}),
    (Rule(since=NOW - timedelta(days=1, hours=3), until=NOW - timedelta(days=1), reason="r"), {"queries": 30, "labels": 0}),
    (Rule(version="v0002", until=NOW - timedelta(hours=20), reason="r"), {"queries": 0, "labels": 0}),
], ids=["source", "version", "source+version", "since", "since+until", "until is exclusive"])
def test_preview_counts_what_a_rule_matches(logged, rule, expected):
    assert preview(logged, rule) == expected


def test_quarantine_is_stored_recorded_listed_and_reversible(logged):
    rule_id, counts = quarantine(logged, Rule(source="kiosk", reason="kiosk served a broken model"), by="test")

    assert (rule_id, counts) == (1, {"queries": 50, "labels": 3})
    event = recent_events(logged.db, kind="quarantine")[0]
    assert (event["severity"], event["message"]) == ("warning", (
        "Quarantine #1 (source kiosk) by test: 50 logged queries and 3 labels are left out of training and "
        "evaluation. Reason: kiosk served a broken model"))
    [row] = list_rules(logged)
    assert (row["id"], row["source"], row["model_version"], row["lifted_at"], row["queries"], row["labels"]) == (
        1, "kiosk", None, None, 50, 3)
    rows = querylog.training_rows(logged.db)
    assert int(rows["quarantined"].sum()) == 53

    logged.clock.advance(minutes=5)
    assert unquarantine(logged, 1, by="test").source == "kiosk"

    assert list_rules(logged)[0]["lifted_at"] == NOW + timedelta(minutes=5)
    assert list_rules(logged, include_lifted=False) == []
    assert recent_events(logged.db, kind="quarantine")[0]["message"] == (
        "Quarantine #1 (source kiosk) lifted by test: its rows count again from the next retrain.")
    assert int(querylog.training_rows(logged.db)["quarantined"].sum()) == 0
    with pytest.raises(InputError, match=r"quarantine #1 was already lifted at "):
        unquarantine(logged, 1)
    with pytest.raises(InputError, match=r"quarantine #7 does not exist: no rule is active"):
        unquarantine(logged, 7)


# -- the training set ---------------------------------------------------------------------------------


def rows(*specs) -> pd.DataFrame:
    """(text, label, source, ts day, quarantined, deployed) tuples as a training-rows frame."""
    return pd.DataFrame([{"text": t, "label": l, "confidence": None if s == "human" else 0.9, "source": s,
                          "ts": datetime(2026, 3, d), "quarantined": q, "deployed": dep}
                         for t, l, s, d, q, dep in specs])


def test_left_out_rows_are_counted_before_the_funnel():
    frame = rows(
        ("where is my order", "track_order", "human", 1, False, None),
        ("cancel it", "cancel", "human", 1, True, None),             # quarantined human label
        ("refund please", "refund", "pseudo", 3, True, False),      # quarantined wins over not deployed
        ("order status", "track_order", "pseudo", 3, False, False),  # a version never deployed
        ("my parcel", "track_order", "pseudo", 1, False, True),      # older than the window
        ("parcel late", "delivery", "pseudo", 3, False, True),       # kept
    )
    result = build_training_set(frame, eval_percent=0, pseudo_since=datetime(2026, 3, 2))

    funnel = result.funnel.as_dict()
    assert {k: funnel[k] for k in ("quarantined", "pseudo_not_deployed", "pseudo_too_old", "rows_in", "train_rows")} == {
        "quarantined": 2, "pseudo_not_deployed": 1, "pseudo_too_old": 1, "rows_in": 2, "train_rows": 2}
    assert result.train["text"].tolist() == ["parcel late", "where is my order"]


def test_pseudo_labels_come_only_from_versions_the_registry_deployed(ctx, labelled_csv):
    ctx.clock.set(NOW - timedelta(days=1))
    import_file(ctx, labelled_csv, labeled=True)
    assert run_cycle(ctx, trigger="manual").candidate == "v0001"
    ctx.clock.set(NOW)
    frame = labelled_frame(2, seed=9)
    log_queries(ctx, frame, source="web", version="v0001", ts=NOW)
    log_queries(ctx, frame, source="rogue", version="v0042", ts=NOW)     # never deployed
    log_queries(ctx, frame, source="legacy", version=None, ts=NOW)       # no version at all

    flags = querylog.training_rows(ctx.db).query("source == 'pseudo'")["deployed"]
    assert flags.tolist() == [True] * len(frame) + [False] * 2 * len(frame)


@pytest.mark.slow
def test_pseudo_label_days_leaves_old_pseudo_labels_out_of_a_retrain(settings, labelled_csv):
    ctx = Context.open(settings.replace(pseudo_label_days=7), clock=lambda: NOW)
    import_file(ctx, labelled_csv, labeled=True)
    assert run_cycle(ctx, trigger="manual").candidate == "v0001"
    frame = labelled_frame(3, seed=5)
    log_queries(ctx, frame, source="web", version="v0001", ts=NOW - timedelta(days=8))
    log_queries(ctx, labelled_frame(2, seed=6), source="web", version="v0001", ts=NOW - timedelta(days=6))

    result = run_cycle(ctx, trigger="manual")

    record = get_retrain(ctx.db, result.retrain_id)
    assert (record["pseudo_too_old"], record["pseudo_not_deployed"], record["quarantined"]) == (len(frame), 0, 0)


# -- the incident and its recovery ------------------------------------------------------------------


@pytest.mark.slow
def test_quarantining_a_broken_client_lets_the_next_retrain_in(settings, labelled_csv, capsys, monkeypatch):
    clock_now = [NOW - timedelta(days=3)]
    ctx = Context.open(settings, clock=lambda: clock_now[0])
    import_file(ctx, labelled_csv, labeled=True)
    assert run_cycle(ctx, trigger="manual").status == "accepted"   # v0001

    # Day 2: the kiosk (a client with a broken model file) logs 3,000 confident, wrong answers as v0001.
    clock_now[0] = NOW - timedelta(days=2)
    poison = pd.concat([labelled_frame(40, seed=s) for s in (11, 12, 13, 14)], ignore_index=True).iloc[:3000]
    log_queries(ctx, poison, source="kiosk", version="v0001", ts=clock_now[0], labels=wrong(poison["label"]))
    # Healthy web traffic and its feedback go on.
    web = labelled_frame(6, seed=21)
    ids = log_queries(ctx, web, source="web", version="v0001", ts=clock_now[0])
    give_feedback(ctx, ids, web["label"].tolist(), source="feedback", ts=clock_now[0])

    clock_now[0] = NOW - timedelta(days=1)
    poisoned = run_cycle(ctx, trigger="adaptive")
    assert (poisoned.status, poisoned.candidate) == ("rejected", "v0002")

    clock_now[0] = NOW
    monkeypatch.setenv("RETRAINER_HOME", str(settings.home))
    assert main(["quarantine", "--source", "kiosk", "--since", "2026-03-02T00:00:00Z",
                 "--reason", "the kiosk served a broken model file"]) == 0
    assert capsys.readouterr().out == (
        "quarantine #1 (source kiosk, from " + _local("2026-03-02 00:00") + "): 3,000 logged queries and 0 labels "
        "are left out of training and evaluation from the next retrain; undo with `python -m engine unquarantine 1`\n")

    recovered = run_cycle(ctx, trigger="manual")

    assert (recovered.status, recovered.candidate) == ("accepted", "v0003")
    record = get_retrain(ctx.db, recovered.retrain_id)
    assert (record["quarantined"], record["pseudo_not_deployed"]) == (3000, 0)
    assert main(["quarantine", "--list"]) == 0
    listed = capsys.readouterr().out
    assert listed.startswith("#1    active                   source kiosk, from ")
    assert ": 3,000 logged queries, 0 labels; added " in listed and listed.endswith(": the kiosk served a broken model file\n")


def _local(utc_text: str) -> str:
    from engine.clock import to_local

    return f"{to_local(datetime.fromisoformat(utc_text)):%Y-%m-%d %H:%M}"


def test_cli_refuses_a_rule_without_conditions_and_list_with_conditions(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("RETRAINER_HOME", str(tmp_path / "home"))
    assert main(["quarantine", "--reason", "why"]) == 2
    assert main(["quarantine", "--list", "--source", "kiosk"]) == 2
    assert main(["unquarantine", "3"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "error: a quarantine rule needs at least one of --source, --version, --since, --until (it would take out the whole log)",
        "error: --list shows the rules: give it alone, or leave it out to add a rule",
        "error: quarantine #3 does not exist: no rule is active",
    ]
    assert main(["quarantine", "--list"]) == 0
    assert capsys.readouterr().out == "no quarantine rules\n"
