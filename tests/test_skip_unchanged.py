"""Nothing new, no new version: a retrain on the champion's own training set is skipped; --force still trains."""

from __future__ import annotations

from datetime import timedelta

import pytest

from engine.cli import main
from engine.context import Context
from engine.importer import import_file
from engine.retrain import run_cycle
from store.events import recent_events
from store.models import get_model, list_models
from store.retrains import get_retrain


@pytest.fixture
def trained(ctx, labelled_csv):
    import_file(ctx, labelled_csv, labeled=True)
    first = run_cycle(ctx, trigger="manual")
    assert (first.status, first.candidate) == ("accepted", "v0001")
    ctx.clock.advance(hours=1)
    return ctx


def test_a_retrain_on_the_champions_training_set_is_skipped(trained):
    train_rows = get_retrain(trained.db, 1)["train_rows"]

    second = run_cycle(trained, trigger="adaptive")

    reason = (f"training set unchanged since v0001 ({train_rows:,} rows, the same texts and labels): v0001 stays "
              "champion; `retrain --force` trains anyway")
    assert (second.status, second.reason, second.candidate, second.champion) == ("skipped", reason, None, "v0001")
    assert [m["version"] for m in list_models(trained.db)] == ["v0001"]
    assert sorted(p.name for p in trained.settings.registry_dir.glob("v*")) == ["v0001.pkl", "v0001.probe.json"]
    record = get_retrain(trained.db, second.retrain_id)
    assert (record["status"], record["decision"], record["train_rows"], record["candidate_version"]) == (
        "skipped", "skipped", train_rows, None)
    assert recent_events(trained.db, kind="retrain")[0]["message"] == f"Retrain #2 (adaptive) skipped: {reason}"


def test_force_trains_on_an_unchanged_set_and_new_data_trains_again(trained, tmp_path):
    forced = run_cycle(trained, trigger="manual", force=True)
    assert (forced.status, forced.candidate) == ("accepted", "v0002")
    # v0002 now serves, trained on the same set: the next plain retrain is skipped naming it.
    trained.clock.advance(hours=1)
    assert run_cycle(trained, trigger="weekly").reason.startswith("training set unchanged since v0002 (")
    # One new labelled text changes the set: the retrain trains.
    extra = tmp_path / "one.csv"
    extra.write_text("text,label\nmy parcel never arrived at the depot,track_order\n")
    import_file(trained, extra, labeled=True)
    assert run_cycle(trained, trigger="adaptive").candidate == "v0003"


@pytest.mark.slow
def test_retrain_wait_reports_a_skip_and_force_on_the_command_line(trained, monkeypatch, capsys):
    monkeypatch.setenv("RETRAINER_HOME", str(trained.settings.home))
    assert main(["retrain", "--wait"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "command #1 retrain: done"
    assert out[1].startswith("retrain #2 skipped: training set unchanged since v0001 (")
    assert main(["retrain", "--wait", "--force"]) == 0
    assert capsys.readouterr().out.splitlines()[1].startswith("retrain #3 accepted: ")
    assert [m["version"] for m in list_models(trained.db)] == ["v0001", "v0002"]


def test_another_recipe_on_the_same_set_trains(trained):
    """The pipeline setting changed (char -> word): the same texts and labels make another model."""
    assert trained.settings.pipeline == "char"
    word = Context.open(trained.settings.replace(pipeline="word"), clock=trained.clock)

    result = run_cycle(word, trigger="manual")

    assert (result.candidate, result.champion) == ("v0002", "v0001")
    assert get_model(word.db, "v0002")["params"]["recipe"] == {
        "pipeline": "word", "max_features": 200000, "min_df": 2, "seed": 0, "cv_folds": 0, "search_alphas": None}


def test_a_champion_that_cannot_serve_is_retrained_on_the_same_set(trained):
    """A damaged champion file: skipping would leave the fallback (here: nothing) serving for good."""
    model_file = trained.settings.registry_dir / "v0001.pkl"
    model_file.write_bytes(model_file.read_bytes()[:-10])

    result = run_cycle(trained, trigger="adaptive")

    assert (result.status, result.decision, result.candidate) == ("rejected", "inconclusive", "v0002")
