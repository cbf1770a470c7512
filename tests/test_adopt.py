"""Adopting a fitted model: the first champion, a candidate gated against it, and the files that are refused."""

from __future__ import annotations

import hashlib
import json
import pickle

import joblib
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.svm import LinearSVC

from engine import registry
from engine.classifier import Classifier
from engine.importer import import_file
from engine.retrain import AdoptRequest, run_cycle
from store.commands import recent_commands
from store.events import recent_events
from store.models import get_model, list_models
from store.retrains import get_retrain
from tests.conftest import labelled_frame, run_cli


def team_model(per_intent: int, *, seed: int, labels_prefix: str = "") -> Pipeline:
    """A model trained elsewhere, by the team, with scikit-learn called directly."""
    frame = labelled_frame(per_intent, seed=seed)
    model = Pipeline([("tfidf", TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)),
                      ("clf", LogisticRegression(C=10.0, max_iter=500))])
    return model.fit(frame["text"].tolist(), [labels_prefix + label for label in frame["label"]])


@pytest.fixture
def labelled(ctx, tmp_path):
    path = tmp_path / "labelled.csv"
    labelled_frame(40, seed=1).to_csv(path, index=False)
    assert import_file(ctx, path, labeled=True).labels == 800
    return ctx


def dump(model, path) -> str:
    joblib.dump(model, path)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_adopted_model_becomes_the_first_champion_and_a_candidate_is_gated_against_it(labelled, tmp_path):
    ctx = labelled
    path = tmp_path / "team.joblib"
    sha = dump(team_model(60, seed=11), path)

    first = run_cycle(ctx, trigger="adopt", adopt=AdoptRequest(str(path), "production model of 2026-11"))
    assert (first.status, first.candidate, first.champion, first.deployed) == ("accepted", "v0001", None, True)
    assert first.reason.startswith("Adopted as the first champion (nothing served before; the team already serves "
                                   "this model): accuracy ")
    row = get_model(ctx.db, "v0001")
    assert row["status"] == "champion" and row["train_rows"] is None
    assert row["params"]["pipeline_kind"] == "adopted" and row["params"]["pipeline"] == "adopted:team.joblib"
    assert row["params"]["adopted"] == {"file": str(path.resolve()), "sha256": sha,
                                        "note": "production model of 2026-11",
                                        "classes": sorted(labelled_frame(1)["label"]),
                                        "model_classes": sorted(labelled_frame(1)["label"]),
                                        "normalised_text": {"texts": 746, "texts_changed": 340, "answers_changed": 0}}
    assert row["params"]["pipeline_params"]["clf__C"] == 10.0
    assert row["labels"] == sorted(labelled_frame(1)["label"])
    assert 0.8 < row["accuracy"] <= 1.0  # scored on the evaluation rows like any version
    assert get_retrain(ctx.db, first.retrain_id)["trigger"] == "adopt"
    with Classifier(settings=ctx.settings, log_queries=False, background=False) as clf:
        assert clf.predict("i want my money back").label == "request_refund"
        assert clf.version == "v0001"

    # The next retrain's candidate (the default pipeline) is judged against the adopted champion.
    second = run_cycle(ctx, trigger="manual")
    assert (second.candidate, second.champion) == ("v0002", "v0001")
    gate = next(e for e in recent_events(ctx.db, limit=20) if e["kind"] == "gate" and e["version"] == "v0002")
    assert gate["details"]["champion"] == "v0001"
    assert gate["details"]["champion_metrics"]["accuracy"] == pytest.approx(row["accuracy"])


def test_a_worse_adopted_model_is_gated_and_the_champion_stays(labelled, tmp_path):
    ctx = labelled
    assert run_cycle(ctx, trigger="manual").status == "accepted"  # v0001, trained here
    path = tmp_path / "weak.joblib"
    dump(team_model(2, seed=12), path)  # two examples per intent
    result = run_cycle(ctx, trigger="adopt", adopt=AdoptRequest(str(path)))
    assert (result.status, result.candidate, result.champion, result.deployed) == ("rejected", "v0002", "v0001", False)
    assert result.reason.startswith("Rejected: accuracy fell")
    assert registry.read_active(ctx.settings.registry_dir).active.version == "v0001"
    assert get_model(ctx.db, "v0002")["status"] == "rejected"


def test_classes_that_do_not_overlap_the_stored_labels_are_refused_showing_both(labelled, tmp_path):
    ctx = labelled
    path = tmp_path / "other.joblib"
    dump(team_model(5, seed=13, labels_prefix="x_"), path)
    result = run_cycle(ctx, trigger="adopt", adopt=AdoptRequest(str(path)))
    assert result.status == "failed"
    stored = sorted(labelled_frame(1)["label"])
    assert result.reason == (
        "other.joblib knows none of the stored labels, so it cannot be scored or gated. Its classes: "
        + ", ".join(f"x_{label}" for label in stored) + ". Stored labels: " + ", ".join(stored)
        + ". Import labelled examples with the model's labels, or adopt the model trained for these labels")
    assert list_models(ctx.db) == [] and registry.read_active(ctx.settings.registry_dir) is None


@pytest.mark.parametrize("content, message", [
    (b"not a pickle at all", "bad.joblib could not be loaded as a joblib or pickle file (KeyError: 110); save the "
                            "fitted model with joblib.dump(model, path)"),
    (pickle.dumps({"weights": [1, 2]}), "bad.joblib holds a dict, which has no predict: adopt a fitted classifier"),
    (pickle.dumps(LinearSVC()), "bad.joblib holds a LinearSVC, which has no predict_proba (Retrainer's confidence "
                                "needs probabilities: wrap it with CalibratedClassifierCV before saving"),
    (pickle.dumps(LogisticRegression()), "bad.joblib holds a LogisticRegression without classes_: adopt a fitted "
                                         "classifier (call fit before saving)"),
], ids=["garbage", "not-a-model", "no-proba", "unfitted"])
def test_files_that_are_not_fitted_classifiers_are_refused(labelled, tmp_path, content, message):
    path = tmp_path / "bad.joblib"
    path.write_bytes(content)
    result = run_cycle(labelled, trigger="adopt", adopt=AdoptRequest(str(path)))
    assert result.status == "failed"
    assert result.reason.startswith(message), result.reason
    assert list_models(labelled.db) == []


@pytest.mark.parametrize("content, message", [
    (b"not a pickle at all", "bad.joblib could not be loaded as a joblib or pickle file (KeyError: 110); save the "
                            "fitted model with joblib.dump(model, path)"),
    (pickle.dumps({"weights": [1, 2]}), "bad.joblib holds a dict, which has no predict: adopt a fitted classifier"),
], ids=["garbage", "not-a-model"])
def test_the_cli_refuses_such_files_before_queuing_them(labelled, tmp_path, content, message):
    # Bad input: exit 2 with the reason, and no failed retrain or command in the history.
    path = tmp_path / "bad.joblib"
    path.write_bytes(content)
    done = run_cli("adopt", str(path), home=labelled.settings.home)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == f"error: {message}\n"
    assert list_models(labelled.db) == [] and get_retrain(labelled.db, 1) is None
    assert recent_commands(labelled.db) == []


def test_a_model_that_cannot_read_text_is_refused(labelled, tmp_path):
    numeric = LogisticRegression().fit([[0.0], [1.0]], ["track_order", "request_refund"])
    path = tmp_path / "numeric.joblib"
    dump(numeric, path)
    result = run_cycle(labelled, trigger="adopt", adopt=AdoptRequest(str(path)))
    assert result.status == "failed"
    assert result.reason == (
        "numeric.joblib cannot classify stored texts: given a list of 5 str it raised ValueError: Expected 2D array, "
        "got 1D array instead: …; an adopted model must take a list of str (the texts), like a scikit-learn Pipeline "
        "that starts with a text vectorizer; a model fitted on numeric features cannot be adopted")


@pytest.mark.slow
def test_cli_adopt_then_status_json_shows_the_adopted_champion(tmp_path, labelled_csv):
    home = tmp_path / "home"
    assert run_cli("import", str(labelled_csv), "--labeled", home=home).returncode == 0
    path = tmp_path / "team.joblib"
    sha = dump(team_model(40, seed=14), path)
    done = run_cli("adopt", str(path), "--note", "from the old service", home=home)
    assert done.returncode == 0, done.stderr
    assert "command #1 adopt: done" in done.stdout
    assert "retrain #1 accepted: Adopted as the first champion" in done.stdout
    status = json.loads(run_cli("status", "--json", home=home).stdout)
    active = status["active"]
    assert (active["version"], active["pipeline"], active["pipeline_kind"]) == ("v0001", "adopted:team.joblib", "adopted")
    assert active["adopted"]["sha256"] == sha and active["adopted"]["note"] == "from the old service"
    missing = run_cli("adopt", str(tmp_path / "nope.joblib"), home=home)
    assert missing.returncode == 2
    assert missing.stderr.strip() == (f"error: {tmp_path / 'nope.joblib'} is not a file: give the path of a model saved "
                                      "with joblib.dump or pickle.dump")
