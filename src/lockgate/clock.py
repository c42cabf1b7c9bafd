"""Time in one place, so records agree on the clock and tests can reason about it."""

from __future__ import annotations

import time
from datetime import UTC, datetime

__all__ = ["from_millis", "now_millis", "to_iso"]


def now_millis() -> int:
    """Milliseconds since the epoch, the unit every record stores."""
    return time.time_ns() // 1_000_000


def from_millis(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def to_iso(ms: int | None) -> str | None:
    return None if ms is None else from_millis(ms).isoformat(timespec="milliseconds")
