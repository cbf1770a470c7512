"""The gate: a candidate is deployed only if it is no worse than the model it replaces.

Rule (product spec): accept when the candidate's accuracy and macro-F1 are each at
least the champion's minus ``tolerance`` (absolute). Both are scored on the same
held-out, human-labelled rows. The first model has no champion: it must beat the
majority-class baseline on both metrics.

Beyond the spec (all keyword-only, and off unless passed, so the spec's cases are unchanged):

- ``mode="noninferiority"`` judges the paired bootstrap intervals (``engine.stats.compare``)
  instead of the point differences: accept when each interval's lower end is >= -tolerance,
  reject when an upper end is below -tolerance, otherwise **inconclusive** (the champion stays)
  with an estimate of how many more labelled evaluation rows would settle it. In this mode too
  little evidence (fewer than ``min_eval_rows`` rows, or a class with fewer than
  ``min_class_support`` rows) turns an accept into inconclusive; a clear rejection stands.
- the per-class guard rejects when a class with at least ``per_class_min_support`` rows loses
  more than ``per_class_tolerance`` F1;
- the slow-decay guard rejects when the candidate is more than ``cumulative_tolerance`` below
  ``best`` (the best version ever deployed, scored on the same rows).

Guards only ever block: they turn an accept (or an inconclusive) into a rejection.

>>> d = decide(candidate=Scores(0.89, 0.88, 500), champion=Scores(0.90, 0.89, 500), baseline=None, tolerance=0.01)
>>> d.accepted
True
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engine.evaluation import Scores
from engine.stats import Paired, rows_to_settle
from store.vocabulary import GateMode, GateOutcome

# Differences this small are float noise: 0.89 >= 0.90 - 0.01 must hold.
EPSILON = 1e-9
_NAMES = {"accuracy": "accuracy", "macro_f1": "macro-F1"}
MODES = tuple(GateMode)
OUTCOMES = tuple(GateOutcome)


@dataclass(frozen=True)
class Decision:
    accepted: bool
    rule: str
    reason: str
    deltas: dict[str, float]
    outcome: GateOutcome | None = None  # derived from ``accepted`` when not given (accepted or rejected)
    evidence: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.outcome is None:
            object.__setattr__(self, "outcome", GateOutcome.ACCEPTED if self.accepted else GateOutcome.REJECTED)
        if self.outcome not in OUTCOMES or (self.outcome == GateOutcome.ACCEPTED) != self.accepted:
            raise ValueError(f"outcome {self.outcome!r} does not fit accepted={self.accepted}: use one of {OUTCOMES}")
        object.__setattr__(self, "outcome", GateOutcome(self.outcome))

    def as_dict(self) -> dict[str, Any]:
        return {"accepted": self.accepted, "rule": self.rule, "reason": self.reason, "deltas": self.deltas}

    def details(self) -> dict[str, Any]:
        """Everything behind the decision, for the gate event: outcome, mode, intervals, p-values, guards."""
        return {**self.as_dict(), "outcome": self.outcome, "evidence": self.evidence}


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _pts(x: float) -> str:
    return f"{100 * x:+.1f} pts"


def _spec_rule(*, candidate: Scores, champion: Scores | None, baseline: Scores | None, tolerance: float) -> Decision:
    """The product spec's rule on point values."""
    if champion is None:
        if baseline is None:
            raise ValueError("the first model needs a baseline to beat")
        rule = "first model: accuracy and macro-F1 must each beat the majority-class baseline"
        deltas = {
            "accuracy": candidate.accuracy - baseline.accuracy,
            "macro_f1": candidate.macro_f1 - baseline.macro_f1,
        }
        failed = [m for m, d in deltas.items() if d <= EPSILON]
        if failed:
            words = ", ".join(
                f"{_NAMES[m]} {_pct(getattr(candidate, m))} does not beat the baseline's {_pct(getattr(baseline, m))}"
                for m in failed
            )
            return Decision(False, rule, f"Rejected: {words}.", deltas)
        return Decision(
            True,
            rule,
            f"Accepted as the first model: accuracy {_pct(candidate.accuracy)} vs baseline {_pct(baseline.accuracy)}, "
            f"macro-F1 {_pct(candidate.macro_f1)} vs baseline {_pct(baseline.macro_f1)}.",
            deltas,
        )
    rule = f"accuracy and macro-F1 each >= champion's minus {tolerance:g}"
    deltas = {
        "accuracy": candidate.accuracy - champion.accuracy,
        "macro_f1": candidate.macro_f1 - champion.macro_f1,
    }
    parts = []
    failed = []
    for metric, delta in deltas.items():
        name = _NAMES[metric]
        parts.append(f"{name} {_pct(getattr(candidate, metric))} vs {_pct(getattr(champion, metric))} ({_pts(delta)})")
        if delta < -tolerance - EPSILON:
            failed.append(f"{name} fell {_pts(-delta)[1:]} , more than the {_pts(tolerance)[1:]} tolerance".replace(" ,", ","))
    summary = "; ".join(parts)
    if failed:
        return Decision(False, rule, f"Rejected: {'; '.join(failed)}. ({summary})", deltas)
    if all(d >= -EPSILON for d in deltas.values()):
        return Decision(True, rule, f"Accepted: no metric got worse. ({summary})", deltas)
    return Decision(True, rule, f"Accepted: within the {_pts(tolerance)[1:]} tolerance. ({summary})", deltas)


def _ival(x: Any) -> str:
    return f"[{_pts(x.low)[:-4]}, {_pts(x.high)[:-4]}] pts"


def _noninferiority(candidate: Scores, champion: Scores, deltas: dict[str, float], tolerance: float,
                    paired: Paired) -> tuple[GateOutcome, str, int | None]:
    """(outcome, reason, more rows needed) from the paired intervals."""
    pct = round(100 * paired.confidence)
    parts = "; ".join(
        f"{_NAMES[m]} {_pct(getattr(candidate, m))} vs {_pct(getattr(champion, m))} ({_pts(deltas[m])}, "
        f"{pct}% interval {_ival(paired.interval(m))})" for m in deltas)
    below = [m for m in deltas if paired.interval(m).high < -tolerance - EPSILON]
    if below:
        words = "; ".join(f"{_NAMES[m]}: the whole {pct}% interval {_ival(paired.interval(m))} lies below "
                          f"-{_pts(tolerance)[1:]}" for m in below)
        return GateOutcome.REJECTED, f"Rejected: {words}. ({parts})", None
    open_ = [m for m in deltas if paired.interval(m).low < -tolerance - EPSILON]
    if not open_:
        return GateOutcome.ACCEPTED, f"Accepted: each {pct}% interval lies above -{_pts(tolerance)[1:]}. ({parts})", None
    needs = [rows_to_settle(paired.interval(m), paired.rows, tolerance=tolerance) for m in open_]
    more = None if any(n is None for n in needs) else max(needs)
    hint = ("no number of extra rows is likely to settle it (the difference sits on the tolerance)" if more is None
            else f"about {more:,} more labelled evaluation rows would likely settle it")
    words = ", ".join(_NAMES[m] for m in open_)
    return (GateOutcome.INCONCLUSIVE,
            f"Inconclusive: the {pct}% interval of {words} straddles -{_pts(tolerance)[1:]}; the champion stays; "
            f"{hint}. ({parts})", more)


def _thin_evidence(candidate: Scores, *, min_eval_rows: int, min_class_support: int) -> str | None:
    problems = []
    if candidate.rows < min_eval_rows:
        problems.append(f"{candidate.rows} evaluation rows, fewer than the {min_eval_rows} required")
    thin = sorted(label for label, c in candidate.per_class.items() if 0 < c["support"] < min_class_support)
    if thin:
        problems.append(f"class(es) {', '.join(thin)} have fewer than {min_class_support} evaluation rows")
    return "; ".join(problems) or None


def _per_class_guard(candidate: Scores, champion: Scores, *, tolerance: float, min_support: int) -> dict[str, Any]:
    checked, fell = [], {}
    for label, c in sorted(candidate.per_class.items()):
        old = champion.per_class.get(label)
        if old is None or c["support"] < min_support:
            continue
        checked.append(label)
        drop = old["f1"] - c["f1"]
        if drop > tolerance + EPSILON:
            fell[label] = drop
    return {"name": "per_class", "tolerance": tolerance, "min_support": min_support, "classes_checked": checked,
            "triggered": bool(fell), "fell": fell}


def _decay_guard(candidate: Scores, best: Scores, best_version: str | None, *, tolerance: float) -> dict[str, Any]:
    gaps = {m: getattr(best, m) - getattr(candidate, m) for m in _NAMES}
    fell = {m: g for m, g in gaps.items() if g > tolerance + EPSILON}
    return {"name": "slow_decay", "tolerance": tolerance, "best_version": best_version,
            "best_metrics": {"accuracy": best.accuracy, "macro_f1": best.macro_f1}, "gaps": gaps,
            "triggered": bool(fell), "fell": fell}


def decide(*, candidate: Scores, champion: Scores | None, baseline: Scores | None, tolerance: float,
           mode: GateMode = GateMode.POINT, paired: Paired | None = None, min_eval_rows: int = 0, min_class_support: int = 0,
           per_class_tolerance: float | None = None, per_class_min_support: int = 1,
           best: Scores | None = None, best_version: str | None = None,
           cumulative_tolerance: float | None = None) -> Decision:
    """Accept, reject, or (in noninferiority mode) call it inconclusive; the reason names each figure.

    With only the four required inputs this is exactly the product spec's rule.
    """
    if mode not in MODES:
        raise ValueError(f"unknown gate mode {mode!r}: use one of {', '.join(MODES)}")
    spec = _spec_rule(candidate=candidate, champion=champion, baseline=baseline, tolerance=tolerance)
    evidence: dict[str, Any] = {"mode": mode, "tolerance": tolerance, "eval_rows": candidate.rows,
                                "deltas": spec.deltas, "paired": paired.as_dict() if paired else None,
                                "guards": []}
    if champion is None:
        evidence["first_model"] = True
        return Decision(spec.accepted, spec.rule, spec.reason, spec.deltas, evidence=evidence)
    if mode == GateMode.POINT:
        outcome, rule, reason = spec.outcome, spec.rule, spec.reason
    else:
        if paired is None:
            raise ValueError("noninferiority mode needs the paired comparison: pass paired=engine.stats.compare(...)")
        rule = (f"noninferiority: the lower end of each difference's {round(100 * paired.confidence)}% interval "
                f">= -{tolerance:g}; rejected when an upper end < -{tolerance:g}")
        outcome, reason, more = _noninferiority(candidate, champion, spec.deltas, tolerance, paired)
        evidence["more_rows_needed"] = more
        thin = _thin_evidence(candidate, min_eval_rows=min_eval_rows, min_class_support=min_class_support)
        evidence["too_little_evidence"] = thin
        if thin and outcome == GateOutcome.ACCEPTED:
            outcome = GateOutcome.INCONCLUSIVE
            reason = f"Inconclusive: too little evidence ({thin}); the champion stays. {reason[len('Accepted: '):]}"
    blocks = []
    if per_class_tolerance is not None:
        guard = _per_class_guard(candidate, champion, tolerance=per_class_tolerance,
                                 min_support=max(per_class_min_support, 1))
        evidence["guards"].append(guard)
        if guard["triggered"]:
            blocks.append("; ".join(f"F1 of class {label} fell {_pts(drop)[1:]}" for label, drop in guard["fell"].items())
                          + f", more than the {_pts(per_class_tolerance)[1:]} per-class tolerance")
    if best is not None and cumulative_tolerance is not None:
        guard = _decay_guard(candidate, best, best_version, tolerance=cumulative_tolerance)
        evidence["guards"].append(guard)
        if guard["triggered"]:
            blocks.append("slow decay: " + "; ".join(
                f"{_NAMES[m]} {_pct(getattr(candidate, m))} is {_pts(gap)[1:]} below the best version ever deployed "
                f"({best_version or 'unknown'}, {_pct(getattr(best, m))} on the same rows)" for m, gap in guard["fell"].items())
                + f", more than the {_pts(cumulative_tolerance)[1:]} cumulative tolerance, even if each step was within tolerance")
    if blocks and outcome != GateOutcome.REJECTED:
        outcome = GateOutcome.REJECTED
        reason = f"Rejected: {'. '.join(blocks)}. Without the guards: " + reason.split(": ", 1)[1]
    elif blocks:
        reason = f"{reason} Also: {'. '.join(blocks)}."
    return Decision(outcome == GateOutcome.ACCEPTED, rule, reason, spec.deltas, outcome=outcome, evidence=evidence)
