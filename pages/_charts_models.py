"""The Models page's figure: every version's held-out metrics, coloured by status (no Streamlit, no store)."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from pages._ui import COLORS
from store.vocabulary import ModelStatus

STATUS_ORDER = tuple(ModelStatus)  # champion first


def version_metrics(versions: pd.DataFrame, *, title: str = "Accuracy and macro-F1 of every version, when it was trained") -> go.Figure:
    """One column per version (oldest left): accuracy as a dot, macro-F1 as a diamond, coloured by status."""
    fig = go.Figure()
    frame = versions.sort_values(["created_at", "version"])
    for status in STATUS_ORDER + tuple(sorted(set(frame["status"]) - set(STATUS_ORDER))):
        part = frame[frame["status"] == status]
        if part.empty:
            continue
        color = COLORS.get(status, COLORS["candidate"])
        custom = part[["trigger", "train_rows"]].fillna("–").to_numpy()
        fig.add_trace(go.Scatter(
            x=part["version"], y=part["accuracy"], mode="markers", name=f"{status}: accuracy", legendgroup=status,
            marker=dict(color=color, size=12, symbol="circle", line=dict(color="white", width=1)),
            customdata=custom,
            hovertemplate="%{x} (" + status + ", %{customdata[0]}): accuracy %{y:.1%}, "
                          "%{customdata[1]} training rows<extra></extra>",
        ))
        fig.add_trace(go.Scatter(
            x=part["version"], y=part["macro_f1"], mode="markers", name=f"{status}: macro-F1", legendgroup=status,
            marker=dict(color=color, size=9, symbol="diamond-open", line=dict(width=2)),
            hovertemplate="%{x} (" + status + "): macro-F1 %{y:.1%}<extra></extra>",
        ))
    fig.update_layout(
        title=title, margin=dict(l=10, r=10, t=40, b=10), height=320,
        legend=dict(orientation="h", y=-0.25), yaxis=dict(tickformat=".0%", title=None),
        xaxis=dict(type="category", categoryorder="array", categoryarray=list(frame["version"]), title=None),
    )
    return fig
