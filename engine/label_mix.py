"""The label mix of the training set a retrain would build now, beside the labels of recent traffic.

Training-set assembly happens only in ``engine/``: this module reads the store through
``store.querylog`` and ``store.views.data`` and cleans with ``engine.dataset.build_training_set``,
the retrain's own rules; the Data page calls :func:`training_mix` and only draws.
"""

from __future__ import annotations

from datetime import datetime

import pandas as pd

from engine.dataset import build_training_set, normalize_label
from store import querylog
from store.db import Database
from store.views import data as views

# Up to this many candidate rows (human labels + pseudo labels) the label mix of the
# training set is computed exactly, by the retrain's own cleaning rules; above it, a proxy
# (see training_mix). Measured (2 cores): exact 0.16 s for 13.5k rows, 0.36 s for 25k, 1.4 s for
# 100k; the proxy is one SQL aggregate (0.04 s for 100k).
EXACT_MIX_LIMIT = 20_000


def known_labels(db: Database) -> list[str]:
    """Labels people have given (imports and feedback), normalised (``normalize_label``) and sorted."""
    return sorted({normalize_label(x) for x in querylog.known_labels(db)} - {None})


def training_mix(
    db: Database,
    *,
    since: datetime,
    min_confidence: float,
    max_text_length: int,
    eval_percent: int,
    use_pseudo_labels: bool,
    exact_limit: int = EXACT_MIX_LIMIT,
) -> tuple[pd.DataFrame, str]:
    """The label mix of the training set beside the predicted labels of traffic since ``since``.

    Returns (frame, method). The frame has one row per label: label, training (rows),
    training_share, traffic (queries), traffic_share; sorted by training share, largest first.
    ``method`` is ``"exact"`` when the training set was rebuilt with the retrain's own rules
    (``engine.dataset.build_training_set`` over ``store.querylog.training_rows``: what a retrain
    now would train on), or ``"proxy"`` when more than ``exact_limit`` candidate rows make that
    slow: then every human label plus every pseudo label at or above ``min_confidence`` counts
    (no de-duplication, conflicts or evaluation split).
    """
    traffic, proxy = views.mix_inputs(db, since=since, min_confidence=min_confidence,
                                      use_pseudo_labels=use_pseudo_labels, exact_limit=exact_limit)
    if proxy is None:
        method = "exact"
        rows = querylog.training_rows(db, include_pseudo=use_pseudo_labels)
        data = build_training_set(rows, known_labels=known_labels(db) or None, min_confidence=min_confidence,
                                  max_text_length=max_text_length, eval_percent=eval_percent,
                                  use_pseudo_labels=use_pseudo_labels)
        training = data.train["label"].value_counts().rename_axis("label").rename("n").reset_index()
    else:
        method, training = "proxy", proxy
    frame = pd.merge(
        training.rename(columns={"n": "training"}), traffic.rename(columns={"n": "traffic"}), on="label", how="outer"
    )
    for column in ("training", "traffic"):
        frame[column] = frame[column].fillna(0).astype(int)
        total = frame[column].sum()
        frame[f"{column}_share"] = frame[column] / total if total else 0.0
    frame = frame.sort_values(["training_share", "traffic_share", "label"], ascending=[False, False, True])
    return frame[["label", "training", "training_share", "traffic", "traffic_share"]].reset_index(drop=True), method
