"""Tests for engine.evaluation_counts: a model answered from kept n-gram counts gives exactly (np.array_equal)
what its own predict_proba/predict/transform give, for every preset and a team's TF-IDF pipeline, on real
multilingual text (the ChatterBot corpus: 13 languages incl. Chinese, Japanese, Korean, Persian) and hostile
unicode; anything else is answered the ordinary way; the kept file follows the evaluation set and is
never trusted for another analyzer, another scikit-learn or when damaged."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.feature_extraction.text import HashingVectorizer, TfidfVectorizer
from sklearn.linear_model import SGDClassifier
from sklearn.pipeline import FeatureUnion, Pipeline

from benchmarks import corpora
from engine import evaluation_counts, pipelines
from engine.evaluation_counts import STALE_DAYS, EvaluationCounts, analyzer_fingerprint
from engine.prediction_cache import text_keys
from engine.registry import SKLEARN_VERSION
from engine.training import fit
from tests.conftest import ROOT, labelled_frame

UNICODE = pd.read_csv(ROOT / "tests" / "data" / "imports" / "unicode.csv")["text"].tolist()
HOSTILE = ["", " ", "\x00nul\x00", "tab\tand\nnewline", "a" * 12_000, "🇮🇱👍🏽" * 50,
           "ＦＵＬＬ width", "e\u0301 combining", "İstanbul ß ǅ"]  # lower() changes length / case folding oddities


@pytest.fixture(scope="module")
def corpus() -> pd.DataFrame:
    """ChatterBot utterances (13 languages), shuffled once: 3,000 to train on, 2,000 to evaluate."""
    frame = corpora.load_chatterbot().sample(frac=1.0, random_state=7).reset_index(drop=True)
    assert frame["language"].nunique() == 13
    return frame


@pytest.fixture(scope="module")
def evaluation(corpus) -> list[str]:
    demo = labelled_frame(3, seed=5)["text"].tolist()
    return corpus["text"].iloc[3000:5000].tolist() + UNICODE + HOSTILE + demo + corpus["text"].iloc[3000:3010].tolist()


@pytest.fixture(scope="module", params=pipelines.PRESETS)
def preset(request, corpus):
    return request.param, fit(corpus.iloc[:3000][["text", "label"]], pipeline=request.param, seed=0).pipeline


def assert_same_matrix(a, b):
    assert (type(a), a.dtype, a.shape) == (type(b), b.dtype, b.shape)
    assert np.array_equal(a.indptr, b.indptr) and np.array_equal(a.indices, b.indices)
    assert np.array_equal(a.data, b.data)


def test_every_preset_answers_exactly_as_the_model_does(preset, evaluation, tmp_path):
    name, model = preset
    counts = EvaluationCounts(evaluation, folder=tmp_path / "counts")
    assert np.array_equal(counts.predict_proba(model, evaluation), model.predict_proba(evaluation))
    assert np.array_equal(counts.predict(model, evaluation), model.predict(evaluation))
    configurations = 2 if name == "word+char" else 1  # the word and the char analyzer each count every text
    assert counts.counted == configurations * len(set(evaluation)) and counts.served == {"counts": 2 * len(evaluation), "ordinary": 0}
    # A later retrain (another process) reads the counts: nothing is analysed again, same answers.
    again = EvaluationCounts(evaluation, folder=tmp_path / "counts")
    subset = evaluation[::-7]  # any subset, in any order, duplicates included
    assert np.array_equal(again.predict_proba(model, subset), model.predict_proba(subset))
    assert np.array_equal(again.predict_proba(model, evaluation), model.predict_proba(evaluation))
    assert again.counted == 0
    files = sorted(p.name for p in (tmp_path / "counts").iterdir())
    assert len(files) == configurations


def test_transform_gives_the_same_sparse_arrays(preset, evaluation):
    name, model = preset
    first = model.steps[0][1]
    vectorizers = [first] if name != "word+char" else [part for _, part in first.transformer_list]
    counts = EvaluationCounts(evaluation)
    for vectorizer in vectorizers:
        assert_same_matrix(counts.transform(vectorizer, evaluation), vectorizer.transform(evaluation))
    if name == "word+char":
        assert_same_matrix(counts._features(first, evaluation, counts._rows(evaluation)), first.transform(evaluation))


@pytest.mark.parametrize("options", [
    {},  # scikit-learn's defaults: word analyzer, float64, l2, smooth idf
    {"analyzer": "char", "ngram_range": (2, 5), "binary": True, "norm": "l1"},
    {"analyzer": "char_wb", "use_idf": False, "norm": None, "dtype": np.float32},
    {"sublinear_tf": True, "stop_words": "english", "strip_accents": "unicode", "lowercase": False},
    {"token_pattern": r"(?u)\b\w+\b", "ngram_range": (1, 3), "max_features": 500, "min_df": 2},
    {"analyzer": "char_wb", "ngram_range": (1, 2), "vocabulary": ["zz", "t", "a", "e ", " d", "或", "の", "o", " t"]},
], ids=["defaults", "char-binary-l1", "no-idf-no-norm", "sublinear-stopwords-accents", "trigrams-limited",
        "vocabulary-given-unsorted"])
def test_a_teams_tfidf_pipeline_is_served_exactly_whatever_its_settings(corpus, evaluation, options):
    model = Pipeline([("tfidf", TfidfVectorizer(**options)), ("clf", SGDClassifier(loss="log_loss", random_state=0))])
    model.fit(corpus["text"].iloc[:1500].tolist(), corpus["label"].iloc[:1500])
    counts = EvaluationCounts(evaluation)
    assert np.array_equal(counts.predict_proba(model, evaluation), model.predict_proba(evaluation))
    assert np.array_equal(counts.predict(model, evaluation), model.predict(evaluation))
    assert_same_matrix(counts.transform(model[0], evaluation), model[0].transform(evaluation))
    assert counts.served == {"counts": 2 * len(evaluation), "ordinary": 0}


def test_a_union_serves_its_tfidf_parts_from_counts_and_the_others_their_own_way(corpus, evaluation):
    union = FeatureUnion([("chars", TfidfVectorizer(analyzer="char", ngram_range=(2, 3), dtype=np.float32)),
                          ("hashed", HashingVectorizer(n_features=2 ** 10)), ("gone", "drop"),
                          ("words", TfidfVectorizer(preprocessor=pipelines.feature_text))])
    model = Pipeline([("features", union), ("clf", SGDClassifier(loss="log_loss", random_state=0))])
    model.fit(corpus["text"].iloc[:1500].tolist(), corpus["label"].iloc[:1500])
    counts = EvaluationCounts(evaluation)
    assert np.array_equal(counts.predict_proba(model, evaluation), model.predict_proba(evaluation))
    assert counts.served == {"counts": len(evaluation), "ordinary": 0}
    assert counts.counted == 2 * len(set(evaluation))  # two TF-IDF analyzers; the hashing part hashed its own way


def closure_pipeline():
    cut = 50
    return Pipeline([("tfidf", TfidfVectorizer(preprocessor=lambda t: t[:cut].lower())), ("clf", SGDClassifier(loss="log_loss"))])


@pytest.mark.parametrize("factory", [
    "tests.team_pipeline:linear_svc",  # calibrated by Retrainer: a CalibratedClassifierCV, not a Pipeline
    closure_pipeline,  # its preprocessor reads a closure cell: no fingerprint
    lambda: Pipeline([("hash", HashingVectorizer(n_features=2 ** 12)), ("clf", SGDClassifier(loss="log_loss"))]),
    lambda: Pipeline([("u", FeatureUnion([("w", TfidfVectorizer())], transformer_weights={"w": 2.0})),
                      ("clf", SGDClassifier(loss="log_loss", random_state=0))]),
], ids=["calibrated-team-pipeline", "closure", "hashing", "weighted-union"])
def test_other_models_are_answered_the_ordinary_way(corpus, evaluation, factory):
    train = corpus.iloc[:1500][["text", "label"]]
    if isinstance(factory, str):
        model = fit(train, pipeline=factory, seed=0).pipeline
    else:
        model = factory().fit(train["text"].tolist(), train["label"])
    counts = EvaluationCounts(evaluation)
    assert np.array_equal(counts.predict_proba(model, evaluation), model.predict_proba(evaluation))
    assert np.array_equal(counts.predict(model, evaluation), model.predict(evaluation))
    assert counts.served == {"counts": 0, "ordinary": 2 * len(evaluation)} and counts.counted == 0


def test_the_recognised_team_factory_is_served_from_counts(corpus, evaluation):
    two_topics = corpus[corpus["label"].isin(["emotion", "psychology"])].iloc[:400]  # LogisticRegression: kept small
    model = fit(two_topics[["text", "label"]], pipeline="tests.team_pipeline:logistic", seed=0).pipeline
    counts = EvaluationCounts(evaluation)
    assert np.array_equal(counts.predict_proba(model, evaluation), model.predict_proba(evaluation))
    assert counts.served == {"counts": len(evaluation), "ordinary": 0}


def test_texts_outside_the_evaluation_set_are_answered_the_ordinary_way(preset, evaluation):
    _, model = preset
    counts = EvaluationCounts(evaluation[:100])
    texts = evaluation[:50] + ["never seen in the evaluation set"]
    assert np.array_equal(counts.predict(model, texts), model.predict(texts))
    assert counts.served == {"counts": 0, "ordinary": 51}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.text(min_size=0, max_size=60), min_size=1, max_size=30))
def test_any_unicode_text_gets_the_models_own_answer(char_model, texts):
    counts = EvaluationCounts(texts)
    assert np.array_equal(counts.predict_proba(char_model, texts), char_model.predict_proba(texts))
    assert counts.served["counts"] == len(texts)


@pytest.fixture(scope="module")
def char_model(corpus):
    return fit(corpus.iloc[:2000][["text", "label"]], pipeline="char", seed=0).pipeline


def test_the_kept_counts_follow_the_evaluation_set(char_model, corpus, tmp_path):
    folder = tmp_path / "counts"
    before = corpus["text"].iloc[3000:4000].tolist()
    EvaluationCounts(before, folder=folder).predict(char_model, before)
    # The next evaluation set: 300 texts left, 200 new ones joined, in another order.
    after = corpus["text"].iloc[4000:4200].tolist() + before[300:][::-1]
    counts = EvaluationCounts(after, folder=folder)
    assert np.array_equal(counts.predict_proba(char_model, after), char_model.predict_proba(after))
    assert counts.counted == 200
    (path,) = folder.iterdir()
    with np.load(path) as f:
        assert (f["indices"].dtype, f["indptr"].dtype, f["data"].dtype) == (np.int32, np.int32, np.uint8)
        assert sorted(f["keys"].tolist()) == sorted(text_keys(after).tolist())
        joined, ends = f["terms"].tobytes().decode(), f["term_ends"].tolist()  # UTF-8, ends in characters
        terms = [joined[a:b] for a, b in zip([0] + ends[:-1], ends)]
        used = np.zeros(len(terms), dtype=bool)
        used[f["indices"]] = True
    expected = set(t for text in after for t in char_model[0].build_analyzer()(text))
    assert terms == sorted(expected) and used.all()  # sorted, and the terms of the texts that left are gone


def test_the_fingerprint_names_the_analyzer_only(monkeypatch):
    def fp(**kw):
        return analyzer_fingerprint(TfidfVectorizer(**kw))

    assert fp(analyzer="char_wb") == fp(analyzer="char_wb", min_df=5, max_features=10, sublinear_tf=True, norm="l1")
    assert len({fp(), fp(analyzer="char_wb"), fp(ngram_range=(1, 2)), fp(lowercase=False), fp(stop_words="english"),
                fp(preprocessor=pipelines.feature_text)}) == 6
    assert analyzer_fingerprint(HashingVectorizer()) is None
    assert analyzer_fingerprint(TfidfVectorizer(input="filename")) is None
    # The presets' preprocessor reads FEATURE_CHARS: another value is another configuration.
    with_preprocessor = fp(preprocessor=pipelines.feature_text)
    monkeypatch.setattr(pipelines, "FEATURE_CHARS", 500)
    assert fp(preprocessor=pipelines.feature_text) != with_preprocessor


def test_another_scikit_learn_or_a_damaged_file_is_never_trusted(char_model, corpus, tmp_path, monkeypatch, caplog):
    folder = tmp_path / "counts"
    texts = corpus["text"].iloc[3000:3300].tolist()
    expected = char_model.predict_proba(texts)
    EvaluationCounts(texts, folder=folder).predict_proba(char_model, texts)
    (path,) = folder.iterdir()
    monkeypatch.setattr(evaluation_counts, "SKLEARN_VERSION", "9.9.9")
    other = EvaluationCounts(texts, folder=folder)
    assert np.array_equal(other.predict_proba(char_model, texts), expected)
    assert other.counted == 300  # the 1.9 file was not read, and it is gone now
    assert [p.name for p in folder.iterdir()] == [path.name.replace(f"sklearn{SKLEARN_VERSION}", "sklearn9.9.9")]
    (path,) = folder.iterdir()
    path.write_bytes(path.read_bytes()[:1000])
    with caplog.at_level(logging.WARNING, logger="engine.evaluation_counts"):
        damaged = EvaluationCounts(texts, folder=folder)
        assert np.array_equal(damaged.predict_proba(char_model, texts), expected)
    assert damaged.counted == 300 and f"ignoring {path}" in caplog.text


def test_unused_configurations_are_dropped_after_a_week_and_an_unwritable_folder_only_warns(char_model, corpus, tmp_path,
                                                                                            caplog):
    folder = tmp_path / "counts"
    folder.mkdir()
    old = folder / "0123456789abcdef-sklearn1.0.npz"
    old.write_bytes(b"counts of a pipeline no longer used")
    recent = folder / "fedcba9876543210-sklearn1.0.npz"
    recent.write_bytes(b"counts of the champion's other pipeline")
    week_ago = time.time() - STALE_DAYS * 86400 - 60
    os.utime(old, (week_ago, week_ago))
    texts = corpus["text"].iloc[3000:3100].tolist()
    EvaluationCounts(texts, folder=folder).predict(char_model, texts)
    assert not old.exists() and recent.exists()
    blocked = tmp_path / "file"
    blocked.write_text("a file where the folder should be")
    with caplog.at_level(logging.WARNING, logger="engine.evaluation_counts"):
        counts = EvaluationCounts(texts, folder=blocked / "counts")
        assert np.array_equal(counts.predict(char_model, texts), char_model.predict(texts))
    assert "could not keep counts in" in caplog.text


def test_keys_must_be_one_per_text():
    with pytest.raises(ValueError, match=r"keys must be one per text: \(1,\) for 2 texts"):
        EvaluationCounts(["a", "b"], keys=np.zeros(1, dtype=np.uint64))
