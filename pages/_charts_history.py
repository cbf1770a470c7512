"""Figures and tables for the Retraining history page: data in, figure or styled table out (no Streamlit, no store)."""

from __future__ import annotations

from typing import Any

import pandas as pd
from pandas.io.formats.style import Styler

from pages._charts_performance import percent, points, shown_change
from pages import _vega
from pages._ui import COLORS, local
from store.views.funnel import REMOVED
from store.views.overview import without_decision_word

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
    candidate's metrics and their changes against the champion, and the gate's reason without the decision
    word the Decision column already shows; the decision in its colour. The duration is in the chosen
    retrain's line below the table: without it the reason gets a third of a 1440 px window."""
    shown = pd.DataFrame({
        "#": retrains["id"],
        "Started": [local(x) for x in retrains["started_at"]],
        "Trigger": retrains["trigger"],
        "Decision": retrains["status"],
        "Versions": [versions_words(a, b) for a, b in zip(retrains["champion_version"], retrains["candidate_version"])],
        "Accuracy": retrains["candidate_accuracy"],
        "Δ accuracy": shown_change(retrains["candidate_accuracy"], retrains["champion_accuracy"]),
        "Macro-F1": retrains["candidate_macro_f1"],
        "Δ macro-F1": shown_change(retrains["candidate_macro_f1"], retrains["champion_macro_f1"]),
        "Reason": [without_decision_word(r) if isinstance(r, str) else None for r in retrains["reason"]],
    })
    changes = ["Δ accuracy", "Δ macro-F1"]
    return (shown.style
            .format(percent, subset=["Accuracy", "Macro-F1"]).format(points, subset=changes)
            .format(lambda t: "–" if t is None or pd.isna(t) else f"{t:%Y-%m-%d %H:%M}", subset=["Started"])
            .map(_decision_colour, subset=["Decision"]))


def funnel(steps: pd.DataFrame, *, title: str) -> dict:
    """One retrain's data-quality funnel (``store.views.funnel.steps``): rows in, the rows left after each
    removing step (named by what it removed, with the count and its share of rows in), then the rows out.
    Centred bars with their words just right of each bar. Layers ``bars`` and ``labels`` (stage, rows, text)."""
    values = []
    for row in steps.itertuples():
        if row.kind == "removed":
            stage, rows, text = f"− {row.name}", row.left, f"{row.left:,} left (−{row.rows:,}, {row.share})"
        else:
            stage, rows, text = row.name, row.rows, f"{row.rows:,}" if row.kind == "in" else f"{row.rows:,} · {row.share}"
        colour = COLORS["active"] if row.kind == "in" else COLORS["candidate"]
        values.append({"stage": stage, "rows": int(rows), "lo": -rows / 2, "hi": rows / 2, "text": text,
                       "note": row.note, "colour": colour})
    values[-2]["colour"], values[-1]["colour"] = COLORS["accepted"], COLORS["running"]
    y = {"field": "stage", "type": "nominal", "sort": [v["stage"] for v in values], "title": None,
         "axis": {"labelLimit": 220, "labelOverlap": False}}
    widest = max([v["hi"] for v in values] + [1])
    x = {"field": "lo", "type": "quantitative", "axis": None, "scale": {"domain": [-widest, 2.2 * widest]}}
    return _vega.chart(title, [
        _vega.layer("bars", _vega.rows(values), {"type": "bar", "height": {"band": 0.8}},
                    {"x": x, "x2": {"field": "hi"}, "y": y, "color": {"field": "colour", "type": "nominal", "scale": None},
                     "tooltip": [{"field": "stage"}, {"field": "text", "title": "rows"}, {"field": "note"}]}),
        _vega.layer("labels", _vega.rows(values), {"type": "text", "align": "left", "dx": 4, "fontSize": 12},
                    {"x": {"field": "hi", "type": "quantitative"}, "y": y, "text": {"field": "text"}}),
    ], height=320)


def funnels_over_time(retrains: pd.DataFrame) -> dict:
    """Each retrain's input rows as a stacked bar: training rows, evaluation rows, and the rows each filter
    removed. One layer, ``parts``: retrain (#id), part, rows, trigger, started."""
    r = retrains.dropna(subset=["rows_in"]).sort_values(["started_at", "id"])
    parts = [("train_rows", "training rows", COLORS["accepted"]), ("eval_rows", "evaluation rows", COLORS["running"])]
    parts += [(key, f"− {name}", colour) for (key, name, _), colour in zip(REMOVED, REMOVED_COLOURS)]
    values = [{"retrain": f"#{row['id']}", "part": words, "order": k, "rows": row[key], "trigger": row["trigger"],
               "started": local(row["started_at"])}
              for _, row in r.iterrows() for k, (key, words, _) in enumerate(parts)]
    return _vega.chart("Rows in per retrain and where they went", [_vega.layer(
        "parts", _vega.rows(values), {"type": "bar"},
        {"x": {"field": "retrain", "type": "ordinal", "sort": [f"#{i}" for i in r["id"]], "title": "retrain",
               "axis": {"labelAngle": 0, "labelOverlap": True}},
         "y": {"field": "rows", "type": "quantitative", "aggregate": "sum", "title": "rows"},
         # Two columns: the chart is half the page wide, and a fourth column fell off its right edge.
         "color": {"field": "part", "type": "nominal", "title": None,
                   "scale": _vega.colour_scale([(w, c) for _, w, c in parts]), "legend": {"columns": 2}},
         "order": {"field": "order"},
         "tooltip": [{"field": "retrain"}, {"field": "trigger"}, {"field": "started", "type": "temporal", "format": "%Y-%m-%d %H:%M"},
                     {"field": "part"}, {"field": "rows", "format": ","}]})], height=300)


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


def gate_intervals(retrain_id: int, decision: dict[str, Any]) -> dict:
    """Both differences (candidate − champion, in points) with their intervals, beside zero and the
    −tolerance line. Layers ``intervals`` (metric, difference, low, high), ``zero`` and ``tolerance``."""
    paired = decision["paired"]
    pct = round(100 * paired["confidence"])
    values = [{"metric": name, "difference": 100 * paired[key]["difference"], "low": 100 * paired[key]["low"],
               "high": 100 * paired[key]["high"]} for key, name in METRIC_WORDS]
    ends = [v["low"] for v in values] + [v["high"] for v in values] + [0.0]
    if decision["tolerance"] is not None:
        ends.append(_line(decision["tolerance"]))
    pad = max(1.0, 0.25 * (max(ends) - min(ends)))
    x = {"field": "difference", "type": "quantitative", "title": "difference (percentage points)",
         "scale": {"domain": [min(ends) - pad, max(ends) + pad / 2]}}
    y = {"field": "metric", "type": "nominal", "title": None, "sort": [name for _, name in METRIC_WORDS]}
    colour = COLORS.get(decision["outcome"], COLORS["candidate"])
    layers = [
        _vega.layer("zero", [{"x": 0.0}], {"type": "rule", "color": "#94a3b8"}, {"x": {"field": "x", "type": "quantitative"}}),
        _vega.layer("intervals", _vega.rows(values), {"type": "rule", "strokeWidth": 2, "color": colour},
                    {"x": {**x, "field": "low"}, "x2": {"field": "high"}, "y": y}),
        _vega.layer("differences", _vega.rows(values), {"type": "point", "filled": True, "size": 120, "color": colour},
                    {"x": x, "y": y, "tooltip": [{"field": "metric"}, {"field": "difference", "format": "+.2f"},
                                                 {"field": "low", "title": f"{pct}% interval from", "format": "+.2f"},
                                                 {"field": "high", "title": "to", "format": "+.2f"}]}),
    ]
    if decision["tolerance"] is not None:
        line = _line(decision["tolerance"])
        layers.append(_vega.layer("tolerance", [{"x": line, "text": f"tolerance line ({line:+.1f} pts)"}],
                                  {"type": "rule", "color": COLORS["rejected"], "strokeDash": [5, 4], "strokeWidth": 2},
                                  {"x": {"field": "x", "type": "quantitative"}, "tooltip": [{"field": "text"}]}))
        layers.append(_vega.layer("tolerance_label", [{"x": line, "text": f"tolerance line ({line:+.1f} pts)"}],
                                  {"type": "text", "align": "left", "dx": 4, "dy": -6, "y": 0, "color": COLORS["rejected"]},
                                  {"x": {"field": "x", "type": "quantitative"}, "text": {"field": "text"}}))
    return _vega.chart(f"Candidate − champion, retrain #{retrain_id}", layers, height=210)


def _line(tolerance: float) -> float:
    """The tolerance line in points: -100 x tolerance (0.0, not -0.0, for a zero tolerance)."""
    return -100 * tolerance + 0.0


def _decision_colour(value: str) -> str:
    colour = COLORS.get(value)
    return f"color: {colour}; font-weight: bold" if colour else ""
