"""Time as the core sees it: always timezone-aware, and replaceable in tests."""
from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


class Clock:
    """The wall clock. Tests pass a ``FrozenClock`` instead."""

    def now(self) -> datetime:
        return datetime.now(timezone.utc)


class FrozenClock(Clock):
    def __init__(self, at: datetime) -> None:
        self.at = at

    def now(self) -> datetime:
        return utc(self.at)

    def advance(self, **delta: float) -> None:
        from datetime import timedelta

        self.at = self.at + timedelta(**delta)


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as error:  # OSError: "Asia" is a directory
        raise ValueError(f"unknown timezone {name!r}") from error


def is_timezone(name: str) -> bool:
    try:
        zone(name)
    except ValueError:
        return False
    return True


def utc(moment: datetime) -> datetime:
    """Every instant the core compares in a query is UTC: SQLite compares stored times as text."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime: the core only handles aware times")
    return moment.astimezone(timezone.utc)
