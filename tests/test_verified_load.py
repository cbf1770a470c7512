"""After a scikit-learn upgrade: a version pickled by another scikit-learn serves if it reproduces its
fingerprint, fallback walks back to the newest version that does, and the gate never falls back to
the majority baseline while a champion exists.

"Another scikit-learn" is faked by rewriting the version recorded in the pointer file and the
registry (the pickle itself is this scikit-learn's): exactly what ``load_checked`` reads first.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from engine import fingerprint, registry
from engine.classifier import load_serving_model
from engine.importer import import_file
from engine.retrain import run_cycle
from engine.status import system_status
from engine.worker import Worker
from store.events import recent_events
from store.retrains import recent_retrains

OLD = "1.8.0"


def pickled_by(ctx, versions: set[str], old: str = OLD) -> None:
    """Record ``versions`` as pickled by scikit-learn ``old``, in the pointer file and in the registry."""
    reg = ctx.settings.registry_dir
    pointer = registry.read_active(reg)

    def aged(ref):
        return dataclasses.replace(ref, sklearn_version=old) if ref.version in versions else ref

    registry.write_active(reg, dataclasses.replace(pointer, active=aged(pointer.active),
                                                   history=tuple(aged(r) for r in pointer.history)))
    with ctx.db.write() as con:
        for version in versions:
            con.execute("UPDATE models SET sklearn_version = ? WHERE version = ?", [old, version])


def nudge_fingerprint(ctx, version: str, by: float) -> None:
    path = registry.fingerprint_file(ctx.settings.registry_dir, version)
    doc = json.loads(path.read_bytes())
    doc["proba"][0][0] += by
    path.write_text(json.dumps(doc))


@pytest.fixture
def two_versions(ctx, labelled_csv):
    """v0001 then v0002 deployed (v0002 the champion), each with its fingerprint."""
    import_file(ctx, labelled_csv, labeled=True)
    assert run_cycle(ctx, trigger="manual").candidate == "v0001"
    ctx.clock.advance(hours=1)
    second = run_cycle(ctx, trigger="manual", force=True)  # the same data: skipped unless forced
    assert (second.status, second.candidate) == ("accepted", "v0002")
    return ctx


# -- the fingerprint itself ----------------------------------------------------------------------------


def test_every_trained_version_has_a_fingerprint_that_it_reproduces(two_versions):
    reg = two_versions.settings.registry_dir
    for version in ("v0001", "v0002"):
        probe = registry.read_fingerprint(reg, version)
        assert (len(probe.texts), probe.sklearn_version) == (fingerprint.PROBE_SIZE, registry.SKLEARN_VERSION)
        model = registry.load_model(reg, version, sha256=_sha(two_versions, version),
                                    sklearn_version=registry.SKLEARN_VERSION)
        assert fingerprint.difference(model, probe) == 0.0
        assert probe.classes == tuple(model.classes_)
    assert registry.read_fingerprint(reg, "v0001").texts == registry.read_fingerprint(reg, "v0002").texts


def _sha(ctx, version: str) -> str:
    with ctx.db.read() as con:
        return con.execute("SELECT sha256 FROM models WHERE version = ?", [version]).fetchone()[0]


def test_a_fingerprint_round_trips_and_other_classes_never_match():
    probe = fingerprint.Fingerprint("1.9.1", ("a", "b"), ("x", "y"), np.array([[0.25, 0.75], [1 / 3, 2 / 3]]))
    again = fingerprint.Fingerprint.from_json(probe.to_json())
    assert (again.texts, again.classes, again.proba.tolist()) == (("a", "b"), ("x", "y"), [[0.25, 0.75], [1 / 3, 2 / 3]])

    class Other:
        classes_ = np.array(["y", "x"])

    assert fingerprint.difference(Other(), probe) == float("inf")
    with pytest.raises(ValueError, match=r"not a fingerprint: probabilities of shape \(1, 2\) for 2 texts"):
        fingerprint.Fingerprint.from_json(b'{"sklearn_version": "1", "texts": ["a", "b"], "classes": ["x", "y"], '
                                          b'"proba": [[0.5, 0.5]]}')


# -- serving after an upgrade ---------------------------------------------------------------------------


def test_a_version_pickled_by_another_sklearn_that_verifies_serves_and_a_retrain_follows(two_versions):
    ctx = two_versions
    pickled_by(ctx, {"v0001", "v0002"})

    loaded, status = load_serving_model(ctx.settings.registry_dir)
    assert (loaded.version, status.fallback, status.active_stale) == ("v0002", False, False)
    assert status.verified == (f"v0002 pickled by {OLD} verified under {registry.SKLEARN_VERSION} "
                               f"({fingerprint.PROBE_SIZE} probe texts, largest difference 0)")

    worker = Worker(ctx, synchronous=True)
    worker.check_model(force=True)

    events = [e["message"] for e in recent_events(ctx.db, kind="fallback", limit=5)]
    assert events[-1].startswith(f"Verified load: {status.verified}; it serves. A retrain was requested so a "
                                 "version pickled by this scikit-learn follows (retrain #3 ")
    assert not any(m.startswith("Fallback in use") for m in events)
    retrain = recent_retrains(ctx.db, limit=1)[0]
    # The champion was scored (verified), not replaced by a baseline comparison; the same data is not skipped.
    assert (retrain["trigger"], retrain["champion_version"], retrain["status"]) == ("fallback", "v0002", "accepted")
    assert registry.read_active(ctx.settings.registry_dir).active.sklearn_version == registry.SKLEARN_VERSION
    assert system_status(ctx)["fallback"] is None


def test_a_version_that_does_not_reproduce_its_fingerprint_falls_back_to_the_newest_that_does(two_versions):
    ctx = two_versions
    pickled_by(ctx, {"v0001", "v0002"})
    nudge_fingerprint(ctx, "v0002", 0.01)

    worker = Worker(ctx, synchronous=True)
    worker.predictor.reload()
    status = worker.predictor.status()

    refusal = (f"model v0002 was pickled by scikit-learn {OLD} and does not reproduce its fingerprint under "
               f"{registry.SKLEARN_VERSION} (probabilities on {fingerprint.PROBE_SIZE} probe texts differ by up to "
               "0.01; tolerance 1e-06): retrain (`python -m engine retrain`)")
    assert (status.version, status.active_version, status.active_stale) == ("v0001", "v0002", True)
    assert status.fallback_reason == f"active model v0002 cannot be loaded ({refusal}); serving v0001"

    worker.check_model(force=True)  # records the fallback and asks for a retrain (run here: synchronous)

    messages = [e["message"] for e in reversed(recent_events(ctx.db, kind="fallback", limit=5))]
    assert messages[0] == f"Fallback in use: {status.fallback_reason}."
    # The retrain ran inside that call (a synchronous worker): its new version ends the fallback.
    assert messages[1] == "Fallback over: v0003 serves again."
    assert messages[2].startswith("Retrain requested because the active model comes from another scikit-learn: ")
    retrain = recent_retrains(ctx.db, limit=1)[0]
    # Judged against v0001, the version that serves, not against the baseline.
    assert (retrain["trigger"], retrain["champion_version"], retrain["status"]) == ("fallback", "v0001", "accepted")
    assert system_status(ctx)["fallback"] is None


def test_a_version_without_a_fingerprint_is_not_trusted(two_versions):
    ctx = two_versions
    pickled_by(ctx, {"v0002"})
    registry.fingerprint_file(ctx.settings.registry_dir, "v0002").unlink()

    loaded, status = load_serving_model(ctx.settings.registry_dir)

    assert (loaded.version, status.active_stale, status.verified) == ("v0001", True, None)
    assert status.fallback_reason == (
        f"active model v0002 cannot be loaded (model v0002 was pickled by scikit-learn {OLD}, this process has "
        f"{registry.SKLEARN_VERSION}, and no fingerprint was recorded to verify it: retrain (`python -m engine "
        "retrain`) rather than trust it); serving v0001")


# -- the gate ---------------------------------------------------------------------------------------------


def test_the_gate_judges_against_the_version_that_serves_when_the_champion_cannot_be_loaded(two_versions):
    ctx = two_versions
    pickled_by(ctx, {"v0002"})
    registry.fingerprint_file(ctx.settings.registry_dir, "v0002").unlink()

    result = run_cycle(ctx, trigger="manual")

    assert (result.champion, result.status) == ("v0001", "accepted")
    assert result.reason.endswith(
        f"(Judged against v0001, which serves while the active version v0002 cannot be loaded: model v0002 was pickled "
        f"by scikit-learn {OLD}, this process has {registry.SKLEARN_VERSION}, and no fingerprint was recorded to "
        "verify it: retrain (`python -m engine retrain`) rather than trust it)")
    assert "first model" not in result.reason


def test_the_gate_is_inconclusive_when_no_deployed_version_can_be_scored(two_versions):
    ctx = two_versions
    pickled_by(ctx, {"v0001", "v0002"})
    for version in ("v0001", "v0002"):
        registry.fingerprint_file(ctx.settings.registry_dir, version).unlink()

    result = run_cycle(ctx, trigger="manual")

    assert (result.status, result.decision, result.champion, result.deployed) == ("rejected", "inconclusive", "v0002", False)
    assert result.reason.startswith(
        f"Inconclusive: the champion v0002 could not be scored (model v0002 was pickled by scikit-learn {OLD}, this "
        f"process has {registry.SKLEARN_VERSION}, and no fingerprint was recorded to verify it: retrain")
    assert "first model" not in result.reason and "baseline" not in result.reason
    assert registry.read_active(ctx.settings.registry_dir).active.version == "v0002"
    gate = recent_events(ctx.db, kind="gate", limit=1)[0]
    assert gate["message"].startswith(f"Candidate v0003 inconclusive (manual retrain #{result.retrain_id}). Inconclusive: ")


# -- stores from before fingerprints --------------------------------------------------------------------


def test_the_worker_records_missing_fingerprints_at_start(two_versions):
    ctx = two_versions
    for version in ("v0001", "v0002"):
        registry.fingerprint_file(ctx.settings.registry_dir, version).unlink()

    assert Worker(ctx, synchronous=True).backfill_fingerprints() == ["v0001", "v0002"]

    probe = registry.read_fingerprint(ctx.settings.registry_dir, "v0002")
    assert len(probe.texts) == fingerprint.PROBE_SIZE
    assert recent_events(ctx.db, kind="worker", limit=1)[0]["message"] == (
        f"Fingerprints recorded for v0001, v0002 ({fingerprint.PROBE_SIZE} probe texts), so they can be verified "
        "after a scikit-learn upgrade.")
    assert Worker(ctx, synchronous=True).backfill_fingerprints() == []
