"""Time, injectable: every engine function that needs 'now' takes a ``clock`` callable.

Stored times are naive UTC; the scheduler thinks in the worker's local time.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Callable

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    """Now, as naive UTC (the store's convention)."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def to_local(utc: datetime) -> datetime:
    """Naive UTC -> naive local time of this process."""
    return utc.replace(tzinfo=timezone.utc).astimezone().replace(tzinfo=None)


def to_utc(local: datetime) -> datetime:
    """Naive local time of this process -> naive UTC."""
    return local.astimezone(timezone.utc).replace(tzinfo=None)


class ManualClock:
    """A clock that stands still until moved: for the demo and tests.

    >>> c = ManualClock(datetime(2026, 1, 1))
    >>> c.advance(seconds=90); c()
    datetime.datetime(2026, 1, 1, 0, 1, 30)
    """

    def __init__(self, start: datetime):
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        from datetime import timedelta

        self.now = self.now + timedelta(**delta)

    def set(self, moment: datetime) -> None:
        self.now = moment
