"""The gate-quality benchmark's machinery on a tiny synthetic configuration (no training): its batched
bootstrap is engine.stats.compare's, its tallies add up, and its truths and figures are what they say."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from benchmarks import gate_quality as gq
from engine.config import load_settings
from engine.stats import compare, resample_indices

LABELS = np.array(["a", "b", "c", "d"], dtype=object)
POOL = 3000
SIZES = (200, 1000)
DRAWS = 4


@pytest.fixture(scope="module")
def settings():
    return load_settings(env={}, path=None, bootstrap_resamples=200)


@pytest.fixture(scope="module")
def world():
    """A champion right on 90% of the pool, and candidates: itself, one much worse, one slightly better."""
    rng = np.random.default_rng(3)
    truth = rng.integers(0, 4, POOL)
    wrong = (truth + rng.integers(1, 4, POOL)) % 4
    champion = np.where(rng.random(POOL) < 0.9, truth, wrong)
    worse = np.where(rng.random(POOL) < 0.3, wrong, champion)            # about 25 pts worse
    better = np.where(rng.random(POOL) < 0.3, truth, champion)           # about 3 pts better
    predictions = [LABELS[p] for p in (champion, champion, worse, better)]
    pairs = [gq.Pair("identical", ""), gq.Pair("much worse", ""), gq.Pair("better", "")]
    return LABELS[truth].tolist(), predictions, pairs


@pytest.fixture(scope="module")
def tally(world, settings):
    truth, predictions, pairs = world
    gq.true_differences(truth, predictions, pairs)
    return gq.simulate(truth, predictions, pairs, settings, sizes=SIZES, draws=DRAWS, seed=1, check=DRAWS)


def test_true_differences_are_the_pool_scores(world, tally):
    _, _, pairs = world
    identical, worse, better = pairs
    assert (identical.accuracy, identical.macro_f1, identical.class_drop) == (0.0, 0.0, 0.0)
    assert worse.accuracy < -0.2 and worse.macro_f1 < -0.2 and worse.truth(0.01) == "worse"
    assert better.accuracy > 0.02 and better.truth(0.01) == "not worse"


def test_every_pair_is_judged_once_per_sample_in_each_mode_and_configuration(world, tally):
    _, _, pairs = world
    assert len(tally.counts) == len(gq.CONFIGS) * len(gq.MODES) * len(SIZES) * len(pairs)
    for counts in tally.counts.values():
        assert sum(counts.values()) == DRAWS and set(counts) <= set(gq.OUTCOMES)
    assert all(tally.get(c, "point", n, p.name)["inconclusive"] == 0
               for c in gq.CONFIGS for n in SIZES for p in pairs)


def test_the_champion_itself_is_never_rejected_and_a_much_worse_model_never_accepted(tally):
    for config in gq.CONFIGS:
        for size in SIZES:
            assert tally.get(config, "point", size, "identical")["accepted"] == DRAWS
            assert tally.get(config, "noninferiority", size, "identical")["rejected"] == 0
            for mode in gq.MODES:
                assert tally.get(config, mode, size, "much worse")["rejected"] == DRAWS
    # 1,000 rows, 4 classes: the floor is met, the interval of a zero difference is [0, 0]
    assert tally.get("engine", "noninferiority", 1000, "identical")["accepted"] == DRAWS


def test_every_sample_was_checked_against_compare(world, tally):
    _, _, pairs = world
    assert tally.checked == DRAWS * len(SIZES) * len(pairs)


def test_interval_coverage_counts_each_comparison_once_and_skips_the_identical_model(tally):
    assert {pair for _, pair in tally.below} == {"much worse", "better"}
    for size in SIZES:
        for pair in ("much worse", "better"):
            counts = tally.below[(size, pair)]
            assert counts[0] == DRAWS and 0 <= counts[1] <= DRAWS and 0 <= counts[2] <= DRAWS
    assert gq.coverage(tally, [], 200) == {"n": 0, "accuracy": 0.0, "macro_f1": 0.0, "worst_pair": "none",
                                           "worst_accuracy": 0.0, "worst_macro_f1": 0.0}


def test_batched_bootstrap_equals_compare_even_with_a_label_missing_from_the_sample():
    rng = np.random.default_rng(5)
    n, k = 300, 5  # label 4 appears in no row: a zero column for the batched path, absent for compare
    truth = rng.integers(0, 4, n)
    champion = np.where(rng.random(n) < 0.8, truth, rng.integers(0, 4, n))
    candidates = [np.where(rng.random(n) < q, truth, rng.integers(0, 4, n)) for q in (0.6, 0.85, 0.95)]
    weights = gq.resample_weights(n, 300, 11)
    fast = gq.paired_for_sample(weights, truth, champion, candidates, k, seed=11)
    for paired, candidate in zip(fast, candidates):
        slow = compare(truth.tolist(), candidate.tolist(), champion.tolist(), resamples=300, seed=11, draw="rows")
        assert paired.accuracy == slow.accuracy  # whole-number counts: bit for bit
        for a, b in zip(dataclasses.astuple(paired.macro_f1), dataclasses.astuple(slow.macro_f1)):
            assert a == pytest.approx(b, abs=1e-12)
        assert (paired.mcnemar, paired.rows, paired.resamples, paired.seed, paired.draw) == (slow.mcnemar, n, 300, 11,
                                                                                             "rows")


def test_the_check_against_compare_fails_on_a_wrong_interval():
    rng = np.random.default_rng(6)
    truth = rng.integers(0, 3, 200)
    champion = np.where(rng.random(200) < 0.8, truth, (truth + 1) % 3)
    candidate = np.where(rng.random(200) < 0.8, truth, (truth + 2) % 3)
    fast = gq.paired_for_sample(gq.resample_weights(200, 100, 0), truth, champion, [candidate], 3, seed=0)
    words = [LABELS[x].tolist() for x in (truth, champion, candidate)]
    gq.check_against_compare(fast, words[0], words[1], [words[2]], resamples=100, seed=0)
    shifted = dataclasses.replace(fast[0], accuracy=dataclasses.replace(fast[0].accuracy, low=fast[0].accuracy.low - 0.005))
    with pytest.raises(AssertionError, match="accuracy"):
        gq.check_against_compare([shifted], words[0], words[1], [words[2]], resamples=100, seed=0)


def test_resample_weights_count_the_rows_engine_stats_draws():
    weights = gq.resample_weights(50, 7, 3)
    expected = np.stack([np.bincount(row, minlength=50) for row in resample_indices(50, 7, 3)])
    assert weights.shape == (7, 50) and np.array_equal(weights, expected) and (weights.sum(axis=1) == 50).all()


@pytest.mark.parametrize(("accuracy", "macro_f1", "truth"), [
    (-0.0126, 0.0, "worse"), (-0.0124, 0.0, "ambiguous"), (0.0, -0.0076, "ambiguous"), (0.0, -0.0074, "not worse"),
    (0.02, -0.011, "ambiguous"), (0.02, -0.013, "worse"), (-0.005, -0.005, "not worse")])
def test_truth_is_the_worse_difference_against_the_tolerance_with_an_ambiguous_band(accuracy, macro_f1, truth):
    assert gq.Pair("p", "", accuracy, macro_f1).truth(0.01) == truth


def test_rows_report_shares_of_decisions_and_the_target_is_strict(settings):
    pairs = [gq.Pair("bad", "", -0.05, -0.05), gq.Pair("good", "", 0.0, 0.0), gq.Pair("edge", "", -0.01, -0.01)]
    tally = gq.Tally()
    for i in range(20):  # bad: NI accepts 1 of 20 (5%: misses "< 5%"), point accepts 4; good: NI rejects 2
        tally.add("engine", "noninferiority", 200, "bad", "accepted" if i == 0 else "rejected")
        tally.add("engine", "point", 200, "bad", "accepted" if i < 4 else "rejected")
        tally.add("engine", "noninferiority", 200, "good", ("rejected", "rejected", "inconclusive")[i] if i < 3 else "accepted")
        tally.add("engine", "point", 200, "good", "rejected" if i < 5 else "accepted")
        tally.add("engine", "noninferiority", 200, "edge", "accepted")  # ambiguous: not counted
        tally.add("engine", "point", 200, "edge", "accepted")
    accepted, rejected, inconclusive = gq.report_rows(tally, pairs, settings, (200,), configs=("engine",))
    assert (accepted.value, accepted.baseline, accepted.passed) == (5.0, 20.0, False)
    assert (rejected.value, rejected.baseline) == (10.0, 25.0) and rejected.ratio == 2.5
    assert inconclusive.value == 5.0 and inconclusive.baseline is None


def test_noisy_and_thinned_training_sets_change_exactly_what_they_say():
    frame = pd.DataFrame({"text": [f"t{i}" for i in range(200)], "label": ["track_order", "store_hours"] * 100})
    noisy = gq._noisy(frame, 0.1, seed=1)
    assert (noisy["label"] != frame["label"]).sum() == 20 and list(noisy["text"]) == list(frame["text"])
    thinned = gq._thinned(frame, "store_hours", 0.2, seed=1)
    assert (thinned["label"] == "store_hours").sum() == 20 and (thinned["label"] == "track_order").sum() == 100
    assert "store_hours" not in set(gq._thinned(frame, "store_hours", 0.0, seed=1)["label"])
