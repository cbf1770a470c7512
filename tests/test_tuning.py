"""Tests for engine.tuning without Dask: the local search, its record, and the errors a Dask setting gives.

The search is checked against scikit-learn's GridSearchCV called directly; the fitted model
against the fixed pipeline fitted with the chosen alpha. The Dask extra's absence is simulated
(``sys.modules["distributed"] = None``) so these tests mean the same with or without it installed;
tests/test_dask.py runs the search on a real cluster.
"""

from __future__ import annotations

import dataclasses
import sys
import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, StratifiedKFold

from engine.config import Settings
from engine.errors import TrainingError
from engine.importer import import_file
from demo.intents import IntentGenerator
from engine.retrain import run_cycle
from engine.training import build_pipeline, fit
from engine.tuning import SearchPlan, plan_from_settings, search_alpha
from store import querylog
from store.models import list_models
from tests.conftest import labelled_frame

ALPHAS = (1e-5, 2e-5, 5e-5, 1e-4, 1e-3)
PLAN = SearchPlan(cv_folds=3, alphas=ALPHAS)
NOT_INSTALLED = (r"^setting 'dask_scheduler' = 'tcp://127\.0\.0\.1:8786' needs the optional Dask extra, which is not "
                 r"installed \(.*\): install it with `pip install -r requirements-dask\.txt`, or leave dask_scheduler "
                 r"empty to search on this machine$")


@pytest.fixture(scope="module")
def train():
    """400 labelled demo queries, 20 per intent (seed 1)."""
    return labelled_frame(20, seed=1)


@pytest.fixture
def no_dask(monkeypatch):
    """The environment without the Dask extra: importing distributed fails."""
    monkeypatch.setitem(sys.modules, "distributed", None)


def held_out_texts(n: int = 200) -> list[str]:
    return [e.text for e in IntentGenerator(seed=4242).sample(n)]


# The pinned choices are the "word" preset's (the search works the same on every preset).
def test_local_search_matches_grid_search_cv_and_fits_the_winner(train):
    fitted = fit(train, pipeline="word", seed=0, search=PLAN)

    direct = GridSearchCV(build_pipeline(pipeline="word", seed=0, n_rows=len(train)), {"clf__alpha": list(ALPHAS)}, scoring="f1_macro",
                          cv=StratifiedKFold(n_splits=3, shuffle=True, random_state=0), refit=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        direct.fit(train["text"].tolist(), train["label"].to_numpy())
    search = fitted.params["search"]
    assert search["chosen_alpha"] == direct.best_params_["clf__alpha"] == 1e-3 == fitted.params["alpha"]
    assert [s["alpha"] for s in search["scores"]] == list(ALPHAS)
    np.testing.assert_allclose([s["macro_f1"] for s in search["scores"]], direct.cv_results_["mean_test_score"],
                               rtol=0, atol=1e-6)
    assert (search["cv_folds"], search["fits"], search["ran_on"]) == (3, 15, "this machine (joblib, search_jobs = 1)")
    assert search["seconds"] > 0

    fixed = build_pipeline(pipeline="word", seed=0, n_rows=len(train)).set_params(clf__alpha=1e-3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        fixed.fit(train["text"].tolist(), train["label"].to_numpy())
    texts = held_out_texts()
    np.testing.assert_array_equal(fitted.pipeline.predict(texts), fixed.predict(texts))
    np.testing.assert_allclose(fitted.pipeline.predict_proba(texts), fixed.predict_proba(texts), rtol=0, atol=1e-12)


def test_search_alpha_leaves_the_given_pipeline_unfitted(train):
    pipeline = build_pipeline(pipeline="word", seed=0, n_rows=len(train))
    result = search_alpha(pipeline, train["text"], train["label"].to_numpy(), plan=SearchPlan(cv_folds=2, alphas=(1e-3, 1e-5)))
    assert (result.alpha, [a for a, _ in result.scores], result.fits, result.skipped) == (1e-3, [1e-3, 1e-5], 4, None)
    assert not hasattr(pipeline.named_steps["tfidf"], "vocabulary_") and pipeline.named_steps["clf"].alpha == 2e-5


def test_without_a_plan_params_have_no_search(train):
    fitted = fit(train, seed=0)
    assert "search" not in fitted.params and fitted.params["alpha"] == 2e-5


def test_search_is_skipped_and_says_why_when_a_label_is_too_rare(train):
    rare = pd.concat([train[train["label"] != "store_hours"], train[train["label"] == "store_hours"].head(2)])
    fitted = fit(rare, seed=0, search=PLAN)
    assert fitted.params["alpha"] == 2e-5
    assert fitted.params["search"] == {
        "skipped": "label 'store_hours' has 2 training row(s), fewer than cv_folds = 3; the fixed alpha 2e-05 was used",
        "cv_folds": 3,
    }


def test_plan_follows_the_settings():
    assert plan_from_settings(Settings()) is None
    assert plan_from_settings(Settings(cv_folds=4, search_alphas="1e-4, 1e-5", search_jobs=-1,
                                       dask_scheduler="tcp://10.0.0.5:8786")) == SearchPlan(
        cv_folds=4, alphas=(1e-4, 1e-5), n_jobs=-1, dask_scheduler="tcp://10.0.0.5:8786")


def test_dask_scheduler_without_the_extra_names_the_requirements_file(train, no_dask):
    plan = SearchPlan(cv_folds=3, alphas=ALPHAS, dask_scheduler="tcp://127.0.0.1:8786")
    with pytest.raises(TrainingError, match=NOT_INSTALLED):
        fit(train, seed=0, search=plan)


def test_retrain_with_the_extra_missing_fails_with_the_reason_and_loses_nothing(ctx, tmp_path, no_dask):
    path = tmp_path / "labelled.csv"
    labelled_frame(20, seed=1).to_csv(path, index=False)
    import_file(ctx, path, labeled=True)
    before = querylog.training_rows(ctx.db, include_pseudo=True)
    searching = dataclasses.replace(ctx, settings=ctx.settings.replace(cv_folds=3, dask_scheduler="tcp://127.0.0.1:8786"))

    result = run_cycle(searching, trigger="manual", force=True)
    assert (result.status, result.candidate, result.deployed) == ("failed", None, False)
    assert "needs the optional Dask extra" in result.reason and "pip install -r requirements-dask.txt" in result.reason
    assert list_models(ctx.db) == [] and not list(ctx.settings.registry_dir.glob("v*"))
    assert querylog.training_rows(ctx.db, include_pseudo=True).equals(before)

    # The same data, searched on this machine: the retrain succeeds and the model says what the search chose.
    again = run_cycle(dataclasses.replace(ctx, settings=ctx.settings.replace(cv_folds=3)), trigger="manual", force=True)
    assert (again.status, again.candidate) == ("accepted", "v0001")
    (model,) = list_models(ctx.db)
    assert model["params"]["search"]["chosen_alpha"] == model["params"]["alpha"]
    assert model["params"]["search"]["ran_on"] == "this machine (joblib, search_jobs = 1)"
