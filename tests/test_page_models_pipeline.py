"""The Models page's "What a version is": pipeline, calibration, adopted file, get_params, scikit-learn."""

from __future__ import annotations

import joblib
import pytest
import streamlit as st

from engine.config import load_settings
from engine.context import Context
from engine.importer import import_file
from engine.registry import SKLEARN_VERSION
from engine.retrain import AdoptRequest, run_cycle
from store.models import get_model
from tests.conftest import labelled_frame, open_app, shown
from tests.team_pipeline import logistic


@pytest.fixture(scope="module")
def two_kinds(tmp_path_factory):
    """v0001 adopted from a file, v0002 trained from the team's LinearSVC factory (calibrated)."""
    root = tmp_path_factory.mktemp("kinds")
    home = root / "home"
    ctx = Context.open(load_settings(env={}, home=home))
    labelled_frame(30, seed=1).to_csv(root / "labelled.csv", index=False)
    import_file(ctx, root / "labelled.csv", labeled=True)
    frame = labelled_frame(30, seed=21)
    joblib.dump(logistic().fit(frame["text"].tolist(), frame["label"].tolist()), root / "team.joblib")
    assert run_cycle(ctx, trigger="adopt", adopt=AdoptRequest(str(root / "team.joblib"), "old service")).deployed
    svc = Context.open(load_settings(env={}, home=home, pipeline="tests.team_pipeline:linear_svc"))
    assert run_cycle(svc, trigger="manual").candidate == "v0002"
    return home, get_model(ctx.db, "v0001")["params"]["adopted"]["sha256"]


def test_the_page_says_what_each_version_is(monkeypatch, two_kinds):
    home, sha = two_kinds
    at = open_app(monkeypatch, home, "pages/models.py")
    box = next(s for s in at.selectbox if s.key == "facts_version")
    assert box.options == ["v0002", "v0001"]
    markdown = [shown(m.value) for m in at.markdown]
    assert (f"**Pipeline** tests.team_pipeline:linear_svc (the team's factory) · **scikit-learn** {SKLEARN_VERSION}"
            in markdown)
    assert [shown(i.value) for i in at.info] == [
        "Calibrated by Retrainer: Pipeline has no predict_proba; Retrainer's confidence is Platt scaling fitted on "
        "3-fold cross-validated decision values, serving one copy of the estimator fitted on all rows."]
    assert at.json[0].value  # get_params, JSON
    st.cache_data.clear()
    box.set_value("v0001").run()
    assert not at.exception
    markdown = [shown(m.value) for m in at.markdown]
    assert f"**Pipeline** adopted:team.joblib (adopted fitted model) · **scikit-learn** {SKLEARN_VERSION}" in markdown
    assert any(shown(c.value).startswith("Adopted from ") and f"team.joblib (SHA-256 {sha[:12]}…): old service"
               in shown(c.value) for c in at.caption)
    assert list(at.info) == []
