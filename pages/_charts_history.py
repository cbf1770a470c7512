"""Figures and tables for the Retraining history page: data in, figure or styled table out (no Streamlit, no store)."""

from __future__ import annotations

from typing import Any

import pandas as pd
import plotly.graph_objects as go
from pandas.io.formats.style import Styler

from pages._charts_performance import percent, points
from pages._ui import COLORS, local
from store.views.funnel import REMOVED

MARGIN = dict(l=10, r=10, t=40, b=10)
REMOVED_COLOURS = ("#fca5a5", "#fdba74", "#fcd34d", "#cbd5e1", "#a5b4fc")


def seconds(value: float | None) -> str:
    if value is None or pd.isna(value):
        return "–"
    return f"{value:.1f} s" if value < 90 else f"{value / 60:.1f} min"


def versions_words(champion: Any, candidate: Any) -> str:
    """"v0031 → v0032"; a first model: "– → v0001"; no candidate (failed early): "v0031 → –"."""
    def word(v: Any) -> str:
        return "–" if v is None or pd.isna(v) else str(v)
    return f"{word(champion)} → {word(candidate)}"


def retrain_table(retrains: pd.DataFrame) -> Styler:
    """One row per retrain, newest first: when (local time), trigger, decision, champion → candidate, the
    candidate's metrics and their changes against the champion, duration, reason; the decision in its colour.
    Ten columns, so the table fits a 1440 px window."""
    shown = pd.DataFrame({
        "#": retrains["id"],
        "Started": [local(x) for x in retrains["started_at"]],
        "Trigger": retrains["trigger"],
        "Decision": retrains["status"],
        "Versions": [versions_words(a, b) for a, b in zip(retrains["champion_version"], retrains["candidate_version"])],
        "Accuracy": retrains["candidate_accuracy"],
        "Accuracy change": retrains["accuracy_change"],
        "Macro-F1": retrains["candidate_macro_f1"],
        "Macro-F1 change": retrains["macro_f1_change"],
        "Duration": retrains["duration_s"],
        "Reason": retrains["reason"],
    })
    changes = ["Accuracy change", "Macro-F1 change"]
    return (shown.style
            .format(percent, subset=["Accuracy", "Macro-F1"]).format(points, subset=changes)
            .format(seconds, subset=["Duration"])
            .format(lambda t: "–" if t is None or pd.isna(t) else f"{t:%Y-%m-%d %H:%M}", subset=["Started"])
            .map(_decision_colour, subset=["Decision"]))


def funnel(steps: pd.DataFrame, *, title: str) -> go.Figure:
    """One retrain's data-quality funnel (``store.views.funnel.steps``): rows in, the rows left after each
    removing step (named by what it removed, with the count and its share of rows in), then the rows out."""
    labels, values, texts = [], [], []
    for row in steps.itertuples():
        if row.kind == "removed":
            labels.append(f"− {row.name}")
            values.append(row.left)
            texts.append(f"{row.left:,} left (−{row.rows:,}, {row.share})")
        else:
            labels.append(row.name)
            values.append(row.rows)
            texts.append(f"{row.rows:,}" if row.kind == "in" else f"{row.rows:,} · {row.share}")
    colours = [COLORS["active"] if k == "in" else COLORS["candidate"] for k in steps["kind"]]
    colours[-2:] = [COLORS["accepted"], COLORS["running"]]
    fig = go.Figure(go.Funnel(
        y=labels, x=values, text=texts, textinfo="text", textposition="auto", customdata=steps["note"],
        marker=dict(color=colours), connector=dict(line=dict(color="#e2e8f0")),
        hovertemplate="%{y}: %{text}<br>%{customdata}<extra></extra>",
    ))
    fig.update_layout(title=title, height=420, margin=MARGIN)
    return fig


def funnels_over_time(retrains: pd.DataFrame) -> go.Figure:
    """Each retrain's input rows as a stacked bar: training rows, evaluation rows, and the rows each filter removed."""
    r = retrains.dropna(subset=["rows_in"]).sort_values(["started_at", "id"])
    labels = [f"#{i}" for i in r["id"]]
    hover = [f"#{i} · {t} · {local(s):%Y-%m-%d %H:%M}" for i, t, s in zip(r["id"], r["trigger"], r["started_at"])]
    fig = go.Figure()
    parts = [("train_rows", "training rows", COLORS["accepted"]), ("eval_rows", "evaluation rows", COLORS["running"])]
    parts += [(key, f"− {name}", colour) for (key, name, _), colour in zip(REMOVED, REMOVED_COLOURS)]
    for key, words, colour in parts:
        fig.add_trace(go.Bar(x=labels, y=r[key], name=words, marker=dict(color=colour), customdata=hover,
                             hovertemplate="%{customdata}<br>" + words + ": %{y:,}<extra></extra>"))
    fig.update_layout(barmode="stack", title="Rows in per retrain and where they went", height=380, margin=MARGIN,
                      legend=dict(orientation="h", y=-0.2), xaxis=dict(title="retrain", type="category"),
                      yaxis=dict(title="rows"))
    return fig


# -- the gate's decision for one retrain (the dict of store.views.history.gate_decision) ----------------

NOT_RECORDED = "not recorded"
METRIC_WORDS = (("accuracy", "Accuracy"), ("macro_f1", "Macro-F1"))


def signed_points(value: float | None) -> str:
    """A difference of two shares in percentage points: 0.0042 -> '+0.4 pts'."""
    return NOT_RECORDED if value is None else f"{100 * value:+.1f} pts"


def interval_words(interval: dict[str, float] | None, confidence: float | None) -> str:
    """'95% CI -0.5 to +1.3' (the interval of a difference in points; short enough for a card)."""
    if not interval:
        return f"interval {NOT_RECORDED}"
    return f"{round(100 * (confidence or 0.95))}% CI {100 * interval['low']:+.1f} to {100 * interval['high']:+.1f}"


def p_value_words(p: float | None) -> str:
    if p is None:
        return NOT_RECORDED
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def gate_metrics(decision: dict[str, Any]) -> list[tuple[str, str, str | None, str | None]]:
    """The gate's figures as (label, value, second line, help) for five metric cards: outcome and
    mode, each difference (candidate minus champion, or minus the baseline for a first model) with
    its interval, McNemar's p-value, the candidate's ECE."""
    paired = decision["paired"]
    other = decision["compared_with"]
    mode = f"{decision['mode']} mode" if decision["mode"] else f"mode {NOT_RECORDED}"
    cards = [("Gate outcome", decision["outcome"], mode, decision["rule"])]
    for key, name in METRIC_WORDS:
        if other == "baseline":
            second = "no interval"
        else:
            second = interval_words(paired[key] if paired else None, paired["confidence"] if paired else None)
        cards.append((f"{name} vs {other}", signed_points(decision["deltas"].get(key)), second,
                      f"{name} of the candidate minus the {other}'s, on the same {decision['eval_rows'] or 0:,} "
                      "held-out, human-labelled rows, in percentage points"
                      + ("" if other == "baseline" else ", with its paired-bootstrap interval")))
    if other == "baseline":
        cards.append(("McNemar p-value", "no champion", None, None))
    else:
        cards.append(("McNemar p-value", p_value_words(paired["p_value"] if paired else None),
                      f"{paired['candidate_only']:,} vs {paired['champion_only']:,} discordant rows" if paired else None,
                      "Exact two-sided test on the rows only one of the two models got right "
                      "(candidate-only vs champion-only)"))
    ece = decision["candidate_ece"]
    cards.append(("Candidate ECE", NOT_RECORDED if ece is None else f"{ece:.3f}", None,
                  "Expected calibration error of the candidate's confidence on the evaluation rows (0 is perfect)"))
    return cards


def gate_note(decision: dict[str, Any]) -> str:
    """The tolerance line, the test and the resamples (or why they are missing), in one sentence or two."""
    paired, tolerance = decision["paired"], decision["tolerance"]
    if decision["compared_with"] == "baseline":
        if decision["champion"]:
            return (f"The champion {decision['champion']} could not be loaded, so the candidate had to beat the "
                    "majority-class baseline on both metrics; there is no paired comparison.")
        return ("First deployment: there was no champion, so the candidate had to beat the majority-class baseline "
                "on both metrics; there is no paired comparison.")
    if tolerance is None:
        return ("This decision was recorded before the gate stored its statistics: the mode, the tolerance line, "
                "the intervals and the p-value were not recorded.")
    line = f"{_line(tolerance):+.1f} pts"
    if decision["mode"] == "noninferiority":
        rule = f"the lower end of each interval must lie above the tolerance line at {line}"
    else:
        rule = f"each difference itself must lie above the tolerance line at {line} (the intervals inform, they do not decide)"
    text = f"Tolerance line: {rule}."
    if paired:
        text += (f" McNemar's exact test on the {paired['rows']:,} evaluation rows: {paired['candidate_only']:,} only the "
                 f"candidate got right, {paired['champion_only']:,} only the champion; intervals from "
                 f"{paired['resamples']:,} paired-bootstrap resamples (seed {paired['seed']}).")
        if decision["outcome"] == "inconclusive":
            more, thin = paired["more_rows_needed"], paired["too_little_evidence"]
            if more is not None:
                text += f" About {more:,} more labelled evaluation rows would likely settle it."
            if thin:
                text += f" Too little evidence: {thin}."
            if more is None and not thin:
                text += " No number of extra rows is likely to settle it: the difference sits on the tolerance line."
    return text


def gate_intervals(retrain_id: int, decision: dict[str, Any]) -> go.Figure:
    """Both differences (candidate − champion, in points) with their intervals, beside zero and the
    −tolerance line."""
    paired = decision["paired"]
    names = [name for _, name in METRIC_WORDS]
    diffs = [100 * paired[key]["difference"] for key, _ in METRIC_WORDS]
    lows = [100 * paired[key]["low"] for key, _ in METRIC_WORDS]
    highs = [100 * paired[key]["high"] for key, _ in METRIC_WORDS]
    pct = round(100 * paired["confidence"])
    fig = go.Figure(go.Scatter(
        x=diffs, y=names, mode="markers", name=f"difference and {pct}% interval",
        marker=dict(color=COLORS.get(decision["outcome"], COLORS["candidate"]), size=11),
        error_x=dict(type="data", symmetric=False, array=[h - d for h, d in zip(highs, diffs)],
                     arrayminus=[d - lo for d, lo in zip(diffs, lows)], thickness=2, width=8),
        customdata=list(zip(lows, highs)),
        hovertemplate="%{y}: %{x:+.2f} pts (" + f"{pct}" + "% interval %{customdata[0]:+.2f} to %{customdata[1]:+.2f})<extra></extra>",
    ))
    fig.add_vline(x=0, line=dict(color="#94a3b8", width=1))
    if decision["tolerance"] is not None:
        line = _line(decision["tolerance"])
        fig.add_vline(x=line, line=dict(color=COLORS["rejected"], dash="dash", width=2),
                      annotation_text=f"tolerance line ({line:+.1f} pts)", annotation_position="top left")
    # Room on both sides, so the line's label stays clear of the axis labels.
    ends = lows + highs + [0.0] + ([_line(decision["tolerance"])] if decision["tolerance"] is not None else [])
    pad = max(1.0, 0.25 * (max(ends) - min(ends)))
    fig.update_layout(title=f"Candidate − champion, retrain #{retrain_id}", height=240, margin=MARGIN,
                      showlegend=False, yaxis=dict(autorange="reversed"),
                      xaxis=dict(title="difference (percentage points)", zeroline=False,
                                 range=[min(ends) - pad, max(ends) + pad / 2]))
    return fig


def _line(tolerance: float) -> float:
    """The tolerance line in points: -100 x tolerance (0.0, not -0.0, for a zero tolerance)."""
    return -100 * tolerance + 0.0


def _decision_colour(value: str) -> str:
    colour = COLORS.get(value)
    return f"color: {colour}; font-weight: bold" if colour else ""
