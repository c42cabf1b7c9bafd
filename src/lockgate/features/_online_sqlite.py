"""The embedded online store: one SQLite file (WAL), one table per view version.

Each table is keyed by the view's join keys (``WITHOUT ROWID``, so the primary key is the
row's storage order) and holds every feature of the view in one row beside its event and
created time: a read of one entity is one primary-key lookup that returns all it needs.
Watermarks live in the same file, so the materialization state travels with the data.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import pyarrow as pa

from lockgate.clock import now_millis
from lockgate.errors import InvalidInputError, UnavailableError
from lockgate.features._definitions import FeatureView
from lockgate.features._online_base import CT, ET, OnlineStoreBase, Progress, ViewLayout, from_micros, quote

__all__ = ["SqliteOnlineStore"]

_WATERMARKS = "lockgate_online_watermarks"
_CHUNK = 50_000
# Longer key lists are split; shorter ones are padded up to the next size here, so a handful
# of prepared statements serve every request size.
_IN_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


def _sql_type(t: pa.DataType) -> str:
    if pa.types.is_boolean(t) or pa.types.is_integer(t) or pa.types.is_timestamp(t):
        return "INTEGER"
    if pa.types.is_floating(t):
        return "REAL"
    return "TEXT"


def _converter(t: pa.DataType) -> Callable[[Any], Any] | None:
    """How a stored value becomes the feature's Python value, where SQLite's own type differs."""
    if pa.types.is_boolean(t):
        return lambda v: None if v is None else bool(v)
    if pa.types.is_timestamp(t):
        return lambda v: None if v is None else from_micros(v)
    return None


class _Statements:
    """The SQL of one view version, built once."""

    def __init__(self, layout: ViewLayout) -> None:
        self.table = quote(f"fv_{layout.name}_{layout.version}")
        keys = [quote(k) for k in layout.keys]
        features = [quote(f) for f in layout.features]
        columns = [*keys, quote(ET), quote(CT), *features]
        key_defs = ", ".join(f"{k} NOT NULL" for k in keys)
        feature_defs = "".join(f", {quote(f)} {_sql_type(layout.types[f])}" for f in layout.features)
        self.create = (
            f"CREATE TABLE IF NOT EXISTS {self.table} ({key_defs}, {quote(ET)} INTEGER NOT NULL, "
            f"{quote(CT)} INTEGER NOT NULL{feature_defs}, PRIMARY KEY ({', '.join(keys)})) WITHOUT ROWID"
        )
        updates = ", ".join(f"{c} = excluded.{c}" for c in columns[len(keys) :])
        # Newer wins: by event time, then by created time; an equal or older row changes nothing.
        self.upsert = (
            f"INSERT INTO {self.table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))}) "
            f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {updates} "
            f"WHERE (excluded.{quote(ET)}, excluded.{quote(CT)}) > ({self.table}.{quote(ET)}, {self.table}.{quote(CT)})"
        )
        self.keys = keys
        self.single_key = layout.single_key
        self.types = layout.types
        self._selects: dict[tuple[tuple[str, ...], int], str] = {}
        self._converters: dict[tuple[str, ...], list[tuple[int, Callable[[Any], Any]]]] = {}

    def select(self, features: tuple[str, ...], n: int) -> str:
        """Each row: the features, the event time, then (for n > 1) the join keys."""
        sql = self._selects.get((features, n))
        if sql is None:
            values = ", ".join(f"t.{quote(f)}" for f in features)
            keys = ", ".join(f"t.{k}" for k in self.keys)
            if n == 1:
                where = " AND ".join(f"t.{k} = ?" for k in self.keys)
                sql = f"SELECT {values}, t.{quote(ET)} FROM {self.table} AS t WHERE {where}"
            elif self.single_key:
                sql = (
                    f"SELECT {values}, t.{quote(ET)}, {keys} FROM {self.table} AS t "
                    f"WHERE {keys} IN ({', '.join('?' * n)})"
                )
            else:
                # Row values IN (VALUES ...) would scan the table; a CROSS JOIN from the
                # requested keys keeps one primary-key search per key.
                names = [f"k{i}" for i in range(len(self.keys))]
                row = "(" + ", ".join("?" * len(self.keys)) + ")"
                on = " AND ".join(f"t.{k} = q.{name}" for k, name in zip(self.keys, names, strict=True))
                sql = (
                    f"WITH q({', '.join(names)}) AS (VALUES {', '.join([row] * n)}) "
                    f"SELECT {values}, t.{quote(ET)}, {keys} FROM q CROSS JOIN {self.table} AS t WHERE {on}"
                )
            self._selects[(features, n)] = sql
        return sql

    def converters(self, features: tuple[str, ...]) -> list[tuple[int, Callable[[Any], Any]]]:
        conv = self._converters.get(features)
        if conv is None:
            conv = [(i, c) for i, f in enumerate(features) if (c := _converter(self.types[f])) is not None]
            self._converters[features] = conv
        return conv


class SqliteOnlineStore(OnlineStoreBase):
    """Online features in one SQLite file; each thread reads through its own connection."""

    backend: ClassVar[str] = "sqlite"

    def __init__(self, *, path: Path) -> None:
        super().__init__()
        self.path = Path(path)
        self.url = f"sqlite:///{self.path}"
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._statements: dict[tuple[str, str], _Statements] = {}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = self._conn()
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {_WATERMARKS} (view TEXT NOT NULL, version TEXT NOT NULL, "
                "watermark INTEGER NOT NULL, updated_at INTEGER NOT NULL, PRIMARY KEY (view, version)) WITHOUT ROWID"
            )
        except (OSError, sqlite3.Error) as exc:
            self.close()
            raise UnavailableError(f"the online store {self.path} cannot be opened ({exc}); check the path") from None

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            # Autocommit: a read is one statement, and writes open their own transaction.
            conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, cached_statements=256, timeout=10.0
            )
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute("PRAGMA temp_store=MEMORY")
                conn.execute("PRAGMA cache_size=-32768")
                # Reads straight from the page cache of the OS, without a copy into SQLite's.
                conn.execute("PRAGMA mmap_size=268435456")
            except sqlite3.Error:
                conn.close()
                raise
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    def _stmts(self, layout: ViewLayout) -> _Statements:
        stmts = self._statements.get((layout.name, layout.version))
        if stmts is None:
            stmts = self._statements[(layout.name, layout.version)] = _Statements(layout)
        return stmts

    # -- the primitives -----------------------------------------------------------------------------

    def _fetch(self, layout: ViewLayout, keys: list[Any], features: tuple[str, ...]) -> list[Sequence[Any] | None]:
        stmts = self._stmts(layout)
        conn = self._conn()
        try:
            if len(keys) == 1:
                params = keys if layout.single_key else keys[0]
                records: list[Sequence[Any] | None] = [conn.execute(stmts.select(features, 1), params).fetchone()]
            else:
                found: dict[Any, tuple[Any, ...]] = {}
                at = len(features) + 1  # where the join keys start in a row
                for start in range(0, len(keys), _IN_SIZES[-1]):
                    chunk = keys[start : start + _IN_SIZES[-1]]
                    size = next(s for s in _IN_SIZES if s >= len(chunk))
                    # Padding repeats a key: SQLite deduplicates an IN list before searching.
                    padded = chunk + [chunk[-1]] * (size - len(chunk))
                    sql = stmts.select(features, size)
                    if layout.single_key:
                        for rec in conn.execute(sql, padded):
                            found[rec[at]] = rec
                    else:
                        flat = [v for key in padded for v in key]
                        for rec in conn.execute(sql, flat):
                            found[rec[at:]] = rec
                records = [found.get(k) for k in keys]
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return [None] * len(keys)  # never written: every entity is missing
            raise self._unavailable(exc) from None
        except sqlite3.ProgrammingError as exc:  # a key SQLite cannot bind, e.g. a numpy scalar
            raise InvalidInputError(
                f"an entity key of view '{layout.name}' cannot be looked up ({exc}); pass plain int or str values"
            ) from None
        except sqlite3.Error as exc:
            raise self._unavailable(exc) from None
        conv = stmts.converters(features)
        if conv:
            for i, rec in enumerate(records):
                if rec is not None:
                    values = list(rec)
                    for j, fn in conv:
                        values[j] = fn(values[j])
                    records[i] = tuple(values)
        return records

    def _upsert(self, layout: ViewLayout, latest: pa.Table, *, watermark_us: int | None, progress: Progress) -> int:
        stmts = self._stmts(layout)
        conn = self._conn()
        columns = [*layout.keys, ET, CT, *layout.features]
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute(stmts.create)
                before = conn.total_changes
                done = 0
                for start in range(0, latest.num_rows, _CHUNK):
                    chunk = latest.slice(start, _CHUNK)
                    conn.executemany(stmts.upsert, zip(*[chunk.column(c).to_pylist() for c in columns], strict=True))
                    done += chunk.num_rows
                    progress(done, conn.total_changes - before)
                written = conn.total_changes - before
                if watermark_us is not None:
                    self._write_watermark(conn, layout, watermark_us, forward_only=True)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise self._unavailable(exc) from None
        return written

    def _write_watermark(
        self, conn: sqlite3.Connection, layout: ViewLayout, us: int, *, forward_only: bool = False
    ) -> None:
        # A materialization only moves it forward: of two running at once, the one that commits
        # last may have the earlier end. Setting it by hand may move it anywhere.
        value = "max(watermark, excluded.watermark)" if forward_only else "excluded.watermark"
        conn.execute(
            f"INSERT INTO {_WATERMARKS} (view, version, watermark, updated_at) VALUES (?, ?, ?, ?) "
            f"ON CONFLICT (view, version) DO UPDATE SET watermark = {value}, updated_at = excluded.updated_at",
            (layout.name, layout.version, us, now_millis()),
        )

    def _get_watermark(self, layout: ViewLayout) -> int | None:
        try:
            row = (
                self._conn()
                .execute(
                    f"SELECT watermark FROM {_WATERMARKS} WHERE view = ? AND version = ?", (layout.name, layout.version)
                )
                .fetchone()
            )
        except sqlite3.Error as exc:
            raise self._unavailable(exc) from None
        return None if row is None else int(row[0])

    def _set_watermark(self, layout: ViewLayout, us: int | None) -> None:
        conn = self._conn()
        try:
            if us is None:
                conn.execute(f"DELETE FROM {_WATERMARKS} WHERE view = ? AND version = ?", (layout.name, layout.version))
            else:
                self._write_watermark(conn, layout, us)
        except sqlite3.Error as exc:
            raise self._unavailable(exc) from None

    def drop(self, view: FeatureView) -> None:
        layout = self.layout(view)
        stmts = self._stmts(layout)
        conn = self._conn()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute(f"DROP TABLE IF EXISTS {stmts.table}")
                conn.execute(f"DELETE FROM {_WATERMARKS} WHERE view = ? AND version = ?", (layout.name, layout.version))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise self._unavailable(exc) from None

    def close(self) -> None:
        with self._lock:
            connections, self._connections = self._connections, []
        for conn in connections:
            conn.close()
        self._local = threading.local()

    def _unavailable(self, exc: sqlite3.Error) -> UnavailableError:
        return UnavailableError(f"the online store {self.path} failed ({exc}); check the disk and the file")
