"""The demo build's progress file: what make run's dashboard shows while the demo is built beside it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest

from engine.demo_build import DemoBuild, clear_progress, progress_path, read_progress, write_progress


def build(**changes) -> DemoBuild:
    fields = {"pid": os.getpid(), "day": 30, "days": 90,
              "started_at": (datetime.now(timezone.utc) - timedelta(seconds=60)).isoformat(), "note": "retrain #9"}
    return DemoBuild(**{**fields, **changes})


def test_a_running_build_is_read_back_exactly(tmp_path):
    written = build()
    write_progress(tmp_path, written)
    assert read_progress(tmp_path) == written
    assert [p.name for p in tmp_path.iterdir()] == ["demo-build.json"]  # the temporary file was renamed away
    clear_progress(tmp_path)
    assert read_progress(tmp_path) is None
    clear_progress(tmp_path)  # twice is fine


def test_the_time_left_is_the_pace_so_far():
    # 60 s for 30 days: 60 more days take about 120 s.
    assert build().remaining_s == pytest.approx(120, abs=2)
    assert build(day=0).remaining_s is None


def test_a_file_left_by_a_killed_build_counts_as_no_build(tmp_path):
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    write_progress(tmp_path, build(pid=int(gone.stdout)))
    assert read_progress(tmp_path) is None


@pytest.mark.parametrize("content", ["", "{", "[]", json.dumps({"pid": "x", "day": 1, "days": 9, "started_at": "now"}),
                                     json.dumps({"day": 1, "days": 9, "started_at": "2026-11-30T00:00:00+00:00"})],
                         ids=["empty", "half written", "a list", "bad fields", "no pid"])
def test_a_damaged_file_counts_as_no_build(tmp_path, content):
    progress_path(tmp_path).write_text(content)
    assert read_progress(tmp_path) is None
