"""Calendar arithmetic in a chain's timezone."""
from __future__ import annotations

import calendar
from datetime import date, datetime


def shift_months(moment: datetime, months: int) -> datetime:
    """The same wall-clock time ``months`` later (or earlier), clamped to the month's last day."""
    index = moment.month - 1 + months
    year, month = moment.year + index // 12, index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def day_number(day: date) -> int:
    """A calendar day as the integer yyyymmdd, how daily rows (behaviours, member days) key it."""
    return day.year * 10000 + day.month * 100 + day.day
