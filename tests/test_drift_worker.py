"""Drift warnings in the worker, on real stores and a real model: a seeded synthetic log for v0001
(a stable stream, and the same stream with its last day shifted) is judged once per completed day,
recorded as one 'drift' event, never twice across restarts, and with ``drift_retrain`` it asks for
a retrain with trigger 'drift'."""

from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from engine.context import Context
from engine.drift import daily_figures, detect_with, figures_from_counts, judge, version_figures
from engine.importer import import_file
from engine.retrain import run_cycle
from engine.scheduling import set_paused
from engine.drift_job import DRIFT_KEY
from engine.worker import Worker
from store import querylog
from store.events import recent_events
from store.models import get_model
from store.retrains import recent_retrains
from store.state import read_state

START = datetime(2026, 3, 5)     # the day after the model was trained (the clock fixture: 2026-03-04 12:00)
DAYS = 15                        # 2026-03-05 .. 2026-03-19
SHIFTED_DAY = date(2026, 3, 19)  # the last day, when shifted
PER_DAY = 300


@pytest.fixture
def served(ctx, labelled_csv):
    """The store with a real v0001 trained on 40 labelled examples per intent, deployed."""
    assert import_file(ctx, labelled_csv, labeled=True).rejected == 0
    assert run_cycle(ctx, trigger="manual", force=True).status == "accepted"
    return ctx


@pytest.fixture
def workers():
    """Synchronous workers built by one test; their predictors are closed afterwards."""
    made = []

    def make(ctx: Context) -> Worker:
        made.append(Worker(ctx, synchronous=True))
        return made[-1]

    yield make
    for worker in made:
        worker.predictor.close()


def synthetic_log(mix: dict[str, int], *, seed: int, shifted: bool) -> pd.DataFrame:
    """DAYS days of PER_DAY answers by v0001; labels drawn from the training mix and confidence from
    Beta(8, 2); with ``shifted``, the last day answers mostly three labels with Beta(4, 3) confidence."""
    rng = np.random.default_rng(seed)
    labels = sorted(mix)
    usual = np.array([mix[label] for label in labels], dtype=float)
    usual /= usual.sum()
    odd = np.zeros(len(labels))
    odd[:3] = [0.5, 0.3, 0.2]
    frames = []
    for day in range(DAYS):
        late = shifted and day == DAYS - 1
        seconds = rng.integers(0, 86400, PER_DAY)
        frames.append(pd.DataFrame({
            "ts": [START + timedelta(days=day, seconds=int(s)) for s in seconds],
            "predicted_label": rng.choice(labels, size=PER_DAY, p=odd if late else usual),
            "confidence": rng.beta(4, 3, PER_DAY) if late else rng.beta(8, 2, PER_DAY),
        }))
    log = pd.concat(frames, ignore_index=True)
    return log.assign(id=[uuid.uuid4().hex for _ in range(len(log))], text=[f"synthetic query {i}" for i in range(len(log))],
                      model_version="v0001", source="test")


def write_log(ctx: Context, log: pd.DataFrame) -> None:
    with ctx.db.write() as con:
        assert querylog.insert_queries(con, log) == len(log)


def training_mix(ctx: Context) -> dict[str, int]:
    return get_model(ctx.db, "v0001")["params"]["label_counts"]


def drift_events(ctx: Context) -> list[dict]:
    return recent_events(ctx.db, kind="drift", limit=100)


def the_next_morning(ctx: Context) -> None:
    ctx.clock.set(datetime(2026, 3, 20, 6, 0))


def warned_store(ctx: Context, labelled_csv) -> list:
    """A served v0001, its shifted synthetic log, judged by a worker the next morning (for page tests)."""
    assert import_file(ctx, labelled_csv, labeled=True).rejected == 0
    assert run_cycle(ctx, trigger="manual", force=True).status == "accepted"
    write_log(ctx, synthetic_log(training_mix(ctx), seed=11, shifted=True))
    the_next_morning(ctx)
    worker = Worker(ctx, synchronous=True)
    try:
        return worker.check_drift()
    finally:
        worker.predictor.close()


def test_training_records_its_label_mix(served):
    model = get_model(served.db, "v0001")
    counts = model["params"]["label_counts"]
    assert sum(counts.values()) == model["train_rows"]
    assert sorted(counts) == model["labels"]


def test_store_counts_give_the_same_figures_as_the_raw_log(served):
    log = synthetic_log(training_mix(served), seed=11, shifted=True)
    write_log(served, log)
    counts = querylog.prediction_counts(served.db, versions=["v0001"], min_confidence=0.5)
    assert counts["queries"].sum() == DAYS * PER_DAY
    from_store = figures_from_counts(counts, training_mix=training_mix(served))
    from_rows = daily_figures(log, training_mix=training_mix(served), min_confidence=0.5)
    pd.testing.assert_frame_equal(from_store, from_rows, check_dtype=False, rtol=1e-12)
    pd.testing.assert_frame_equal(version_figures(served.db, "v0001", min_confidence=0.5)[0], from_store)
    assert querylog.versions_served(served.db, start=START, end=START + timedelta(days=1)) == ["v0001"]
    assert querylog.versions_served(served.db, start=START - timedelta(days=1), end=START) == []


def test_a_shifted_day_is_recorded_once(served, workers):
    mix = training_mix(served)
    shifted = synthetic_log(mix, seed=11, shifted=True)
    stable = synthetic_log(mix, seed=11, shifted=False)
    # The same seed: the two streams differ only on the last day.
    pd.testing.assert_frame_equal(shifted.iloc[:-PER_DAY, :3], stable.iloc[:-PER_DAY, :3])
    expected = detect_with(served.settings, daily_figures(shifted, training_mix=mix, min_confidence=0.5))
    assert [(a.day.date(), a.metric) for a in expected] == [
        (SHIFTED_DAY, "mean_confidence"), (SHIFTED_DAY, "low_share"), (SHIFTED_DAY, "js_distance")]
    assert detect_with(served.settings, daily_figures(stable, training_mix=mix, min_confidence=0.5)) == []

    write_log(served, shifted)
    the_next_morning(served)
    worker = workers(served)
    found = worker.check_drift()
    assert [(v.day, v.version) for v in found] == [(SHIFTED_DAY, "v0001")]
    events = drift_events(served)
    assert len(events) == 1
    event = events[0]
    assert (event["severity"], event["version"], event["ts"]) == ("warning", "v0001", datetime(2026, 3, 20, 6, 0))
    assert event["message"] == (
        "Drift in the live traffic of v0001 on 2026-03-19 (300 queries): "
        + "; ".join(a.phrase() for a in expected)
        + ". Reference: the mean of the 7 judged days before.")
    assert event["message"] == (
        "Drift in the live traffic of v0001 on 2026-03-19 (300 queries): mean confidence fell to 0.571 from 0.797, "
        "a drop of 0.226 (threshold 0.05); share of low-confidence predictions rose to 0.350 from 0.019, "
        "a rise of 0.331 (threshold 0.1); Jensen-Shannon distance of the predicted-label mix from the "
        "training set's rose to 0.821 from 0.108, a rise of 0.713 (threshold 0.15). "
        "Reference: the mean of the 7 judged days before.")
    details = event["details"]
    assert details["day"] == "2026-03-19" and details["queries"] == 300
    assert details["metrics"] == ["mean_confidence", "low_share", "js_distance"]
    assert details["training_mix"] == "training set of v0001"
    assert [a["value"] for a in details["alarms"]] == pytest.approx([a.value for a in expected], rel=1e-12)
    assert [a["reference"] for a in details["alarms"]] == pytest.approx([a.reference for a in expected], rel=1e-12)
    assert details["figures"]["low_share"] == 105 / 300
    assert (details["retrain_requested"], details["retrain_note"]) == (False, None)
    assert read_state(served.db)[DRIFT_KEY][0] == "2026-03-19"



def test_a_stable_stream_with_the_same_seed_raises_no_warning(served, workers):
    write_log(served, synthetic_log(training_mix(served), seed=11, shifted=False))
    the_next_morning(served)
    assert workers(served).check_drift() == []
    assert drift_events(served) == []
    assert read_state(served.db)[DRIFT_KEY][0] == "2026-03-19"  # judged all the same


def test_a_day_is_judged_once_across_ticks_and_restarts(served, workers):
    write_log(served, synthetic_log(training_mix(served), seed=11, shifted=True))
    the_next_morning(served)
    first = workers(served)
    first.tick()
    first.tick()
    assert len(drift_events(served)) == 1
    served.clock.advance(hours=12)
    restarted = workers(served)  # a new worker reads the last judged day from the store
    restarted.tick()
    assert restarted.check_drift() == []
    assert len(drift_events(served)) == 1
    # The next day (no traffic) is judged too, and adds nothing.
    served.clock.set(datetime(2026, 3, 21, 0, 5))
    restarted.tick()
    assert read_state(served.db)[DRIFT_KEY][0] == "2026-03-20"
    assert len(drift_events(served)) == 1


def test_a_first_check_looks_back_at_most_31_days(served):
    write_log(served, synthetic_log(training_mix(served), seed=11, shifted=True))
    # 2026-04-19 - 31 days = 2026-03-19: the shifted day is the oldest one still judged.
    assert [v.day for v in judge(served.db, served.settings, first=date(2026, 3, 19), last=date(2026, 4, 18))] == [
        SHIFTED_DAY]
    assert judge(served.db, served.settings, first=date(2026, 3, 20), last=date(2026, 4, 19)) == []


@pytest.mark.parametrize(("drift_retrain", "paused", "requested", "note"), [
    (False, False, False, None),
    (True, False, True, "A retrain (trigger 'drift') was requested."),
    (True, True, False, "No retrain requested: the scheduler is paused."),
], ids=["off", "on", "on-but-paused"])
def test_drift_retrain_asks_for_a_retrain_with_trigger_drift(served, workers, drift_retrain, paused, requested, note):
    write_log(served, synthetic_log(training_mix(served), seed=11, shifted=True))
    if paused:
        set_paused(served, True)
    the_next_morning(served)
    ctx = Context(served.settings.replace(drift_retrain=drift_retrain), served.db, served.clock)
    workers(ctx).check_drift()
    [event] = drift_events(ctx)
    assert (event["details"]["retrain_requested"], event["details"]["retrain_note"]) == (requested, note)
    assert event["message"].endswith("the 7 judged days before." + (f" {note}" if note else ""))
    retrains = recent_retrains(ctx.db, limit=10)
    assert [r["trigger"] for r in retrains] == (["drift", "manual"] if requested else ["manual"])
    if requested:
        assert retrains[0]["status"] in ("accepted", "rejected")
        assert retrains[0]["started_at"] == datetime(2026, 3, 20, 6, 0)


def test_a_version_that_no_longer_serves_asks_for_no_retrain(served, workers):
    write_log(served, synthetic_log(training_mix(served), seed=11, shifted=True))
    humans_only = Context(served.settings.replace(use_pseudo_labels=False), served.db, served.clock)
    assert run_cycle(humans_only, trigger="manual", force=True).status == "accepted"  # v0002 now serves
    the_next_morning(served)
    ctx = Context(served.settings.replace(drift_retrain=True), served.db, served.clock)
    workers(ctx).check_drift()
    [event] = drift_events(ctx)
    assert event["details"]["retrain_note"] == "No retrain requested: the version that drifted no longer serves."
    assert [r["trigger"] for r in recent_retrains(ctx.db, limit=10)] == ["manual", "manual"]
