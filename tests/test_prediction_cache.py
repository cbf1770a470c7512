"""Tests for engine.prediction_cache: kept answers equal the model's, new texts only are predicted,
another model file or a damaged file is never trusted, and a retrain re-scores from the cache."""

import logging

import pytest

from engine.errors import ModelLoadError
from engine.prediction_cache import PredictionCache, text_keys
from engine.training import fit
from tests.conftest import labelled_frame

SHA = "ab" * 32
OTHER_SHA = "cd" * 32


class Counting:
    """A fitted pipeline that counts the texts it is asked to predict."""

    def __init__(self, pipeline):
        self.pipeline = pipeline
        self.asked: list[str] = []

    def predict(self, texts):
        self.asked += list(texts)
        return self.pipeline.predict(texts)


@pytest.fixture(scope="module")
def model():
    return fit(labelled_frame(20, seed=3), seed=0).pipeline


@pytest.fixture(scope="module")
def texts():
    return labelled_frame(10, seed=9)["text"].tolist()


def refuse():
    raise AssertionError("the model was loaded although every text was known")


def test_text_keys_are_stable_and_distinct():
    keys = text_keys(["where is my parcel", "Where is my parcel", "where is my parcel "])
    assert keys.dtype.name == "uint64"
    assert len(set(keys.tolist())) == 3
    assert text_keys(["where is my parcel"])[0] == keys[0]


def test_first_answers_come_from_the_model_then_from_the_cache(tmp_path, model, texts):
    cache = PredictionCache(tmp_path / "cache")
    counting = Counting(model)
    first = cache.predict("v0003", SHA, texts, load=lambda: counting)
    assert first == [str(x) for x in model.predict(texts)]
    assert counting.asked == texts
    assert cache.predict("v0003", SHA, texts, load=refuse) == first
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [cache.path("v0003", SHA).name]


def test_only_new_texts_are_predicted_and_texts_that_left_are_dropped(tmp_path, model, texts):
    cache = PredictionCache(tmp_path / "cache")
    cache.predict("v0003", SHA, texts[:150], load=lambda: model)
    counting = Counting(model)
    now = texts[50:]  # 50 texts left the evaluation set, the rest joined it
    assert cache.predict("v0003", SHA, now, load=lambda: counting) == [str(x) for x in model.predict(now)]
    assert counting.asked == texts[150:]
    labels, found = cache.lookup("v0003", SHA, texts)
    assert found.tolist() == [False] * 50 + [True] * (len(texts) - 50)
    assert labels[:50].tolist() == [None] * 50


def test_another_model_file_is_a_miss_and_its_old_answers_are_deleted(tmp_path, model, texts):
    cache = PredictionCache(tmp_path / "cache")
    cache.store("v0003", SHA, texts, ["wrong"] * len(texts))
    counting = Counting(model)
    assert cache.predict("v0003", OTHER_SHA, texts, load=lambda: counting) == [str(x) for x in model.predict(texts)]
    assert counting.asked == texts
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [cache.path("v0003", OTHER_SHA).name]


def test_a_damaged_file_counts_as_empty(tmp_path, model, texts, caplog):
    cache = PredictionCache(tmp_path / "cache")
    cache.store("v0003", SHA, texts, model.predict(texts))
    cache.path("v0003", SHA).write_bytes(b"not parquet at all")
    with caplog.at_level(logging.WARNING, logger="engine.prediction_cache"):
        assert cache.predict("v0003", SHA, texts, load=lambda: model) == [str(x) for x in model.predict(texts)]
    assert "ignoring" in caplog.text
    assert cache.predict("v0003", SHA, texts, load=refuse) == [str(x) for x in model.predict(texts)]


def test_a_model_that_cannot_load_reaches_the_caller(tmp_path, texts):
    def broken():
        raise ModelLoadError("model v0003: file is missing")

    with pytest.raises(ModelLoadError, match="file is missing"):
        PredictionCache(tmp_path / "cache").predict("v0003", SHA, texts, load=broken)


def test_an_unwritable_folder_loses_the_answers_but_not_the_prediction(tmp_path, model, texts, caplog):
    blocker = tmp_path / "cache"
    blocker.write_text("a file where the folder should be")
    cache = PredictionCache(blocker)
    with caplog.at_level(logging.WARNING, logger="engine.prediction_cache"):
        assert cache.predict("v0003", SHA, texts, load=lambda: model) == [str(x) for x in model.predict(texts)]
    assert "could not keep v0003's answers" in caplog.text


def test_a_version_name_is_checked(tmp_path):
    from engine.errors import InputError

    with pytest.raises(InputError, match="is not a model version"):
        PredictionCache(tmp_path).path("../../etc/passwd", SHA)
