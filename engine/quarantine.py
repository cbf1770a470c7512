"""Quarantine: take a poisoned part of the log out of training and evaluation, reversibly.

A misconfigured client that logs confidently wrong predictions teaches every later candidate
wrong answers through pseudo labels; the gate keeps those candidates out, but nothing gets
better until the operator takes the rows out. A :class:`Rule` names them by any combination
of source, model version and a time range (``since <= ts < until``, the time each row claims).
Rules are stored (``quarantine`` table), recorded as ``quarantine`` events, and lifted with
:func:`unquarantine`; rows are never deleted. Every retrain leaves matching rows out and
counts them (``quarantined`` in its funnel).

>>> Rule(source="kiosk", reason="served a broken model").describe()
'source kiosk'
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from engine.clock import to_local
from engine.context import Context
from engine.errors import InputError
from store import quarantine as rules
from store.events import record_event
from store.vocabulary import EventKind, Severity

MAX_REASON = 500


@dataclass(frozen=True)
class Rule:
    """What to take out: every given condition must hold. Times are naive UTC; ``until`` is exclusive."""

    source: str | None = None
    version: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    reason: str = ""

    def __post_init__(self) -> None:
        for name in ("source", "version"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise InputError(f"--{name} is empty: give a {name} name as it appears in the log, or leave it out")
        if self.source is None and self.version is None and self.since is None and self.until is None:
            raise InputError("a quarantine rule needs at least one of --source, --version, --since, --until "
                             "(it would take out the whole log)")
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise InputError(f"--since {self.since:%Y-%m-%d %H:%M} is not before --until {self.until:%Y-%m-%d %H:%M}: "
                             "the range would be empty")
        if not self.reason or not self.reason.strip():
            raise InputError("--reason is empty: say why these rows are taken out (it is shown with the rule)")
        if len(self.reason) > MAX_REASON:
            raise InputError(f"--reason is {len(self.reason)} characters: keep it under {MAX_REASON}")

    def describe(self) -> str:
        """The conditions in words, times in this process's local zone."""
        parts = []
        if self.source is not None:
            parts.append(f"source {self.source}")
        if self.version is not None:
            parts.append(f"version {self.version}")
        if self.since is not None:
            parts.append(f"from {to_local(self.since):%Y-%m-%d %H:%M}")
        if self.until is not None:
            parts.append(f"until {to_local(self.until):%Y-%m-%d %H:%M}")
        return ", ".join(parts)

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> "Rule":
        return cls(source=row["source"], version=row["model_version"], since=row["since"], until=row["until"],
                   reason=row["reason"])


def preview(ctx: Context, rule: Rule) -> dict[str, int]:
    """How many logged queries and labels ``rule`` matches now: ``{"queries": n, "labels": m}``."""
    return rules.preview(ctx.db, source=rule.source, version=rule.version, since=rule.since, until=rule.until)


def quarantine(ctx: Context, rule: Rule, *, by: str = "cli") -> tuple[int, dict[str, int]]:
    """Store ``rule`` and its event in one write; return (rule id, what it matches now)."""
    counts = preview(ctx, rule)
    now = ctx.clock()
    with ctx.db.write() as con:
        rule_id = rules.add_rule(con, ts=now, source=rule.source, version=rule.version, since=rule.since,
                                 until=rule.until, reason=rule.reason.strip())
        record_event(con, ts=now, kind=EventKind.QUARANTINE, severity=Severity.WARNING, version=rule.version,
                     message=(f"Quarantine #{rule_id} ({rule.describe()}) by {by}: {counts['queries']:,} logged queries "
                              f"and {counts['labels']:,} labels are left out of training and evaluation. "
                              f"Reason: {rule.reason.strip()}"),
                     details={"rule_id": rule_id, "source": rule.source, "version": rule.version,
                              "since": rule.since, "until": rule.until, "reason": rule.reason.strip(), **counts})
    return rule_id, counts


def unquarantine(ctx: Context, rule_id: int, *, by: str = "cli") -> Rule:
    """Lift rule ``rule_id`` (its rows count again from the next retrain) and record it; return the rule.

    Raises InputError for an unknown or already lifted rule, naming the active ones.
    """
    with ctx.db.read() as con:
        row = rules.get_rule(con, rule_id)
    if row is None:
        active = [r["id"] for r in rules.list_rules(ctx.db, include_lifted=False)]
        raise InputError(f"quarantine #{rule_id} does not exist: "
                         + (f"active rules are {', '.join(f'#{i}' for i in active)}" if active else "no rule is active"))
    now = ctx.clock()
    with ctx.db.write() as con:
        if row["lifted_at"] is not None or not rules.lift_rule(con, rule_id, ts=now):
            lifted = rules.get_rule(con, rule_id)["lifted_at"]
            raise InputError(f"quarantine #{rule_id} was already lifted at {to_local(lifted):%Y-%m-%d %H:%M}: "
                             "see `python -m engine quarantine --list`")
        rule = Rule.from_row(row)
        record_event(con, ts=now, kind=EventKind.QUARANTINE, severity=Severity.INFO, version=rule.version,
                     message=f"Quarantine #{rule_id} ({rule.describe()}) lifted by {by}: its rows count again from the next retrain.",
                     details={"rule_id": rule_id, "lifted": True})
    return rule


def choices(ctx: Context) -> dict[str, list[tuple[str, int]]]:
    """The sources and model versions in the log with their row counts: ``{"sources": [...], "versions": [...]}``."""
    return rules.log_choices(ctx.db)


def list_rules(ctx: Context, *, include_lifted: bool = True) -> list[dict[str, Any]]:
    """Every rule, oldest first, each with what it matches now (``queries``, ``labels``)."""
    found = rules.list_rules(ctx.db, include_lifted=include_lifted)
    for row in found:
        row.update(rules.preview(ctx.db, source=row["source"], version=row["model_version"], since=row["since"],
                                 until=row["until"]))
    return found
