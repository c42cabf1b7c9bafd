"""Connections and transactions to the metadata database.

SQLite runs in WAL mode with a busy timeout, and every write transaction starts with
``BEGIN IMMEDIATE``: a deferred transaction that later needs the write lock fails at once
with "database is locked" instead of waiting, which is what several processes logging to
one workspace would otherwise see. PostgreSQL goes through psycopg 3.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import OperationalError

from lockgate.errors import ConfigError, UnavailableError

__all__ = ["Database", "normalize_url", "redact_url"]

_T = TypeVar("_T")
_WRITE = "lockgate_write"
_AFTER_COMMIT = "lockgate_after_commit"
_BUSY_TIMEOUT_S = 60.0


def normalize_url(url: str) -> str:
    """Pick lockgate's drivers: psycopg 3 for PostgreSQL."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def redact_url(url: str) -> str:
    """The URL with its password hidden, safe for messages and logs."""
    try:
        parsed = sa.engine.make_url(url)
    except sa.exc.ArgumentError:
        return "<invalid url>"
    # Show the URL as users write it: the driver lockgate picked (``+psycopg``) is noise to them.
    return parsed.set(drivername=parsed.get_backend_name()).render_as_string(hide_password=True)


class Database:
    """An engine plus the two kinds of transaction lockgate uses: read and write."""

    def __init__(self, url: str) -> None:
        url = normalize_url(url)
        try:
            parsed = sa.engine.make_url(url)
        except sa.exc.ArgumentError:
            raise ConfigError(  # the URL itself is not echoed: it may hold a password
                "the database URL is not valid; use sqlite:///path/to/file.db or postgresql://user@host/db"
            ) from None
        self.url = url
        self.dialect = parsed.get_backend_name()
        if self.dialect == "sqlite":
            self.engine = _sqlite_engine(parsed)
        elif self.dialect == "postgresql":
            self.engine = sa.create_engine(parsed, pool_pre_ping=True, pool_size=5, max_overflow=10)
        else:
            raise ConfigError(f"database '{self.dialect}' is not supported; use SQLite or PostgreSQL")
        # A workspace dropped without close() (or one whose open failed half-way) still closes
        # its pooled connections instead of leaking them until interpreter exit.
        self._finalizer = weakref.finalize(self, self.engine.dispose)
        self.closed = False

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read-only unit of work."""
        with self._connect() as conn, conn.begin():
            yield conn

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A write unit of work: everything inside commits together or not at all."""
        with self._connect() as conn:
            conn = conn.execution_options(**{_WRITE: True})
            try:
                with conn.begin():
                    yield conn
            except BaseException:
                conn.info.pop(_AFTER_COMMIT, None)
                raise
            for callback in conn.info.pop(_AFTER_COMMIT, []):
                callback()

    @staticmethod
    def after_commit(conn: Connection, callback: Callable[[], None]) -> None:
        """Run ``callback`` once the current write transaction has committed."""
        conn.info.setdefault(_AFTER_COMMIT, []).append(callback)

    @contextmanager
    def _connect(self) -> Iterator[Connection]:
        self.closed = False  # used again after dispose(): the engine reopens its pool
        try:
            conn = self.engine.connect()
        except OperationalError as exc:
            raise UnavailableError(
                f"cannot reach the metadata database at {redact_url(self.url)} ({_first_line(exc)}); "
                "check that it is running and the URL is right"
            ) from None
        try:
            yield conn
        except OperationalError as exc:
            # Lost connections, a lock held past the busy timeout, a read-only file: the
            # database is unavailable, whatever statement noticed it first.
            raise UnavailableError(self._unavailable(exc)) from exc
        finally:
            conn.close()

    def _unavailable(self, exc: OperationalError) -> str:
        where = redact_url(self.url)
        detail = _first_line(exc)
        if "locked" in detail:
            return (
                f"the metadata database at {where} stayed locked by another writer for {_BUSY_TIMEOUT_S:.0f} s; "
                "try again, or look for a hung lockgate process"
            )
        if "readonly" in detail.replace(" ", "").replace("-", ""):
            return f"the metadata database at {where} is read-only ({detail}); open it with write access"
        return f"the metadata database at {where} failed ({detail}); check that it is running and reachable"

    def dispose(self) -> None:
        """Close every pooled connection; background work (run heartbeats) stops using it."""
        self.closed = True
        self.engine.dispose()


def _sqlite_engine(url: sa.engine.URL) -> Engine:
    database = url.database or ""
    if database and database != ":memory:":
        from pathlib import Path

        parent = Path(database).parent
        if not parent.exists():
            parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url, connect_args={"timeout": _BUSY_TIMEOUT_S, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's begin event own transaction start (the pysqlite recipe).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA busy_timeout={int(_BUSY_TIMEOUT_S * 1000)}")
        # NORMAL in WAL mode: a commit survives the process being killed; only an OS crash
        # can lose the last transactions, never corrupt the file.
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get(_WRITE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", exc) or exc)
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__
