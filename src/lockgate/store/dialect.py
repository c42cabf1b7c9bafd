"""The few statements whose spelling differs between SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

__all__ = ["driver_insert_sql", "driver_select_in_sql", "insert_ignore", "upsert"]


# Building an ON CONFLICT statement costs SQLAlchemy more than executing it on SQLite, and
# these sit on the hottest paths (every log_metric), so each is built once per shape.
_CACHE: dict[tuple[Any, ...], Any] = {}


def _insert(conn: Connection, table: sa.Table) -> Any:
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def insert_ignore(conn: Connection, table: sa.Table) -> Any:
    """INSERT that silently keeps an existing row with the same key."""
    key = ("ignore", conn.dialect.name, table)
    stmt = _CACHE.get(key)
    if stmt is None:
        stmt = _CACHE[key] = _insert(conn, table).on_conflict_do_nothing()
    return stmt


def upsert(
    conn: Connection,
    table: sa.Table,
    *,
    keys: Sequence[str],
    update: Sequence[str],
    when: Callable[[Any], Any] | None = None,
) -> Any:
    """INSERT … ON CONFLICT (keys) DO UPDATE SET update…, optionally only ``when`` it holds.

    ``when`` should be a module-level function: the statement is cached by its identity.
    """
    key = ("upsert", conn.dialect.name, table, tuple(keys), tuple(update), when)
    cached = _CACHE.get(key)
    if cached is not None:
        return cached
    stmt = _insert(conn, table)
    new = stmt.excluded
    _CACHE[key] = stmt = stmt.on_conflict_do_update(
        index_elements=list(keys),
        set_={name: new[name] for name in update},
        where=when(new) if when is not None else None,
    )
    return stmt


_PLACEHOLDERS = {"qmark": "?", "format": "%s", "pyformat": "%s"}
_SQL_CACHE: dict[tuple[Any, ...], str] = {}


def driver_insert_sql(
    conn: Connection,
    table: sa.Table,
    columns: Sequence[str],
    *,
    conflict_keys: Sequence[str] = (),
    update: Sequence[str] = (),
    update_when: str = "",
    ignore_conflicts: bool = False,
) -> str:
    """INSERT SQL for ``exec_driver_sql`` with positional rows, for the hottest writes only.

    It skips SQLAlchemy's per-row parameter processing, which costs more than SQLite's own
    insert. The ON CONFLICT spelling is the same on SQLite and PostgreSQL; ``update_when`` may
    refer to ``excluded`` and to the table by name.
    """
    key = (
        conn.dialect.name,
        table.name,
        tuple(columns),
        tuple(conflict_keys),
        tuple(update),
        update_when,
        ignore_conflicts,
    )
    sql = _SQL_CACHE.get(key)
    if sql is not None:
        return sql
    q = conn.dialect.identifier_preparer.quote
    mark = _PLACEHOLDERS[conn.dialect.paramstyle]
    sql = (
        f"INSERT INTO {q(table.name)} ({', '.join(q(c) for c in columns)}) VALUES ({', '.join([mark] * len(columns))})"
    )
    if ignore_conflicts:
        sql += " ON CONFLICT DO NOTHING"
    elif update:
        sets = ", ".join(f"{q(c)} = excluded.{q(c)}" for c in update)
        sql += f" ON CONFLICT ({', '.join(q(c) for c in conflict_keys)}) DO UPDATE SET {sets}"
        if update_when:
            sql += f" WHERE {update_when}"
    _SQL_CACHE[key] = sql
    return sql


def driver_select_in_sql(conn: Connection, table: sa.Table, run_ids: Sequence[str]) -> str:
    """``SELECT run_id, key, value FROM table WHERE run_id IN (…)`` for ``exec_driver_sql``."""
    q = conn.dialect.identifier_preparer.quote
    marks = ", ".join([_PLACEHOLDERS[conn.dialect.paramstyle]] * len(run_ids))
    return f"SELECT run_id, {q('key')}, {q('value')} FROM {q(table.name)} WHERE run_id IN ({marks})"
