"""The gate: a candidate is deployed only if it is no worse than the model it replaces.

Rule (product spec): accept when the candidate's accuracy and macro-F1 are each at
least the champion's minus ``tolerance`` (absolute). Both are scored on the same
held-out, human-labelled rows. The first model has no champion: it must beat the
majority-class baseline on both metrics.

>>> d = decide(candidate=Scores(0.89, 0.88, 500), champion=Scores(0.90, 0.89, 500), baseline=None, tolerance=0.01)
>>> d.accepted
True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine.evaluation import Scores

# Differences this small are float noise: 0.89 >= 0.90 - 0.01 must hold.
EPSILON = 1e-9
_NAMES = {"accuracy": "accuracy", "macro_f1": "macro-F1"}


@dataclass(frozen=True)
class Decision:
    accepted: bool
    rule: str
    reason: str
    deltas: dict[str, float]

    @property
    def word(self) -> str:
        return "accepted" if self.accepted else "rejected"

    def as_dict(self) -> dict[str, Any]:
        return {"accepted": self.accepted, "rule": self.rule, "reason": self.reason, "deltas": self.deltas}


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _pts(x: float) -> str:
    return f"{100 * x:+.1f} pts"


def decide(*, candidate: Scores, champion: Scores | None, baseline: Scores | None, tolerance: float) -> Decision:
    """Accept or reject ``candidate``; the reason names each metric and the threshold."""
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
