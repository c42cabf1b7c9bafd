"""SQL for lineage edges."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from lockgate.entities import LineageEdge
from lockgate.store import schema as t
from lockgate.store.dialect import insert_ignore

__all__ = ["LineageRepository"]


class LineageRepository:
    def add(self, conn: Connection, edges: Iterable[LineageEdge], now: int) -> None:
        rows = [
            {
                "src_kind": e.src_kind,
                "src_id": e.src_id,
                "relation": e.relation,
                "dst_kind": e.dst_kind,
                "dst_id": e.dst_id,
                "created_at": now,
            }
            for e in edges
        ]
        if rows:
            conn.execute(insert_ignore(conn, t.lineage_edges), rows)

    def neighbours(self, conn: Connection, nodes: Sequence[tuple[str, str]], *, upstream: bool) -> list[LineageEdge]:
        """Edges pointing into (upstream) or out of (downstream) any of ``nodes``."""
        if not nodes:
            return []
        e = t.lineage_edges
        kind, ident = (e.c.dst_kind, e.c.dst_id) if upstream else (e.c.src_kind, e.c.src_id)
        query = sa.select(e).where(sa.tuple_(kind, ident).in_(list(nodes))).order_by(e.c.id)
        return [LineageEdge(**{k: v for k, v in dict(r).items() if k != "id"}) for r in conn.execute(query).mappings()]
