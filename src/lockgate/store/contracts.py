"""SQL for registered data contracts, and the contract outcomes recorded on data set versions."""

from __future__ import annotations

import builtins
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from lockgate.store import schema as t
from lockgate.store.dialect import insert_ignore

__all__ = ["ContractRepository"]


class ContractRepository:
    """Reads and writes contract versions inside the caller's transaction."""

    def insert(self, conn: Connection, **values: Any) -> bool:
        """Add one version; False when that name and version exist (also by a concurrent insert)."""
        stmt = insert_ignore(conn, t.contracts).values(**values).returning(t.contracts.c.version)
        return conn.execute(stmt).first() is not None

    def versions(self, conn: Connection, name: str) -> builtins.list[dict[str, Any]]:
        """Every version of ``name``, oldest first."""
        query = sa.select(t.contracts).where(t.contracts.c.name == name).order_by(t.contracts.c.version)
        return [dict(r) for r in conn.execute(query).mappings()]

    def get(self, conn: Connection, name: str, version: int | None = None) -> dict[str, Any] | None:
        """One version of ``name``, or its latest when ``version`` is None."""
        c = t.contracts.c
        query = sa.select(t.contracts).where(c.name == name)
        query = query.where(c.version == version) if version is not None else query.order_by(c.version.desc())
        row = conn.execute(query.limit(1)).mappings().first()
        return dict(row) if row else None

    def list(self, conn: Connection) -> builtins.list[dict[str, Any]]:
        """The latest version of every contract, with how many versions it has, by name."""
        c = t.contracts
        latest = (
            sa.select(c.c.name, sa.func.max(c.c.version).label("latest"), sa.func.count().label("versions"))
            .group_by(c.c.name)
            .subquery()
        )
        query = (
            sa.select(c, latest.c.versions)
            .join(latest, sa.and_(latest.c.name == c.c.name, latest.c.latest == c.c.version))
            .order_by(c.c.name)
        )
        return [dict(r) for r in conn.execute(query).mappings()]

    def dataset_facts(self, conn: Connection, key: str) -> builtins.list[dict[str, Any]]:
        """Every fact called ``key`` on any data set version, with the version's name and hash, oldest first."""
        f, d = t.dataset_facts, t.datasets
        query = (
            sa.select(d.c.name, d.c.content_hash, f.c.value, f.c.created_at, f.c.created_by)
            .join(d, d.c.id == f.c.dataset_id)
            .where(f.c.key == key)
            .order_by(f.c.id)
        )
        return [dict(r) for r in conn.execute(query).mappings()]
