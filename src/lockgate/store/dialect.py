"""The few statements whose spelling differs between SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

__all__ = ["insert_ignore", "upsert"]


def _insert(conn: Connection, table: sa.Table) -> Any:
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def insert_ignore(conn: Connection, table: sa.Table) -> Any:
    """INSERT that silently keeps an existing row with the same key."""
    return _insert(conn, table).on_conflict_do_nothing()


def upsert(
    conn: Connection,
    table: sa.Table,
    *,
    keys: Sequence[str],
    update: Sequence[str],
    when: Callable[[Any], Any] | None = None,
) -> Any:
    """INSERT … ON CONFLICT (keys) DO UPDATE SET update…, optionally only ``when`` it holds."""
    stmt = _insert(conn, table)
    new = stmt.excluded
    return stmt.on_conflict_do_update(
        index_elements=list(keys),
        set_={name: new[name] for name in update},
        where=when(new) if when is not None else None,
    )
