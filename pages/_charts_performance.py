"""Figures and tables for the Performance page: data in, figure or styled table out (no Streamlit, no store)."""

from __future__ import annotations

from typing import Sequence

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots
from pandas.io.formats.style import Styler

from pages._ui import COLORS, local

LEGEND = dict(orientation="h", y=-0.12)
MARGIN = dict(l=10, r=10, t=40, b=10)
METRIC_NAMES = {"accuracy": "Accuracy", "macro_f1": "Macro-F1"}


def percent(value: float | None) -> str:
    return "–" if value is None or pd.isna(value) else f"{100 * value:.1f}%"


def points(value: float | None) -> str:
    return "–" if value is None or pd.isna(value) else f"{100 * value:+.1f} pts"


def evaluation_timeline(evaluations: pd.DataFrame) -> go.Figure:
    """Accuracy (top) and macro-F1 (bottom) of the champion and the candidate at every retrain,
    the candidate coloured by the decision, a thin line joining the two scored on the same set."""
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                        subplot_titles=[METRIC_NAMES["accuracy"], METRIC_NAMES["macro_f1"]])
    e = evaluations.copy()
    e["when"] = [local(x) for x in e["ts"]]
    hover = "%{customdata[0]} · %{customdata[1]} · retrain #%{customdata[2]} (%{customdata[3]}): %{y:.1%}<extra></extra>"
    for row, metric in enumerate(("accuracy", "macro_f1"), start=1):
        first = row == 1
        pairs = e.pivot_table(index=["retrain_id", "when"], columns="role", values=metric, aggfunc="first")
        if {"champion", "candidate"} <= set(pairs.columns):
            pairs = pairs.dropna(subset=["champion", "candidate"]).reset_index()
            xs, ys = [], []
            for _, p in pairs.iterrows():
                xs += [p["when"], p["when"], None]
                ys += [p["champion"], p["candidate"], None]
            fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", line=dict(color="#cbd5e1", width=1),
                                     hoverinfo="skip", showlegend=False), row=row, col=1)
        champions = e[e["role"] == "champion"]
        fig.add_trace(go.Scatter(
            x=champions["when"], y=champions[metric], mode="lines+markers", name="champion (serving)",
            line=dict(color=COLORS["active"], width=2), marker=dict(color=COLORS["active"], size=7),
            customdata=champions[["version", "role", "retrain_id", "trigger"]].to_numpy(), hovertemplate=hover,
            legendgroup="champion", showlegend=first,
        ), row=row, col=1)
        for status, symbol in (("accepted", "circle"), ("rejected", "x"), ("failed", "diamond")):
            part = e[(e["role"] == "candidate") & (e["status"] == status)]
            if part.empty:
                continue
            fig.add_trace(go.Scatter(
                x=part["when"], y=part[metric], mode="markers", name=f"candidate {status}",
                marker=dict(color=COLORS[status], symbol=symbol, size=10),
                customdata=part[["version", "role", "retrain_id", "trigger"]].to_numpy(), hovertemplate=hover,
                legendgroup=status, showlegend=first,
            ), row=row, col=1)
        fig.update_yaxes(tickformat=".0%", row=row, col=1)
    fig.update_layout(height=560, margin=MARGIN, legend=LEGEND, hovermode="closest")
    return fig


def live_accuracy(daily: pd.DataFrame, *, reference: float | None = None, reference_name: str = "",
                  reference_since=None) -> go.Figure:
    """Share of labelled queries answered right per day (line) over the number labelled (bars);
    ``reference``, if given, is drawn as a dashed line (the serving model's offline accuracy) over the days
    from ``reference_since`` (the day it was deployed; all days if None), named in the legend."""
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.add_trace(go.Bar(x=daily["day"], y=daily["labelled"], name="queries with feedback",
                         marker=dict(color="#e2e8f0"), hovertemplate="%{x}: %{y} with feedback<extra></extra>"),
                  secondary_y=True)
    fig.add_trace(go.Scatter(
        x=daily["day"], y=daily["accuracy"], name="live accuracy", mode="lines+markers",
        line=dict(color=COLORS["active"], width=2), customdata=daily[["correct", "labelled"]].to_numpy(),
        hovertemplate="%{x}: %{y:.1%} (%{customdata[0]} of %{customdata[1]} right)<extra></extra>",
    ), secondary_y=False)
    if reference is not None and not daily.empty:
        days = pd.to_datetime(daily["day"])
        start = max(days.min(), pd.Timestamp(reference_since)) if reference_since is not None else days.min()
        end = days.max()
        fig.add_trace(go.Scatter(x=[start, end], y=[reference, reference], mode="lines", name=reference_name,
                                 line=dict(color=COLORS["accepted"], dash="dash", width=2),
                                 hovertemplate=f"{reference_name}: {reference:.1%}<extra></extra>"),
                      secondary_y=False)
    fig.update_yaxes(tickformat=".0%", title_text="accuracy", secondary_y=False, rangemode="tozero")
    fig.update_yaxes(title_text="queries with feedback", secondary_y=True, showgrid=False, rangemode="tozero",
                     tickmode="auto", tickformat=",d")
    fig.update_layout(height=360, margin=MARGIN, legend=LEGEND, hovermode="x unified",
                      title="Live accuracy per day (from feedback)")
    return fig


DRIFT_ROWS = (("mean_confidence", "mean confidence", ".0%"), ("low_share", "low-confidence share", ".0%"),
              ("js_distance", "JS distance from the training mix", ".2f"))


def drift_days(daily: pd.DataFrame, warnings: pd.DataFrame, *, version: str, min_queries: int,
               today=None) -> go.Figure:
    """One version's live traffic per UTC day: mean confidence, share below the confidence threshold and
    the Jensen-Shannon distance of its predicted-label mix from its training set's (one panel each);
    days with fewer than ``min_queries`` queries, and ``today`` (a UTC day not over yet), hollow (not judged);
    the days the worker raised a
    drift warning marked with a red cross on the panel of each figure that moved."""
    fig = make_subplots(rows=3, cols=1, shared_xaxes=True, vertical_spacing=0.07,
                        subplot_titles=[title for _, title, _ in DRIFT_ROWS])
    judged = daily["queries"] >= min_queries
    if today is not None:
        judged &= pd.to_datetime(daily["day"]) < pd.Timestamp(today)
    for row, (metric, title, fmt) in enumerate(DRIFT_ROWS, start=1):
        fig.add_trace(go.Scatter(
            x=daily["day"], y=daily[metric], mode="lines+markers", name=title, showlegend=False,
            line=dict(color=COLORS["active"], width=2),
            marker=dict(color=[COLORS["active"] if j else "white" for j in judged], size=7,
                        line=dict(color=COLORS["active"], width=1)),
            customdata=daily[["queries"]].to_numpy(),
            hovertemplate="%{x|%Y-%m-%d}: %{y:" + fmt + "} (%{customdata[0]:,} queries)<extra></extra>",
        ), row=row, col=1)
        moved = warnings[warnings["metric"] == metric]
        fig.add_trace(go.Scatter(
            x=moved["day"], y=moved["value"], mode="markers", name="drift warning", legendgroup="warning",
            showlegend=row == 1, marker=dict(color=COLORS["drift"], symbol="x", size=13),
            text=moved["message"], hovertemplate="%{text}<extra></extra>",
        ), row=row, col=1)
        fig.update_yaxes(tickformat=fmt, range=[0, 1.05], row=row, col=1)  # all three figures live in 0..1
    # Whole days on the axis, even with one or two points (plotly would otherwise zoom to milliseconds).
    fig.update_xaxes(type="date", tickformat="%b %d", dtick=86_400_000 if len(daily) <= 14 else None)
    if len(daily) < 3 and len(daily):
        first, last = pd.to_datetime(daily["day"]).min(), pd.to_datetime(daily["day"]).max()
        fig.update_xaxes(range=[first - pd.Timedelta(days=2), last + pd.Timedelta(days=2)])
    fig.update_layout(title=f"Drift figures of {version} per day (UTC)", height=560, margin=MARGIN, legend=LEGEND,
                      hovermode="closest")
    return fig


def confusion_heatmap(labels: Sequence[str], confusion: Sequence[Sequence[int]], *, title: str) -> go.Figure:
    """Counts of true (rows) against predicted (columns) labels, coloured by the share of each true label."""
    counts = pd.DataFrame(confusion, index=list(labels), columns=list(labels))
    totals = counts.sum(axis=1).replace(0, 1)
    shares = counts.div(totals, axis=0)
    text = [[f"{v:,}" if v else "" for v in row] for row in counts.to_numpy().tolist()]
    fig = go.Figure(go.Heatmap(
        z=shares.to_numpy(), x=list(labels), y=list(labels), text=text, texttemplate="%{text}", textfont=dict(size=11),
        customdata=counts.to_numpy(), colorscale="Blues", zmin=0, zmax=1,
        showscale=False,
        hovertemplate="true %{y}, predicted %{x}: %{customdata} (%{z:.1%} of %{y})<extra></extra>",
    ))
    fig.update_layout(title=title, height=max(460, 26 * len(labels) + 260), margin=MARGIN,
                      xaxis=dict(title="predicted label", tickangle=-90, tickmode="linear", dtick=1, automargin=True),
                      yaxis=dict(title="true label", autorange="reversed", tickmode="linear", dtick=1))
    return fig


def class_changes(per_class: pd.DataFrame, *, a: str, b: str) -> go.Figure:
    """Change in F1 per class from ``a`` to ``b`` (green better, red worse)."""
    rows = per_class.dropna(subset=["f1_change"]).sort_values(["f1_change", "label"])
    shown = [round(100 * v, 1) for v in rows["f1_change"]]  # the colour follows the figure shown (+0.0 is grey)
    colours = [COLORS["accepted"] if v > 0 else COLORS["rejected"] if v < 0 else COLORS["candidate"] for v in shown]
    fig = go.Figure(go.Bar(
        x=100 * rows["f1_change"], y=rows["label"], orientation="h", marker=dict(color=colours),
        hovertemplate="%{y}: %{x:+.1f} pts<extra></extra>",
    ))
    fig.update_layout(title=f"Change in F1 per class, {b} against {a}", height=max(320, 22 * len(rows) + 120),
                      margin=MARGIN, xaxis=dict(tickformat="+.1f", ticksuffix=" pts", zeroline=True, nticks=7),
                      yaxis=dict(title=None))
    return fig


WEAK_F1 = "F1 in red: under 70%; in amber: under 85%."


def class_table(per_class: pd.DataFrame) -> Styler:
    """Per-class precision, recall and F1 (percent, one decimal) and support; weak F1 coloured (see WEAK_F1)."""
    shown = per_class.rename(columns={"label": "Label", "precision": "Precision", "recall": "Recall", "f1": "F1",
                                      "support": "Support"})
    return shown.style.format(percent, subset=["Precision", "Recall", "F1"]).map(_weak_colour, subset=["F1"])


def overall_table(overall: pd.DataFrame, *, a: str, b: str) -> Styler:
    shown = overall.assign(metric=overall["metric"].map(METRIC_NAMES)).rename(
        columns={"metric": "Metric", "basis": "Measured on", "a": a, "b": b, "change": "Change"})
    return shown.style.format(percent, subset=[a, b]).format(points, subset=["Change"]).map(
        _change_colour, subset=["Change"])


def comparison_table(per_class: pd.DataFrame, *, a: str, b: str) -> Styler:
    """Per class: F1 of both versions and its change (b - a), the changes of precision and recall, and the
    support in ``b``'s evaluation set; biggest losses first. Seven columns, so every header fits."""
    names = {"label": "Label", "f1_a": f"F1 {a}", "f1_b": f"F1 {b}", "f1_change": "F1 change",
             "precision_change": "Precision change", "recall_change": "Recall change", "support_b": f"Support {b}"}
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
