"""SQL for dataset versions and the facts later capabilities attach to them."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from lockgate.entities import DatasetVersion
from lockgate.errors import InvalidInputError
from lockgate.store import schema as t
from lockgate.store.dialect import insert_ignore

__all__ = ["DatasetRepository"]


class DatasetRepository:
    def get_or_insert(self, conn: Connection, **values: Any) -> tuple[DatasetVersion, bool]:
        """The version with this name and content hash, inserting it if new; ``(version, created)``."""
        # RETURNING says whether the row is new on both backends; rowcount does not (psycopg
        # reports -1 for an INSERT … RETURNING, which would read as "created" every time).
        stmt = insert_ignore(conn, t.datasets).values(**values).returning(t.datasets.c.id)
        created = conn.execute(stmt).first() is not None
        found = self.find(conn, values["name"], values["content_hash"])
        assert found is not None
        return found, created

    def find(self, conn: Connection, name: str, hash_prefix: str | None = None) -> DatasetVersion | None:
        """A version by name and (a prefix of) its hash, or the newest version of ``name``."""
        query = sa.select(t.datasets).where(t.datasets.c.name == name)
        if hash_prefix:
            query = query.where(t.datasets.c.content_hash.like(f"{hash_prefix}%"))
        rows = conn.execute(query.order_by(t.datasets.c.id.desc()).limit(2)).mappings().all()
        if hash_prefix and len(rows) > 1:
            raise InvalidInputError(
                f"hash prefix '{hash_prefix}' matches several versions of data set '{name}'; type more characters"
            )
        return _version(rows[0]) if rows else None

    def versions(self, conn: Connection, name: str | None = None) -> list[DatasetVersion]:
        query = sa.select(t.datasets)
        if name is not None:
            query = query.where(t.datasets.c.name == name)
        return [_version(r) for r in conn.execute(query.order_by(t.datasets.c.id.desc())).mappings()]

    def add_fact(self, conn: Connection, dataset_id: int, key: str, value: Any, *, actor: str, now: int) -> None:
        conn.execute(
            sa.insert(t.dataset_facts).values(
                dataset_id=dataset_id, key=key, value=value, created_at=now, created_by=actor
            )
        )

    def facts(self, conn: Connection, dataset_id: int) -> list[dict[str, Any]]:
        query = (
            sa.select(t.dataset_facts).where(t.dataset_facts.c.dataset_id == dataset_id).order_by(t.dataset_facts.c.id)
        )
        return [dict(r) for r in conn.execute(query).mappings()]


def _version(row: Any) -> DatasetVersion:
    return DatasetVersion(**dict(dict(row).items()))
