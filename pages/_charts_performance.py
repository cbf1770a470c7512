"""Figures and tables for the Performance page: data in, figure or styled table out (no Streamlit, no store)."""

from __future__ import annotations

from typing import Sequence

import pandas as pd
from pandas.io.formats.style import Styler

from pages import _vega
from pages._ui import COLORS, local

METRIC_NAMES = {"accuracy": "Accuracy", "macro_f1": "Macro-F1"}


def percent(value: float | None) -> str:
    return "–" if value is None or pd.isna(value) else f"{100 * value:.1f}%"


def points(value: float | None) -> str:
    return "–" if value is None or pd.isna(value) else f"{100 * value:+.1f} pts"


def shown_change(new: Sequence[float | None], old: Sequence[float | None]) -> list[float | None]:
    """``new - old`` per row as shares (None where either is missing), from the stored values: :func:`points`
    rounds it once, as the gate's reasons do (:func:`pages._ui.shown_points`)."""
    return [None if pd.isna(n) or pd.isna(o) else n - o for n, o in zip(new, old)]


def evaluation_timeline(evaluations: pd.DataFrame, *, metric: str = "accuracy") -> dict:
    """``metric`` (accuracy or macro_f1) of the champion and the candidate at every retrain, the candidate
    coloured by the decision, a thin line joining the two scored on the same set.

    Layers ``pairs`` (retrain_id, when, value), ``champion`` and ``candidates`` (when, version, role,
    retrain_id, trigger, series, value)."""
    e = evaluations.copy()
    e["when"] = [local(x) for x in e["ts"]]
    series = [("champion (serving)", COLORS["active"]), ("candidate accepted", COLORS["accepted"]),
              ("candidate rejected", COLORS["rejected"]), ("candidate failed", COLORS["failed"])]
    x = _vega.time_axis("when", e["when"])
    y = {"field": "value", "type": "quantitative", "title": None, "axis": {"format": ".0%"}, "scale": {"zero": False}}
    tooltip = [{"field": "version"}, {"field": "role"}, {"field": "retrain_id", "title": "retrain"}, {"field": "trigger"},
               {"field": "value", "format": ".1%"}]
    pairs = [{"retrain_id": rid, "when": part["when"].iloc[0], "value": part[metric].iloc[k]}
             for rid, part in e.groupby("retrain_id", sort=True)
             if set(part["role"]) >= {"champion", "candidate"} and part[metric].notna().all()
             for k in range(len(part))]
    champions = e[e["role"] == "champion"].assign(series="champion (serving)")
    candidates = e[(e["role"] == "candidate") & e["status"].isin(["accepted", "rejected", "failed"])]
    candidates = candidates.assign(series=[f"candidate {s}" for s in candidates["status"]], decision=candidates["status"])
    champions = champions.assign(decision="champion")
    columns = ["when", "version", "role", "retrain_id", "trigger", "series", "decision"]
    # The legend names only the series drawn (no "candidate failed" when no retrain failed).
    drawn = set(champions["series"]) | set(candidates["series"])
    colour = {"field": "series", "type": "nominal", "title": None,
              "scale": _vega.colour_scale([pair for pair in series if pair[0] in drawn] or series)}
    return _vega.chart(METRIC_NAMES[metric], [
        _vega.layer("pairs", _vega.rows(pairs), {"type": "line", "color": "#cbd5e1", "strokeWidth": 1},
                    {"x": x, "y": y, "detail": {"field": "retrain_id", "type": "nominal"}}),
        _vega.layer("champion", _vega.rows(champions.assign(value=champions[metric]), columns + ["value"]),
                    {"type": "line", "point": True, "strokeWidth": 2},
                    {"x": x, "y": y, "color": colour, "tooltip": tooltip}),
        _vega.layer("candidates", _vega.rows(candidates.assign(value=candidates[metric]), columns + ["value"]),
                    {"type": "point", "filled": True, "size": 80, "opacity": 1},
                    {"x": x, "y": y, "color": colour, "tooltip": tooltip,
                     "shape": {"field": "decision", "type": "nominal", "legend": None,  # own field: keeps the legend
                               "scale": {"domain": ["champion", "accepted", "rejected", "failed"],
                                         "range": ["circle", "circle", "cross", "diamond"]}}}),
    ], height=270)


def live_accuracy(daily: pd.DataFrame, *, reference: float | None = None, reference_name: str = "",
                  reference_since=None) -> dict:
    """Share of labelled queries answered right per day (line, left axis) over the number labelled (bars,
    right axis); ``reference``, if given, is drawn as a dashed line (the serving model's offline accuracy)
    over the days from ``reference_since`` (the day it was deployed; all days if None), named in the legend.
    Layers ``labelled`` (day, labelled), ``accuracy`` (day, accuracy, correct, labelled) and ``reference``."""
    x = _vega.time_axis("day", daily["day"], hours=False)
    colour = {"field": "series", "type": "nominal", "title": None, "scale": _vega.colour_scale(
        [("queries with feedback", "#cbd5e1"), ("live accuracy", COLORS["active"])]
        + ([(reference_name, COLORS["accepted"])] if reference is not None else []))}
    accuracy_axis = {"field": "value", "type": "quantitative", "title": "accuracy", "axis": {"format": ".0%"},
                     "scale": {"domain": [0, 1]}}
    lines = [_vega.layer("accuracy", _vega.rows(daily.assign(series="live accuracy", value=daily["accuracy"]),
                                                ["day", "accuracy", "correct", "labelled", "series", "value"]),
                         {"type": "line", "point": True, "strokeWidth": 2},
                         {"x": x, "y": accuracy_axis, "color": colour,
                          "tooltip": [{"field": "day", "type": "temporal", "format": "%Y-%m-%d"},
                                      {"field": "accuracy", "format": ".1%"}, {"field": "correct"}, {"field": "labelled"}]})]
    if reference is not None and not daily.empty:
        days = pd.to_datetime(daily["day"])
        start = max(days.min(), pd.Timestamp(reference_since)) if reference_since is not None else days.min()
        lines.append(_vega.layer("reference", _vega.rows([{"day": start, "value": reference, "series": reference_name},
                                                           {"day": days.max(), "value": reference, "series": reference_name}]),
                                 {"type": "line", "strokeDash": [6, 4], "strokeWidth": 2},
                                 {"x": x, "y": accuracy_axis, "color": colour,
                                  "tooltip": [{"field": "series"}, {"field": "value", "format": ".1%"}]}))
    bars = _vega.layer("labelled", _vega.rows(daily.assign(series="queries with feedback"), ["day", "labelled", "series"]),
                       {"type": "bar"}, {"x": x, "color": colour,
                                         "y": {"field": "labelled", "type": "quantitative", "title": "queries with feedback",
                                               "axis": {"orient": "right", "grid": False, "format": ",d", "tickMinStep": 1}},
                                         "tooltip": [{"field": "day", "type": "temporal", "format": "%Y-%m-%d"},
                                                     {"field": "labelled", "title": "with feedback"}]})
    spec = _vega.chart("Live accuracy per day (from feedback)", [bars, {"layer": lines}], height=300)
    spec["resolve"] = {"scale": {"y": "independent"}}
    return spec


DRIFT_ROWS = (("mean_confidence", "mean confidence", ".0%"), ("low_share", "low-confidence share", ".0%"),
              ("js_distance", "JS distance from the training mix", ".2f"))


def drift_days(daily: pd.DataFrame, warnings: pd.DataFrame, *, version: str, min_queries: int,
               metric: str = "mean_confidence", today=None) -> dict:
    """One figure (``metric``, one of DRIFT_ROWS) of one version's live traffic per UTC day: mean confidence,
    share below the confidence threshold, or the Jensen-Shannon distance of its predicted-label mix from its
    training set's. Days with fewer than ``min_queries`` queries, and ``today`` (a UTC day not over yet), are
    hollow (not judged); the days the worker raised a drift warning on this figure carry a cross.
    Layers ``days`` and ``points`` (day, value, queries, judged) and ``warnings`` (day, value, message)."""
    title, fmt = {m: (t, f) for m, t, f in DRIFT_ROWS}[metric]
    judged = daily["queries"] >= min_queries
    if today is not None:
        judged &= pd.to_datetime(daily["day"]) < pd.Timestamp(today)
    if len(daily) and len(daily) < 3:  # whole days on the axis, even with one or two points
        days = pd.to_datetime(daily["day"])
        first, last = days.min() - pd.Timedelta(days=3), days.max() + pd.Timedelta(days=1)  # no empty future days
        x = _vega.time_axis("day", [first, last], hours=False, scale={"domain": [_vega.value(first), _vega.value(last)]})
    else:
        x = _vega.time_axis("day", daily["day"], hours=False)
    y = {"field": "value", "type": "quantitative", "title": None, "axis": {"format": fmt}, "scale": {"domain": [0, 1.05]}}
    values = [{"day": d, "value": v, "queries": q, "judged": "judged" if j else "not judged"}
              for d, v, q, j in zip(daily["day"], daily[metric], daily["queries"], judged)]
    moved = warnings[warnings["metric"] == metric]
    return _vega.chart(f"{title} of {version} per day (UTC)", [
        _vega.layer("days", _vega.rows(values), {"type": "line", "color": COLORS["active"], "strokeWidth": 2},
                    {"x": x, "y": y}),
        _vega.layer("points", _vega.rows(values), {"type": "point", "size": 45, "strokeWidth": 1.5, "color": COLORS["active"],
                                                   "opacity": 1},
                    {"x": x, "y": y,
                     "fill": {"field": "judged", "type": "nominal", "title": None,
                              "scale": _vega.colour_scale([("judged", COLORS["active"]), ("not judged", "white")])},
                     "tooltip": [{"field": "day", "type": "temporal", "format": "%Y-%m-%d"},
                                 {"field": "value", "format": fmt}, {"field": "queries", "format": ","},
                                 {"field": "judged"}]}),
        _vega.layer("warnings", _vega.rows(moved, ["day", "value", "message"]),
                    {"type": "point", "shape": "cross", "angle": 45, "filled": True, "size": 160, "color": COLORS["drift"]},
                    {"x": x, "y": y, "tooltip": [{"field": "message"}]}),
    ], height=220)  # the whole chart's height in Streamlit (title, axis and legend included): 130 left a 25 px plot


def confusion_heatmap(labels: Sequence[str], confusion: Sequence[Sequence[int]], *, title: str) -> dict:
    """Counts of true (rows) against predicted (columns) labels, coloured by the share of each true label;
    column labels written upright so none overlaps. Layers ``cells`` and ``counts`` (true, predicted,
    count, share)."""
    counts = pd.DataFrame(confusion, index=list(labels), columns=list(labels))
    totals = counts.sum(axis=1).replace(0, 1)
    values = [{"true": t, "predicted": p, "count": int(counts.loc[t, p]), "share": float(counts.loc[t, p] / totals[t])}
              for t in labels for p in labels]
    order = list(labels)
    # No axis titles (the caption under the chart says rows are true, columns predicted): every label shows.
    x = {"field": "predicted", "type": "nominal", "sort": order, "title": None,
         "axis": {"labelAngle": -90, "labelLimit": 160, "labelOverlap": False}}
    y = {"field": "true", "type": "nominal", "sort": order, "title": None, "axis": {"labelLimit": 160, "labelOverlap": False}}
    return _vega.chart(title, [
        _vega.layer("cells", _vega.rows(values), {"type": "rect"},
                    {"x": x, "y": y, "color": {"field": "share", "type": "quantitative", "legend": None,
                                               "scale": {"scheme": "blues", "domain": [0, 1]}},
                     "tooltip": [{"field": "true"}, {"field": "predicted"}, {"field": "count"},
                                 {"field": "share", "format": ".1%"}]}),
        _vega.layer("counts", _vega.rows(v for v in values if v["count"]), {"type": "text", "fontSize": 10},
                    {"x": x, "y": y, "text": {"field": "count"},
                     "color": {"condition": {"test": "datum.share > 0.5", "value": "white"}, "value": "#111827"}}),
    ], height=24 * len(labels) + 190)  # the height includes the upright column labels


def class_changes(per_class: pd.DataFrame, *, a: str, b: str) -> dict:
    """Change in F1 per class from ``a`` to ``b``, in points (green better, red worse, grey when it shows as
    +0.0). One layer, ``bars``: label, change (points), direction."""
    rows = per_class.dropna(subset=["f1_change"]).sort_values(["f1_change", "label"])
    values = []
    for label, change in zip(rows["label"], rows["f1_change"]):
        shown = round(100 * change, 1)
        values.append({"label": label, "change": 100 * change,
                       "direction": "better" if shown > 0 else "worse" if shown < 0 else "no change"})
    return _vega.chart(f"Change in F1 per class, {b} against {a}", [_vega.layer(
        "bars", _vega.rows(values), {"type": "bar"},
        {"y": {"field": "label", "type": "nominal", "sort": list(rows["label"]), "title": None,
               "axis": {"labelOverlap": False, "labelLimit": 200}},
         "x": {"field": "change", "type": "quantitative", "title": "F1 change (points)",
               "axis": {"format": "+.1f", "tickCount": 7}},
         "color": {"field": "direction", "type": "nominal", "title": None, "scale": _vega.colour_scale(
             [("better", COLORS["accepted"]), ("worse", COLORS["rejected"]), ("no change", COLORS["candidate"])])},
         "tooltip": [{"field": "label"}, {"field": "change", "title": "F1 change (pts)", "format": "+.1f"}]})],
        height=max(220, 24 * len(rows) + 60))


WEAK_F1 = "F1 in red: under 70%; in amber: under 85%."


def class_table(per_class: pd.DataFrame) -> Styler:
    """Per-class precision, recall and F1 (percent, one decimal) and support; weak F1 coloured (see WEAK_F1)."""
    shown = per_class.rename(columns={"label": "Label", "precision": "Precision", "recall": "Recall", "f1": "F1",
                                      "support": "Support"})
    return shown.style.format(percent, subset=["Precision", "Recall", "F1"]).map(_weak_colour, subset=["F1"])


def overall_table(overall: pd.DataFrame, *, a: str, b: str) -> Styler:
    shown = overall.assign(metric=overall["metric"].map(METRIC_NAMES), change=shown_change(overall["b"], overall["a"])).rename(
        columns={"metric": "Metric", "basis": "Measured on", "a": a, "b": b, "change": "Change"})
    return shown.style.format(percent, subset=[a, b]).format(points, subset=["Change"]).map(
        _change_colour, subset=["Change"])


def comparison_table(per_class: pd.DataFrame, *, a: str, b: str) -> Styler:
    """Per class: F1 of both versions and its change (b - a), the changes of precision and recall, and the
    support in ``b``'s evaluation set; biggest losses first. Seven columns, so every header fits."""
    names = {"label": "Label", "f1_a": f"F1 {a}", "f1_b": f"F1 {b}", "f1_change": "F1 change",
             "precision_change": "Precision change", "recall_change": "Recall change", "support_b": f"Support {b}"}
    per_class = per_class.assign(**{f"{m}_change": shown_change(per_class[f"{m}_b"], per_class[f"{m}_a"])
                                    for m in ("f1", "precision", "recall")})
    shown = per_class[list(names)].rename(columns=names)
    changes = ["F1 change", "Precision change", "Recall change"]
    return (shown.style.format(percent, subset=[f"F1 {a}", f"F1 {b}"]).format(points, subset=changes)
            .map(_change_colour, subset=changes))


def _change_colour(value: float) -> str:
    """Green or red by the change as shown (one decimal of points): "+0.0 pts" is never coloured."""
    if value is None or pd.isna(value) or round(100 * value, 1) == 0:
        return ""
    return f"color: {COLORS['accepted'] if value > 0 else COLORS['rejected']}"


def _weak_colour(value: float) -> str:
    """Flag weak classes: F1 under 70% in red, under 85% in amber."""
    if value is None or pd.isna(value):
        return ""
    if value < 0.7:
        return f"color: {COLORS['rejected']}; font-weight: bold"
    return f"color: {COLORS['rollback']}" if value < 0.85 else ""
