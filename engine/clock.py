"""Time, injectable: every engine function that needs 'now' takes a ``clock`` callable.

Stored times are naive UTC; the scheduler thinks in the worker's local time.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone, tzinfo
from typing import Callable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from engine.errors import InputError

Clock = Callable[[], datetime]

# How far past this machine's clock a claimed time may be (clock skew between machines). An import
# refuses a row stamped later; the ingest of logged queries stores such a row at its arrival time.
FUTURE_TOLERANCE = timedelta(minutes=5)


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


def zone_named(name: str) -> tzinfo:
    """The IANA time zone ``name`` (``"Asia/Tokyo"``, ``"UTC"``), or InputError naming the fix.

    >>> zone_named("Europe/Berlin")
    zoneinfo.ZoneInfo(key='Europe/Berlin')
    """
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise InputError(f"unknown time zone {name!r}: use an IANA name such as Europe/Berlin, Asia/Tokyo or UTC") from None


def naive_to_utc(moment: datetime, zone: tzinfo) -> datetime:
    """A naive wall-clock time in ``zone`` as naive UTC.

    In a zone with daylight saving, a time in the hour repeated when clocks go back is read as its
    first occurrence, and one in the hour skipped when clocks go forward with the offset before the
    change (PEP 495, ``fold=0``). Raises OverflowError at the ends of the datetime range.

    >>> naive_to_utc(datetime(2026, 3, 4, 18, 0), zone_named("Asia/Tokyo"))
    datetime.datetime(2026, 3, 4, 9, 0)
    >>> naive_to_utc(datetime(2026, 11, 1, 1, 30), zone_named("America/New_York"))  # repeated hour: EDT
    datetime.datetime(2026, 11, 1, 5, 30)
    >>> naive_to_utc(datetime(2026, 3, 8, 2, 30), zone_named("America/New_York"))  # skipped hour: EST
    datetime.datetime(2026, 3, 8, 7, 30)
    """
    return moment.replace(tzinfo=zone, fold=0).astimezone(timezone.utc).replace(tzinfo=None)


def describe_ahead(delta: timedelta) -> str:
    """A time difference in words for messages: ``'9.0 hours'``, ``'12 minutes'``, ``'364.8 days'``.

    >>> describe_ahead(timedelta(hours=9)), describe_ahead(timedelta(minutes=12, seconds=30))
    ('9.0 hours', '12 minutes')
    """
    seconds = delta.total_seconds()
    if seconds >= 2 * 86400:
        return f"{seconds / 86400:.1f} days"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} hours"
    return f"{seconds // 60:.0f} minutes"
