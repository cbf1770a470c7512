"""Tests of the embedded demo dataset generator (demo/intents.py)."""

import dataclasses
import re
from collections import Counter

import pytest
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from demo.intents import (
    INTENTS,
    NEW_PRODUCTS,
    TYPO_RATE,
    Example,
    IntentGenerator,
)

# Words that only the new slang phrasings use (none can come out of a typo of an old word).
SLANG_MARKERS = {"ngl", "smh", "lol", "bruh"}


def _words(text):
    return set(re.findall(r"[a-z']+", text.lower()))


def test_intents_are_twenty_unique_snake_case_labels():
    assert len(INTENTS) == 20
    assert len(set(INTENTS)) == 20
    assert all(re.fullmatch(r"[a-z]+(_[a-z]+)*", label) for label in INTENTS)


def test_example_is_frozen():
    example = Example("where is my order", "track_order")
    with pytest.raises(dataclasses.FrozenInstanceError):
        example.label = "cancel_order"


def test_same_seed_and_calls_give_identical_examples():
    first, second = IntentGenerator(seed=7), IntentGenerator(seed=7)
    assert first.sample(500, progress=0.6) == second.sample(500, progress=0.6)
    assert first.balanced(3, progress=0.9) == second.balanced(3, progress=0.9)
    # The generator moves on: a second call does not repeat the first.
    assert IntentGenerator(seed=7).sample(500) != first.sample(500)


def test_different_seeds_give_different_examples():
    a = IntentGenerator(seed=1).sample(200)
    b = IntentGenerator(seed=2).sample(200)
    assert [e.text for e in a] != [e.text for e in b]
    assert sum(x.text == y.text for x, y in zip(a, b)) < 20


def test_every_label_is_an_intent_and_every_text_is_clean():
    examples = IntentGenerator(seed=3).sample(20_000, progress=1.0)
    assert {e.label for e in examples} == set(INTENTS)
    assert all(e.text and e.text == e.text.strip() for e in examples)
    assert not [e.text for e in examples if "  " in e.text or "{" in e.text or "}" in e.text]


def test_texts_vary_within_an_intent():
    texts = [e.text for e in IntentGenerator(seed=4).balanced(200) if e.label == "track_order"]
    assert len(set(texts)) > 150
    assert min(map(len, texts)) <= 20 and max(map(len, texts)) >= 80


def test_balanced_has_exactly_k_per_intent():
    examples = IntentGenerator(seed=5).balanced(7, progress=0.3)
    assert len(examples) == 140
    assert Counter(e.label for e in examples) == {label: 7 for label in INTENTS}
    assert IntentGenerator(seed=5).balanced(0) == []
    assert IntentGenerator(seed=5).sample(0) == []


@pytest.mark.parametrize("progress", [0.0, 0.25, 0.5, 0.77, 1.0])
def test_intent_mix_sums_to_one(progress):
    mix = IntentGenerator().intent_mix(progress=progress)
    assert tuple(mix) == INTENTS
    assert abs(sum(mix.values()) - 1.0) < 1e-9
    assert all(p > 0 for p in mix.values())


def test_intent_mix_shifts_gradually_in_the_documented_direction():
    gen = IntentGenerator()
    start, middle, end = (gen.intent_mix(progress=p) for p in (0.0, 0.5, 1.0))
    assert (start["delivery_delay"], middle["delivery_delay"], end["delivery_delay"]) == pytest.approx(
        (0.06, 0.105, 0.15)
    )
    assert (start["damaged_item"], middle["damaged_item"], end["damaged_item"]) == pytest.approx(
        (0.03, 0.06, 0.09)
    )
    assert (start["store_hours"], middle["store_hours"], end["store_hours"]) == pytest.approx(
        (0.09, 0.055, 0.02)
    )


def test_sample_follows_the_intent_mix():
    gen = IntentGenerator(seed=6)
    counts = Counter(e.label for e in gen.sample(20_000, progress=1.0))
    mix = gen.intent_mix(progress=1.0)
    assert max(abs(counts[label] / 20_000 - mix[label]) for label in INTENTS) < 0.01


@pytest.mark.parametrize("progress", [0.0, 0.4])
def test_new_products_and_phrasings_absent_early(progress):
    examples = IntentGenerator(seed=8).sample(20_000, progress=progress)
    assert not [e.text for e in examples if "lumo" in e.text.lower()]
    assert not [e.text for e in examples if _words(e.text) & SLANG_MARKERS]


def test_new_products_and_phrasings_grow_with_progress():
    def counts(progress):
        examples = IntentGenerator(seed=8).sample(20_000, progress=progress)
        return (
            sum("lumo" in e.text.lower() for e in examples),
            sum(bool(_words(e.text) & SLANG_MARKERS) for e in examples),
        )

    at_half, at_three_quarters, at_end = counts(0.5), counts(0.75), counts(1.0)
    assert 0 < at_half[0] < at_three_quarters[0] < at_end[0]
    assert at_half[1] == 0 < at_three_quarters[1] < at_end[1]
    # Every new product shows up by the end of the timeline.
    texts = " ".join(e.text for e in IntentGenerator(seed=8).sample(20_000, progress=1.0))
    assert all(name in texts for name in NEW_PRODUCTS)


def test_typo_rate_is_within_its_band():
    # Typos have their own random stream, so the texts that differ are exactly the typo'd ones.
    noisy = IntentGenerator(seed=9).sample(20_000, progress=0.5)
    clean = IntentGenerator(seed=9, typo_rate=0.0).sample(20_000, progress=0.5)
    assert [e.label for e in noisy] == [e.label for e in clean]
    rate = sum(a.text != b.text for a, b in zip(noisy, clean)) / 20_000
    assert TYPO_RATE == 0.12
    assert 0.10 <= rate <= 0.14


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda g: g.sample(10, progress=-0.1), "progress must be a number from 0.0 to 1.0, got -0.1"),
        (lambda g: g.sample(10, progress=1.5), "progress must be a number from 0.0 to 1.0, got 1.5"),
        (lambda g: g.sample(10, progress=float("nan")), "progress must be a number from 0.0 to 1.0, got nan"),
        (lambda g: g.intent_mix(progress=2), "progress must be a number from 0.0 to 1.0, got 2"),
        (lambda g: g.balanced(5, progress=-1), "progress must be a number from 0.0 to 1.0, got -1"),
        (lambda g: g.sample(-1), "n must be a whole number >= 0, got -1"),
        (lambda g: g.sample(2.5), "n must be a whole number >= 0, got 2.5"),
        (lambda g: g.balanced(-3), "per_intent must be a whole number >= 0, got -3"),
    ],
    ids=["progress-negative", "progress-above-1", "progress-nan", "mix-progress", "balanced-progress",
         "n-negative", "n-float", "per-intent-negative"],
)
def test_bad_arguments_raise_value_error_naming_the_fix(call, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        call(IntentGenerator())


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"seed": -1}, "seed must be a whole number >= 0, got -1"),
        ({"typo_rate": 1.5}, "typo_rate must be a number from 0.0 to 1.0, got 1.5"),
    ],
    ids=["seed", "typo-rate"],
)
def test_bad_constructor_arguments_raise_value_error(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        IntentGenerator(**kwargs)


def test_task_is_learnable_not_trivial_and_drift_hurts_a_stale_model():
    train = IntentGenerator(seed=1).balanced(100, progress=0.0)
    model = make_pipeline(
        TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True), LogisticRegression(max_iter=1000)
    )
    model.fit([e.text for e in train], [e.label for e in train])

    def accuracy(progress):
        test = IntentGenerator(seed=2).sample(2000, progress=progress)
        return model.score([e.text for e in test], [e.label for e in test])

    at_start, at_end = accuracy(0.0), accuracy(1.0)
    assert 0.80 <= at_start <= 0.97
    assert at_end < at_start - 0.05
