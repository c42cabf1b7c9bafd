"""SQL for feature-store definitions, their current versions, and feature service bindings."""

from __future__ import annotations

import builtins
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from lockgate.store import schema as t
from lockgate.store.dialect import insert_ignore, upsert

__all__ = ["FeatureRepository"]


class FeatureRepository:
    """Reads and writes feature definitions and bindings inside the caller's transaction."""

    def insert_definition(self, conn: Connection, **values: Any) -> bool:
        """Add one version of a definition; False when that exact version is already stored."""
        d = t.feature_definitions
        stmt = insert_ignore(conn, d).values(**values).returning(d.c.version)
        return conn.execute(stmt).first() is not None

    def set_head(self, conn: Connection, **values: Any) -> None:
        """Make ``version`` the current one of (kind, name), remembering the file it came from."""
        stmt = upsert(
            conn, t.feature_heads, keys=["kind", "name"], update=["version", "origin", "updated_at", "updated_by"]
        )
        conn.execute(stmt, [values])

    def heads(self, conn: Connection, kind: str | None = None) -> builtins.list[dict[str, Any]]:
        """The current version of every definition (of one kind), with its spec and history size, by kind and name."""
        h, d = t.feature_heads, t.feature_definitions
        counts = (
            sa.select(d.c.kind, d.c.name, sa.func.count().label("versions")).group_by(d.c.kind, d.c.name).subquery()
        )
        query = (
            sa.select(
                h.c.kind,
                h.c.name,
                h.c.version,
                h.c.origin,
                h.c.updated_at,
                h.c.updated_by,
                d.c.spec,
                d.c.created_at,
                d.c.created_by,
                counts.c.versions,
            )
            .join(d, sa.and_(d.c.kind == h.c.kind, d.c.name == h.c.name, d.c.version == h.c.version))
            .join(counts, sa.and_(counts.c.kind == h.c.kind, counts.c.name == h.c.name))
            .order_by(h.c.kind, h.c.name)
        )
        if kind is not None:
            query = query.where(h.c.kind == kind)
        return [dict(r) for r in conn.execute(query).mappings()]

    def head(self, conn: Connection, kind: str, name: str) -> dict[str, Any] | None:
        """The current version of one definition, or None when it was never applied."""
        found = [r for r in self.heads(conn, kind) if r["name"] == name]
        return found[0] if found else None

    def versions(self, conn: Connection, kind: str, name: str) -> builtins.list[dict[str, Any]]:
        """Every stored version of one definition, oldest first."""
        d = t.feature_definitions
        query = sa.select(d).where(d.c.kind == kind, d.c.name == name).order_by(d.c.created_at, d.c.version)
        return [dict(r) for r in conn.execute(query).mappings()]

    def definition(self, conn: Connection, kind: str, name: str, version: str) -> dict[str, Any] | None:
        """One stored version, by its full hash or a unique prefix of it."""
        d = t.feature_definitions
        query = sa.select(d).where(d.c.kind == kind, d.c.name == name, d.c.version.startswith(version, autoescape=True))
        rows = [dict(r) for r in conn.execute(query.limit(2)).mappings()]
        return rows[0] if len(rows) == 1 else None

    # -- bindings ----------------------------------------------------------------------------

    def bind(self, conn: Connection, **values: Any) -> bool:
        """Bind a model version to a service; False when that binding exists already."""
        b = t.feature_service_bindings
        stmt = insert_ignore(conn, b).values(**values).returning(b.c.service)
        return conn.execute(stmt).first() is not None

    def bindings(
        self,
        conn: Connection,
        *,
        service: str | None = None,
        model: tuple[str, int] | None = None,
    ) -> builtins.list[dict[str, Any]]:
        """Bindings of one service, of one model version, or all; by service, model and version.

        Bindings of model versions deleted since are left out: they consume nothing any more.
        """
        b, mv = t.feature_service_bindings, t.model_versions
        query = sa.select(b).join(mv, sa.and_(mv.c.name == b.c.model_name, mv.c.version == b.c.model_version))
        if service is not None:
            query = query.where(b.c.service == service)
        if model is not None:
            query = query.where(b.c.model_name == model[0], b.c.model_version == model[1])
        query = query.order_by(b.c.service, b.c.model_name, b.c.model_version)
        return [dict(r) for r in conn.execute(query).mappings()]

    def model_feature_refs(self, conn: Connection) -> builtins.list[tuple[str, int, builtins.list[str]]]:
        """``(model, version, features)`` of every model version registered with feature references."""
        mv = t.model_versions
        query = sa.select(mv.c.name, mv.c.version, mv.c.features).order_by(mv.c.name, mv.c.version)
        return [(str(n), int(v), list(f)) for n, v, f in conn.execute(query) if f]
