"""The Models page's chart: every version's held-out metrics, coloured by status (no Streamlit, no store)."""

from __future__ import annotations

import pandas as pd

from pages import _vega
from pages._ui import COLORS
from store.vocabulary import ModelStatus

STATUS_ORDER = tuple(ModelStatus)  # champion first


def version_metrics(versions: pd.DataFrame, *,
                    title: str = "Accuracy (● filled) and macro-F1 (◇ hollow) of every version, when it was trained") -> dict:
    """One column per version (oldest left): accuracy as a dot, macro-F1 as a hollow diamond, coloured by status.
    One layer, ``metrics``: version, status, metric (accuracy or macro-F1), value, trigger, train_rows."""
    frame = versions.sort_values(["created_at", "version"])
    statuses = [s for s in STATUS_ORDER if s in set(frame["status"])] + sorted(set(frame["status"]) - set(STATUS_ORDER))
    values = []
    for r in frame.itertuples():
        for metric, v in (("accuracy", r.accuracy), ("macro-F1", r.macro_f1)):
            values.append({"version": r.version, "status": r.status, "filled_status": r.status, "metric": metric, "value": v,
                           "trigger": r.trigger,  # an adopted version has no training rows here (NULL)
                           "train_rows": None if pd.isna(r.train_rows) else int(r.train_rows)})
    return _vega.chart(title, [_vega.layer("metrics", _vega.rows(values), {"type": "point", "size": 80, "strokeWidth": 2}, {
        "x": {"field": "version", "type": "ordinal", "sort": list(frame["version"]), "title": None,
              "axis": {"labelAngle": -45}},
        "y": {"field": "value", "type": "quantitative", "title": None, "axis": {"format": ".0%"}, "scale": {"zero": False}},
        "color": {"field": "status", "type": "nominal", "title": "status",
                  "scale": _vega.colour_scale([(s, COLORS.get(s, COLORS["candidate"])) for s in statuses])},
        # The title says which shape is which: Vega-Lite drew this legend's labels without their symbols.
        "shape": {"field": "metric", "type": "nominal", "title": None, "legend": None,
                  "scale": {"domain": ["accuracy", "macro-F1"], "range": ["circle", "diamond"]}},
        "fill": {"condition": {"test": "datum.metric == 'accuracy'", "field": "filled_status", "type": "nominal",
                               "scale": _vega.colour_scale([(s, COLORS.get(s, COLORS["candidate"])) for s in statuses]),
                               "legend": None},
                 "value": "white"},
        "tooltip": [{"field": "version"}, {"field": "status"}, {"field": "metric"}, {"field": "value", "format": ".1%"},
                    {"field": "trigger"}, {"field": "train_rows", "title": "training rows", "format": ","}],
    })], height=320)
