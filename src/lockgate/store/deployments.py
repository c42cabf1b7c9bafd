"""SQL for deployments, and the registry facts a deployment's routes resolve against."""

from __future__ import annotations

import builtins
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from lockgate.store import schema as t

__all__ = ["DeploymentRepository"]


class DeploymentRepository:
    """Reads and writes deployments inside the caller's transaction.

    Writers call :meth:`lock` first and take :meth:`next_revision` after it: revisions are
    then handed out and committed in the same order, so a poller that has seen revision N
    never later meets a commit numbered below N.
    """

    def lock(self, conn: Connection) -> None:
        """Serialize deployment writers until the transaction ends; readers are not blocked.

        SQLite needs nothing: write transactions already begin IMMEDIATE, one at a time.
        """
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("LOCK TABLE deployments IN SHARE ROW EXCLUSIVE MODE")

    def revision(self, conn: Connection) -> int:
        """The highest revision given so far (0 before the first deployment)."""
        return int(conn.execute(sa.select(sa.func.max(t.deployments.c.revision))).scalar() or 0)

    def next_revision(self, conn: Connection) -> int:
        return self.revision(conn) + 1

    def get(self, conn: Connection, name: str) -> dict[str, Any] | None:
        """The deployment called ``name``, deleted ones (tombstones) included."""
        row = conn.execute(sa.select(t.deployments).where(t.deployments.c.name == name)).mappings().first()
        return dict(row) if row else None

    def list(self, conn: Connection) -> builtins.list[dict[str, Any]]:
        """Live deployments, by name."""
        d = t.deployments
        query = sa.select(d).where(d.c.deleted.is_(False)).order_by(d.c.name)
        return [dict(r) for r in conn.execute(query).mappings()]

    def changed_since(self, conn: Connection, revision: int) -> builtins.list[dict[str, Any]]:
        """Deployments written after ``revision`` (tombstones included), oldest change first."""
        d = t.deployments
        query = sa.select(d).where(d.c.revision > revision).order_by(d.c.revision)
        return [dict(r) for r in conn.execute(query).mappings()]

    def insert(self, conn: Connection, **values: Any) -> None:
        conn.execute(sa.insert(t.deployments).values(**values))

    def replace(self, conn: Connection, **values: Any) -> None:
        """Overwrite the row named ``values["name"]`` (tombstones included)."""
        d = t.deployments
        conn.execute(sa.update(d).where(d.c.name == values["name"]).values(**values))

    # -- what routes resolve against -----------------------------------------------------------

    def model_targets(
        self, conn: Connection, models: Iterable[str]
    ) -> tuple[dict[str, set[int]], dict[tuple[str, str], int]]:
        """The existing versions and the aliases of ``models``: two queries on primary-key
        prefixes, however many deployments route to them."""
        names = sorted(set(models))
        if not names:
            return {}, {}
        mv, al = t.model_versions, t.aliases
        versions: dict[str, set[int]] = {}
        for name, version in conn.execute(sa.select(mv.c.name, mv.c.version).where(mv.c.name.in_(names))):
            versions.setdefault(name, set()).add(int(version))
        aliases = {
            (n, a): int(v)
            for n, a, v in conn.execute(sa.select(al.c.name, al.c.alias, al.c.version).where(al.c.name.in_(names)))
        }
        return versions, aliases
