"""Paired statistics for the gate: McNemar's exact test and a seeded paired bootstrap.

Champion and candidate are scored on the same evaluation rows, so they are compared row
by row. McNemar's test looks only at the discordant rows (one model right, the other
wrong); the paired bootstrap resamples whole rows, keeping each row's two predictions
together, and gives a percentile interval for the difference in accuracy and in
macro-F1. Everything is numpy; macro-F1 per resample comes from confusion counts.

>>> mcnemar([True, True, True, False], [False, False, False, False]).p_value
0.25
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

CHUNK = 256  # resamples computed at once (bounds memory: CHUNK x rows weights)


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

    def interval(self, metric: str) -> Interval:
        return {"accuracy": self.accuracy, "macro_f1": self.macro_f1}[metric]

    def as_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "accuracy": self.accuracy.as_dict(), "macro_f1": self.macro_f1.as_dict(),
                "mcnemar": self.mcnemar.as_dict(), "resamples": self.resamples, "confidence": self.confidence,
                "seed": self.seed}


def _binom_cdf_half(k: int, n: int) -> tuple[float, float]:
    """(P(X <= k), P(X = k)) for X ~ Binomial(n, 1/2), exact in integers then rounded once."""
    total = 2 ** n
    pmf = math.comb(n, k)
    cdf = sum(math.comb(n, i) for i in range(k + 1))
    return cdf / total, pmf / total


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
    """Labels as integer indices (shared by the truth and every prediction), and the label list."""
    labels = sorted(set(y_true) | {p for pred in predictions for p in pred})
    index = {label: i for i, label in enumerate(labels)}
    t = np.fromiter((index[v] for v in y_true), dtype=np.int64, count=len(y_true))
    ps = [np.fromiter((index[v] for v in pred), dtype=np.int64, count=len(pred)) for pred in predictions]
    return t, ps, labels


def _macro_f1(weights: np.ndarray, true_onehot: np.ndarray, pred_onehot: np.ndarray, hit_onehot: np.ndarray) -> np.ndarray:
    """Macro-F1 for each row of ``weights`` (how often each evaluation row was drawn).

    Averages over the labels present in the resample, as ``score_predictions`` does.
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
    eye = np.eye(k)
    return eye[t], eye[p], eye[t] * (t == p)[:, None]


def resample_indices(rows: int, resamples: int, seed: int) -> np.ndarray:
    """The rows drawn for each resample (``resamples`` x ``rows``), as the bootstrap draws them."""
    return np.random.default_rng(seed).integers(0, rows, size=(resamples, rows))


def paired_bootstrap(y_true: Sequence[int], candidate: Sequence[int], champion: Sequence[int], *,
                     resamples: int = 1000, seed: int = 0, confidence: float = 0.95,
                     samples: bool = False) -> dict[str, Any]:
    """Percentile intervals for candidate-minus-champion accuracy and macro-F1.

    Inputs are integer label indices (see :func:`encode`). Rows are drawn with replacement,
    each draw keeping a row's truth and both predictions together. Returns
    ``{"accuracy": Interval, "macro_f1": Interval}`` (and the raw differences per resample
    under ``"samples"`` when asked).
    """
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
    correct_diff = (ka == kt).astype(float) - (kb == kt).astype(float)
    n_kinds = kinds.size
    indices = resample_indices(n, resamples, seed)
    acc = np.empty(resamples)
    f1 = np.empty(resamples)
    for start in range(0, resamples, CHUNK):
        block = kind_of[indices[start:start + CHUNK]]
        m = block.shape[0]
        offsets = (np.arange(m)[:, None] * n_kinds + block).ravel()
        weights = np.bincount(offsets, minlength=m * n_kinds).reshape(m, n_kinds).astype(float)
        acc[start:start + m] = weights @ correct_diff / n
        f1[start:start + m] = (_macro_f1(weights, true_oh, cand_oh, cand_hit)
                               - _macro_f1(weights, true_oh, champ_oh, champ_hit))
    full = np.bincount(kind_of, minlength=n_kinds).astype(float)[None, :]
    point_f1 = float((_macro_f1(full, true_oh, cand_oh, cand_hit) - _macro_f1(full, true_oh, champ_oh, champ_hit))[0])
    point_acc = float((full @ correct_diff)[0] / n)
    tail = round((1 - confidence) / 2, 12)  # 0.025, not 0.025000000000000022
    result: dict[str, Any] = {}
    for name, diffs, point in (("accuracy", acc, point_acc), ("macro_f1", f1, point_f1)):
        low, high = np.quantile(diffs, [tail, 1 - tail])
        result[name] = Interval(point, float(low), float(high))
    if samples:
        result["samples"] = {"accuracy": acc, "macro_f1": f1}
    return result


def compare(y_true: Sequence[Any], candidate: Sequence[Any], champion: Sequence[Any], *,
            resamples: int = 1000, seed: int = 0, confidence: float = 0.95) -> Paired:
    """Row-by-row comparison of two models' predictions (any hashable labels) on the same rows."""
    t, (a, b), _ = encode(list(y_true), list(candidate), list(champion))
    boot = paired_bootstrap(t, a, b, resamples=resamples, seed=seed, confidence=confidence)
    return Paired(rows=int(t.size), accuracy=boot["accuracy"], macro_f1=boot["macro_f1"],
                  mcnemar=mcnemar(a == t, b == t), resamples=resamples, confidence=confidence, seed=seed)


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
