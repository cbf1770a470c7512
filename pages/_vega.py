"""Vega-Lite specs as plain dictionaries: what every chart shares (no Streamlit, no store).

The dashboard draws its charts with Vega-Lite (``st.vega_lite_chart``) rather than Plotly: in
headless Chromium a page's first Plotly chart cost 3.5-5.5 s of renderer CPU on this machine
(loading and starting Streamlit's 4.7 MB Plotly bundle) against 0.5 s for a Vega-Lite one
(benchmarks/browser.py). Specs are built as dictionaries, so no Python-side schema validation
runs on every page view; each layer carries its rows inline (``data.values``) and a ``name``,
so a test can read exactly what is drawn (:func:`layer_named`).
"""

from __future__ import annotations

import math
from datetime import date, datetime
from typing import Any, Iterable, Sequence

import pandas as pd

FONT = "Source Sans Pro, sans-serif"


def value(v: Any) -> Any:
    """One cell as JSON: datetimes as ISO text (read as local time by the browser), NaN/NaT as null."""
    if v is None:
        return None
    if isinstance(v, float) and math.isnan(v):
        return None
    if v is pd.NaT:
        return None
    if isinstance(v, pd.Timestamp):
        return v.to_pydatetime().isoformat()
    if isinstance(v, (datetime, date)):
        return v.isoformat()
    if hasattr(v, "item"):  # numpy scalars
        return value(v.item())
    return v


def rows(frame: pd.DataFrame | Iterable[dict[str, Any]], columns: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Records for ``data.values``: a frame's ``columns`` (all by default), or dicts, cleaned by :func:`value`."""
    if isinstance(frame, pd.DataFrame):
        frame = frame[list(columns)] if columns is not None else frame
        return [{k: value(v) for k, v in record.items()} for record in frame.to_dict("records")]
    return [{k: value(v) for k, v in record.items()} for record in frame]


def layer(name: str, values: list[dict[str, Any]], mark: dict[str, Any], encoding: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "data": {"values": values}, "mark": mark, "encoding": encoding}


def chart(title: str, layers: list[dict[str, Any]], *, height: int = 320, **extra: Any) -> dict[str, Any]:
    """A layered chart with a title, the legend under the plot, and the dashboard's font."""
    spec = {
        "title": {"text": title, "anchor": "start", "fontSize": 14, "font": FONT},
        "height": height,
        "layer": layers,
        "config": {"legend": {"orient": "bottom", "labelLimit": 260, "columns": 4}, "axis": {"labelFont": FONT},
                   "view": {"stroke": None}},
    }
    spec.update(extra)
    return spec


def time_axis(field: str, moments: Iterable[Any], *, hours: bool = True, **extra: Any) -> dict[str, Any]:
    """A temporal x encoding on ``field`` whose ticks never repeat a label.

    Vega-Lite picks ticks by time, not by the label format: data within a few days got a tick every
    6-12 hours, each labelled with its day ("Nov 30, Nov 30, Nov 30"). Up to 14 days: one tick per day;
    within one day: hours ("14:00") and the day in the axis title, unless ``hours`` is False (one value
    per day). Longer spans: Vega-Lite's own ticks. ``extra`` keys go into the encoding (e.g. ``scale``).
    """
    stamps = pd.to_datetime(pd.Series(list(moments)), errors="coerce").dropna()
    axis: dict[str, Any] = {"format": "%b %d", "labelOverlap": True}
    title = None
    if len(stamps):
        first, last = stamps.min(), stamps.max()
        if hours and first.normalize() == last.normalize():
            axis = {"format": "%H:%M", "labelOverlap": True}
            title = f"{first:%b %d}"
        elif last - first <= pd.Timedelta(days=14):
            axis["tickCount"] = {"interval": "day", "step": 1}
    return {"field": field, "type": "temporal", "title": title, "axis": axis, **extra}


def colour_scale(pairs: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """A colour scale naming each series once (the legend) with its colour."""
    return {"domain": [name for name, _ in pairs], "range": [colour for _, colour in pairs]}


def layer_named(spec: dict[str, Any], name: str) -> dict[str, Any]:
    """The layer called ``name`` of a spec, however deeply layered; KeyError if absent."""
    for found in spec.get("layer", []):
        if found.get("name") == name:
            return found
        try:
            return layer_named(found, name)
        except KeyError:
            continue
    raise KeyError(name)
