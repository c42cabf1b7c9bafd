"""SQL for pipeline steps and the step cache."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from lockgate.store import schema as t
from lockgate.store.dialect import insert_ignore, upsert

__all__ = ["PipelineRepository"]


class PipelineRepository:
    """Reads and writes pipeline step records inside the caller's transaction."""

    def save_step(self, conn: Connection, **values: Any) -> None:
        """Insert or replace the record of one step of one pipeline run."""
        columns = ["step_run_id", "status", "cache_key", "outputs", "attempts", "started_at", "ended_at"]
        stmt = upsert(conn, t.pipeline_steps, keys=["pipeline_run_id", "node"], update=columns)
        conn.execute(stmt, [values])

    def steps(self, conn: Connection, pipeline_run_id: str) -> list[dict[str, Any]]:
        query = (
            sa.select(t.pipeline_steps)
            .where(t.pipeline_steps.c.pipeline_run_id == pipeline_run_id)
            .order_by(t.pipeline_steps.c.started_at, t.pipeline_steps.c.node)
        )
        return [dict(r) for r in conn.execute(query).mappings().all()]

    def cached(self, conn: Connection, cache_key: str) -> dict[str, Any] | None:
        row = conn.execute(sa.select(t.step_cache).where(t.step_cache.c.cache_key == cache_key)).mappings().first()
        return dict(row) if row else None

    def remember(self, conn: Connection, **values: Any) -> None:
        """Record a step's outputs under its cache key (the first result for a key wins)."""
        conn.execute(insert_ignore(conn, t.step_cache).values(**values))
