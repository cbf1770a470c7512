"""Commands: how the dashboard and the CLI ask the worker to act.

A command is queued in the store and survives until a worker takes it, so a
request made while no worker runs waits instead of being lost.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

from engine import registry
from engine.context import Context
from engine.errors import InputError, RegistryError
from store import commands as queue
from store.models import versions_with_status
from store.views.models import rollback_targets
from store.vocabulary import CommandKind, ModelStatus

KINDS = tuple(CommandKind)


def submit(ctx: Context, kind: str, *, args: dict[str, Any] | None = None, source: str = "cli") -> int:
    """Queue a command after checking it; return its id."""
    if kind not in KINDS:
        raise InputError(f"unknown command {kind!r}: use one of {', '.join(KINDS)}")
    args = dict(args or {})
    if kind == CommandKind.ROLLBACK and args.get("to") is not None:
        args["to"] = registry.check_version(str(args["to"]).strip())
    if kind == CommandKind.ADOPT:
        path = Path(str(args.get("path") or "")).expanduser()
        if not path.is_file():
            raise InputError(f"adopt needs the path of a model file: {str(path)!r} is not a file")
        args = {"path": str(path.resolve()), "note": str(args.get("note") or "")}
    return queue.enqueue(ctx.db, kind=kind, args=args, source=source, ts=ctx.clock())


def check_rollback(ctx: Context, *, to: str | None) -> str | None:
    """The rollback target ``to`` checked before the CLI or the API queues a rollback (None: the version
    before); returns it trimmed. :func:`submit` does not call it: a queued command is judged by the worker.

    Raises InputError when ``to`` is not a version name, is the champion, or never served (the message
    lists the versions that can be restored), and RegistryError when no version has served before the
    champion (nothing to roll back to). The worker checks again when it runs the command, since a retrain
    may move the champion in between.
    """
    targets = [t["version"] for t in rollback_targets(ctx.db)]
    if to is not None:
        to = registry.check_version(str(to).strip())
        if to not in targets:
            with ctx.db.read() as con:
                champions = versions_with_status(con, ModelStatus.CHAMPION)
            why = "is the active version" if to in champions else "never served"
            raise InputError(f"{to} {why}: roll back to a version that served before "
                             f"({', '.join(targets) or 'none yet'})")
        return to
    if not targets:
        raise RegistryError("nothing to roll back to: no version has served before the active one")
    return None


def wait_for(
    ctx: Context,
    command_id: int,
    *,
    timeout: float | None = None,
    poll: float = 0.25,
    on_update: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Block until the command is done or failed (or ``timeout`` seconds pass); return its row."""
    deadline = None if timeout is None else time.monotonic() + timeout
    last = None
    while True:
        row = queue.get_command(ctx.db, command_id)
        if row is None:
            raise InputError(f"there is no command #{command_id}")
        seen = (row["status"], row["stage"], row["progress"])
        if on_update is not None and seen != last:
            on_update(row)
            last = seen
        if row["status"] in queue.FINAL:
            return row
        if deadline is not None and time.monotonic() > deadline:
            return row
        time.sleep(poll)
