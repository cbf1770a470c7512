"""Plotly figures for the dashboard: data in, figure out (no Streamlit, no store)."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from pages._ui import COLORS, local

LAYOUT = dict(margin=dict(l=10, r=10, t=40, b=10), hovermode="x unified", legend=dict(orientation="h", y=-0.15),
              yaxis=dict(tickformat=".0%"))


def metric_timeline(timeline: pd.DataFrame, markers: pd.DataFrame, *, title: str = "Accuracy and macro-F1 over time") -> go.Figure:
    """The serving model's metrics after each decision, every candidate as a marker by decision,
    and rollbacks, fallbacks and drift warnings as markers on the time axis."""
    fig = go.Figure()
    if not timeline.empty:
        t = timeline.copy()
        t["when"] = [local(x) for x in t["ts"]]
        accepted = t["status"] == "accepted"
        # What served after each decision: the candidate if accepted, else the champion.
        serving_acc = t["candidate_accuracy"].where(accepted, t["champion_accuracy"])
        serving_f1 = t["candidate_macro_f1"].where(accepted, t["champion_macro_f1"])
        fig.add_trace(go.Scatter(x=t["when"], y=serving_acc, name="accuracy (serving)", mode="lines",
                                 line=dict(color=COLORS["active"], width=2, shape="hv")))
        fig.add_trace(go.Scatter(x=t["when"], y=serving_f1, name="macro-F1 (serving)", mode="lines",
                                 line=dict(color=COLORS["active"], width=2, dash="dot", shape="hv")))
        for decision, symbol in (("accepted", "circle"), ("rejected", "x")):
            part = t[t["status"] == decision]
            if part.empty:
                continue
            fig.add_trace(go.Scatter(
                x=part["when"], y=part["candidate_accuracy"], mode="markers", name=f"candidate {decision}",
                marker=dict(color=COLORS[decision], symbol=symbol, size=9),
                customdata=part[["candidate_version", "trigger", "candidate_macro_f1"]].to_numpy(),
                hovertemplate="%{customdata[0]} (%{customdata[1]}): accuracy %{y:.1%}, macro-F1 %{customdata[2]:.1%}<extra></extra>",
            ))
        low = float(min(serving_acc.min(), serving_f1.min(), t["candidate_accuracy"].min()))
    else:
        low = 0.0
    if not markers.empty:
        m = markers.copy()
        m["when"] = [local(x) for x in m["ts"]]
        for kind in ("rollback", "fallback", "drift"):
            part = m[m["kind"] == kind]
            if part.empty:
                continue
            fig.add_trace(go.Scatter(
                x=part["when"], y=[max(0.0, low - 0.02)] * len(part), mode="markers", name=kind,
                marker=dict(color=COLORS[kind], symbol="triangle-up", size=12),
                text=part["message"], hovertemplate="%{text}<extra></extra>",
            ))
    fig.update_layout(title=title, **LAYOUT)
    return fig
