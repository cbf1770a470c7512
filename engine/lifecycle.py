"""The model lifecycle: the one module that changes a version's status, the champion alias and
the pointer file, keeping the three in step.

Statuses (``store.vocabulary.ModelStatus``) and the operations that move between them::

    register            -> candidate
    reject   candidate  -> rejected | inconclusive          (the gate said no, or could not tell)
    fail     candidate | retired -> failed                 (not valid, cannot serve, retrain died)
    promote  candidate  -> champion, champion -> retired   (a deploy)
    roll back retired   -> champion, champion -> retired   (operator, demo, or automatic)
    retire   champion   -> retired                         (nothing serves any more)

Any other move is refused with a :class:`~engine.errors.RegistryError` naming the version,
its status, and the statuses the operation needs. Each operation runs inside the caller's
write transaction (``with ctx.db.write() as con``) and records its event there, so the
status and its explanation are stored together or not at all.

The **champion alias** names the serving version. Every move of it is appended to
``alias_history`` (who, when, why, from which version, by which operation); nothing there is
ever changed. The serving processes follow the **pointer file** ``models/ACTIVE.json``
(``engine.registry``), which holds the champion and the versions that served before it,
newest first: the fallback order. That order walks the alias history backwards as a stack:
a deploy pushes the new champion; a rollback to X pops back to X, so a version rolled back
*from* is never a fallback (README, issue 13 case 14). See :func:`next_stack`.

Start-up repair (:meth:`ModelRegistry.reconcile`) makes the store agree with the pointer after
a crash, and rewrites a damaged pointer from the store.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, fields
from datetime import datetime
from pathlib import PurePath
from typing import Callable, Sequence, TypeVar

from engine import faults, registry
from engine.context import Context
from engine.errors import ModelLoadError, RegistryError
from store.db import Connection
from store.events import record_event
from store.models import (Assignment, ModelVersion, add_assignment, insert_model, model_status, read_assignments,
                          read_version, read_versions, set_champion, set_model_status)
from store.records import from_json, to_json
from store.vocabulary import Alias, AssignmentKind, EventKind, ModelStatus, Severity

log = logging.getLogger(__name__)

S = ModelStatus

# Operation -> the statuses a version may have for it.
ALLOWED: dict[str, frozenset[ModelStatus]] = {
    "reject": frozenset({S.CANDIDATE}),
    "fail": frozenset({S.CANDIDATE, S.RETIRED}),
    "promote": frozenset({S.CANDIDATE}),
    "roll back to": frozenset({S.RETIRED}),
    "retire": frozenset({S.CHAMPION}),
}

T = TypeVar("T")

# What ModelRegistry.register returns of the row it stored.
MODEL_FIELDS = tuple(f.name for f in fields(ModelVersion))


def check_transition(version: ModelVersion | None, operation: str, *, name: str | None = None) -> ModelVersion:
    """Return ``version`` if ``operation`` may be applied to it; raise RegistryError saying why not.

    >>> check_transition(None, "promote", name="v0009")
    Traceback (most recent call last):
    ...
    store.errors.RegistryError: cannot promote v0009: it is not in the registry (see `python -m engine status`)
    """
    check_status(None if version is None else version.status, operation, name=version.version if version else name)
    return version


def check_status(status: ModelStatus | None, operation: str, *, name: str) -> None:
    """Raise RegistryError unless a version ``name`` whose status is ``status`` (None: not in the
    registry) may undergo ``operation``; the message names the version, its status and the statuses
    ``operation`` needs.

    >>> check_status(ModelStatus.REJECTED, "promote", name="v0004")
    Traceback (most recent call last):
    ...
    store.errors.RegistryError: cannot promote v0004: it is rejected, and promote needs a candidate version
    """
    allowed = ALLOWED[operation]
    if status is None:
        raise RegistryError(f"cannot {operation} {name}: it is not in the registry (see `python -m engine status`)")
    if status not in allowed:
        needed = " or ".join(sorted(allowed))
        raise RegistryError(f"cannot {operation} {name}: it is {status}, and {operation} needs a {needed} version")


def next_stack(stack: Sequence[T], target: T, *, kind: AssignmentKind, version_of: Callable[[T], str] = str) -> list[T]:
    """The champion and the versions that served before it (newest first) after the alias moves to ``target``.

    ``stack`` is the same list before the move. A deploy (or a repair) pushes ``target``; a
    rollback pops back to ``target`` when it is on the stack, and otherwise keeps only the
    versions older than ``target`` below it, so a version rolled back from never comes back
    as a fallback.

    >>> next_stack(["v0003", "v0002", "v0001"], "v0004", kind=AssignmentKind.DEPLOY)
    ['v0004', 'v0003', 'v0002', 'v0001']
    >>> next_stack(["v0003", "v0002", "v0001"], "v0002", kind=AssignmentKind.ROLLBACK)
    ['v0002', 'v0001']
    >>> next_stack(["v0004", "v0001"], "v0003", kind=AssignmentKind.ROLLBACK)
    ['v0003', 'v0001']
    """
    names = [version_of(item) for item in stack]
    name = version_of(target)
    if kind in (AssignmentKind.ROLLBACK, AssignmentKind.AUTO_ROLLBACK):
        if name in names:
            return [target, *stack[names.index(name) + 1:]]
        number = registry.version_number(name)
        return [target, *(item for item, n in zip(stack, names) if registry.version_number(n) < number)]
    return [target, *(item for item, n in zip(stack, names) if n != name)]


def served_before(assignments: Sequence[Assignment]) -> list[str]:
    """The champion and the versions that served before it, newest first, replaying the alias history.

    >>> from datetime import datetime as dt
    >>> moves = [Assignment(i, dt(2026, 1, i), Alias.CHAMPION, v, None, AssignmentKind(k), "test", None)
    ...          for i, (v, k) in enumerate([("v0001", "deploy"), ("v0002", "deploy"), ("v0003", "deploy"),
    ...                                      ("v0002", "rollback"), ("v0004", "deploy")], start=1)]
    >>> served_before(moves)
    ['v0004', 'v0002', 'v0001']
    """
    stack: list[str] = []
    for move in assignments:
        stack = next_stack(stack, move.version, kind=move.kind)
    return stack


def ref_of(version: ModelVersion) -> registry.ModelRef:
    """What the pointer file records of a version (enough to find and verify its file)."""
    return registry.ModelRef(version.version, version.sha256, version.sklearn_version, version.labels)


@dataclass(frozen=True)
class Switch:
    """A pointer switch not yet recorded in the store: ``before`` is what served (None: nothing)."""

    before: registry.ActivePointer | None
    after: registry.ActivePointer

    @property
    def previous(self) -> str | None:
        return self.before.active.version if self.before else None


def _trained_on(row: dict) -> str:
    """What a registered version was trained on, for its registration event: its training rows, or the file
    it was adopted from (trained outside Retrainer, so its rows are not known)."""
    if row.get("train_rows") is not None:
        return f"{row['train_rows']} training rows"
    adopted = (row.get("params") or {}).get("adopted")
    if not adopted:
        return "training rows not recorded"
    trained = f"adopted from {PurePath(adopted['file']).name}, trained outside Retrainer: its training rows are not known"
    effect = adopted.get("normalised_text")
    if not effect or not effect.get("texts"):
        return trained
    changed = effect.get("answers_changed")
    if changed is None:
        return f"{trained}; its answers on raw and normalised text could not be compared"
    return (f"{trained}; given normalised text (NFKC, case-folded, whitespace collapsed) as every model is, it answers "
            f"{changed:,} of {effect['texts']:,} stored texts otherwise than their raw text")


class ModelRegistry:
    """The lifecycle operations on one data directory (``ctx``): see the module docstring.

    Transitions take the open write connection ``con`` and a time ``ts`` (naive UTC); reads
    open their own short read.
    """

    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.dir = ctx.settings.registry_dir

    # -- reads -------------------------------------------------------------------------------

    def get(self, version: str) -> ModelVersion | None:
        with self.ctx.db.read() as con:
            return read_version(con, version)

    def versions(self) -> list[ModelVersion]:
        """Every version, oldest first."""
        with self.ctx.db.read() as con:
            return read_versions(con)

    def history(self, *, alias: Alias = Alias.CHAMPION) -> list[Assignment]:
        """Every move of ``alias``, oldest first."""
        with self.ctx.db.read() as con:
            return read_assignments(con, alias=alias)

    def pointer(self) -> registry.ActivePointer | None:
        """What serves now (the pointer file), or None; a damaged pointer raises ModelLoadError."""
        return registry.read_active(self.dir)

    # -- transitions (inside the caller's write) -----------------------------------------------

    def register(self, con: Connection, row: dict, *, ts: datetime, trigger: str | None = None) -> ModelVersion:
        """Record a saved version as a candidate (``row`` has every model column but status); return it
        as stored (its JSON documents as they read back), without reading it again."""
        insert_model(con, {**row, "status": S.CANDIDATE})
        retrain = f" by {trigger} retrain #{row['retrain_id']}" if row.get("retrain_id") is not None else ""
        record_event(con, ts=ts, kind=EventKind.REGISTRY, version=row["version"],
                     message=f"Candidate {row['version']} registered{retrain} ({_trained_on(row)}).",
                     details={"version": row["version"], "status": S.CANDIDATE, "retrain_id": row.get("retrain_id")})
        stored = {name: row.get(name) for name in MODEL_FIELDS}
        stored.update(status=S.CANDIDATE, **{k: from_json(to_json(row.get(k))) for k in ("params", "labels", "report")})
        return ModelVersion.from_row(stored)

    def reject(self, con: Connection, version: str, *, inconclusive: bool, ts: datetime,
               message: str, details: dict) -> ModelStatus:
        """The gate refused the candidate (or could not tell): status rejected or inconclusive, and the gate event."""
        check_status(model_status(con, version), "reject", name=version)
        status = S.INCONCLUSIVE if inconclusive else S.REJECTED
        set_model_status(con, version, status)
        record_event(con, ts=ts, kind=EventKind.GATE, severity=Severity.WARNING, version=version, message=message,
                     details=details)
        return status

    def fail(self, con: Connection, version: str, *, ts: datetime, why: str,
             event: bool = True) -> None:
        """Mark a candidate (or a rollback target) failed; with ``event``, record why as an error event."""
        check_status(model_status(con, version), "fail", name=version)
        set_model_status(con, version, S.FAILED)
        if event:
            record_event(con, ts=ts, kind=EventKind.REGISTRY, severity=Severity.ERROR, version=version,
                         message=f"{version} failed: {why}", details={"version": version, "status": S.FAILED})

    def promote(self, con: Connection, version: str, *, previous: str | None, kind: AssignmentKind,
                actor: str, reason: str, ts: datetime) -> int:
        """Record ``version`` as the champion (a deploy or rollback whose pointer switch succeeded).

        The previous champion is retired, the alias move appended (returned: its id), and the
        deploy or rollback event recorded, all in ``con``'s transaction.
        """
        operation = "promote" if kind == AssignmentKind.DEPLOY else "roll back to"
        check_status(model_status(con, version), operation, name=version)
        set_champion(con, version)  # and every other champion retired
        move = add_assignment(con, ts=ts, alias=Alias.CHAMPION, version=version, previous_version=previous,
                              kind=kind, actor=actor, reason=reason)
        faults.point("deploy_before_event")
        deployed = kind == AssignmentKind.DEPLOY
        record_event(con, ts=ts, kind=EventKind.DEPLOY if deployed else EventKind.ROLLBACK,
                     severity=Severity.INFO if deployed else Severity.WARNING, version=version, message=reason,
                     details={"version": version, "previous": previous, "kind": kind, "actor": actor})
        return move

    def restore(self, con: Connection, failed: str, *, previous: str | None, actor: str,
                message: str, problem: str, ts: datetime) -> None:
        """A new champion could not serve and the pointer went back to ``previous``: ``failed`` is
        marked failed, the alias move back recorded (automatic rollback) and the error event."""
        self.fail(con, failed, ts=ts, why=problem, event=False)
        if previous:
            add_assignment(con, ts=ts, alias=Alias.CHAMPION, version=previous, previous_version=failed,
                           kind=AssignmentKind.AUTO_ROLLBACK, actor=actor, reason=message)
        record_event(con, ts=ts, kind=EventKind.ROLLBACK, severity=Severity.ERROR, version=previous, message=message,
                     details={"failed_version": failed, "restored": previous, "problem": problem, "automatic": True})

    def retire(self, con: Connection, version: str, *, ts: datetime, why: str) -> None:
        """A champion that no longer serves becomes retired (only repair needs this on its own)."""
        check_status(model_status(con, version), "retire", name=version)
        set_model_status(con, version, S.RETIRED)
        record_event(con, ts=ts, kind=EventKind.REPAIR, severity=Severity.WARNING, version=version,
                     message=f"Start-up repair: {version} {why}: now retired.")

    # -- the pointer file ------------------------------------------------------------------------

    def switch(self, version: ModelVersion, *, kind: AssignmentKind, ts: datetime) -> Switch:
        """Point serving at ``version`` (atomically); the fallback order follows :func:`next_stack`."""
        before = self.pointer()
        stack = [before.active, *before.history] if before else []
        after = next_stack(stack, ref_of(version), kind=kind, version_of=lambda r: r.version)
        pointer = registry.ActivePointer(after[0], ts.isoformat(), tuple(after[1:registry.HISTORY_LENGTH + 1]))
        registry.write_active(self.dir, pointer)
        return Switch(before, pointer)

    def switch_back(self, switch: Switch) -> None:
        """Undo :meth:`switch`: the pointer as it was (removed if nothing served)."""
        if switch.before is not None:
            registry.write_active(self.dir, switch.before)
        else:
            (self.dir / registry.ACTIVE_FILE).unlink(missing_ok=True)

    def pointer_from_store(self, *, ts: datetime) -> registry.ActivePointer | None:
        """The pointer the store describes: its champion, and the alias history walked back (versions
        that no longer exist in the store are skipped). None when the store has no champion."""
        with self.ctx.db.read() as con:
            rows = {v.version: v for v in read_versions(con)}
            moves = read_assignments(con)
        champions = [v for v in rows.values() if v.status == S.CHAMPION]
        if not champions:
            return None
        champion = champions[-1]
        stack = [v for v in served_before(moves) if v in rows and v != champion.version]
        history = tuple(ref_of(rows[v]) for v in stack[:registry.HISTORY_LENGTH])
        deployed_at = max((m.ts for m in moves if m.version == champion.version), default=ts)
        return registry.ActivePointer(ref_of(champion), deployed_at.isoformat(), history)

    def repair_pointer(self, *, ts: datetime,
                       note: Callable[[Connection, str], None] | None = None) -> str | None:
        """If the pointer file is damaged (not a pointer, too deeply nested, a directory), rewrite it
        from the store (:meth:`pointer_from_store`) and record why; return the fix in words, or None
        when the pointer is sound or absent.

        The event is stored first (``note(con, fix)`` when given, else a repair event), then the
        file is written: a crash in between only repeats the repair at the next call.
        """
        try:
            self.pointer()
            return None
        except ModelLoadError as exc:
            damage = str(exc)
        pointer = self.pointer_from_store(ts=ts)
        if pointer is None:
            fix = f"the pointer file was damaged ({damage}) and the store names no champion: removed it"
        else:
            fix = f"the pointer file was damaged ({damage}): rewritten from the store ({pointer.active.version} serves)"
        with self.ctx.db.write() as con:
            if note is not None:
                note(con, fix)
            else:
                record_event(con, ts=ts, kind=EventKind.REPAIR, severity=Severity.WARNING,
                             version=pointer.active.version if pointer else None, message=f"Pointer repair: {fix}.")
        path = self.dir / registry.ACTIVE_FILE
        if path.is_dir() and not path.is_symlink():
            path.rename(path.with_name(f"{registry.ACTIVE_FILE}.damaged-{ts:%Y%m%dT%H%M%S}"))
        if pointer is None:
            path.unlink(missing_ok=True)
        else:
            registry.write_active(self.dir, pointer)
        log.warning("pointer repair: %s", fix)
        return fix

    # -- start-up repair ----------------------------------------------------------------------------

    def reconcile(self, *, ts: datetime, note: Callable[[Connection, str], None]) -> None:
        """Make the store agree with the pointer (the truth serving follows) after a crash.

        ``note(con, fix)`` records each fix as an event in the same transaction as the fix. A
        damaged pointer is rewritten from the store; the pointer's version becomes the champion
        (its alias move recorded if a crash lost it) and any other champion retired; without a
        pointer no version is champion; a candidate no cycle is judging (the worker lock is held)
        is failed; a model file with no row is moved aside.
        """
        self.repair_pointer(ts=ts, note=note)
        pointer = self.pointer()
        rows = {v.version: v for v in self.versions()}
        with self.ctx.db.write() as con:
            if pointer is not None:
                self._agree_with(con, pointer.active.version, rows, ts=ts, note=note)
            else:
                for version, m in rows.items():
                    if m.status == S.CHAMPION:
                        set_model_status(con, version, S.RETIRED)
                        note(con, f"{version} was recorded as champion but nothing is deployed: now retired")
        faults.point("repair_after_pointer")
        serving = pointer.active.version if pointer is not None else None
        left = [v for v, m in rows.items() if m.status == S.CANDIDATE and v != serving]
        if left:  # no cycle runs while the worker lock is held here: these cycles died
            with self.ctx.db.write() as con:
                for version in left:
                    set_model_status(con, version, S.FAILED)
                    note(con, f"{version} was left a candidate by a retrain that did not finish: now recorded as failed")
        self._move_orphans(set(rows), note=note)

    def _agree_with(self, con: Connection, version: str, rows: dict[str, ModelVersion], *, ts: datetime,
                    note: Callable[[Connection, str], None]) -> None:
        """The store's statuses and alias history brought in line with ``version`` serving."""
        row = rows.get(version)
        if row is None:
            note(con, f"the active pointer names {version}, which the store does not know")
            return
        if row.status != S.CHAMPION:
            set_model_status(con, version, S.CHAMPION)
            note(con, f"{version} serves but was recorded as {row.status}: now recorded as champion")
        for other, m in rows.items():
            if other != version and m.status == S.CHAMPION:
                set_model_status(con, other, S.RETIRED)
                note(con, f"{other} was recorded as champion but does not serve: now retired")
        moves = read_assignments(con)
        if not moves or moves[-1].version != version:
            previous = moves[-1].version if moves else None
            add_assignment(con, ts=ts, alias=Alias.CHAMPION, version=version, previous_version=previous,
                           kind=AssignmentKind.REPAIR, actor="start-up repair",
                           reason="the deployment happened but was not recorded before a crash")
            note(con, f"the switch to {version} was not recorded (crash): deployment recorded now")

    def _move_orphans(self, known: set[str], *, note: Callable[[Connection, str], None]) -> None:
        """Model files the store has no row for (a crash between saving and recording) go to ``orphans/``."""
        for path in self.dir.glob("v*" + registry.MODEL_SUFFIX):
            if path.stem not in known and registry.VERSION_PATTERN.match(path.stem):
                orphans = self.dir / "orphans"
                orphans.mkdir(exist_ok=True)
                with self.ctx.db.write() as con:  # the event first: a crash before the move only repeats it
                    note(con, f"{path.name} was saved but never recorded (crash): moved to {orphans}")
                faults.point("repair_before_orphan_move")
                path.replace(orphans / path.name)
