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
from engine.errors import InputError
from store import commands as queue
from store.vocabulary import CommandKind

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
