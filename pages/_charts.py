"""The Overview page's chart: data in, Vega-Lite spec out (no Streamlit, no store)."""

from __future__ import annotations

import pandas as pd

from pages import _vega
from pages._ui import COLORS, local, redact

SERIES = (("accuracy (serving)", COLORS["active"]), ("macro-F1 (serving)", COLORS["active"]),
          ("candidate accepted", COLORS["accepted"]), ("candidate rejected", COLORS["rejected"]),
          ("rollback", COLORS["rollback"]), ("fallback", COLORS["fallback"]), ("drift", COLORS["drift"]))


def metric_timeline(timeline: pd.DataFrame, markers: pd.DataFrame, *, title: str = "Accuracy and macro-F1 over time") -> dict:
    """The serving model's metrics after each decision (steps), every candidate as a point by decision,
    and rollbacks, fallbacks and drift warnings as triangles under the lines.

    Layers (by name): ``serving`` (when, series, value), ``candidates`` (when, series, value, version,
    trigger, macro_f1), ``markers`` (when, series, value, message).
    """
    serving, candidates, marks = [], [], []
    low = 0.0
    if not timeline.empty:
        t = timeline.copy()
        t["when"] = [local(x) for x in t["ts"]]
        accepted = t["status"] == "accepted"
        # What served after each decision: the candidate if accepted, else the champion.
        acc = t["candidate_accuracy"].where(accepted, t["champion_accuracy"])
        f1 = t["candidate_macro_f1"].where(accepted, t["champion_macro_f1"])
        for when, a, f in zip(t["when"], acc, f1):
            serving += [{"when": when, "series": "accuracy (serving)", "dash": "accuracy", "value": a},
                        {"when": when, "series": "macro-F1 (serving)", "dash": "macro-F1", "value": f}]
        decided = t[t["status"].isin(["accepted", "rejected"])]
        candidates = [{"when": r.when, "series": f"candidate {r.status}", "decision": r.status, "value": r.candidate_accuracy,
                       "version": r.candidate_version, "trigger": r.trigger, "macro_f1": r.candidate_macro_f1}
                      for r in decided.itertuples()]
        low = float(min(acc.min(), f1.min(), t["candidate_accuracy"].min()))
    if not markers.empty:
        for r in markers[markers["kind"].isin(["rollback", "fallback", "drift"])].itertuples():
            marks.append({"when": local(r.ts), "series": r.kind, "value": max(0.0, low - 0.02), "message": redact(r.message)})
    # The legend names only what the chart draws (no "fallback" entry on a store that never fell back).
    drawn = {row["series"] for row in serving + candidates + marks}
    colour = {"field": "series", "type": "nominal", "title": None,
              "scale": _vega.colour_scale([pair for pair in SERIES if pair[0] in drawn] or SERIES)}
    x = _vega.time_axis("when", [row["when"] for row in serving + candidates + marks])
    y = {"field": "value", "type": "quantitative", "title": None, "axis": {"format": ".0%"}, "scale": {"zero": False}}
    layers = [
        _vega.layer("serving", _vega.rows(serving), {"type": "line", "interpolate": "step-after", "strokeWidth": 2},
                    {"x": x, "y": y, "color": colour,
                     # Own fields for the dash and the shape: a channel on the colour's field with no legend
                     # would take the shared legend away.
                     "strokeDash": {"field": "dash", "type": "nominal", "legend": None,
                                    "scale": {"domain": ["accuracy", "macro-F1"], "range": [[1, 0], [2, 2]]}},
                     "tooltip": [{"field": "series"}, {"field": "when", "type": "temporal", "format": "%Y-%m-%d %H:%M"},
                                 {"field": "value", "format": ".1%"}]}),
        _vega.layer("candidates", _vega.rows(candidates), {"type": "point", "filled": True, "size": 70, "opacity": 1, "angle": 45},
                    {"x": x, "y": y, "color": colour,
                     "shape": {"field": "decision", "type": "nominal", "legend": None,
                               "scale": {"domain": ["accepted", "rejected"], "range": ["circle", "cross"]}},
                     "tooltip": [{"field": "version"}, {"field": "trigger"}, {"field": "value", "title": "accuracy", "format": ".1%"},
                                 {"field": "macro_f1", "title": "macro-F1", "format": ".1%"}]}),
        _vega.layer("markers", _vega.rows(marks), {"type": "point", "shape": "triangle-up", "filled": True, "size": 110},
                    {"x": x, "y": y, "color": colour, "tooltip": [{"field": "message"}]}),
    ]
    return _vega.chart(title, layers, height=360)
