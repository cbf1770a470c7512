"""Tests for engine.retrain: whole cycles on a real store and registry, checked against scikit-learn called directly.

Covers: the first cycle deploys exactly the model scikit-learn fits on the cycle's training
set; the retrains row carries that set's funnel; a worse candidate is rejected and the
champion keeps serving; a deployment that cannot serve is rolled back automatically; a
failing cycle always ends 'failed' with a reason; start-up repair after a crash.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, f1_score

from engine import deployment, faults, registry
from engine.classifier import Classifier
from engine.dataset import build_training_set, eval_bucket, normalize_label, normalize_text
from engine.lifecycle import ModelRegistry, ref_of
from engine.importer import import_file
from demo.intents import IntentGenerator
from engine.repair import repair
from engine.retrain import run_cycle
from engine.training import build_pipeline
from store import commands as queue
from store import querylog
from store.events import recent_events
from store.models import get_model, list_deployments, list_models
from store.retrains import get_retrain, recent_retrains
from tests.conftest import labelled_frame

FUNNEL = ("rows_in", "malformed", "low_confidence", "conflicts", "duplicates", "reserved_for_eval", "train_rows", "eval_rows",
          "quarantined", "pseudo_not_deployed", "pseudo_too_old", "over_training_cap")


@pytest.fixture
def labelled(ctx, tmp_path):
    """The store with 40 labelled examples of each of the 20 intents (seed 1)."""
    path = tmp_path / "good.csv"
    labelled_frame(40, seed=1).to_csv(path, index=False)
    assert import_file(ctx, path, labeled=True).labels == 800
    return ctx


def training_set(ctx):
    """The training set a cycle builds now, built here from the same store with the same settings."""
    s = ctx.settings
    rows = querylog.training_rows(ctx.db, include_pseudo=s.use_pseudo_labels)
    known = {normalize_label(x) for x in querylog.known_labels(ctx.db)} - {None}
    return build_training_set(rows, known_labels=known or None, min_confidence=s.min_confidence,
                              max_text_length=s.max_text_length, eval_percent=s.eval_percent,
                              use_pseudo_labels=s.use_pseudo_labels)


def write_csv(tmp_path, name, frame):
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return path


def active_version(ctx):
    pointer = registry.read_active(ctx.settings.registry_dir)
    return pointer.active.version if pointer else None


def statuses(ctx):
    return {m["version"]: m["status"] for m in list_models(ctx.db)}


# --- the first cycle, against scikit-learn called directly ----------------------------------------


def test_first_cycle_deploys_what_sklearn_fits_on_the_same_training_set(labelled, settings):
    ctx = labelled
    data = training_set(ctx)
    assert (len(data.train), len(data.eval)) == (data.funnel.train_rows, data.funnel.eval_rows)
    assert data.funnel.eval_rows > 50 and data.funnel.train_rows > 300

    result = run_cycle(ctx, trigger="manual", force=True)
    assert (result.status, result.candidate, result.champion, result.deployed) == ("accepted", "v0001", None, True)
    assert result.reason.startswith("Accepted as the first model: accuracy ")
    assert active_version(ctx) == "v0001"

    direct = build_pipeline(max_features=settings.max_features, min_df=settings.min_df, seed=settings.seed,
                            n_rows=len(data.train))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # max_iter is the engine's deliberate time budget
        direct.fit(data.train["text"].tolist(), data.train["label"].to_numpy())

    # 200 texts the cycle never saw (neither trained nor evaluated on).
    seen = set(data.train["text"]) | set(data.eval["text"])
    held_out = list(dict.fromkeys(e.text for e in IntentGenerator(seed=4242).sample(1500)
                                  if normalize_text(e.text) not in seen))[:200]
    assert len(held_out) == 200
    expected_proba = direct.predict_proba([normalize_text(t) for t in held_out])
    classes = direct.classes_

    with Classifier(settings=settings, log_queries=False, background=False, report_events=False) as clf:
        predictions = clf.predict_many(held_out)
        assert clf.status().version == "v0001" and not clf.status().fallback
    assert [p.label for p in predictions] == list(classes[expected_proba.argmax(axis=1)])
    assert {p.version for p in predictions} == {"v0001"}
    got_top = np.array([[prob for _, prob in p.top] for p in predictions])
    expected_top = -np.sort(-expected_proba, axis=1)[:, :3]
    np.testing.assert_allclose(got_top, expected_top, rtol=0, atol=1e-12)
    assert [[label for label, _ in p.top] for p in predictions] == [
        list(classes[np.argsort(-row)[:3]]) for row in expected_proba]

    # The cycle's record: the funnel of exactly that training set, and scores scikit-learn agrees with.
    row = get_retrain(ctx.db, result.retrain_id)
    assert {k: row[k] for k in FUNNEL} == data.funnel.as_dict()
    assert (row["status"], row["decision"], row["trigger"], row["candidate_version"]) == ("accepted", "accepted", "manual", "v0001")
    eval_pred = direct.predict(data.eval["text"].tolist())
    y = data.eval["label"].to_numpy()
    assert row["candidate_accuracy"] == pytest.approx(accuracy_score(y, eval_pred), abs=1e-12)
    assert row["candidate_macro_f1"] == pytest.approx(
        f1_score(y, eval_pred, labels=sorted(set(y)), average="macro", zero_division=0), abs=1e-12)
    assert row["champion_accuracy"] is None
    model = get_model(ctx.db, "v0001")
    assert (model["status"], model["train_rows"], model["train_hash"], model["retrain_id"]) == (
        "champion", len(data.train), data.data_hash, result.retrain_id)
    assert model["labels"] == sorted(data.labels)
    assert [(d["version"], d["previous_version"], d["kind"]) for d in list_deployments(ctx.db)] == [("v0001", None, "deploy")]


# --- a worse candidate is rejected ----------------------------------------------------------------------


def test_the_deploy_smoke_test_answers_the_newest_texts_of_the_store(ctx, tmp_path, monkeypatch):
    """Any labels, not an online shop's: the saved file is checked on the store's own newest texts."""
    texts = [f"rain expected in city {i} tomorrow" for i in range(60)] + [f"team {i} won the final" for i in range(60)]
    labels = ["weather"] * 60 + ["sports"] * 60
    path = write_csv(tmp_path, "news.csv", pd.DataFrame({"text": texts, "label": labels}))
    import_file(ctx, path, labeled=True)
    checked = []
    real_validate = deployment.validate

    def recording_validate(ctx, ref, in_memory, *, smoke=None):
        checked.append(list(smoke))
        return real_validate(ctx, ref, in_memory, smoke=smoke)

    monkeypatch.setattr(deployment, "validate", recording_validate)
    result = run_cycle(ctx, trigger="manual", force=True)
    assert (result.status, result.deployed) == ("accepted", True)
    assert checked == [querylog.recent_texts(ctx.db, limit=deployment.SMOKE_SIZE)]
    assert len(checked[0]) == 20 and set(checked[0]) <= set(texts)


def count_writes(monkeypatch) -> list[int]:
    """The number of write transactions opened on any store from now on (one element, incremented)."""
    from store.db import Database

    opened, writes = Database.write, [0]

    def counted(self):
        writes[0] += 1
        return opened(self)

    monkeypatch.setattr(Database, "write", counted)
    return writes


def test_a_worse_candidate_is_rejected_and_the_champion_keeps_serving(labelled, tmp_path, monkeypatch):
    ctx = labelled
    writes = count_writes(monkeypatch)
    first = run_cycle(ctx, trigger="manual", force=True)
    assert first.status == "accepted"
    # start; register; scores and the gate's decision; the deployment with the retrain's outcome (issue 15)
    assert writes[0] == 4
    champion_row = get_retrain(ctx.db, first.retrain_id)
    before = training_set(ctx)

    # Every training text (none of the evaluation texts) labelled wrongly five times: a rotated label.
    labels = sorted(before.labels)
    rotate = {label: labels[(i + 1) % len(labels)] for i, label in enumerate(labels)}
    good = labelled_frame(40, seed=1)
    train_only = good[[eval_bucket(normalize_text(t)) >= ctx.settings.eval_percent for t in good["text"]]]
    wrong = pd.DataFrame({"text": train_only["text"], "label": train_only["label"].map(rotate)})
    ctx.clock.advance(hours=1)
    import_file(ctx, write_csv(tmp_path, "wrong.csv", pd.concat([wrong] * 5)), labeled=True)
    after = training_set(ctx)
    assert after.eval.equals(before.eval)  # the gate judges both models on the same rows as before
    assert (after.train["label"] == before.train["label"].map(rotate)).all()

    writes[0] = 0
    result = run_cycle(ctx, trigger="weekly", force=True)
    assert (result.status, result.candidate, result.champion, result.deployed) == ("rejected", "v0002", "v0001", False)
    assert writes[0] == 3  # start; register; the decision with the retrain's outcome
    assert active_version(ctx) == "v0001"
    assert statuses(ctx) == {"v0001": "champion", "v0002": "rejected"}
    assert len(list_deployments(ctx.db)) == 1

    row = get_retrain(ctx.db, result.retrain_id)
    assert (row["status"], row["decision"], row["reason"]) == ("rejected", "rejected", result.reason)
    assert {k: row[k] for k in FUNNEL} == after.funnel.as_dict()
    # The champion is scored now exactly as it was scored when it was the candidate.
    assert (row["champion_accuracy"], row["champion_macro_f1"]) == (
        champion_row["candidate_accuracy"], champion_row["candidate_macro_f1"])
    assert row["candidate_accuracy"] < 0.2 < 0.8 < row["champion_accuracy"]
    assert result.reason.startswith("Rejected: accuracy fell ")
    assert ", more than the 1.0 pts tolerance; macro-F1 fell " in result.reason

    gate = recent_events(ctx.db, kind="gate", limit=1)[0]
    assert (gate["version"], gate["severity"]) == ("v0002", "warning")
    assert gate["message"] == f"Candidate v0002 rejected (weekly retrain #{result.retrain_id}). {result.reason}"
    details = gate["details"]
    assert (details["candidate"], details["champion"], details["accepted"]) == ("v0002", "v0001", False)
    assert details["candidate_metrics"] == {"accuracy": row["candidate_accuracy"], "macro_f1": row["candidate_macro_f1"]}
    assert details["champion_metrics"] == {"accuracy": row["champion_accuracy"], "macro_f1": row["champion_macro_f1"]}
    assert details["deltas"] == pytest.approx({"accuracy": row["candidate_accuracy"] - row["champion_accuracy"],
                                               "macro_f1": row["candidate_macro_f1"] - row["champion_macro_f1"]})
    assert details["rule"] == "accuracy and macro-F1 each >= champion's minus 0.01"
    assert details["funnel"] == after.funnel.as_dict()


# --- automatic rollback when the deployed model cannot serve ---------------------------------------------


def test_a_deployment_that_cannot_serve_is_rolled_back_automatically(labelled, armed):
    ctx = labelled
    assert run_cycle(ctx, trigger="manual", force=True).status == "accepted"
    reg = ctx.settings.registry_dir
    pointer_before = registry.read_active(reg)

    def corrupt_the_new_file():
        pointer = registry.read_active(reg)
        registry.model_file(reg, pointer.active.version).write_bytes(b"not a model any more")

    armed("deploy_after_switch", corrupt_the_new_file)
    result = run_cycle(ctx, trigger="manual", force=True)

    assert (result.status, result.candidate, result.champion, result.deployed) == ("failed", "v0002", "v0001", False)
    assert result.reason.startswith("Deployment of v0002 failed after the switch: active model v0002 cannot be loaded (model v0002: checksum mismatch")
    assert result.reason.endswith("; serving v0001. Rolled back automatically to v0001.")
    assert registry.read_active(reg) == pointer_before
    assert statuses(ctx) == {"v0001": "champion", "v0002": "failed"}
    assert [(d["version"], d["previous_version"], d["kind"]) for d in list_deployments(ctx.db)] == [
        ("v0001", "v0002", "auto_rollback"), ("v0001", None, "deploy")]

    rollback_event = recent_events(ctx.db, kind="rollback", limit=1)[0]
    assert (rollback_event["severity"], rollback_event["version"], rollback_event["message"]) == ("error", "v0001", result.reason)
    assert {k: rollback_event["details"][k] for k in ("failed_version", "restored", "automatic")} == {
        "failed_version": "v0002", "restored": "v0001", "automatic": True}
    row = get_retrain(ctx.db, result.retrain_id)
    assert (row["status"], row["reason"], row["decision"]) == ("failed", result.reason, None)

    with Classifier(settings=ctx.settings, log_queries=False, background=False, report_events=False) as clf:
        assert (clf.status().version, clf.status().fallback) == ("v0001", False)
        assert clf.predict("where is my order").version == "v0001"


# --- a failing cycle ends 'failed', never 'running' -------------------------------------------------------


def _logged_queries_only(ctx, tmp_path):
    frame = labelled_frame(10, seed=3).rename(columns={"label": "predicted_label"}).assign(confidence=0.9)
    import_file(ctx, write_csv(tmp_path, "log.csv", frame), labeled=False)


def _one_label_only(ctx, tmp_path):
    frame = labelled_frame(10, seed=3)
    import_file(ctx, write_csv(tmp_path, "one.csv", frame.assign(label="track_order")), labeled=True)


def _crash_at(point):
    def setup(ctx, tmp_path, armed):
        import_file(ctx, write_csv(tmp_path, "good.csv", labelled_frame(10, seed=3)), labeled=True)

        def crash():
            raise RuntimeError("disk on fire")

        armed(point, crash)

    return setup


@pytest.mark.parametrize(
    ("setup", "expected_reason", "candidate"),
    [
        (lambda ctx, tmp, armed: None,
         "no human-labelled evaluation rows (0 training rows): the gate needs labelled examples; "
         "import some with `python -m engine import FILE --labeled`", None),
        (lambda ctx, tmp, armed: _logged_queries_only(ctx, tmp),
         "no human-labelled evaluation rows ({train} training rows): the gate needs labelled examples; "
         "import some with `python -m engine import FILE --labeled`", None),
        (lambda ctx, tmp, armed: _one_label_only(ctx, tmp),
         "the clean training set has {train} rows and 1 label(s): at least two labels are needed; "
         "import labelled examples with `python -m engine import FILE --labeled`", None),
        (_crash_at("cycle_after_fit"), "unexpected error: RuntimeError: disk on fire", None),
        # Saved and recorded, then the cycle failed: the version is named and recorded failed, not left 'candidate'.
        (_crash_at("cycle_after_save"), "unexpected error: RuntimeError: disk on fire", "v0001"),
    ],
    ids=["empty-store", "logged-queries-only", "one-label", "crash-after-fit", "crash-after-save"],
)
def test_a_failing_cycle_ends_failed_with_its_reason(ctx, tmp_path, armed, setup, expected_reason, candidate):
    setup(ctx, tmp_path, armed)
    data = training_set(ctx)
    expected_reason = expected_reason.format(train=data.funnel.train_rows)

    result = run_cycle(ctx, trigger="adaptive", force=True)

    assert (result.status, result.reason, result.deployed, result.candidate) == ("failed", expected_reason, False, candidate)
    assert statuses(ctx) == ({} if candidate is None else {candidate: "failed"})
    assert [(r["id"], r["status"], r["reason"]) for r in recent_retrains(ctx.db)] == [(result.retrain_id, "failed", expected_reason)]
    row = get_retrain(ctx.db, result.retrain_id)
    assert row["finished_at"] == ctx.clock()
    assert {k: row[k] for k in FUNNEL} == data.funnel.as_dict()
    assert registry.read_active(ctx.settings.registry_dir) is None
    event = recent_events(ctx.db, kind="retrain", limit=1)[0]
    assert (event["severity"], event["version"], event["message"]) == (
        "error", candidate, f"Retrain #{result.retrain_id} (adaptive) failed: {expected_reason}")
    assert row["candidate_version"] == candidate


def test_unknown_trigger_is_refused_before_anything_is_recorded(ctx):
    with pytest.raises(ValueError, match=r"unknown trigger 'nightly': use one of weekly, monthly, adaptive, manual"):
        run_cycle(ctx, trigger="nightly", force=True)
    assert recent_retrains(ctx.db) == []


# --- repair after a crash between the switch and its record -------------------------------------------------


class Death(BaseException):
    """Stands for the process dying at a fault point: no ``except Exception`` handler runs."""


def test_repair_after_a_crash_makes_the_store_agree_with_the_pointer(labelled, armed):
    ctx = labelled
    reg = ctx.settings.registry_dir
    assert run_cycle(ctx, trigger="manual", force=True).status == "accepted"

    def die():
        raise Death()

    # A second cycle passes the gate and dies just before deploying: v0002 is saved and recorded as a
    # candidate, its retrain is left running.
    armed("deploy_after_validate", die)
    command = queue.enqueue(ctx.db, kind="retrain", args={}, source="test", ts=ctx.clock())
    queue.mark_running(ctx.db, command, ts=ctx.clock())
    with pytest.raises(Death):
        run_cycle(ctx, trigger="manual", command_id=command, force=True)
    assert statuses(ctx) == {"v0001": "champion", "v0002": "candidate"}
    running_retrain = recent_retrains(ctx.db, limit=1)[0]["id"]
    assert get_retrain(ctx.db, running_retrain)["status"] == "running"
    # Had it died a moment later, after the pointer switch: the store never heard of the switch.
    registry.point_to(reg, ref_of(ModelRegistry(ctx).get("v0002")), deployed_at=ctx.clock().isoformat())
    # Other leftovers of a dead worker: a half-written file, a saved but unrecorded model.
    half_written = reg / f".{registry.model_file(reg, 'v0003').name}.4242.tmp"
    half_written.write_bytes(b"half")
    orphan = registry.model_file(reg, "v0007")
    orphan.write_bytes(registry.model_file(reg, "v0002").read_bytes())

    fixes = repair(ctx)

    assert fixes == [
        f"removed the unfinished temporary file {half_written.name}",
        f"retrain #{running_retrain} was left running by a stopped worker: marked failed",
        f"command #{command} was left running by a stopped worker: marked failed",
        "v0002 serves but was recorded as candidate: now recorded as champion",
        "v0001 was recorded as champion but does not serve: now retired",
        "the switch to v0002 was not recorded (crash): deployment recorded now",
        f"{orphan.name} was saved but never recorded (crash): moved to {reg / 'orphans'}",
    ]
    assert statuses(ctx) == {"v0001": "retired", "v0002": "champion"}
    assert active_version(ctx) == "v0002"
    latest = list_deployments(ctx.db)[0]
    assert (latest["version"], latest["previous_version"], latest["kind"], latest["reason"]) == (
        "v0002", "v0001", "repair", "the deployment happened but was not recorded before a crash")
    assert get_retrain(ctx.db, running_retrain)["status"] == "failed"
    assert queue.get_command(ctx.db, command)["status"] == "failed"
    assert not half_written.exists()
    assert (reg / "orphans" / orphan.name).exists() and not orphan.exists()
    events = recent_events(ctx.db, kind="repair", limit=20)
    assert [e["message"] for e in reversed(events)] == [f"Start-up repair: {fix}." for fix in fixes]
    assert {e["severity"] for e in events} == {"warning"}

    # Once repaired, nothing is left to fix.
    assert repair(ctx) == []
    # And the next cycle works from the repaired state (the orphan, moved aside, takes no number).
    faults.arm("deploy_after_validate", None)
    after = run_cycle(ctx, trigger="manual", force=True)
    assert (after.status, after.candidate, after.champion) == ("accepted", "v0003", "v0002")
    assert statuses(ctx) == {"v0001": "retired", "v0002": "retired", "v0003": "champion"}


def test_repair_fails_a_candidate_left_by_a_cycle_that_died(labelled, armed):
    ctx = labelled
    assert run_cycle(ctx, trigger="manual", force=True).status == "accepted"

    def die():
        raise Death()

    armed("cycle_after_save", die)  # saved and recorded as a candidate, never scored nor deployed
    with pytest.raises(Death):
        run_cycle(ctx, trigger="adaptive", force=True)
    assert statuses(ctx) == {"v0001": "champion", "v0002": "candidate"}

    assert repair(ctx) == [
        "retrain #2 was left running by a stopped worker: marked failed",
        "v0002 was left a candidate by a retrain that did not finish: now recorded as failed",
    ]
    assert statuses(ctx) == {"v0001": "champion", "v0002": "failed"}
    assert active_version(ctx) == "v0001"
    assert [(d["version"], d["kind"]) for d in list_deployments(ctx.db)] == [("v0001", "deploy")]
    assert repair(ctx) == []
