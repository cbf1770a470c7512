"""Paired statistics for the gate: McNemar's exact test and a seeded paired bootstrap.

Champion and candidate are scored on the same evaluation rows, so they are compared row
by row. McNemar's test looks only at the discordant rows (one model right, the other
wrong); the paired bootstrap resamples whole rows, keeping each row's two predictions
together, and gives a percentile interval for the difference in accuracy and in
macro-F1. Everything is numpy; macro-F1 per resample comes from confusion counts.

Both statistics depend on a resample only through how many rows of each *cell* it holds,
a cell being one (truth, candidate's label, champion's label) triple present in the rows.
Drawing ``rows`` rows with replacement puts a multinomial number of draws in each cell
(probabilities: the cells' shares of the rows), so the bootstrap draws those counts
directly (``draw="cells"``): the same distribution as drawing row indices
(``draw="rows"``, Efron's paired bootstrap as written), with a few hundred numbers per
resample instead of one per row (20,000 on the gate's evaluation set). The two give other
random draws for the same seed; tests/test_stats.py shows their intervals agree within
Monte-Carlo error. ``draw="auto"`` (the default) draws cells unless there are so many of
them (more than a tenth of the rows) that drawing rows is cheaper.

>>> mcnemar([True, True, True, False], [False, False, False, False]).p_value
0.25
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd

CHUNK = 256  # resamples computed at once (bounds memory: CHUNK x rows weights)
DRAWS = ("auto", "cells", "rows")
# draw="auto" draws per cell while cells x CELLS_PER_ROW <= rows: numpy's multinomial costs ~100 ns a cell
# per resample, an integer draw and its bincount ~25 ns a row (measured on 20,000 rows, 2026-11-30).
CELLS_PER_ROW = 10


@dataclass(frozen=True)
class McNemar:
    """Discordant pairs and two-sided p-values of McNemar's exact test."""

    candidate_only: int   # rows the candidate gets right and the champion wrong
    champion_only: int    # rows the champion gets right and the candidate wrong
    p_value: float        # exact: two-sided binomial test on the discordant pairs, p = 1/2
    mid_p_value: float    # the exact p-value minus the probability of the observed split

    def as_dict(self) -> dict[str, Any]:
        return {"candidate_only": self.candidate_only, "champion_only": self.champion_only,
                "p_value": self.p_value, "mid_p_value": self.mid_p_value}


@dataclass(frozen=True)
class Interval:
    """A difference (candidate minus champion) and its bootstrap interval."""

    difference: float
    low: float
    high: float

    def as_dict(self) -> dict[str, float]:
        return {"difference": self.difference, "low": self.low, "high": self.high}


@dataclass(frozen=True)
class Paired:
    """Everything the gate needs from a row-by-row comparison of two models."""

    rows: int
    accuracy: Interval
    macro_f1: Interval
    mcnemar: McNemar
    resamples: int
    confidence: float
    seed: int
    draw: str | None = None  # how the bootstrap drew its resamples: "cells" or "rows" (paired_bootstrap)

    def interval(self, metric: str) -> Interval:
        return {"accuracy": self.accuracy, "macro_f1": self.macro_f1}[metric]

    def as_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "accuracy": self.accuracy.as_dict(), "macro_f1": self.macro_f1.as_dict(),
                "mcnemar": self.mcnemar.as_dict(), "resamples": self.resamples, "confidence": self.confidence,
                "seed": self.seed, "draw": self.draw}


def _binom_cdf_half(k: int, n: int) -> tuple[float, float]:
    """(P(X <= k), P(X = k)) for X ~ Binomial(n, 1/2), exact in integers then rounded once.

    >>> _binom_cdf_half(1, 10) == (11 / 1024, 10 / 1024)
    True
    """
    total = 2 ** n
    term = cdf = 1  # C(n, 0); each next C(n, i) = C(n, i - 1) * (n - i + 1) / i, exactly
    for i in range(1, k + 1):
        term = term * (n - i + 1) // i
        cdf += term
    return cdf / total, term / total


def mcnemar_counts(candidate_only: int, champion_only: int) -> McNemar:
    """McNemar's exact test from the two discordant counts.

    >>> m = mcnemar_counts(1, 9)
    >>> round(m.p_value, 6), round(m.mid_p_value, 6)
    (0.021484, 0.011719)
    """
    if candidate_only < 0 or champion_only < 0:
        raise ValueError(f"discordant counts must be >= 0, got {candidate_only} and {champion_only}")
    n = candidate_only + champion_only
    if n == 0:
        return McNemar(0, 0, 1.0, 1.0)
    k = min(candidate_only, champion_only)
    cdf, pmf = _binom_cdf_half(k, n)
    exact = min(1.0, 2 * cdf)
    mid = min(1.0, 2 * cdf - pmf)
    return McNemar(candidate_only, champion_only, exact, mid)


def mcnemar(candidate_correct: Sequence[bool], champion_correct: Sequence[bool]) -> McNemar:
    """McNemar's exact test on per-row correctness of two models on the same rows."""
    a = np.asarray(candidate_correct, dtype=bool)
    b = np.asarray(champion_correct, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"both models must be scored on the same rows: {a.size} vs {b.size} rows")
    return mcnemar_counts(int(np.sum(a & ~b)), int(np.sum(~a & b)))


def encode(y_true: Sequence[Any], *predictions: Sequence[Any]) -> tuple[np.ndarray, list[np.ndarray], list[Any]]:
    """Labels as integer indices (int64, shared by the truth and every prediction), and the sorted label list.

    One hashing pass in C (``pandas.factorize``) instead of a dict lookup per row; the labels are
    ordered as ``sorted`` orders them.

    >>> t, (p,), labels = encode(["b", "a", "b"], ["a", "a", "c"])
    >>> t.tolist(), p.tolist(), labels
    ([1, 0, 1], [0, 0, 2], ['a', 'b', 'c'])
    """
    columns = [np.asarray(column if isinstance(column, np.ndarray) else list(column), dtype=object)
               for column in (y_true, *predictions)]
    codes, uniques = pd.factorize(np.concatenate(columns), sort=True, use_na_sentinel=False)
    t, *ps = np.split(codes.astype(np.int64, copy=False), np.cumsum([len(c) for c in columns])[:-1])
    return t, ps, list(uniques)


def _macro_f1(weights: np.ndarray, true_onehot: np.ndarray, pred_onehot: np.ndarray, hit_onehot: np.ndarray) -> np.ndarray:
    """Macro-F1 for each row of ``weights`` (how often each evaluation row, or cell, was drawn).

    Averages over the labels present in the resample, as ``score_predictions`` does. The counts are
    whole numbers, the same whether computed in int64 (the bootstrap) or float64 (benchmarks/gate_quality.py).
    """
    support = weights @ true_onehot
    predicted = weights @ pred_onehot
    tp = weights @ hit_onehot
    denominator = support + predicted
    with np.errstate(divide="ignore", invalid="ignore"):
        f1 = np.where(denominator > 0, 2 * tp / denominator, 0.0)  # 2PR/(P+R) == 2tp/(support+predicted)
    present = support > 0
    return (f1 * present).sum(axis=1) / np.maximum(present.sum(axis=1), 1)


def _onehots(t: np.ndarray, p: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    eye = np.eye(k, dtype=np.int64)  # whole numbers: numpy's own matmul, exact, no BLAS threads
    return eye[t], eye[p], eye[t] * (t == p)[:, None]


def resample_indices(rows: int, resamples: int, seed: int) -> np.ndarray:
    """The rows drawn for each resample (``resamples`` x ``rows``), as ``draw="rows"`` draws them."""
    return np.random.default_rng(seed).integers(0, rows, size=(resamples, rows))


def resample_cell_counts(cell_rows: Sequence[int], resamples: int, seed: int) -> np.ndarray:
    """How many rows of each cell each resample holds (``resamples`` x cells, int64, each row summing
    to ``sum(cell_rows)``), as ``draw="cells"`` draws them: a multinomial draw of ``sum(cell_rows)``
    rows over the cells, each cell's probability its share of the rows.

    >>> resample_cell_counts([3, 0, 1], 2, seed=0).sum(axis=1).tolist()
    [4, 4]
    """
    counts = np.asarray(cell_rows, dtype=np.int64)
    n = int(counts.sum())
    return np.random.default_rng(seed).multinomial(n, counts / n, size=resamples)


def choose_draw(cells: int, rows: int) -> str:
    """``draw="auto"``'s choice: "cells" while ``cells * CELLS_PER_ROW <= rows``, else "rows" (cheaper then).

    >>> choose_draw(300, 20_000), choose_draw(3, 4)
    ('cells', 'rows')
    """
    return "cells" if cells * CELLS_PER_ROW <= rows else "rows"


def paired_bootstrap(y_true: Sequence[int], candidate: Sequence[int], champion: Sequence[int], *,
                     resamples: int = 1000, seed: int = 0, confidence: float = 0.95,
                     samples: bool = False, draw: str = "auto") -> dict[str, Any]:
    """Percentile intervals for candidate-minus-champion accuracy and macro-F1.

    Inputs are integer label indices (see :func:`encode`). Rows are drawn with replacement,
    each draw keeping a row's truth and both predictions together: ``draw="rows"`` draws row
    indices (:func:`resample_indices`), ``draw="cells"`` draws how many rows of each
    (truth, candidate, champion) cell a resample holds (:func:`resample_cell_counts`; the same
    distribution, see the module's docstring), ``"auto"`` picks by :func:`choose_draw`. Returns
    ``{"accuracy": Interval, "macro_f1": Interval, "draw": "cells" or "rows"}`` (and the raw
    differences per resample under ``"samples"`` when asked). Raises ValueError on ragged or
    empty input, ``resamples`` < 1, a confidence outside (0, 1) or an unknown ``draw``.
    """
    if draw not in DRAWS:
        raise ValueError(f"unknown draw {draw!r}: use one of {', '.join(DRAWS)}")
    t = np.asarray(y_true, dtype=np.int64)
    a = np.asarray(candidate, dtype=np.int64)
    b = np.asarray(champion, dtype=np.int64)
    n = t.size
    if not (a.size == b.size == n):
        raise ValueError(f"truth and predictions must have the same rows: {n}, {a.size}, {b.size}")
    if n == 0:
        raise ValueError("the bootstrap needs at least one evaluation row")
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}")
    k = int(max(t.max(), a.max(), b.max())) + 1
    # Rows with the same (truth, candidate, champion) are interchangeable: count draws per such
    # kind of row (a few hundred kinds, not 20,000 rows) and the sums below are the same integers.
    kinds, kind_of = np.unique((t * k + a) * k + b, return_inverse=True)
    kt, ka, kb = kinds // (k * k), (kinds // k) % k, kinds % k
    true_oh, cand_oh, cand_hit = _onehots(kt, ka, k)
    _, champ_oh, champ_hit = _onehots(kt, kb, k)
    correct_diff = (ka == kt).astype(np.int64) - (kb == kt).astype(np.int64)
    n_kinds = kinds.size
    rows_per_kind = np.bincount(kind_of, minlength=n_kinds)
    if draw == "auto":
        draw = choose_draw(n_kinds, n)
    if draw == "cells":
        drawn = resample_cell_counts(rows_per_kind, resamples, seed)
    else:
        indices = resample_indices(n, resamples, seed)
    acc = np.empty(resamples)
    f1 = np.empty(resamples)
    for start in range(0, resamples, CHUNK):
        if draw == "cells":
            weights = drawn[start:start + CHUNK]
        else:
            block = kind_of[indices[start:start + CHUNK]]
            offsets = (np.arange(block.shape[0])[:, None] * n_kinds + block).ravel()
            weights = np.bincount(offsets, minlength=block.shape[0] * n_kinds).reshape(-1, n_kinds)
        m = weights.shape[0]
        acc[start:start + m] = weights @ correct_diff / n
        f1[start:start + m] = (_macro_f1(weights, true_oh, cand_oh, cand_hit)
                               - _macro_f1(weights, true_oh, champ_oh, champ_hit))
    full = rows_per_kind[None, :]
    point_f1 = float((_macro_f1(full, true_oh, cand_oh, cand_hit) - _macro_f1(full, true_oh, champ_oh, champ_hit))[0])
    point_acc = float((full @ correct_diff)[0] / n)
    tail = round((1 - confidence) / 2, 12)  # 0.025, not 0.025000000000000022
    result: dict[str, Any] = {"draw": draw}
    for name, diffs, point in (("accuracy", acc, point_acc), ("macro_f1", f1, point_f1)):
        low, high = np.quantile(diffs, [tail, 1 - tail])
        result[name] = Interval(point, float(low), float(high))
    if samples:
        result["samples"] = {"accuracy": acc, "macro_f1": f1}
    return result


def compare(y_true: Sequence[Any], candidate: Sequence[Any], champion: Sequence[Any], *,
            resamples: int = 1000, seed: int = 0, confidence: float = 0.95, draw: str = "auto") -> Paired:
    """Row-by-row comparison of two models' predictions (any hashable labels) on the same rows:
    McNemar's test and :func:`paired_bootstrap` (``draw`` as there)."""
    t, (a, b), _ = encode(list(y_true), list(candidate), list(champion))
    boot = paired_bootstrap(t, a, b, resamples=resamples, seed=seed, confidence=confidence, draw=draw)
    return Paired(rows=int(t.size), accuracy=boot["accuracy"], macro_f1=boot["macro_f1"],
                  mcnemar=mcnemar(a == t, b == t), resamples=resamples, confidence=confidence, seed=seed,
                  draw=boot["draw"])


def rows_to_settle(interval: Interval, rows: int, *, tolerance: float) -> int | None:
    """Roughly how many more evaluation rows would move the interval clear of ``-tolerance``.

    The half-width shrinks like 1/sqrt(rows); the answer assumes the difference stays where
    it is. ``None`` when the difference sits exactly on the line (no number of rows settles it).

    >>> rows_to_settle(Interval(0.0, -0.02, 0.02), 200, tolerance=0.01)
    600
    """
    half = (interval.high - interval.low) / 2
    gap = abs(interval.difference + tolerance)
    if gap < 1e-12:
        return None
    if half <= gap:
        return 0
    needed = math.ceil(rows * (half / gap) ** 2)
    return max(0, needed - rows)
