"""SQL for rollout statistics: servers append what they saw, the analysis sums a window."""

from __future__ import annotations

import builtins
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from lockgate.store import schema as t

__all__ = ["RolloutStatsRepository"]


class RolloutStatsRepository:
    """Per-arm statistics rows, appended by servers and read back by deployment and time."""

    def append(self, conn: Connection, rows: Iterable[dict[str, Any]]) -> None:
        """Insert flushed rows (keys as the table's columns, ``id`` left out)."""
        values = list(rows)
        if values:
            conn.execute(sa.insert(t.rollout_stats), values)

    def window(self, conn: Connection, deployment: str, start: int, end: int) -> builtins.list[dict[str, Any]]:
        """Rows of ``deployment`` flushed in ``[start, end)`` (milliseconds), any order."""
        s = t.rollout_stats
        query = sa.select(s.c.version, s.c.role, s.c.requests, s.c.errors, s.c.stats).where(
            s.c.deployment == deployment, s.c.ts >= start, s.c.ts < end
        )
        return [dict(r) for r in conn.execute(query).mappings()]

    def prune(self, conn: Connection, before: int) -> int:
        """Delete rows flushed before ``before``; how many went."""
        s = t.rollout_stats
        return int(conn.execute(sa.delete(s).where(s.c.ts < before)).rowcount or 0)
