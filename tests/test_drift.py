"""Tests for engine.drift: the Jensen-Shannon distance against scipy and by hand, the daily
figures of a small hand-made log, and detection on seeded synthetic streams: a shift raises
alarms on the day it starts, the same stream without the shift raises none."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from scipy.spatial.distance import jensenshannon

from engine.config import load_settings
from engine.drift import Alarm, daily_figures, detect, detect_with, js_distance, js_distances, training_mix

LABELS = ["a", "b", "c", "d", "e"]
TRAINING_MIX = {"a": 300, "b": 250, "c": 200, "d": 150, "e": 100}
START = datetime(2026, 2, 1)


@pytest.mark.parametrize(("p", "q", "expected"),
                         [([1, 0], [0, 1], 1.0), ([0.5, 0.5], [1, 1], 0.0), ([1, 0], [1, 1], None),
                          ([0.3, 0.25, 0.2, 0.15, 0.1], [0.05, 0.05, 0.1, 0.2, 0.6], None)],
                         ids=["disjoint", "same-after-normalising", "half-overlap", "five-labels"])
def test_js_distance_by_hand_and_against_scipy(p, q, expected):
    got = js_distance(p, q)
    assert got == pytest.approx(jensenshannon(p, q, base=2), abs=1e-12)
    if expected is not None:
        assert got == pytest.approx(expected, abs=1e-12)


def test_js_distance_half_overlap_by_hand():
    # p = (1, 0), q = (1/2, 1/2), m = (3/4, 1/4): KL(p||m) = log2(4/3), KL(q||m) = (log2(2/3) + log2(2)) / 2
    expected = np.sqrt((np.log2(4 / 3) + (np.log2(2 / 3) + 1) / 2) / 2)
    assert js_distance([1, 0], [1, 1]) == pytest.approx(expected, abs=1e-15)


def test_js_distance_refuses_empty_or_ragged_input():
    with pytest.raises(ValueError, match="two non-negative distributions of the same length with mass"):
        js_distance([0, 0], [1, 1])
    with pytest.raises(ValueError, match="same length"):
        js_distance([1, 2, 3], [1, 2])


def test_daily_figures_of_a_hand_made_log():
    log = pd.DataFrame({
        "ts": [START + timedelta(hours=h) for h in (1, 2, 3, 4)] + [START + timedelta(days=1, hours=5)] * 2,
        "predicted_label": ["a", "a", "b", "b", "a", "z"],
        "confidence": [0.9, 0.8, 0.4, 0.7, 0.2, 0.6],
    })
    daily = daily_figures(log, training_mix={"a": 1, "b": 1}, min_confidence=0.5)
    assert daily["day"].tolist() == [pd.Timestamp(START), pd.Timestamp(START + timedelta(days=1))]
    assert daily["queries"].tolist() == [4, 2]
    assert daily["mean_confidence"].tolist() == pytest.approx([0.7, 0.4])
    assert daily["low_share"].tolist() == [0.25, 0.5]
    # Day 1 matches the training mix; day 2 half "z", a label the training set never had.
    assert daily["js_distance"].tolist() == pytest.approx([0.0, jensenshannon([1, 0, 1], [1, 1, 0], base=2)])


def stream(days: int, *, seed: int, shift_from: int | None = None, per_day: int = 300) -> pd.DataFrame:
    """A seeded synthetic log; from ``shift_from`` on, the label mix and the confidence change."""
    rng = np.random.default_rng(seed)
    base, shifted = np.array([0.3, 0.25, 0.2, 0.15, 0.1]), np.array([0.05, 0.05, 0.1, 0.2, 0.6])
    frames = []
    for day in range(days):
        late = shift_from is not None and day >= shift_from
        labels = rng.choice(LABELS, size=per_day, p=shifted if late else base)
        confidence = rng.beta(4, 3, per_day) if late else rng.beta(8, 2, per_day)
        seconds = rng.integers(0, 86400, per_day)
        frames.append(pd.DataFrame({"ts": [START + timedelta(days=day, seconds=int(s)) for s in seconds],
                                    "predicted_label": labels, "confidence": confidence}))
    return pd.concat(frames, ignore_index=True)


def figures(log: pd.DataFrame) -> pd.DataFrame:
    return daily_figures(log, training_mix=TRAINING_MIX, min_confidence=0.5)


def test_a_stable_stream_raises_no_alarm():
    daily = figures(stream(28, seed=5))
    assert len(daily) == 28
    assert detect(daily) == []
    assert daily["js_distance"].max() < 0.1 and daily["mean_confidence"].min() > 0.77


def test_a_shift_raises_alarms_from_the_day_it_starts():
    stable, shifted = figures(stream(28, seed=5)), figures(stream(28, seed=5, shift_from=20))
    pd.testing.assert_frame_equal(stable.iloc[:20], shifted.iloc[:20])  # the same seed: identical until the shift
    alarms = detect(shifted)
    day20 = pd.Timestamp(START + timedelta(days=20))
    assert [(a.day, a.metric) for a in alarms if a.day == day20] == [
        (day20, "mean_confidence"), (day20, "low_share"), (day20, "js_distance")]
    assert min(a.day for a in alarms) == day20
    first = alarms[0]
    assert first.value == pytest.approx(shifted.iloc[20]["mean_confidence"])
    assert first.reference == pytest.approx(shifted.iloc[13:20]["mean_confidence"].mean())
    assert first.message.startswith("Drift on 2026-02-21: mean confidence fell to 0.5")
    assert first.as_dict()["day"] == "2026-02-21"


def test_quiet_days_are_neither_judged_nor_reference():
    daily = figures(stream(10, seed=5, shift_from=9))
    quiet = daily.assign(queries=[300] * 8 + [300, 10])
    assert detect(quiet, reference_days=7, min_queries=50) == []           # the shifted day is too quiet to judge
    assert {a.metric for a in detect(daily, reference_days=7)} == {"mean_confidence", "low_share", "js_distance"}


@pytest.mark.parametrize(("drop", "alarm"), [(0.05, True), (0.5, False)], ids=["default", "wide-threshold"])
def test_thresholds_come_from_settings(tmp_path, drop, alarm):
    settings = load_settings(env={}, path=None, home=tmp_path, drift_confidence_drop=drop)
    alarms = detect_with(settings, figures(stream(10, seed=5, shift_from=9)))
    assert ("mean_confidence" in {a.metric for a in alarms}) is alarm


def test_detect_checks_its_window():
    with pytest.raises(ValueError, match="reference_days must be >= 1, got 0"):
        detect(figures(stream(2, seed=1)), reference_days=0)
    assert Alarm(START, "js_distance", 0.3, 0.1, 0.15).message == (
        "Drift on 2026-02-01: predicted-label mix moved away from the training set: Jensen-Shannon distance 0.300 "
        "(reference window 0.100, threshold 0.15)")


def test_without_a_training_mix_the_distance_is_not_computed_nor_judged():
    log = stream(10, seed=5, shift_from=9)
    daily = daily_figures(log, training_mix={}, min_confidence=0.5)
    assert daily["js_distance"].isna().all()
    assert daily[["queries", "mean_confidence", "low_share"]].equals(
        figures(log)[["queries", "mean_confidence", "low_share"]])
    assert {a.metric for a in detect(daily)} == {"mean_confidence", "low_share"}
    assert training_mix(None) == (None, None)
    assert training_mix({"version": "v0001", "params": {"seed": 0}}) == (None, None)
    assert training_mix({"version": "v0003", "params": {"label_counts": {"a": 3, "b": 1}}}) == (
        {"a": 3, "b": 1}, "training set of v0003")


def test_an_alarm_in_words_names_the_figure_the_move_and_the_threshold():
    assert Alarm(START, "mean_confidence", 0.571, 0.797, 0.05).phrase() == (
        "mean confidence fell to 0.571 from 0.797, a drop of 0.226 (threshold 0.05)")
    rise = Alarm(START, "low_share", 0.35, 0.019, 0.1)
    assert rise.move == pytest.approx(0.331)
    assert rise.as_dict() == {"day": "2026-02-01", "metric": "low_share", "value": 0.35, "reference": 0.019,
                              "move": pytest.approx(0.331), "threshold": 0.1}


def test_js_distances_of_many_days_match_one_at_a_time():
    rows = np.random.default_rng(3).integers(0, 20, size=(6, 5)).astype(float)
    rows[2] = 0  # a day without a named prediction
    got = js_distances(rows, list(TRAINING_MIX.values()))
    assert np.isnan(got[2])
    for i in (0, 1, 3, 4, 5):
        assert got[i] == pytest.approx(js_distance(rows[i], list(TRAINING_MIX.values())), abs=1e-15)
    assert np.isnan(js_distances(rows, [0] * 5)).all()
