"""Figures and tables for the Retraining history page: data in, figure or styled table out (no Streamlit, no store)."""

from __future__ import annotations

from typing import Any

import pandas as pd
import plotly.graph_objects as go
from pandas.io.formats.style import Styler

from pages._charts_performance import percent, points
from pages._ui import COLORS, local

MARGIN = dict(l=10, r=10, t=40, b=10)
# Funnel steps in order: the column, what it removes (short), the stage left after it, a longer note.
STEPS = (
    ("malformed", "malformed", "well-formed", "empty, too long, or an unknown label"),
    ("low_confidence", "low confidence", "confident enough", "the model's own answers below the confidence threshold"),
    ("conflicts", "conflicts", "no conflict", "rows whose label lost to another label for the same text"),
    ("duplicates", "duplicates", "unique texts", "repeats of a text already kept"),
    ("reserved_for_eval", "held back, unlabelled", "usable", "texts in the evaluation share that no person labelled"),
)
REMOVED_COLOURS = ("#fca5a5", "#fdba74", "#fcd34d", "#cbd5e1", "#a5b4fc")


def seconds(value: float | None) -> str:
    if value is None or pd.isna(value):
        return "–"
    return f"{value:.1f} s" if value < 90 else f"{value / 60:.1f} min"


def retrain_table(retrains: pd.DataFrame) -> Styler:
    """One row per retrain, newest first: when (local time), trigger, decision, reason, both models' metrics
    and the changes, duration; the decision cell in its colour."""
    shown = pd.DataFrame({
        "#": retrains["id"],
        "Started": [local(x) for x in retrains["started_at"]],
        "Trigger": retrains["trigger"],
        "Decision": retrains["status"],
        "Champion": retrains["champion_version"],
        "Candidate": retrains["candidate_version"],
        "Accuracy before": retrains["champion_accuracy"],
        "Accuracy after": retrains["candidate_accuracy"],
        "Accuracy change": retrains["accuracy_change"],
        "Macro-F1 before": retrains["champion_macro_f1"],
        "Macro-F1 after": retrains["candidate_macro_f1"],
        "Macro-F1 change": retrains["macro_f1_change"],
        "Duration": retrains["duration_s"],
        "Reason": retrains["reason"],
    })
    levels = ["Accuracy before", "Accuracy after", "Macro-F1 before", "Macro-F1 after"]
    changes = ["Accuracy change", "Macro-F1 change"]
    return (shown.style
            .format(percent, subset=levels).format(points, subset=changes).format(seconds, subset=["Duration"])
            .format(lambda t: "–" if t is None or pd.isna(t) else f"{t:%Y-%m-%d %H:%M}", subset=["Started"])
            .format(lambda v: "–" if v is None or pd.isna(v) else v, subset=["Champion", "Candidate"])
            .map(_decision_colour, subset=["Decision"]))


def funnel(retrain_id: int, counts: dict[str, Any]) -> go.Figure:
    """One retrain's data-quality funnel: rows in, what remains after each filter, and the rows out
    (training set and evaluation set)."""
    remaining = counts["rows_in"]
    stages, values, notes = ["rows in"], [remaining], [""]
    for key, short, stage, note in STEPS:
        remaining -= counts[key] or 0
        stages.append(f"{stage} (−{counts[key] or 0:,})")
        values.append(remaining)
        notes.append(f"−{counts[key] or 0:,} {short}: {note}")
    stages += ["training rows", "evaluation rows"]
    values += [counts["train_rows"], counts["eval_rows"]]
    notes += ["rows the candidate was trained on", "human-labelled rows held out to judge it"]
    colours = [COLORS["active"]] + [COLORS["candidate"]] * len(STEPS) + [COLORS["accepted"], COLORS["running"]]
    fig = go.Figure(go.Funnel(
        y=stages, x=values, customdata=notes, texttemplate="%{value:,} · %{percentInitial:.0%}",
        marker=dict(color=colours), connector=dict(line=dict(color="#e2e8f0")),
        hovertemplate="%{y}: %{x:,}<br>%{customdata}<extra></extra>",
    ))
    fig.update_layout(title=f"Data-quality funnel of retrain #{retrain_id}", height=420, margin=MARGIN)
    return fig


def funnels_over_time(retrains: pd.DataFrame) -> go.Figure:
    """Each retrain's input rows as a stacked bar: training rows, evaluation rows, and the rows each filter removed."""
    r = retrains.dropna(subset=["rows_in"]).sort_values(["started_at", "id"])
    labels = [f"#{i}" for i in r["id"]]
    hover = [f"#{i} · {t} · {local(s):%Y-%m-%d %H:%M}" for i, t, s in zip(r["id"], r["trigger"], r["started_at"])]
    fig = go.Figure()
    parts = [("train_rows", "training rows", COLORS["accepted"]), ("eval_rows", "evaluation rows", COLORS["running"])]
    parts += [(step[0], step[1], colour) for step, colour in zip(STEPS, REMOVED_COLOURS)]
    for key, words, colour in parts:
        fig.add_trace(go.Bar(x=labels, y=r[key], name=words, marker=dict(color=colour), customdata=hover,
                             hovertemplate="%{customdata}<br>" + words + ": %{y:,}<extra></extra>"))
    fig.update_layout(barmode="stack", title="Rows in per retrain and where they went", height=380, margin=MARGIN,
                      legend=dict(orientation="h", y=-0.2), xaxis=dict(title="retrain", type="category"),
                      yaxis=dict(title="rows"))
    return fig


def _decision_colour(value: str) -> str:
    colour = COLORS.get(value)
    return f"color: {colour}; font-weight: bold" if colour else ""
