"""One retrain's data-quality funnel, named and counted once for every page that shows it.

A retrain row holds its counts (``engine.dataset.Funnel``, stored in the ``retrains`` table):
``rows_in``, then the rows each step removed, then ``train_rows`` and ``eval_rows``. They add
up: rows in = every removed count + training rows + evaluation rows. The Data page and the
Retraining history page both show them through :func:`steps`, so each step has one name and
each share one value (percent of rows in, one decimal).
"""

from __future__ import annotations

from typing import Any, Mapping

import pandas as pd

# The retrain columns in funnel order.
COLUMNS = ("rows_in", "malformed", "low_confidence", "conflicts", "duplicates", "reserved_for_eval", "train_rows",
           "eval_rows")
# Each removing step: its column, its one name, what it removes.
REMOVED = (
    ("malformed", "malformed", "empty, too long, or an unknown label"),
    ("low_confidence", "low confidence", "the model's own answers below the confidence threshold"),
    ("conflicts", "conflicting label", "rows whose label lost to another label for the same text"),
    ("duplicates", "duplicate", "repeats of a text already kept"),
    ("reserved_for_eval", "held out, no human label",
     "texts in the evaluation share that no person labelled (the evaluation set holds human labels only)"),
)
# A removing step shown only when it removed something: the training cap (setting max_train_rows).
CAPPED = ("over_training_cap", "over the training cap",
          "training texts beyond the setting max_train_rows (kept: human-labelled first, then the newest)")
KEPT = (
    ("train_rows", "training rows", "rows the candidate was trained on"),
    ("eval_rows", "evaluation rows", "human-labelled rows held out to judge it"),
)


def share(rows: int | None, rows_in: int | None) -> str:
    """A count as the percent of rows in that the funnel shows everywhere: one decimal.

    >>> share(550, 33_633), share(0, 0)
    ('1.6%', '–')
    """
    if not rows_in or rows is None:
        return "–"
    return f"{100 * rows / rows_in:.1f}%"


def steps(counts: Mapping[str, Any]) -> pd.DataFrame:
    """The funnel of one retrain, one row per step in order: ``step`` (column), ``name``, ``kind``
    (``in``, ``removed`` or ``kept``; the training cap's step only when ``counts`` holds a
    non-zero ``over_training_cap``), ``rows``, ``share`` (text, percent of rows in), ``left`` (rows
    still in the set after a removing step; the row count itself for the others) and ``note``.

    >>> counts = dict(zip(COLUMNS, (100, 1, 2, 3, 4, 5, 80, 5)))
    >>> steps(counts)[["name", "rows", "share", "left"]].values.tolist()[-3:]
    [['held out, no human label', 5, '5.0%', 85], ['training rows', 80, '80.0%', 80], ['evaluation rows', 5, '5.0%', 5]]
    """
    rows_in = int(counts["rows_in"] or 0)
    table = [("rows_in", "rows in", "in", rows_in, rows_in, "every labelled and pseudo-labelled row read")]
    left = rows_in
    for key, name, note in REMOVED:
        n = int(counts[key] or 0)
        left -= n
        table.append((key, name, "removed", n, left, note))
    capped = int(counts.get(CAPPED[0]) or 0)
    if capped:
        left -= capped
        table.append((CAPPED[0], CAPPED[1], "removed", capped, left, CAPPED[2]))
    table += [(key, name, "kept", int(counts[key] or 0), int(counts[key] or 0), note) for key, name, note in KEPT]
    frame = pd.DataFrame(table, columns=["step", "name", "kind", "rows", "left", "note"])
    frame["share"] = [share(n, rows_in) for n in frame["rows"]]
    return frame[["step", "name", "kind", "rows", "share", "left", "note"]]
