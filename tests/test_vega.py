"""Chart helpers shared by every page (pages/_vega.py): time axes whose tick labels never repeat."""

from __future__ import annotations

import pandas as pd

from pages._vega import time_axis


def test_a_few_days_get_one_tick_per_day():
    days = pd.date_range("2026-11-27", "2026-11-30", freq="D")
    axis = time_axis("day", days, hours=False)
    assert axis == {"field": "day", "type": "temporal", "title": None,
                    "axis": {"format": "%b %d", "labelOverlap": True, "tickCount": {"interval": "day", "step": 1}}}


def test_moments_within_one_day_are_labelled_by_hour_with_the_day_as_title():
    moments = pd.to_datetime(["2026-11-30 09:05", "2026-11-30 14:40"])
    assert time_axis("when", moments) == {"field": "when", "type": "temporal", "title": "Nov 30",
                                          "axis": {"format": "%H:%M", "labelOverlap": True}}
    # Daily figures on one day keep the day format (one value per day: an hour means nothing).
    assert time_axis("day", moments, hours=False)["axis"]["format"] == "%b %d"


def test_long_spans_keep_vega_lites_own_ticks_and_extra_keys_reach_the_encoding():
    days = pd.date_range("2026-09-01", "2026-11-30", freq="D")
    axis = time_axis("day", days, hours=False, timeUnit="yearmonthdate")
    assert axis["axis"] == {"format": "%b %d", "labelOverlap": True} and axis["timeUnit"] == "yearmonthdate"
    assert time_axis("day", [])["axis"] == {"format": "%b %d", "labelOverlap": True}  # no data: no ticks to choose
