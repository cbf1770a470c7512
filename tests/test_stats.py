"""Tests for engine.stats: McNemar's exact test and mid-p on hand-checked counts (and against
scipy), the paired bootstrap checked resample by resample against score_predictions and
scikit-learn (both ways of drawing: row indices and counts per cell), the two ways' intervals
against each other within Monte-Carlo error, the interval against the analytic standard error,
and rows_to_settle."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import binom, binomtest, ks_2samp, norm
from sklearn.metrics import f1_score

from engine.evaluation import score_predictions
from engine.stats import (CELLS_PER_ROW, Interval, choose_draw, compare, encode, mcnemar, mcnemar_counts,
                          paired_bootstrap, resample_cell_counts, resample_indices, rows_to_settle)

# --- McNemar ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("candidate_only", "champion_only", "p_value", "mid_p_value"),
    [
        (0, 0, 1.0, 1.0),                    # no discordant pair: no evidence either way
        (1, 9, 22 / 1024, 12 / 1024),        # 2 * (1 + 10) / 2^10; mid-p removes P(X=1) = 10/1024
        (9, 1, 22 / 1024, 12 / 1024),        # symmetric in the two models
        (0, 5, 2 / 32, 1 / 32),              # 2 * (1/32); mid-p 2/32 - 1/32
        (3, 7, 352 / 1024, 232 / 1024),      # 2 * (1 + 10 + 45 + 120) / 1024; minus 120/1024
        (5, 5, 1.0, 1.0),                    # an even split: capped at 1
        (0, 1, 1.0, 0.5),                    # a single discordant pair: 2 * 1/2 capped; mid-p 1 - 1/2
    ],
    ids=["none", "1-9", "9-1", "0-5", "3-7", "even", "single"],
)
def test_mcnemar_exact_and_mid_p_on_hand_checked_counts(candidate_only, champion_only, p_value, mid_p_value):
    m = mcnemar_counts(candidate_only, champion_only)
    assert (m.candidate_only, m.champion_only) == (candidate_only, champion_only)
    assert m.p_value == p_value
    assert m.mid_p_value == mid_p_value


@pytest.mark.parametrize(("b", "c"), [(1, 9), (12, 30), (40, 60), (300, 350), (17, 17), (0, 25), (500, 430)],
                         ids=["1-9", "12-30", "40-60", "300-350", "even", "0-25", "500-430"])
def test_mcnemar_agrees_with_scipy(b, c):
    m = mcnemar_counts(b, c)
    assert m.p_value == pytest.approx(binomtest(b, b + c, 0.5).pvalue, rel=1e-9, abs=1e-15)
    k, n = min(b, c), b + c
    assert m.mid_p_value == pytest.approx(min(1.0, 2 * binom.cdf(k, n, 0.5) - binom.pmf(k, n, 0.5)), rel=1e-9, abs=1e-15)


def test_mcnemar_counts_discordant_rows_only():
    candidate = [True, True, True, False, False, True]
    champion = [True, False, False, False, True, True]
    m = mcnemar(candidate, champion)
    assert (m.candidate_only, m.champion_only) == (2, 1)
    assert m.p_value == 1.0  # 2 * P(X <= 1 | n=3) = 2 * 4/8


def test_mcnemar_refuses_rows_that_do_not_pair():
    with pytest.raises(ValueError, match="same rows: 2 vs 3 rows"):
        mcnemar([True, False], [True, True, False])
    with pytest.raises(ValueError, match="discordant counts must be >= 0, got -1 and 2"):
        mcnemar_counts(-1, 2)


# --- the paired bootstrap -----------------------------------------------------------------------------


def test_point_differences_on_a_hand_checked_case():
    # candidate perfect; champion gets one "a" wrong: accuracy 1 vs 3/4; macro-F1 1 vs (2/3 + 4/5) / 2
    y, cand, champ = ["a", "a", "b", "b"], ["a", "a", "b", "b"], ["a", "b", "b", "b"]
    p = compare(y, cand, champ, resamples=200, seed=1)
    assert p.rows == 4
    assert p.accuracy.difference == 0.25
    assert p.macro_f1.difference == pytest.approx(1 - (2 / 3 + 4 / 5) / 2, abs=1e-15)
    assert (p.mcnemar.candidate_only, p.mcnemar.champion_only, p.mcnemar.p_value) == (1, 0, 1.0)
    # Each resample draws the one discordant row 0..4 times: the accuracy difference is k/4.
    t, (a, b), labels = encode(y, cand, champ)
    assert (t.tolist(), a.tolist(), b.tolist(), labels) == ([0, 0, 1, 1], [0, 0, 1, 1], [0, 1, 1, 1], ["a", "b"])
    draws = paired_bootstrap(t, a, b, resamples=200, seed=1, samples=True)["samples"]["accuracy"]
    assert set((draws * 4).tolist()) <= {0.0, 1.0, 2.0, 3.0, 4.0}
    assert (p.accuracy.low, p.accuracy.high) == tuple(np.quantile(draws, [0.025, 0.975]))


def test_identical_models_give_a_zero_interval():
    y = list("aabbccab")
    p = compare(y, list("abbbccaa"), list("abbbccaa"), resamples=300, seed=0)
    assert p.accuracy == Interval(0.0, 0.0, 0.0)
    assert p.macro_f1 == Interval(0.0, 0.0, 0.0)
    assert (p.mcnemar.candidate_only, p.mcnemar.champion_only, p.mcnemar.p_value) == (0, 0, 1.0)


def _random_case(n: int, seed: int, k: int = 5):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    cand = np.where(rng.random(n) < 0.8, y, rng.integers(0, k, n))
    champ = np.where(rng.random(n) < 0.7, y, rng.integers(0, k, n))
    return y, cand, champ


def test_every_resample_matches_score_predictions_and_sklearn_on_the_same_rows():
    y, cand, champ = _random_case(60, seed=4)
    boot = paired_bootstrap(y, cand, champ, resamples=50, seed=11, samples=True, draw="rows")
    assert boot["draw"] == "rows" and paired_bootstrap(y, cand, champ, resamples=50, seed=11) == {
        k: v for k, v in boot.items() if k != "samples"}  # "auto" draws rows here: 60 rows, more than 6 cells
    indices = resample_indices(60, 50, 11)
    for r, rows in enumerate(indices):
        yt, a, b = y[rows], cand[rows], champ[rows]
        s_a, s_b = score_predictions(yt.tolist(), a.tolist()), score_predictions(yt.tolist(), b.tolist())
        assert boot["samples"]["accuracy"][r] == pytest.approx(s_a.accuracy - s_b.accuracy, abs=1e-12)
        assert boot["samples"]["macro_f1"][r] == pytest.approx(s_a.macro_f1 - s_b.macro_f1, abs=1e-12)
        labels = sorted(set(yt.tolist()))
        sk = (f1_score(yt, a, labels=labels, average="macro", zero_division=0)
              - f1_score(yt, b, labels=labels, average="macro", zero_division=0))
        assert boot["samples"]["macro_f1"][r] == pytest.approx(sk, abs=1e-12)
    # The interval is the 2.5th and 97.5th percentile of those differences.
    for metric in ("accuracy", "macro_f1"):
        low, high = np.quantile(boot["samples"][metric], [0.025, 0.975])
        assert (boot[metric].low, boot[metric].high) == (low, high)


def test_every_cell_draw_matches_score_predictions_on_the_rows_it_stands_for():
    y, cand, champ = _random_case(3000, seed=8, k=4)
    boot = paired_bootstrap(y, cand, champ, resamples=40, seed=2, samples=True)
    assert boot["draw"] == "cells"  # at most 64 cells, 10 x 64 <= 3,000 rows
    k = 4
    cells, cell_of = np.unique((y * k + cand) * k + champ, return_inverse=True)
    counts = resample_cell_counts(np.bincount(cell_of), 40, 2)
    assert counts.shape == (40, cells.size) and (counts.sum(axis=1) == 3000).all()
    for r, drawn in enumerate(counts):
        # The resample: each cell's (truth, candidate, champion) repeated as often as it was drawn.
        yt, a, b = (np.repeat(part, drawn) for part in (cells // (k * k), cells // k % k, cells % k))
        s_a, s_b = score_predictions(yt.tolist(), a.tolist()), score_predictions(yt.tolist(), b.tolist())
        assert boot["samples"]["accuracy"][r] == pytest.approx(s_a.accuracy - s_b.accuracy, abs=1e-12)
        assert boot["samples"]["macro_f1"][r] == pytest.approx(s_a.macro_f1 - s_b.macro_f1, abs=1e-12)


def test_drawing_cells_keeps_the_row_bootstraps_intervals_within_monte_carlo_error():
    # A gate-like case: 1,000 rows, 6 labels, candidate 84.5% right, champion 76.1%; 10,000 resamples each way.
    y, cand, champ = _random_case(1000, seed=12, k=6)
    resamples = 10_000
    cells = paired_bootstrap(y, cand, champ, resamples=resamples, seed=1, samples=True, draw="cells")
    rows = paired_bootstrap(y, cand, champ, resamples=resamples, seed=2, samples=True, draw="rows")
    for metric in ("accuracy", "macro_f1"):
        a, b = cells["samples"][metric], rows["samples"][metric]
        assert cells[metric].difference == rows[metric].difference  # the point estimate does not depend on draws
        sd = b.std()
        # Standard error of a 2.5% quantile from R draws: sqrt(p(1-p)/R) / density there (normal: phi(1.96)/sd).
        quantile_se = math.sqrt(0.025 * 0.975 / resamples) * sd / norm.pdf(norm.ppf(0.025))
        for end in ("low", "high"):
            gap = abs(getattr(cells[metric], end) - getattr(rows[metric], end))
            assert gap < 4 * math.sqrt(2) * quantile_se, (metric, end, gap, quantile_se)
        assert abs(a.mean() - b.mean()) < 4 * math.sqrt(2 / resamples) * sd
        assert abs(a.std() / sd - 1) < 0.05
        assert ks_2samp(a, b).pvalue > 0.01  # one distribution, as far as 2 x 10,000 draws can tell


def test_auto_draws_cells_only_when_they_are_few_against_the_rows():
    assert CELLS_PER_ROW == 10
    assert (choose_draw(2000, 20_000), choose_draw(2001, 20_000), choose_draw(1, 9)) == ("cells", "rows", "rows")
    y, cand, champ = _random_case(200, seed=5)
    cells = np.unique((y * 5 + cand) * 5 + champ).size
    assert paired_bootstrap(y, cand, champ, resamples=10)["draw"] == ("cells" if cells * 10 <= 200 else "rows")
    with pytest.raises(ValueError, match="unknown draw 'indices': use one of auto, cells, rows"):
        paired_bootstrap(y, cand, champ, draw="indices")
    p = compare(y.tolist(), cand.tolist(), champ.tolist(), resamples=10, draw="cells")
    assert (p.draw, p.as_dict()["draw"]) == ("cells", "cells")


def test_the_bootstrap_is_seeded():
    y, cand, champ = _random_case(200, seed=5)
    first = paired_bootstrap(y, cand, champ, resamples=1000, seed=3)
    assert paired_bootstrap(y, cand, champ, resamples=1000, seed=3) == first
    assert paired_bootstrap(y, cand, champ, resamples=1000, seed=4)["accuracy"] != first["accuracy"]


@pytest.mark.parametrize("draw", ["cells", "rows"])
def test_the_accuracy_interval_matches_the_analytic_paired_standard_error(draw):
    y, cand, champ = _random_case(2000, seed=6)
    boot = paired_bootstrap(y, cand, champ, resamples=2000, seed=0, draw=draw)
    d = (cand == y).astype(float) - (champ == y).astype(float)
    se = d.std() / math.sqrt(d.size)
    assert boot["accuracy"].difference == d.mean()
    half = (boot["accuracy"].high - boot["accuracy"].low) / 2
    assert half == pytest.approx(1.96 * se, rel=0.08)
    assert boot["accuracy"].low < d.mean() < boot["accuracy"].high
    assert boot["accuracy"].low > 0  # the candidate (80% right) is clearly better than the champion (70%)


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (([0, 1], [0, 1], [0]), {}, r"same rows: 2, 2, 1"),
        (([], [], []), {}, "at least one evaluation row"),
        (([0], [0], [0]), {"resamples": 0}, "resamples must be >= 1, got 0"),
        (([0], [0], [0]), {"confidence": 1.0}, "confidence must be between 0 and 1, got 1.0"),
    ],
    ids=["ragged", "empty", "no-resamples", "confidence"],
)
def test_the_bootstrap_refuses_bad_input(args, kwargs, message):
    with pytest.raises(ValueError, match=message):
        paired_bootstrap(*args, **kwargs)


# --- rows_to_settle -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("interval", "rows", "expected"),
    [
        (Interval(0.0, -0.02, 0.02), 200, 600),     # half-width 0.02, gap 0.01: four times the rows
        (Interval(0.01, -0.01, 0.03), 400, 0),      # already clear of -0.01 by its half-width
        (Interval(-0.02, -0.05, 0.01), 100, 800),   # gap 0.01, half-width 0.03: nine times the rows
        (Interval(-0.01, -0.03, 0.01), 100, None),  # the difference sits on the line
    ],
    ids=["four-times", "settled", "below", "on-the-line"],
)
def test_rows_to_settle(interval, rows, expected):
    assert rows_to_settle(interval, rows, tolerance=0.01) == expected
