"""Cron schedules (UTC) and cooldown durations, as trigger records use them: times are
integer milliseconds since the epoch, like every lockgate record.

>>> at = 1_767_232_800_000  # 2026-01-01 02:00 UTC
>>> latest_tick("0 2 * * *", at + 3 * 86_400_000 + 60_000) == at + 3 * 86_400_000
True
>>> missed_ticks("0 2 * * *", after=at, until=at + 3 * 86_400_000)
3
"""

from __future__ import annotations

from croniter import CroniterError, croniter

from lockgate.clock import from_millis
from lockgate.errors import InvalidInputError

__all__ = ["check_cron", "latest_tick", "missed_ticks", "next_tick"]

_MISSED_CAP = 1000


def check_cron(expression: str) -> str:
    """``expression`` stripped, or :class:`InvalidInputError` naming what is wrong with it."""
    text = " ".join(str(expression).split())
    try:
        croniter(text)
    except (CroniterError, ValueError, KeyError) as exc:
        raise InvalidInputError(
            f"cron expression {expression!r} does not parse ({str(exc).rstrip('.')}); use five fields, "
            "minute hour day-of-month month day-of-week, e.g. '0 2 * * *' for 02:00 UTC every day"
        ) from None
    return text


def latest_tick(expression: str, now: int) -> int:
    """The newest scheduled time at or before ``now``."""
    return _ms(croniter(expression, from_millis(now + 1)).get_prev(float))


def next_tick(expression: str, now: int) -> int:
    """The first scheduled time after ``now``."""
    return _ms(croniter(expression, from_millis(now)).get_next(float))


def missed_ticks(expression: str, *, after: int, until: int) -> int:
    """How many scheduled times fall in ``(after, until]`` (counted up to 1000)."""
    it = croniter(expression, from_millis(after))
    count = 0
    while count < _MISSED_CAP and _ms(it.get_next(float)) <= until:
        count += 1
    return count


def _ms(seconds: float) -> int:
    return round(seconds * 1000)
