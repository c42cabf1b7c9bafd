"""Time in one place, so records agree on the clock and tests can reason about it."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta

from lockgate.errors import InvalidInputError

__all__ = ["format_duration", "from_millis", "now_millis", "parse_duration", "to_iso"]

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")


def now_millis() -> int:
    """Milliseconds since the epoch, the unit every record stores."""
    return time.time_ns() // 1_000_000


def from_millis(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def to_iso(ms: int | None) -> str | None:
    return None if ms is None else from_millis(ms).isoformat(timespec="milliseconds")


def parse_duration(text: str | float | int | timedelta) -> timedelta:
    """A duration written as seconds or with units: ``90s``, ``15m``, ``1h30m``, ``7d``, ``2w``.

    >>> parse_duration("1h30m")
    datetime.timedelta(seconds=5400)
    """
    if isinstance(text, timedelta):
        seconds = text.total_seconds()
    elif isinstance(text, int | float) and not isinstance(text, bool):
        seconds = float(text)
    else:
        spec = str(text).strip().replace(" ", "").lower()
        try:
            seconds = float(spec)
        except ValueError:
            parts = _DURATION.findall(spec)
            if not parts or "".join(n + u for n, u in parts) != spec:
                raise InvalidInputError(
                    f"duration {text!r} does not parse; use seconds or units, e.g. 90s, 15m, 1h30m, 7d"
                ) from None
            seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    if seconds < 0 or seconds != seconds:
        raise InvalidInputError(f"duration {text!r} must be zero or more seconds")
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    """The shortest exact form of a duration, as :func:`parse_duration` reads it.

    >>> format_duration(timedelta(days=7)), format_duration(timedelta(minutes=90))
    ('7d', '90m')
    """
    seconds = value.total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"
