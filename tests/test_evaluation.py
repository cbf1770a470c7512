"""Tests for engine.evaluation: our numpy scores equal scikit-learn's, per class and overall."""

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

from engine.evaluation import (Scores, calibration, majority_baseline, predict_and_calibrate, predict_labels, score_model,
                               score_predictions)
from engine.training import fit
from tests.conftest import labelled_frame


def random_labels(seed: int, n: int, true_classes: int, extra_predicted: int, accuracy: float):
    """Seeded true labels and predictions that are right about ``accuracy`` of the time; the
    predictions may use labels that never occur in y_true (``extra_predicted`` of them)."""
    rng = np.random.default_rng(seed)
    names = [f"c{i:02d}" for i in range(true_classes + extra_predicted)]
    y_true = rng.choice(names[:true_classes], size=n, p=rng.dirichlet(np.ones(true_classes)))
    wrong = rng.choice(names, size=n)
    y_pred = np.where(rng.random(n) < accuracy, y_true, wrong)
    return y_true.tolist(), y_pred.tolist()


CASES = [(0, 50, 2, 0, 0.5), (1, 500, 5, 0, 0.8), (2, 1000, 20, 3, 0.7), (3, 37, 12, 2, 0.1), (4, 2000, 3, 1, 0.95)]
CASE_IDS = ["2-classes", "5-classes", "20-classes-plus-3-unseen", "tiny-and-sparse", "mostly-right"]


@pytest.mark.parametrize(("seed", "n", "k", "extra", "acc"), CASES, ids=CASE_IDS)
def test_overall_scores_equal_sklearn(seed, n, k, extra, acc):
    y_true, y_pred = random_labels(seed, n, k, extra, acc)
    s = score_predictions(y_true, y_pred)
    assert s.rows == n
    assert s.accuracy == pytest.approx(accuracy_score(y_true, y_pred), abs=1e-12)
    expected_f1 = f1_score(y_true, y_pred, labels=sorted(set(y_true)), average="macro", zero_division=0)
    assert s.macro_f1 == pytest.approx(expected_f1, abs=1e-12)


@pytest.mark.parametrize(("seed", "n", "k", "extra", "acc"), CASES, ids=CASE_IDS)
def test_per_class_figures_and_confusion_equal_sklearn(seed, n, k, extra, acc):
    y_true, y_pred = random_labels(seed, n, k, extra, acc)
    s = score_predictions(y_true, y_pred)
    labels = sorted(set(y_true) | set(y_pred))
    assert list(s.labels) == labels
    precision, recall, f1, support = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    assert list(s.per_class) == labels
    for i, label in enumerate(labels):
        got = s.per_class[label]
        assert got["precision"] == pytest.approx(precision[i], abs=1e-12), label
        assert got["recall"] == pytest.approx(recall[i], abs=1e-12), label
        assert got["f1"] == pytest.approx(f1[i], abs=1e-12), label
        assert got["support"] == support[i], label
    assert np.array_equal(np.array(s.confusion), confusion_matrix(y_true, y_pred, labels=labels))


def test_hand_computed_example():
    s = score_predictions(["a", "a", "b", "b", "c"], ["a", "b", "b", "b", "d"])
    assert (s.accuracy, round(s.macro_f1, 4), s.rows) == (0.6, 0.4889, 5)
    assert s.per_class == {
        "a": {"precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3), "support": 2},
        "b": {"precision": pytest.approx(2 / 3), "recall": 1.0, "f1": 0.8, "support": 2},
        "c": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1},
        "d": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0},  # predicted only: not in macro-F1
    }
    assert s.confusion == ((1, 1, 0, 0), (0, 2, 0, 0), (0, 0, 0, 1), (0, 0, 0, 0))
    assert s.report() == {"per_class": s.per_class, "labels": ["a", "b", "c", "d"],
                          "confusion": [[1, 1, 0, 0], [0, 2, 0, 0], [0, 0, 0, 1], [0, 0, 0, 0]]}


def test_perfect_and_empty():
    assert (score_predictions(["x", "y"], ["x", "y"]).accuracy, score_predictions(["x", "y"], ["x", "y"]).macro_f1) == (1.0, 1.0)
    assert score_predictions([], []) == Scores(0.0, 0.0, 0)


def test_score_model_equals_sklearn_on_a_real_model():
    model = fit(labelled_frame(20, seed=4)).pipeline
    eval_set = labelled_frame(10, seed=8)
    predictions = model.predict(eval_set["text"].tolist())
    s = score_model(model, eval_set)
    y = eval_set["label"].tolist()
    assert s.rows == 200
    assert s.accuracy == pytest.approx(accuracy_score(y, predictions), abs=1e-12)
    assert s.macro_f1 == pytest.approx(f1_score(y, predictions, labels=sorted(set(y)), average="macro", zero_division=0),
                                       abs=1e-12)
    assert (round(s.accuracy, 4), round(s.macro_f1, 4)) == (0.88, 0.8817)  # the default preset (char), SGD max_iter=10, tol=1e-3
    assert score_model(model, eval_set.iloc[0:0]) == Scores(0.0, 0.0, 0)


def test_one_pass_gives_the_same_labels_and_calibration_as_two():
    model = fit(labelled_frame(20, seed=4)).pipeline
    eval_set = labelled_frame(10, seed=8)
    labels, ece = predict_and_calibrate(model, eval_set)
    assert labels == predict_labels(model, eval_set)
    assert ece == calibration(model, eval_set)
    assert ece is not None and 0 < ece < 1
    assert predict_and_calibrate(model, eval_set.iloc[0:0]) == ([], None)


def frame(labels):
    return pd.DataFrame({"text": [f"t{i}" for i in range(len(labels))], "label": labels})


def test_majority_baseline_answers_the_most_frequent_training_label():
    train = frame(["b", "b", "b", "a", "c"])
    eval_set = frame(["b", "a", "b", "c"])
    s = majority_baseline(train, eval_set)
    assert (s.accuracy, s.rows) == (0.5, 4)
    # F1 of "b" is 2/3 (precision 0.5, recall 1); "a" and "c" score 0; averaged over the 3 true labels.
    assert s.macro_f1 == pytest.approx(2 / 9)
    assert s == score_predictions(eval_set["label"], ["b"] * 4)


def test_majority_baseline_breaks_ties_alphabetically():
    s = majority_baseline(frame(["z", "m", "z", "m", "q"]), frame(["m", "z"]))
    assert (s.accuracy, s.per_class["m"]["recall"], s.per_class["z"]["recall"]) == (0.5, 1.0, 0.0)


@pytest.mark.parametrize(("train", "eval_labels", "rows"), [([], ["a"], 1), (["a"], [], 0)], ids=["no-train", "no-eval"])
def test_majority_baseline_of_nothing_is_zero(train, eval_labels, rows):
    assert majority_baseline(frame(train), frame(eval_labels)) == Scores(0.0, 0.0, rows)
