"""A project helper module the test pipeline imports (editing it must invalidate the cache)."""

from __future__ import annotations

SCALE = 2


def scale(x: float) -> float:
    return x * SCALE
