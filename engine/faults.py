"""Named points where a test can make the process die, to prove crash safety.

Set ``RETRAINER_KILL_AT=<point>`` in a worker's environment and the process sends
itself SIGKILL when it reaches that point (the n-th time with ``<point>:<n>``).
Unset (always, in production) every ``point()`` call is a dictionary lookup.
"""

from __future__ import annotations

import os
import signal

from typing import Callable

_counts: dict[str, int] = {}
_callbacks: dict[str, Callable[[], None]] = {}


def arm(name: str, callback: Callable[[], None] | None) -> None:
    """In-process tests: run ``callback`` when ``name`` is reached (None disarms)."""
    if callback is None:
        _callbacks.pop(name, None)
    else:
        _callbacks[name] = callback


def point(name: str) -> None:
    """Die here (or run a test's callback) if a test armed this point."""
    if _callbacks:
        callback = _callbacks.get(name)
        if callback is not None:
            callback()
    armed = os.environ.get("RETRAINER_KILL_AT")
    if not armed:
        return
    target, _, nth = armed.partition(":")
    if target != name:
        return
    _counts[name] = _counts.get(name, 0) + 1
    if _counts[name] >= int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
