"""SQL for registered models, their versions and aliases."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from lockgate.entities import ModelVersion
from lockgate.store import schema as t
from lockgate.store.dialect import insert_ignore, upsert

__all__ = ["ModelRepository"]


class ModelRepository:
    """Reads and writes the model registry inside the caller's transaction."""

    def ensure_model(self, conn: Connection, name: str, *, actor: str, now: int) -> None:
        conn.execute(insert_ignore(conn, t.registered_models).values(name=name, created_at=now, created_by=actor))

    def lock_model(self, conn: Connection, name: str) -> None:
        """Serialize version numbering for ``name`` (a row lock on PostgreSQL)."""
        query = sa.select(t.registered_models.c.name).where(t.registered_models.c.name == name)
        if conn.dialect.name == "postgresql":
            query = query.with_for_update()
        conn.execute(query)

    def next_version(self, conn: Connection, name: str) -> int:
        """The number the next version of ``name`` gets: numbers of deleted versions are not reused."""
        counter = t.model_version_counters
        used = conn.execute(sa.select(counter.c.last_version).where(counter.c.name == name)).scalar()
        return max(int(used or 0), self.latest_version(conn, name)) + 1

    def latest_version(self, conn: Connection, name: str) -> int:
        """The highest existing version of ``name`` (0 when it has none)."""
        query = sa.select(sa.func.max(t.model_versions.c.version)).where(t.model_versions.c.name == name)
        return int(conn.execute(query).scalar() or 0)

    def insert_version(self, conn: Connection, **values: Any) -> None:
        conn.execute(sa.insert(t.model_versions).values(**values))
        stmt = upsert(conn, t.model_version_counters, keys=["name"], update=["last_version"])
        conn.execute(stmt, [{"name": values["name"], "last_version": values["version"]}])

    def delete_version(self, conn: Connection, name: str, version: int) -> None:
        conn.execute(sa.delete(t.aliases).where(t.aliases.c.name == name, t.aliases.c.version == version))
        conn.execute(
            sa.delete(t.model_versions).where(t.model_versions.c.name == name, t.model_versions.c.version == version)
        )

    def delete_model(self, conn: Connection, name: str) -> None:
        conn.execute(sa.delete(t.aliases).where(t.aliases.c.name == name))
        conn.execute(sa.delete(t.model_versions).where(t.model_versions.c.name == name))
        conn.execute(sa.delete(t.registered_models).where(t.registered_models.c.name == name))

    def model_exists(self, conn: Connection, name: str) -> bool:
        query = sa.select(t.registered_models.c.name).where(t.registered_models.c.name == name)
        return conn.execute(query).first() is not None

    def list_models(self, conn: Connection) -> list[dict[str, Any]]:
        mv = t.model_versions
        latest = (
            sa.select(mv.c.name, sa.func.max(mv.c.version).label("latest"), sa.func.count().label("versions"))
            .group_by(mv.c.name)
            .subquery()
        )
        query = (
            sa.select(t.registered_models, latest.c.latest, latest.c.versions)
            .outerjoin(latest, latest.c.name == t.registered_models.c.name)
            .order_by(t.registered_models.c.name)
        )
        models = [dict(r) for r in conn.execute(query).mappings()]
        aliases = self.aliases(conn)
        for model in models:
            model["aliases"] = {a: v for (n, a), v in aliases.items() if n == model["name"]}
        return models

    def versions(self, conn: Connection, name: str, version: int | None = None) -> list[ModelVersion]:
        query = sa.select(t.model_versions).where(t.model_versions.c.name == name)
        if version is not None:
            query = query.where(t.model_versions.c.version == version)
        rows = conn.execute(query.order_by(t.model_versions.c.version.desc())).mappings()
        by_version: dict[int, list[str]] = {}
        for (_, alias), v in self.aliases(conn, name).items():
            by_version.setdefault(v, []).append(alias)
        return [ModelVersion(**dict(r), aliases=tuple(sorted(by_version.get(r["version"], [])))) for r in rows]

    def aliases(self, conn: Connection, name: str | None = None) -> dict[tuple[str, str], int]:
        query = sa.select(t.aliases.c.name, t.aliases.c.alias, t.aliases.c.version)
        if name is not None:
            query = query.where(t.aliases.c.name == name)
        return {(n, a): int(v) for n, a, v in conn.execute(query)}

    def set_alias(self, conn: Connection, name: str, alias: str, version: int, *, actor: str, now: int) -> None:
        stmt = upsert(conn, t.aliases, keys=["name", "alias"], update=["version", "updated_at", "updated_by"])
        conn.execute(stmt, [{"name": name, "alias": alias, "version": version, "updated_at": now, "updated_by": actor}])

    def delete_alias(self, conn: Connection, name: str, alias: str) -> None:
        conn.execute(sa.delete(t.aliases).where(t.aliases.c.name == name, t.aliases.c.alias == alias))
