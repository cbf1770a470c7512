"""Plotly figures for the Data and Playground pages: data in, figure out (no Streamlit calls, no store)."""

from __future__ import annotations

from typing import Sequence

import pandas as pd

from pages import _vega
from pages._ui import COLORS

LOW = "#f97316"     # below min_confidence
OK = COLORS["active"]
TRAINING = "#0f766e"
TRAFFIC = "#a855f7"
# Plotly's Dark24 then Light24 qualitative palettes (48 distinguishable colours).
PALETTE = ["#2E91E5", "#E15F99", "#1CA71C", "#FB0D0D", "#DA16FF", "#222A2A", "#B68100", "#750D86", "#EB663B", "#511CFB",
           "#00A08B", "#FB00D1", "#FC0080", "#B2828D", "#6C7C32", "#778AAE", "#862A16", "#A777F1", "#620042", "#1616A7",
           "#DA60CA", "#6C4516", "#0D2A63", "#AF0038", "#FD3216", "#00FE35", "#6A76FC", "#FED4C4", "#FE00CE", "#0DF9FF",
           "#F6F926", "#FF9616", "#479B55", "#EEA6FB", "#DC587D", "#D626FF", "#6E899C", "#00B5F7", "#B68E00", "#C9FBE5",
           "#FF0092", "#22FFA7", "#E3EE9E", "#86CE00", "#BC7196", "#7E7DCD", "#FC6955", "#E48F72"]


def label_colors(labels: Sequence[str]) -> dict[str, str]:
    """One stable colour per label (sorted names get palette colours in order)."""
    return {label: PALETTE[i % len(PALETTE)] for i, label in enumerate(sorted(set(labels)))}


def volume_by_label(frame: pd.DataFrame) -> dict:
    """Queries per day, stacked by predicted label (frame: day, label, queries); the legend lists every label
    on the right, none hidden behind a scroll. One layer, ``bars``."""
    colors = label_colors(frame["label"])
    return _vega.chart("Queries per day by predicted label", [_vega.layer(
        "bars", _vega.rows(frame, ["day", "label", "queries"]), {"type": "bar"},
        {"x": _vega.time_axis("day", frame["day"], hours=False, timeUnit="yearmonthdate"),
         "y": {"field": "queries", "type": "quantitative", "aggregate": "sum", "title": "queries"},
         "color": {"field": "label", "type": "nominal", "title": None,
                   "scale": _vega.colour_scale(sorted(colors.items())),
                   "legend": {"orient": "bottom", "columns": 5, "symbolLimit": 0, "labelFontSize": 11}},
         "order": {"field": "label"},
         "tooltip": [{"field": "day", "type": "temporal", "format": "%Y-%m-%d"}, {"field": "label"},
                     {"field": "queries", "format": ","}]})],
        height=320)


def confidence_histogram(frame: pd.DataFrame, *, min_confidence: float) -> dict:
    """Queries per confidence bin, bins below ``min_confidence`` in the warning colour, a dashed rule at the
    threshold. Layers ``bins`` (bin_start, bin_end, queries, below) and ``threshold``."""
    values = _vega.rows({"bin_start": a, "bin_end": b, "queries": q,
                         "below": "below the threshold" if a < min_confidence else "at or above"}
                        for a, b, q in zip(frame["bin_start"], frame["bin_end"], frame["queries"]))
    return _vega.chart("Confidence of predictions", [
        _vega.layer("bins", values, {"type": "rect", "stroke": "white", "strokeWidth": 1}, {
            "x": {"field": "bin_start", "type": "quantitative", "title": "confidence", "scale": {"domain": [0, 1]}},
            "x2": {"field": "bin_end"},
            "y": {"field": "queries", "type": "quantitative", "title": "queries"}, "y2": {"datum": 0},
            "color": {"field": "below", "type": "nominal", "title": None,
                      "scale": _vega.colour_scale([("below the threshold", LOW), ("at or above", OK)])},
            "tooltip": [{"field": "bin_start", "title": "from", "format": ".2f"}, {"field": "bin_end", "title": "to", "format": ".2f"},
                        {"field": "queries", "format": ","}]}),
        _vega.layer("threshold", [{"x": min_confidence, "text": f"min confidence {min_confidence:g}"}],
                    {"type": "rule", "color": LOW, "strokeDash": [4, 3]}, {"x": {"field": "x", "type": "quantitative"}}),
    ])


def low_confidence_share(frame: pd.DataFrame, *, min_confidence: float) -> dict:
    """Share of each day's predictions below ``min_confidence`` (frame: day, queries, low_confidence, share)."""
    return _vega.chart(f"Share of predictions below {min_confidence:g} per day", [_vega.layer(
        "share", _vega.rows(frame, ["day", "queries", "low_confidence", "share"]),
        {"type": "line", "point": True, "color": LOW, "strokeWidth": 2},
        {"x": _vega.time_axis("day", frame["day"], hours=False),
         "y": {"field": "share", "type": "quantitative", "title": "share", "axis": {"format": ".0%"}},
         "tooltip": [{"field": "day", "type": "temporal", "format": "%Y-%m-%d"}, {"field": "share", "format": ".1%"},
                     {"field": "low_confidence", "title": "below", "format": ","}, {"field": "queries", "format": ","}]})])


def label_mix(frame: pd.DataFrame, *, traffic_days: int) -> dict:
    """Each label's share of the training set beside its share of recent traffic (labels in the frame's order).
    One layer, ``shares``: label, series (training set / traffic), share, rows."""
    traffic = f"traffic, last {traffic_days} days"
    values = []
    for r in frame.itertuples():
        values.append({"label": r.label, "series": "training set", "share": r.training_share, "rows": r.training})
        values.append({"label": r.label, "series": traffic, "share": r.traffic_share, "rows": r.traffic})
    return _vega.chart("Label mix: training set against recent traffic", [_vega.layer(
        "shares", _vega.rows(values), {"type": "bar"},
        {"x": {"field": "label", "type": "nominal", "sort": list(frame["label"]), "title": None,
               "axis": {"labelAngle": -45, "labelOverlap": False, "labelLimit": 160}},
         "xOffset": {"field": "series", "sort": ["training set", traffic]},
         "y": {"field": "share", "type": "quantitative", "title": "share", "axis": {"format": ".0%"}},
         "color": {"field": "series", "type": "nominal", "title": None,
                   "scale": _vega.colour_scale([("training set", TRAINING), (traffic, TRAFFIC)])},
         "tooltip": [{"field": "label"}, {"field": "series"}, {"field": "share", "format": ".1%"}, {"field": "rows", "format": ","}]})],
        height=380)


def top_labels(top: Sequence[tuple[str, float]]) -> dict:
    """The model's best labels with their probabilities, best on top; each probability written just right of
    its bar, level, however narrow the bar. One layer, ``bars`` (label, probability, text), plus ``labels``."""
    values = _vega.rows({"label": label, "probability": p, "text": f"{p:.1%}"} for label, p in top)
    y = {"field": "label", "type": "nominal", "sort": [label for label, _ in top], "title": None,
         "axis": {"labelOverlap": False, "labelLimit": 200}}
    x = {"field": "probability", "type": "quantitative", "title": None, "axis": {"format": ".0%"},
         "scale": {"domain": [0, 1]}}
    return _vega.chart("Top labels", [
        _vega.layer("bars", values, {"type": "bar", "color": OK}, {"x": x, "y": y,
                    "tooltip": [{"field": "label"}, {"field": "probability", "format": ".1%"}]}),
        _vega.layer("labels", values, {"type": "text", "align": "left", "dx": 4, "fontSize": 12},
                    {"x": x, "y": y, "text": {"field": "text"}}),
    ], height=150)
