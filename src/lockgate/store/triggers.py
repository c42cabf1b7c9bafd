"""SQL for continuous-training triggers, their firings, and the scheduler lease."""

from __future__ import annotations

import builtins
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from lockgate.store import schema as t
from lockgate.store.dialect import insert_ignore

__all__ = ["LeaseRepository", "TriggerRepository"]

_FIRE_COLUMNS = [c for c in t.trigger_fires.c if c.name != "trigger_id"]


class TriggerRepository:
    """Reads and writes triggers and their firings inside the caller's transaction."""

    # -- triggers ------------------------------------------------------------------------------

    def insert(self, conn: Connection, **values: Any) -> int | None:
        """The new trigger's id, or None when the name is taken (also by a concurrent insert)."""
        stmt = insert_ignore(conn, t.triggers).values(**values).returning(t.triggers.c.id)
        found = conn.execute(stmt).scalar()
        return None if found is None else int(found)

    def get(self, conn: Connection, name: str, *, lock: bool = False) -> dict[str, Any] | None:
        """The trigger called ``name``; ``lock`` holds its row until the transaction ends."""
        query = sa.select(t.triggers).where(t.triggers.c.name == name)
        if lock and conn.dialect.name == "postgresql":
            query = query.with_for_update()
        row = conn.execute(query).mappings().first()
        return dict(row) if row else None

    def get_by_id(self, conn: Connection, trigger_id: int) -> dict[str, Any] | None:
        row = conn.execute(sa.select(t.triggers).where(t.triggers.c.id == trigger_id)).mappings().first()
        return dict(row) if row else None

    def list(self, conn: Connection, *, enabled_only: bool = False) -> list[dict[str, Any]]:
        query = sa.select(t.triggers).order_by(t.triggers.c.name)
        if enabled_only:
            query = query.where(t.triggers.c.enabled.is_(True))
        return [dict(r) for r in conn.execute(query).mappings()]

    def update(self, conn: Connection, trigger_id: int, **values: Any) -> None:
        conn.execute(sa.update(t.triggers).where(t.triggers.c.id == trigger_id).values(**values))

    def delete(self, conn: Connection, trigger_id: int) -> None:
        # Its firings go with it (ON DELETE CASCADE too, but not every SQLite connection enforces it).
        conn.execute(sa.delete(t.trigger_fires).where(t.trigger_fires.c.trigger_id == trigger_id))
        conn.execute(sa.delete(t.triggers).where(t.triggers.c.id == trigger_id))

    # -- firings -------------------------------------------------------------------------------

    def insert_fire(self, conn: Connection, **values: Any) -> int:
        stmt = sa.insert(t.trigger_fires).values(**values).returning(t.trigger_fires.c.id)
        return int(conn.execute(stmt).scalar_one())

    def fire_with_key(self, conn: Connection, trigger_id: int, dedup_key: str) -> int | None:
        """The id of the firing already recorded for this event, if any."""
        f = t.trigger_fires
        query = sa.select(f.c.id).where(f.c.trigger_id == trigger_id, f.c.dedup_key == dedup_key)
        found = conn.execute(query).scalar()
        return None if found is None else int(found)

    def pending_fire(self, conn: Connection, trigger_id: int) -> int | None:
        """The id of a firing of this trigger still waiting to run, if any."""
        f = t.trigger_fires
        query = sa.select(f.c.id).where(f.c.trigger_id == trigger_id, f.c.status == "PENDING").order_by(f.c.id)
        found = conn.execute(query.limit(1)).scalar()
        return None if found is None else int(found)

    def fires(
        self,
        conn: Connection,
        *,
        trigger_id: int | None = None,
        status: str | None = None,
        ids: builtins.list[int] | None = None,
        limit: int | None = None,
        newest_first: bool = True,
    ) -> builtins.list[dict[str, Any]]:
        """Firings with their trigger's name (as ``trigger``)."""
        f = t.trigger_fires
        query = sa.select(t.triggers.c.name.label("trigger"), *_FIRE_COLUMNS).join(
            t.triggers, t.triggers.c.id == f.c.trigger_id
        )
        if trigger_id is not None:
            query = query.where(f.c.trigger_id == trigger_id)
        if status is not None:
            query = query.where(f.c.status == status)
        if ids is not None:
            query = query.where(f.c.id.in_(ids))
        query = query.order_by(f.c.id.desc() if newest_first else f.c.id)
        if limit is not None:
            query = query.limit(limit)
        return [dict(r) for r in conn.execute(query).mappings()]

    def claim_fire(self, conn: Connection, fire_id: int, *, runner: str, now: int) -> bool:
        """Move a PENDING firing to RUNNING for ``runner``; False when someone else got it first."""
        f = t.trigger_fires
        stmt = (
            sa.update(f)
            .where(f.c.id == fire_id, f.c.status == "PENDING")
            .values(status="RUNNING", runner=runner, started_at=now)
        )
        return conn.execute(stmt).rowcount == 1

    def update_fire(self, conn: Connection, fire_id: int, *, only_status: str | None = None, **values: Any) -> bool:
        """Update one firing (only while its status is ``only_status``, when given)."""
        f = t.trigger_fires
        stmt = sa.update(f).where(f.c.id == fire_id)
        if only_status is not None:
            stmt = stmt.where(f.c.status == only_status)
        return conn.execute(stmt.values(**values)).rowcount == 1


class LeaseRepository:
    """A named lease: one holder at a time, until it expires or is released."""

    def acquire(self, conn: Connection, name: str, *, holder: str, now: int, ttl_ms: int) -> bool:
        """Take or renew the lease for ``ttl_ms``; False while another holder's lease is live."""
        conn.execute(
            insert_ignore(conn, t.scheduler_leases).values(name=name, holder=holder, acquired_at=now, expires_at=0)
        )
        lease = t.scheduler_leases
        taken = sa.case((lease.c.holder == holder, lease.c.acquired_at), else_=now)
        stmt = (
            sa.update(lease)
            .where(lease.c.name == name, sa.or_(lease.c.holder == holder, lease.c.expires_at <= now))
            .values(holder=holder, acquired_at=taken, expires_at=now + ttl_ms)
        )
        return conn.execute(stmt).rowcount == 1

    def release(self, conn: Connection, name: str, *, holder: str) -> None:
        lease = t.scheduler_leases
        conn.execute(sa.update(lease).where(lease.c.name == name, lease.c.holder == holder).values(expires_at=0))

    def get(self, conn: Connection, name: str) -> dict[str, Any] | None:
        row = conn.execute(sa.select(t.scheduler_leases).where(t.scheduler_leases.c.name == name)).mappings().first()
        return dict(row) if row else None
