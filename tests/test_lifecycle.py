"""Tests for engine.lifecycle: every status transition allowed or refused, the champion alias and
its history, the pointer kept in step (fallback order, a damaged pointer repaired from the store),
and the migration of a schema-1 store."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest

from engine import registry
from engine.classifier import Classifier
from engine.context import Context
from engine.deployment import deploy, rollback
from engine.errors import ModelLoadError, NoModelError, RegistryError
from engine.lifecycle import ALLOWED, ModelRegistry, next_stack, served_before
from engine.repair import repair
from engine.training import fit
from store.db import Database
from store.events import recent_events
from store.models import (alias_history, best_deployed, list_deployments, list_models, set_model_metrics,
                          set_model_status, versions_with_status)
from store.schema import LATEST, MIGRATIONS, migrate
from store.vocabulary import Alias, AssignmentKind, EventKind, ModelStatus
from tests.conftest import labelled_frame

S = ModelStatus
T0 = datetime(2026, 3, 4, 12, 0)


@pytest.fixture(scope="module")
def pipeline():
    """A real fitted pipeline (5 examples per intent), saved once per version by the tests."""
    return fit(labelled_frame(5, seed=3), seed=0).pipeline


def register(ctx: Context, version: str, *, status: ModelStatus = S.CANDIDATE, model=None) -> None:
    """A version in the store (and, with ``model``, its file in the registry), put at ``status``."""
    if model is not None:
        saved = registry.save_model(ctx.settings.registry_dir, version, model)
        file, sha, sklearn_version = saved.file, saved.sha256, saved.sklearn_version
    else:
        file, sha, sklearn_version = f"{version}.pkl", "0" * 64, registry.SKLEARN_VERSION
    with ctx.db.write() as con:
        ModelRegistry(ctx).register(con, {"version": version, "created_at": T0, "file": file, "sha256": sha,
                                          "sklearn_version": sklearn_version, "labels": ["a", "b"],
                                          "params": {"seed": 0}, "train_rows": 10}, ts=T0)
        if status != S.CANDIDATE:
            set_model_status(con, version, status)  # the store's own setter: a test's way to any start


def statuses(ctx: Context) -> dict[str, str]:
    return {m["version"]: m["status"] for m in list_models(ctx.db)}


# --- register ------------------------------------------------------------------------------------


def test_register_records_a_typed_candidate_and_its_event(ctx):
    register(ctx, "v0001")
    version = ModelRegistry(ctx).get("v0001")
    assert (version.version, version.status, version.labels, version.params, version.train_rows) == (
        "v0001", S.CANDIDATE, ("a", "b"), {"seed": 0}, 10)
    with pytest.raises(AttributeError):
        version.status = S.CHAMPION  # frozen
    [event] = recent_events(ctx.db, kind=EventKind.REGISTRY)
    assert (event["version"], event["message"]) == ("v0001", "Candidate v0001 registered (10 training rows).")


def test_register_returns_the_version_exactly_as_a_read_of_the_store_gives_it(ctx):
    row = {"version": "v0007", "created_at": T0, "file": "v0007.pkl", "sha256": "ab" * 32, "size_bytes": 1234,
           "sklearn_version": registry.SKLEARN_VERSION, "labels": ["refund", "delivery"], "train_rows": 99,
           "params": {"alphas": (1e-5, 1e-4), "recipe": {"pipeline": "char", "min_df": 2}}, "train_hash": "f" * 32,
           "retrain_id": 12}
    with ctx.db.write() as con:
        returned = ModelRegistry(ctx).register(con, row, ts=T0)
    stored = ModelRegistry(ctx).get("v0007")
    assert returned == stored
    assert (returned.status, returned.params["alphas"], returned.labels) == (
        S.CANDIDATE, [1e-5, 1e-4], ("refund", "delivery"))  # the tuple reads back as a JSON list, as stored


# --- each transition, allowed or refused ------------------------------------------------------------

# operation name in ALLOWED -> (how to apply it, the status it leads to)
APPLY = {
    "reject": (lambda m, con: m.reject(con, "v0001", inconclusive=False, ts=T0, message="no", details={}), S.REJECTED),
    "reject (inconclusive)": (lambda m, con: m.reject(con, "v0001", inconclusive=True, ts=T0, message="unsure",
                                                      details={}), S.INCONCLUSIVE),
    "fail": (lambda m, con: m.fail(con, "v0001", ts=T0, why="broken"), S.FAILED),
    "promote": (lambda m, con: m.promote(con, "v0001", previous=None, kind=AssignmentKind.DEPLOY, actor="test",
                                         reason="deployed", ts=T0), S.CHAMPION),
    "roll back to": (lambda m, con: m.promote(con, "v0001", previous=None, kind=AssignmentKind.ROLLBACK,
                                              actor="test", reason="rolled back", ts=T0), S.CHAMPION),
    "retire": (lambda m, con: m.retire(con, "v0001", ts=T0, why="does not serve"), S.RETIRED),
}
CASES = [(op, start) for op in APPLY for start in S]


@pytest.mark.parametrize("op, start", CASES, ids=[f"{op}-from-{start}" for op, start in CASES])
def test_each_transition_is_allowed_or_refused_with_a_clear_error(ctx, op, start):
    register(ctx, "v0001", status=start)
    models = ModelRegistry(ctx)
    apply, after = APPLY[op]
    verb = op.split(" (")[0]
    rule = ALLOWED[verb]
    if start in rule:
        with ctx.db.write() as con:
            apply(models, con)
        assert models.get("v0001").status == after
    else:
        needed = " or ".join(sorted(rule))
        with pytest.raises(RegistryError) as refused:
            with ctx.db.write() as con:
                apply(models, con)
        assert str(refused.value) == f"cannot {verb} v0001: it is {start}, and {verb} needs a {needed} version"
        assert models.get("v0001").status == start  # nothing changed


def test_the_allowed_table_is_the_documented_one():
    assert {op: sorted(statuses) for op, statuses in ALLOWED.items()} == {
        "reject": ["candidate"], "fail": ["candidate", "retired"], "promote": ["candidate"],
        "roll back to": ["retired"], "retire": ["champion"],
    }


def test_an_unknown_version_is_refused_by_name(ctx):
    with pytest.raises(RegistryError, match=r"^cannot promote v0042: it is not in the registry"):
        with ctx.db.write() as con:
            ModelRegistry(ctx).promote(con, "v0042", previous=None, kind=AssignmentKind.DEPLOY, actor="test",
                                       reason="x", ts=T0)
    assert alias_history(ctx.db) == []


def test_promote_retires_the_previous_champion_and_records_one_alias_move_and_one_event(ctx):
    register(ctx, "v0001", status=S.CHAMPION)
    register(ctx, "v0002")
    models = ModelRegistry(ctx)
    with ctx.db.write() as con:
        move = models.promote(con, "v0002", previous="v0001", kind=AssignmentKind.DEPLOY, actor="worker",
                              reason="Deployed v0002.", ts=T0)
    assert statuses(ctx) == {"v0001": "retired", "v0002": "champion"}
    [assignment] = alias_history(ctx.db)
    assert (assignment.id, assignment.alias, assignment.version, assignment.previous_version, assignment.kind,
            assignment.actor, assignment.reason, assignment.ts) == (
        move, Alias.CHAMPION, "v0002", "v0001", AssignmentKind.DEPLOY, "worker", "Deployed v0002.", T0)
    [event] = recent_events(ctx.db, kind=EventKind.DEPLOY)
    assert (event["version"], event["message"], event["details"]) == (
        "v0002", "Deployed v0002.", {"version": "v0002", "previous": "v0001", "kind": "deploy", "actor": "worker"})


def test_promote_retires_every_other_champion_found_by_status_alone(ctx):
    for version, status in [("v0001", S.CHAMPION), ("v0002", S.REJECTED), ("v0003", S.CHAMPION), ("v0004", S.RETIRED)]:
        register(ctx, version, status=status)  # two champions: what a crash between two writes could leave
    register(ctx, "v0005")
    with ctx.db.read() as con:
        assert versions_with_status(con, S.CHAMPION) == ["v0001", "v0003"]
        assert versions_with_status(con, S.CANDIDATE) == ["v0005"]
        assert versions_with_status(con, S.FAILED) == []
    with ctx.db.write() as con:
        ModelRegistry(ctx).promote(con, "v0005", previous="v0003", kind=AssignmentKind.DEPLOY, actor="worker",
                                   reason="Deployed v0005.", ts=T0)
    assert statuses(ctx) == {"v0001": "retired", "v0002": "rejected", "v0003": "retired", "v0004": "retired",
                             "v0005": "champion"}


def test_best_deployed_ranks_versions_the_alias_pointed_at_by_stored_macro_f1(ctx):
    scores = {"v0001": 0.70, "v0002": 0.90, "v0003": None, "v0004": 0.80, "v0005": 0.95, "v0006": 0.99}
    models = ModelRegistry(ctx)
    for version, f1 in scores.items():
        register(ctx, version)
        with ctx.db.write() as con:
            if f1 is not None:
                set_model_metrics(con, version, accuracy=f1, macro_f1=f1, eval_rows=100, report={"labels": []})
            if version != "v0006":  # v0006 is never deployed
                models.promote(con, version, previous=None, kind=AssignmentKind.DEPLOY, actor="test",
                               reason=f"Deployed {version}.", ts=T0)
    with ctx.db.write() as con:
        set_model_status(con, "v0002", S.FAILED)  # a version that can no longer serve is never re-scored
    assert [r["version"] for r in best_deployed(ctx.db, exclude={"v0005"}, limit=3)] == ["v0004", "v0001", "v0003"]
    assert [(r["version"], r["status"], r["macro_f1"]) for r in best_deployed(ctx.db, limit=2)] == [
        ("v0005", "champion", 0.95), ("v0004", "retired", 0.80)]
    assert best_deployed(ctx.db, exclude={"v0001", "v0003", "v0004", "v0005"}, limit=3) == []


# --- the alias history and the pointer, through real deployments ------------------------------------


def deploy_new(ctx, version, pipeline):
    register(ctx, version, model=pipeline)
    result = deploy(ctx, version, kind=AssignmentKind.DEPLOY, reason=f"Deployed {version}.")
    assert result.deployed, result.message


def test_the_alias_history_is_exact_after_promote_rollback_promote(ctx, pipeline, clock):
    deploy_new(ctx, "v0001", pipeline)
    clock.advance(hours=1)
    deploy_new(ctx, "v0002", pipeline)
    clock.advance(hours=1)
    assert rollback(ctx, why="a complaint", actor="cli").deployed
    clock.advance(hours=1)
    deploy_new(ctx, "v0003", pipeline)
    moves = [(m.ts, m.version, m.previous_version, m.kind, m.actor, m.reason) for m in alias_history(ctx.db)]
    assert moves == [
        (T0, "v0001", None, "deploy", "worker", "Deployed v0001."),
        (T0 + timedelta(hours=1), "v0002", "v0001", "deploy", "worker", "Deployed v0002."),
        (T0 + timedelta(hours=2), "v0001", "v0002", "rollback", "cli", "Rolled back from v0002 to v0001 (a complaint)."),
        (T0 + timedelta(hours=3), "v0003", "v0001", "deploy", "worker", "Deployed v0003."),
    ]
    assert [m.id for m in alias_history(ctx.db)] == [d["id"] for d in reversed(list_deployments(ctx.db))]
    assert statuses(ctx) == {"v0001": "retired", "v0002": "retired", "v0003": "champion"}
    pointer = registry.read_active(ctx.settings.registry_dir)
    # v0002 was rolled back from: it never comes back as a fallback.
    assert (pointer.active.version, [h.version for h in pointer.history]) == ("v0003", ["v0001"])
    assert served_before(alias_history(ctx.db)) == ["v0003", "v0001"]
    assert ModelRegistry(ctx).pointer_from_store(ts=T0) == pointer


def test_fallback_walks_the_champion_history_backwards_never_to_the_version_rolled_back_from(ctx, pipeline):
    """Issue 13, case 14: deleting the champion's file after a rollback served the version rolled back from."""
    for version in ("v0001", "v0002", "v0003"):
        deploy_new(ctx, version, pipeline)
    assert rollback(ctx, to="v0002", why="operator").deployed
    registry.model_file(ctx.settings.registry_dir, "v0002").unlink()
    clf = Classifier(settings=ctx.settings, log_queries=False, background=False, report_events=False)
    try:
        status = clf.status()
        assert (status.version, status.active_version) == ("v0001", "v0002")
        assert status.fallback_reason.startswith("active model v0002 cannot be loaded (model v0002: file ")
        assert clf.predict("where is my parcel").version == "v0001"
    finally:
        clf.close()


@pytest.mark.parametrize("stack, target, kind, expected", [
    (["v0003", "v0002", "v0001"], "v0004", "deploy", ["v0004", "v0003", "v0002", "v0001"]),
    (["v0003", "v0002", "v0001"], "v0001", "rollback", ["v0001"]),
    (["v0004", "v0001"], "v0003", "rollback", ["v0003", "v0001"]),
    (["v0002", "v0001"], "v0002", "auto_rollback", ["v0002", "v0001"]),
    (["v0002", "v0001"], "v0001", "deploy", ["v0001", "v0002"]),
    ([], "v0001", "repair", ["v0001"]),
], ids=["deploy-pushes", "rollback-pops", "rollback-off-stack", "auto-rollback-keeps", "redeploy-moves-up", "repair"])
def test_next_stack(stack, target, kind, expected):
    assert next_stack(stack, target, kind=AssignmentKind(kind)) == expected


# --- a damaged pointer (issue 13, case 15) -----------------------------------------------------------

DAMAGE = {
    "deeply-nested-json": lambda path: path.write_text("[" * 200_000 + "]" * 200_000),
    "a-directory": lambda path: (path.unlink(), path.mkdir()),
    "garbage": lambda path: path.write_bytes(b"\x00\xffnot json at all"),
    "json-of-another-shape": lambda path: path.write_text(json.dumps(["v0002"])),
}


@pytest.mark.parametrize("damage", list(DAMAGE), ids=list(DAMAGE))
def test_a_damaged_pointer_is_refused_then_repaired_from_the_store_with_an_event(ctx, pipeline, damage):
    deploy_new(ctx, "v0001", pipeline)
    deploy_new(ctx, "v0002", pipeline)
    sound = registry.read_active(ctx.settings.registry_dir)
    path = ctx.settings.registry_dir / registry.ACTIVE_FILE
    DAMAGE[damage](path)
    with pytest.raises(ModelLoadError, match=r"ACTIVE.json (is damaged|cannot be read)"):
        registry.read_active(ctx.settings.registry_dir)
    fresh = Classifier(settings=ctx.settings, log_queries=False, background=False, report_events=False)
    with pytest.raises(NoModelError, match=r"^no model can serve: .*ACTIVE.json"):
        fresh.predict("where is my parcel")  # a clear error, not RecursionError or IsADirectoryError
    fixes = repair(ctx)
    assert len(fixes) == 1, fixes
    assert fixes[0].startswith("the pointer file was damaged (")
    assert fixes[0].endswith("rewritten from the store (v0002 serves)")
    assert recent_events(ctx.db, kind=EventKind.REPAIR)[0]["message"] == f"Start-up repair: {fixes[0]}."
    repaired = registry.read_active(ctx.settings.registry_dir)
    assert (repaired.active, repaired.history) == (sound.active, sound.history)
    fresh.reload()
    assert fresh.predict("where is my parcel").version == "v0002"
    fresh.close()


def test_the_rollback_a_damaged_pointer_calls_for_can_run(ctx, pipeline):
    deploy_new(ctx, "v0001", pipeline)
    deploy_new(ctx, "v0002", pipeline)
    (ctx.settings.registry_dir / registry.ACTIVE_FILE).write_text("[" * 100_000)
    result = rollback(ctx, why="the pointer was damaged", actor="cli")
    assert (result.deployed, result.version, result.previous) == (True, "v0001", "v0002")
    [pointer_fix] = [e for e in recent_events(ctx.db, kind=EventKind.REPAIR)]
    assert pointer_fix["message"].startswith("Pointer repair: the pointer file was damaged (")
    assert registry.read_active(ctx.settings.registry_dir).active.version == "v0001"


def test_a_damaged_pointer_without_a_champion_in_the_store_is_removed(ctx):
    path = ctx.settings.registry_dir / registry.ACTIVE_FILE
    path.write_text("{")
    fix = ModelRegistry(ctx).repair_pointer(ts=T0)
    assert fix.endswith("and the store names no champion: removed it")
    assert not path.exists() and registry.read_active(ctx.settings.registry_dir) is None


# --- migrating a schema-1 store ------------------------------------------------------------------------


def test_a_schema_1_store_migrates_statuses_and_deployments_into_the_alias_history(tmp_path):
    db = Database(tmp_path / "retrainer.duckdb")
    with db.write() as con:
        con.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, name VARCHAR, applied_at TIMESTAMP)")
        for statement in MIGRATIONS[0][2]:
            con.execute(statement)
        con.execute("INSERT INTO schema_version VALUES (1, 'initial schema', now()::TIMESTAMP)")
        for version, status in [("v0001", "retired"), ("v0002", "active"), ("v0003", "rejected"), ("v0004", "rejected")]:
            con.execute("INSERT INTO models (version, created_at, status, file, sha256, sklearn_version) "
                        "VALUES (?, ?, ?, ?, ?, '1.9.1')", [version, T0, status, f"{version}.pkl", "0" * 64])
        for rid, (candidate, decision) in enumerate([("v0003", "inconclusive"), ("v0004", "rejected")], start=1):
            con.execute("INSERT INTO retrains (started_at, trigger, status, candidate_version, decision) "
                        "VALUES (?, 'manual', 'rejected', ?, ?)", [T0, candidate, decision])
        for version, previous, kind in [("v0001", None, "deploy"), ("v0002", "v0001", "deploy")]:
            con.execute("INSERT INTO deployments (ts, version, previous_version, kind, reason) VALUES (?, ?, ?, ?, 'r')",
                        [T0, version, previous, kind])
    assert migrate(db) == LATEST
    assert {m["version"]: m["status"] for m in list_models(db)} == {
        "v0001": "retired", "v0002": "champion", "v0003": "inconclusive", "v0004": "rejected"}
    assert [(m.id, m.version, m.previous_version, m.kind, m.actor) for m in alias_history(db)] == [
        (1, "v0001", None, "deploy", "unrecorded (before schema 2)"),
        (2, "v0002", "v0001", "deploy", "unrecorded (before schema 2)")]
    with db.write() as con:  # new moves continue the ids, and the deployments view shows them
        con.execute("INSERT INTO alias_history (ts, alias, version, previous_version, kind, actor) "
                    "VALUES (?, 'champion', 'v0001', 'v0002', 'rollback', 'test')", [T0])
    assert [(d["id"], d["version"], d["kind"]) for d in list_deployments(db)] == [
        (3, "v0001", "rollback"), (2, "v0002", "deploy"), (1, "v0001", "deploy")]
