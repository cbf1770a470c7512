"""The pure cores of the worker's jobs: which days the drift job judges, which alarm asks for a
retrain (engine.drift_job), and what a change of the predictor's fallback means (engine.fallback_monitor).
The jobs with their I/O are tested through the worker in test_drift_worker.py and test_faults.py."""

from __future__ import annotations

from datetime import date

import pytest

from engine.classifier import ClassifierStatus
from engine.drift import Verdict
from engine.drift_job import NOT_SERVING, PAUSED, RETRAIN_REQUESTED, days_to_judge, retrain_target
from engine.fallback_monitor import FallbackChange, fallback_change


@pytest.mark.parametrize("judged, today, catch_up, expected", [
    (date(2026, 3, 1), date(2026, 3, 4), 31, (date(2026, 3, 2), date(2026, 3, 3))),
    (date(2026, 3, 3), date(2026, 3, 4), 31, None),                       # yesterday is judged
    (date(2026, 3, 4), date(2026, 3, 4), 31, None),                       # the clock went back: nothing
    (date.min, date(2026, 3, 4), 31, (date(2026, 2, 1), date(2026, 3, 3))),  # first start: at most 31 days
    (date(2025, 1, 1), date(2026, 3, 4), 7, (date(2026, 2, 25), date(2026, 3, 3))),
], ids=["two-days", "up-to-date", "clock-back", "first-start", "long-stop"])
def test_days_to_judge(judged, today, catch_up, expected):
    assert days_to_judge(judged, today, catch_up=catch_up) == expected


def verdict(version: str, day: int) -> Verdict:
    return Verdict(date(2026, 3, day), version, {"queries": 60.0}, (), None, 7)


def test_the_newest_alarm_of_the_serving_version_asks_for_the_retrain():
    alarms = [verdict("v0001", 1), verdict("v0002", 1), verdict("v0002", 2), verdict("v0001", 3)]
    target, note = retrain_target(alarms, serving="v0002", enabled=True, paused=False)
    assert (target, note) == (alarms[2], RETRAIN_REQUESTED)


@pytest.mark.parametrize("verdicts, serving, enabled, paused, note", [
    ([], "v0001", True, False, None),
    ([verdict("v0001", 1)], "v0001", False, False, None),
    ([verdict("v0001", 1)], "v0002", True, False, NOT_SERVING),
    ([verdict("v0001", 1)], None, True, False, NOT_SERVING),
    ([verdict("v0001", 1)], "v0001", True, True, PAUSED),
], ids=["no-alarm", "drift-retrain-off", "drifted-version-replaced", "nothing-serves", "paused"])
def test_no_retrain_is_asked_and_the_note_says_why(verdicts, serving, enabled, paused, note):
    assert retrain_target(verdicts, serving=serving, enabled=enabled, paused=paused) == (None, note)


def test_entering_fallback_stores_the_reason_and_an_error_event():
    change = fallback_change(None, ClassifierStatus("v0001", "v0002", "v0002: file missing"))
    assert change == FallbackChange(
        {"reason": "v0002: file missing", "serving": "v0001", "active": "v0002"},
        {"kind": "fallback", "severity": "error", "version": "v0002",
         "message": "Fallback in use: v0002: file missing.", "details": {"serving": "v0001"}})


def test_leaving_fallback_clears_the_state_and_says_so_once():
    change = fallback_change("v0002: file missing", ClassifierStatus("v0002", "v0002", None))
    assert change == FallbackChange(None, {"kind": "fallback", "severity": "info", "version": "v0002",
                                           "message": "Fallback over: v0002 serves again."})
    assert fallback_change(None, ClassifierStatus("v0002", "v0002", None)) is None
    assert fallback_change("same", ClassifierStatus("v0001", "v0002", "same")) is None
