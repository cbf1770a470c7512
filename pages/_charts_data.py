"""Plotly figures for the Data and Playground pages: data in, figure out (no Streamlit calls, no store)."""

from __future__ import annotations

from typing import Sequence

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

from pages._ui import COLORS

LOW = "#f97316"     # below min_confidence
OK = COLORS["active"]
TRAINING = "#0f766e"
TRAFFIC = "#a855f7"
BASE = dict(margin=dict(l=10, r=10, t=40, b=10), legend=dict(orientation="h", y=-0.2))
PALETTE = px.colors.qualitative.Dark24 + px.colors.qualitative.Light24


def label_colors(labels: Sequence[str]) -> dict[str, str]:
    """One stable colour per label (sorted names get palette colours in order)."""
    return {label: PALETTE[i % len(PALETTE)] for i, label in enumerate(sorted(set(labels)))}


def volume_by_label(frame: pd.DataFrame) -> go.Figure:
    """Queries per day, stacked by predicted label (frame: day, label, queries)."""
    fig = go.Figure()
    colors = label_colors(frame["label"])
    for label, part in frame.groupby("label", sort=True):
        fig.add_trace(go.Bar(x=part["day"], y=part["queries"], name=label, marker_color=colors[label],
                             hovertemplate=f"{label}: %{{y:,}}<extra></extra>"))
    # Tall enough for one legend line per label (up to about 24) without a scrolling legend.
    height = max(450, 40 + 21 * frame["label"].nunique())
    fig.update_layout(title="Queries per day by predicted label", barmode="stack", hovermode="x unified", height=height,
                      yaxis=dict(title="queries"),
                      **{**BASE, "legend": dict(orientation="v", traceorder="normal", font=dict(size=11), itemsizing="constant")})
    return fig


def confidence_histogram(frame: pd.DataFrame, *, min_confidence: float) -> go.Figure:
    """Queries per confidence bin, bins below ``min_confidence`` in the warning colour."""
    low = frame["bin_start"] < min_confidence
    fig = go.Figure(go.Bar(
        x=(frame["bin_start"] + frame["bin_end"]) / 2, y=frame["queries"], width=frame["bin_end"] - frame["bin_start"],
        marker_color=[LOW if x else OK for x in low], marker_line=dict(color="white", width=1),
        customdata=frame[["bin_start", "bin_end"]].to_numpy(),
        hovertemplate="confidence %{customdata[0]:.2f}–%{customdata[1]:.2f}: %{y:,} queries<extra></extra>",
    ))
    fig.add_vline(x=min_confidence, line=dict(color=LOW, dash="dash"),
                  annotation_text=f"min confidence {min_confidence:g}", annotation_position="top left")
    fig.update_layout(title="Confidence of predictions", xaxis=dict(title="confidence", range=[0, 1]),
                      yaxis=dict(title="queries"), showlegend=False, bargap=0, **BASE)
    return fig


def low_confidence_share(frame: pd.DataFrame, *, min_confidence: float) -> go.Figure:
    """Share of each day's predictions below ``min_confidence`` (frame: day, queries, low_confidence, share)."""
    fig = go.Figure(go.Scatter(
        x=frame["day"], y=frame["share"], mode="lines+markers", line=dict(color=LOW, width=2),
        customdata=frame[["low_confidence", "queries"]].to_numpy(),
        hovertemplate="%{x}: %{y:.1%} (%{customdata[0]:,} of %{customdata[1]:,})<extra></extra>",
    ))
    fig.update_layout(title=f"Share of predictions below {min_confidence:g} per day",
                      yaxis=dict(tickformat=".0%", rangemode="tozero", title="share"), showlegend=False, **BASE)
    return fig


def label_mix(frame: pd.DataFrame, *, traffic_days: int) -> go.Figure:
    """Each label's share of the training set beside its share of recent traffic."""
    fig = go.Figure([
        go.Bar(x=frame["label"], y=frame["training_share"], name="training set", marker_color=TRAINING,
               customdata=frame["training"], hovertemplate="%{x}: %{y:.1%} (%{customdata:,} rows)<extra>training</extra>"),
        go.Bar(x=frame["label"], y=frame["traffic_share"], name=f"traffic, last {traffic_days} days", marker_color=TRAFFIC,
               customdata=frame["traffic"], hovertemplate="%{x}: %{y:.1%} (%{customdata:,} queries)<extra>traffic</extra>"),
    ])
    fig.update_layout(title="Label mix: training set against recent traffic", barmode="group", height=480,
                      yaxis=dict(tickformat=".0%", title="share"), xaxis=dict(tickangle=-45, automargin=True),
                      **{**BASE, "margin": dict(l=10, r=10, t=60, b=10),
                         "legend": dict(orientation="h", x=1, xanchor="right", y=1.02, yanchor="bottom")})
    return fig


def top_labels(top: Sequence[tuple[str, float]]) -> go.Figure:
    """The model's best labels with their probabilities, best on top."""
    labels = [label for label, _ in top][::-1]
    values = [p for _, p in top][::-1]
    fig = go.Figure(go.Bar(x=values, y=labels, orientation="h", marker_color=OK, text=[f"{v:.1%}" for v in values],
                           # Inside a wide bar, just outside a narrow one; never turned on its side.
                           textposition="auto", insidetextanchor="end", textangle=0, cliponaxis=False,
                           hovertemplate="%{y}: %{x:.1%}<extra></extra>"))
    fig.update_layout(title="Top labels", xaxis=dict(tickformat=".0%", range=[0, 1]), height=230, showlegend=False,
                      **{**BASE, "margin": dict(l=10, r=10, t=40, b=10)})
    return fig
