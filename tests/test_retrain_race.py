"""A rollback that lands while a retrain scores its champion: the candidate never deploys over it.

The gate loads the champion from the active pointer (a slow unpickle on a loaded machine takes
hundreds of ms); the deploy later checks, under ``engine.deployment.switching()``, that the active
pointer has not switched since. Both must come from the same read of the pointer: with two reads, a
rollback between them made the check compare the new active version with itself and the candidate,
judged against the old champion, deployed over the operator's rollback (a tester's report).

Real store, real fitted models on disk; the only stand-in is a pause injected into the cycle's
champion load, during which the rollback runs on another thread as the worker's control thread does.
"""

from __future__ import annotations

import threading

import pytest

from engine import deployment, registry
from engine.importer import import_file
from engine.retrain import run_cycle
from store.models import alias_history, list_models
from store.retrains import get_retrain

PAUSE_TIMEOUT = 120


@pytest.fixture
def two_versions(ctx, labelled_csv):
    """v0001 then v0002 (the same data, forced): v0002 serves, v0001 is retired."""
    import_file(ctx, labelled_csv, labeled=True)
    assert run_cycle(ctx, trigger="manual").candidate == "v0001"
    ctx.clock.advance(minutes=1)
    assert run_cycle(ctx, trigger="manual", force=True).candidate == "v0002"
    ctx.clock.advance(minutes=1)
    return ctx


def cycle_paused_in_champion_load(ctx, monkeypatch, during):
    """Run a forced cycle on its own thread; its first registry load once scoring started waits while
    ``during()`` runs on this thread; return the cycle's result."""
    load = registry.load_model
    scoring, in_load, resume = threading.Event(), threading.Event(), threading.Event()

    def paused_load(*args, **kwargs):
        model = load(*args, **kwargs)
        if threading.current_thread().name == "cycle" and scoring.is_set() and not in_load.is_set():
            in_load.set()
            assert resume.wait(PAUSE_TIMEOUT)
        return model

    def progress(fraction, stage):
        if stage == "scoring":
            scoring.set()

    monkeypatch.setattr(registry, "load_model", paused_load)
    out = {}
    cycle = threading.Thread(name="cycle", target=lambda: out.setdefault(
        "result", run_cycle(ctx, trigger="manual", force=True, progress=progress)))
    cycle.start()
    try:
        assert in_load.wait(PAUSE_TIMEOUT), "the cycle never loaded its champion"
        during()
    finally:
        resume.set()
        cycle.join(PAUSE_TIMEOUT)
    return out["result"]


def test_a_rollback_during_the_champion_load_stops_the_candidate_judged_against_the_old_champion(
        two_versions, monkeypatch):
    ctx = two_versions
    rolled = []
    result = cycle_paused_in_champion_load(ctx, monkeypatch, lambda: rolled.append(
        deployment.rollback(ctx, why="operator: the active version is bad", actor="tester")))

    assert (rolled[0].deployed, rolled[0].previous, rolled[0].version) == (True, "v0002", "v0001")
    assert (result.status, result.candidate, result.champion, result.deployed) == ("rejected", "v0003", "v0002", False)
    assert result.reason == (
        "the active version changed from v0002 to v0001 while this retrain ran (a rollback); the candidate was "
        "judged against the old one, so the next retrain judges it again")
    assert registry.read_active(ctx.settings.registry_dir).active.version == "v0001"
    assert {m["version"]: m["status"] for m in list_models(ctx.db)} == {
        "v0001": "champion", "v0002": "retired", "v0003": "rejected"}
    assert [(a.kind, a.previous_version, a.version, a.actor) for a in alias_history(ctx.db)] == [
        ("deploy", None, "v0001", "worker"), ("deploy", "v0001", "v0002", "worker"),
        ("rollback", "v0002", "v0001", "tester")]  # no deploy after the operator's rollback
    row = get_retrain(ctx.db, result.retrain_id)
    assert (row["status"], row["champion_version"], row["candidate_version"]) == ("rejected", "v0002", "v0003")


def test_a_rollback_and_a_rollback_back_during_the_load_stop_the_candidate_too(two_versions, monkeypatch):
    """The pointer names the judged version again, but the operator switched it since: their choice stands."""
    ctx = two_versions

    def back_and_forth():
        assert deployment.rollback(ctx, why="operator", actor="tester").version == "v0001"
        ctx.clock.advance(minutes=1)
        assert deployment.rollback(ctx, to="v0002", why="operator: it was fine", actor="tester").version == "v0002"

    result = cycle_paused_in_champion_load(ctx, monkeypatch, back_and_forth)

    assert (result.status, result.candidate, result.champion) == ("rejected", "v0003", "v0002")
    assert result.reason == (
        "the active version was switched while this retrain ran (v0002 again since 2026-03-04T12:03:00, after a "
        "rollback; it was judged against v0002 deployed at 2026-03-04T12:01:00): the operator's choice stands, "
        "and the next retrain judges the candidate again")
    assert registry.read_active(ctx.settings.registry_dir).active.version == "v0002"
    assert [(a.kind, a.version) for a in alias_history(ctx.db)][-2:] == [("rollback", "v0001"), ("rollback", "v0002")]


def test_a_rollback_before_the_champion_is_read_is_what_the_candidate_is_judged_against(two_versions, monkeypatch):
    """A rollback that lands before the gate reads the pointer is the champion: the candidate is judged
    against it and, no worse, deploys (nothing was overtaken)."""
    ctx = two_versions
    assert deployment.rollback(ctx, why="operator", actor="tester").version == "v0001"
    ctx.clock.advance(minutes=1)
    result = run_cycle(ctx, trigger="manual", force=True)
    assert (result.status, result.candidate, result.champion, result.deployed) == ("accepted", "v0003", "v0001", True)
    assert registry.read_active(ctx.settings.registry_dir).active.version == "v0003"
