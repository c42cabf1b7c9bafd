"""SQL for the audit chain: events and the one head row appends serialize on."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from lockgate.entities import AuditEvent
from lockgate.store import schema as t
from lockgate.store.dialect import insert_ignore

__all__ = ["AuditRepository"]

GENESIS = "0" * 64


class AuditRepository:
    def lock_head(self, conn: Connection) -> tuple[int, str]:
        """The chain head ``(seq, hash)``, locked until the transaction ends."""
        query = sa.select(t.audit_head.c.seq, t.audit_head.c.hash).where(t.audit_head.c.id == 1)
        if conn.dialect.name == "postgresql":
            query = query.with_for_update()
        row = conn.execute(query).first()
        if row is None:
            # The very first event: several writers may get here at once, so the head row is
            # inserted "if absent" and then locked like any other time.
            conn.execute(insert_ignore(conn, t.audit_head).values(id=1, seq=0, hash=GENESIS))
            row = conn.execute(query).first()
            assert row is not None
        return int(row[0]), str(row[1])

    def append(self, conn: Connection, event: AuditEvent) -> None:
        conn.execute(sa.insert(t.audit_events).values(**_row(event)))
        conn.execute(sa.update(t.audit_head).where(t.audit_head.c.id == 1).values(seq=event.seq, hash=event.hash))

    def iter_events(self, conn: Connection, *, batch: int = 5000) -> Iterator[AuditEvent]:
        last = 0
        while True:
            rows = list(
                conn.execute(
                    sa.select(t.audit_events)
                    .where(t.audit_events.c.seq > last)
                    .order_by(t.audit_events.c.seq)
                    .limit(batch)
                ).mappings()
            )
            if not rows:
                return
            for r in rows:
                yield AuditEvent(**dict(r))
            last = int(rows[-1]["seq"])

    def events(
        self, conn: Connection, *, object_kind: str | None = None, object_id: str | None = None, limit: int = 100
    ) -> list[AuditEvent]:
        query = sa.select(t.audit_events)
        if object_kind:
            query = query.where(t.audit_events.c.object_kind == object_kind)
        if object_id:
            query = query.where(t.audit_events.c.object_id == object_id)
        rows = conn.execute(query.order_by(t.audit_events.c.seq.desc()).limit(limit)).mappings()
        return [AuditEvent(**dict(r)) for r in rows]

    def head(self, conn: Connection) -> tuple[int, str]:
        row = conn.execute(sa.select(t.audit_head.c.seq, t.audit_head.c.hash).where(t.audit_head.c.id == 1)).first()
        return (int(row[0]), str(row[1])) if row else (0, GENESIS)


def _row(event: AuditEvent) -> dict[str, Any]:
    return {
        "seq": event.seq,
        "ts": event.ts,
        "actor": event.actor,
        "action": event.action,
        "object_kind": event.object_kind,
        "object_id": event.object_id,
        "details": event.details,
        "prev_hash": event.prev_hash,
        "hash": event.hash,
        "mac": event.mac,
    }
