"""Tests for the extended gate (engine.gate.decide's keyword-only inputs): the two modes,
too little evidence, the per-class and slow-decay guards at their boundaries, and whole
retrain cycles in noninferiority mode and with the slow-decay guard on a real store."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from engine import registry
from engine.context import Context
from engine.dataset import eval_bucket, normalize_text
from engine.evaluation import Scores, expected_calibration_error
from engine.gate import Decision, decide
from engine.importer import import_file
from engine.retrain import run_cycle
from engine.stats import Interval, Paired, mcnemar_counts
from store.events import recent_events
from store.models import get_model, list_models
from store.retrains import get_retrain
from tests.conftest import labelled_frame

CHAMPION = Scores(0.90, 0.89, 500)
TOL = 0.01


def paired(acc: tuple[float, float, float], f1: tuple[float, float, float], rows: int = 500) -> Paired:
    return Paired(rows=rows, accuracy=Interval(*acc), macro_f1=Interval(*f1), mcnemar=mcnemar_counts(10, 12),
                  resamples=1000, confidence=0.95, seed=0)


def ni(candidate: Scores, p: Paired, **kw) -> Decision:
    return decide(candidate=candidate, champion=CHAMPION, baseline=None, tolerance=TOL, mode="noninferiority",
                  paired=p, **kw)


def with_class(scores: Scores, **classes: tuple[float, int]) -> Scores:
    """``scores`` with per-class F1 and support set: name=(f1, support)."""
    per_class = {k: {"precision": f1, "recall": f1, "f1": f1, "support": n} for k, (f1, n) in classes.items()}
    return dataclasses.replace(scores, per_class=per_class)


# --- point mode with the extra inputs: the spec's four cases unchanged ---------------------------------


@pytest.mark.parametrize(("candidate", "outcome"),
                         [((0.92, 0.91), "accepted"), ((0.85, 0.84), "rejected"), ((0.895, 0.884), "accepted"),
                          ((0.93, 0.87), "rejected")],
                         ids=["improved", "degraded", "within-tolerance", "accuracy-up-f1-down"])
def test_point_mode_with_paired_figures_decides_exactly_as_the_spec(candidate, outcome):
    cand = Scores(*candidate, 500)
    plain = decide(candidate=cand, champion=CHAMPION, baseline=None, tolerance=TOL)
    full = decide(candidate=cand, champion=CHAMPION, baseline=None, tolerance=TOL, mode="point",
                  paired=paired((-0.5, -0.6, -0.4), (-0.5, -0.6, -0.4)), min_eval_rows=10_000, min_class_support=99)
    assert (full.outcome, full.accepted, full.rule, full.reason, full.deltas) == (
        outcome, plain.accepted, plain.rule, plain.reason, plain.deltas)
    assert full.evidence["mode"] == "point" and full.evidence["paired"]["accuracy"] == {
        "difference": -0.5, "low": -0.6, "high": -0.4}
    assert "too_little_evidence" not in full.evidence  # min_eval_rows is a noninferiority setting


# --- noninferiority -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("acc", "f1", "outcome"),
    [
        ((0.0, -0.01, 0.01), (0.0, -0.01, 0.01), "accepted"),            # lower ends exactly at -tolerance
        ((0.0, -0.0101, 0.01), (0.0, -0.01, 0.01), "inconclusive"),      # just past it
        ((-0.03, -0.05, -0.0101), (0.0, -0.01, 0.01), "rejected"),       # the whole interval below
        ((-0.03, -0.05, -0.01), (0.0, -0.01, 0.01), "inconclusive"),     # upper end exactly at -tolerance
    ],
    ids=["accept-at-edge", "inconclusive-past-edge", "reject-below", "upper-at-edge-is-not-a-rejection"],
)
def test_noninferiority_boundaries(acc, f1, outcome):
    d = ni(Scores(0.90, 0.89, 500), paired(acc, f1))
    assert (d.outcome, d.accepted) == (outcome, outcome == "accepted")
    assert d.rule == ("noninferiority: the lower end of each difference's 95% interval >= -0.01; "
                      "rejected when an upper end < -0.01")


def test_inconclusive_says_how_many_more_rows_would_settle_it():
    d = ni(Scores(0.90, 0.89, 500), paired((0.0, -0.02, 0.02), (0.0, -0.015, 0.015)))
    # accuracy: half-width 0.02, gap 0.01 -> 4 x 500 rows; macro-F1: 1.5^2 x 500 = 1125: the larger wins
    assert d.evidence["more_rows_needed"] == 1500
    assert d.reason == (
        "Inconclusive: the 95% interval of accuracy, macro-F1 straddles -1.0 pts; the champion stays; "
        "about 1,500 more labelled evaluation rows would likely settle it. "
        "(accuracy 90.0% vs 90.0% (+0.0 pts, 95% interval [-2.0, +2.0] pts); "
        "macro-F1 89.0% vs 89.0% (+0.0 pts, 95% interval [-1.5, +1.5] pts))")


def test_rejected_reason_names_the_interval():
    d = ni(Scores(0.85, 0.89, 500), paired((-0.05, -0.08, -0.02), (0.0, -0.01, 0.01)))
    assert d.reason.startswith("Rejected: accuracy: the whole 95% interval [-8.0, -2.0] pts lies below -1.0 pts. ")


def test_noninferiority_needs_the_paired_comparison_and_modes_are_checked():
    with pytest.raises(ValueError, match=r"noninferiority mode needs the paired comparison: pass paired="):
        decide(candidate=CHAMPION, champion=CHAMPION, baseline=None, tolerance=TOL, mode="noninferiority")
    with pytest.raises(ValueError, match=r"unknown gate mode 'strict': use one of point, noninferiority"):
        decide(candidate=CHAMPION, champion=CHAMPION, baseline=None, tolerance=TOL, mode="strict")


# --- too little evidence --------------------------------------------------------------------------------

GOOD = ((0.02, 0.0, 0.04), (0.02, 0.0, 0.04))


@pytest.mark.parametrize(
    ("rows", "support", "outcome", "problem"),
    [
        (200, 5, "accepted", None),
        (199, 5, "inconclusive", "199 evaluation rows, fewer than the 200 required"),
        (200, 4, "inconclusive", "class(es) rare have fewer than 5 evaluation rows"),
    ],
    ids=["enough", "one-row-short", "thin-class"],
)
def test_too_little_evidence_is_inconclusive_never_an_accept(rows, support, outcome, problem):
    cand = with_class(Scores(0.92, 0.91, rows), common=(0.9, rows - support), rare=(0.9, support))
    d = ni(cand, paired(*GOOD, rows=rows), min_eval_rows=200, min_class_support=5)
    assert d.outcome == outcome
    assert d.evidence["too_little_evidence"] == problem
    if problem:
        assert d.reason.startswith(f"Inconclusive: too little evidence ({problem}); the champion stays. "
                                   "each 95% interval lies above -1.0 pts.")


def test_a_clear_rejection_stands_even_on_thin_evidence():
    d = ni(Scores(0.5, 0.5, 50), paired((-0.4, -0.5, -0.3), (-0.4, -0.5, -0.3), rows=50), min_eval_rows=200)
    assert d.outcome == "rejected"
    assert d.evidence["too_little_evidence"] == "50 evaluation rows, fewer than the 200 required"


# --- the per-class guard ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("candidate_f1", "support", "outcome"),
                         [(0.85, 30, "accepted"), (0.8499, 30, "rejected"), (0.5, 29, "accepted")],
                         ids=["drop-at-tolerance", "drop-past-tolerance", "too-few-rows-to-judge"])
def test_per_class_guard_boundary(candidate_f1, support, outcome):
    champion = with_class(CHAMPION, billing=(0.90, support), refund=(0.8, 40))
    candidate = with_class(Scores(0.90, 0.89, 500), billing=(candidate_f1, support), refund=(0.8, 40))
    d = decide(candidate=candidate, champion=champion, baseline=None, tolerance=TOL, per_class_tolerance=0.05,
               per_class_min_support=30)
    assert d.outcome == outcome
    guard = d.evidence["guards"][0]
    assert guard["classes_checked"] == (["billing", "refund"] if support >= 30 else ["refund"])
    if outcome == "rejected":
        assert d.reason == ("Rejected: F1 of class billing fell 5.0 pts, more than the 5.0 pts per-class tolerance. "
                            "Without the guards: no metric got worse. "
                            "(accuracy 90.0% vs 90.0% (+0.0 pts); macro-F1 89.0% vs 89.0% (+0.0 pts))")
        assert guard["fell"] == {"billing": pytest.approx(0.0501)}


# --- the slow-decay guard ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("best_f1", "outcome"), [(0.91, "accepted"), (0.9101, "rejected")],
                         ids=["two-points-below", "just-past"])
def test_slow_decay_guard_boundary(best_f1, outcome):
    # Each step within tolerance (-0.5 pts vs the champion) but the best version ever was better.
    d = decide(candidate=Scores(0.895, 0.89, 500), champion=Scores(0.90, 0.895, 500), baseline=None, tolerance=TOL,
               best=Scores(0.90, best_f1, 500), best_version="v0003", cumulative_tolerance=0.02)
    assert d.outcome == outcome
    assert d.evidence["guards"][0]["best_version"] == "v0003"
    if outcome == "rejected":
        assert d.reason.startswith(
            "Rejected: slow decay: macro-F1 89.0% is 2.0 pts below the best version ever deployed (v0003, 91.0% on "
            "the same rows), more than the 2.0 pts cumulative tolerance, even if each step was within tolerance. "
            "Without the guards: within the 1.0 pts tolerance.")


def test_a_guard_turns_inconclusive_into_rejected():
    d = ni(Scores(0.90, 0.89, 500), paired((0.0, -0.02, 0.02), (0.0, -0.02, 0.02)),
           best=Scores(0.95, 0.95, 500), best_version="v0001", cumulative_tolerance=0.02)
    assert d.outcome == "rejected"
    assert d.reason.startswith("Rejected: slow decay: accuracy 90.0% is 5.0 pts below")


def test_decision_details_and_outcome_check():
    d = ni(Scores(0.92, 0.91, 500), paired(*GOOD))
    details = d.details()
    assert (details["outcome"], details["accepted"], details["evidence"]["mode"]) == ("accepted", True, "noninferiority")
    assert details["evidence"]["paired"]["mcnemar"] == {"candidate_only": 10, "champion_only": 12,
                                                       "p_value": mcnemar_counts(10, 12).p_value,
                                                       "mid_p_value": mcnemar_counts(10, 12).mid_p_value}
    with pytest.raises(ValueError, match=r"outcome 'inconclusive' does not fit accepted=True"):
        Decision(True, "r", "why", {}, outcome="inconclusive")


# --- whole cycles on a real store ----------------------------------------------------------------------------


@pytest.fixture
def labelled(ctx, tmp_path):
    path = tmp_path / "good.csv"
    labelled_frame(40, seed=1).to_csv(path, index=False)
    import_file(ctx, path, labeled=True)
    return ctx


def reopen(ctx, **changes) -> Context:
    return Context.open(ctx.settings.replace(**changes), clock=ctx.clock)


def test_noninferiority_cycle_is_inconclusive_on_too_few_rows_then_accepted(labelled):
    ctx = reopen(labelled, gate_mode="noninferiority")
    first = run_cycle(ctx, trigger="manual", force=True)
    assert (first.status, first.decision) == ("accepted", None)  # the first model is judged against the baseline
    eval_rows = get_retrain(ctx.db, first.retrain_id)["eval_rows"]
    assert eval_rows < 200

    # The same data again: the candidate is the same model, so every difference is exactly 0.
    second = run_cycle(ctx, trigger="manual", force=True)
    assert (second.status, second.decision, second.deployed) == ("rejected", "inconclusive", False)
    assert second.reason.startswith(f"Inconclusive: too little evidence ({eval_rows} evaluation rows, fewer than "
                                    "the 200 required")
    row = get_retrain(ctx.db, second.retrain_id)
    assert (row["status"], row["decision"]) == ("rejected", "inconclusive")
    assert {m["version"]: m["status"] for m in list_models(ctx.db)} == {"v0001": "champion", "v0002": "inconclusive"}
    event = recent_events(ctx.db, kind="gate", limit=1)[0]
    assert event["message"].startswith(f"Candidate v0002 inconclusive (manual retrain #{second.retrain_id}). ")
    assert event["severity"] == "warning"
    evidence = event["details"]["evidence"]
    assert event["details"]["outcome"] == "inconclusive"
    assert evidence["paired"]["accuracy"] == {"difference": 0.0, "low": 0.0, "high": 0.0}
    assert evidence["paired"]["mcnemar"]["p_value"] == 1.0
    assert evidence["paired"]["rows"] == eval_rows and evidence["paired"]["resamples"] == 1000
    assert [g["name"] for g in evidence["guards"]] == ["per_class", "slow_decay"]

    third = run_cycle(reopen(ctx, min_eval_rows=100, min_class_support=1), trigger="manual", force=True)
    assert (third.status, third.decision, third.deployed) == ("accepted", None, True)
    assert third.reason.startswith("Accepted: each 95% interval lies above -1.0 pts.")


def test_every_version_records_its_calibration_error(labelled):
    ctx = labelled
    run_cycle(ctx, trigger="manual", force=True)
    model = get_model(ctx.db, "v0001")
    pipeline = registry.load_model(ctx.settings.registry_dir, "v0001", sha256=model["sha256"],
                                   sklearn_version=model["sklearn_version"])
    from tests.test_retrain import training_set
    data = training_set(ctx)
    proba = pipeline.predict_proba(data.eval["text"].tolist())
    correct = pipeline.classes_[proba.argmax(axis=1)] == data.eval["label"].to_numpy()
    expected = expected_calibration_error(proba.max(axis=1), correct)
    assert model["report"]["ece"] == expected
    assert 0.0 < expected < 0.5


def test_slow_decay_guard_in_a_cycle_compares_with_the_best_version_ever_deployed(labelled, tmp_path):
    ctx = labelled
    assert run_cycle(ctx, trigger="manual", force=True).status == "accepted"  # v0001, clean labels
    # A third of the training texts relabelled wrongly (five times, so the wrong label wins).
    good = labelled_frame(40, seed=1)
    train_only = good[[eval_bucket(normalize_text(t)) >= ctx.settings.eval_percent for t in good["text"]]]
    picked = train_only.iloc[::3]
    labels = sorted(good["label"].unique())
    rotate = {label: labels[(i + 1) % len(labels)] for i, label in enumerate(labels)}
    wrong = pd.DataFrame({"text": picked["text"], "label": picked["label"].map(rotate)})
    path = tmp_path / "wrong.csv"
    pd.concat([wrong] * 5).to_csv(path, index=False)
    ctx.clock.advance(hours=1)
    import_file(ctx, path, labeled=True)

    loose = reopen(ctx, tolerance=0.5, cumulative_tolerance=1.0)  # lets the worse v0002 in
    second = run_cycle(loose, trigger="manual", force=True)
    assert (second.status, second.candidate) == ("accepted", "v0002")
    first_f1 = get_model(ctx.db, "v0001")["macro_f1"]
    second_f1 = get_model(ctx.db, "v0002")["macro_f1"]
    assert first_f1 - second_f1 > 0.05

    # Same data again: v0003 equals the champion v0002 (each step within tolerance) but is far below v0001.
    third = run_cycle(reopen(ctx, tolerance=0.5), trigger="manual", force=True)
    assert (third.status, third.decision, third.candidate, third.champion) == ("rejected", "rejected", "v0003", "v0002")
    assert third.reason.startswith("Rejected: slow decay: accuracy ")
    assert "below the best version ever deployed (v0001, " in third.reason
    guard = recent_events(ctx.db, kind="gate", limit=1)[0]["details"]["evidence"]["guards"][1]
    assert (guard["name"], guard["best_version"], guard["triggered"]) == ("slow_decay", "v0001", True)
    assert guard["best_metrics"]["macro_f1"] == pytest.approx(first_f1, abs=1e-12)
    assert registry.read_active(ctx.settings.registry_dir).active.version == "v0002"
