"""The embedded job store: one table in a SQLite file (WAL), shared by every server process.

Two nullable columns make the two queues: ``due`` (when a queued job may be claimed, or when
a running job's lease runs out) and ``mail_due`` (when a finished job's callback may be
claimed); each has a partial index, so a claim reads one index entry. Every write opens with
``BEGIN IMMEDIATE``: it takes the write lock before it reads, so two processes claiming at
once queue for the lock and the second sees the first's claim (a deferred transaction would
instead fail to upgrade its stale read with SQLITE_BUSY).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lockgate.errors import UnavailableError
from lockgate.serving._job_store import JobRecord, JobStatus

__all__ = ["SqliteJobStore"]

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS lockgate_jobs (
    id TEXT PRIMARY KEY,
    deployment TEXT NOT NULL,
    request_id TEXT NOT NULL,
    payload BLOB NOT NULL,
    callback_url TEXT,
    status TEXT NOT NULL,
    created INTEGER NOT NULL,
    started INTEGER,
    finished INTEGER,
    expires INTEGER,
    attempts INTEGER NOT NULL DEFAULT 0,
    owner TEXT,
    outcome BLOB,
    callback BLOB,
    due INTEGER,
    mail_due INTEGER,
    mail_owner TEXT
) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS lockgate_jobs_due ON lockgate_jobs (due) WHERE due IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS lockgate_jobs_mail ON lockgate_jobs (mail_due) WHERE mail_due IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS lockgate_jobs_expires ON lockgate_jobs (expires) WHERE expires IS NOT NULL",
)
_COLUMNS = (
    "id, deployment, request_id, payload, callback_url, status, created, started, finished, expires, "
    "attempts, owner, outcome, callback"
)


def _record(row: Any) -> JobRecord:
    (i, deployment, request_id, payload, url, status, created, started, finished, expires, attempts, owner, out, cb) = (
        row
    )
    return JobRecord(
        id=i,
        deployment=deployment,
        request_id=request_id,
        payload=bytes(payload),
        callback_url=url,
        status=status,
        created_ms=created,
        started_ms=started,
        finished_ms=finished,
        expires_ms=expires,
        attempts=attempts,
        owner=owner,
        outcome=None if out is None else bytes(out),
        callback=None if cb is None else bytes(cb),
    )


class SqliteJobStore:
    """Jobs in one SQLite file; each thread talks through its own connection."""

    def __init__(self, *, path: Path) -> None:
        self.path = Path(path)
        self.url = f"sqlite:///{self.path}"
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._write() as conn:
                for statement in _SCHEMA:
                    conn.execute(statement)
        except (OSError, sqlite3.Error) as exc:
            self.close()
            raise UnavailableError(f"the job store {self.path} cannot be opened ({exc}); check the path") from None

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            # Autocommit, so each write's BEGIN IMMEDIATE is explicit; a 10 s busy timeout
            # rides out other processes' claims, which hold the lock for microseconds.
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10.0)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def _unavailable(self, exc: sqlite3.Error) -> UnavailableError:
        return UnavailableError(f"the job store {self.path} failed ({exc}); check the disk and the file's permissions")

    def add(self, job: JobRecord) -> None:
        try:
            with self._write() as conn:
                conn.execute(
                    f"INSERT INTO lockgate_jobs ({_COLUMNS}, due) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        job.id,
                        job.deployment,
                        job.request_id,
                        job.payload,
                        job.callback_url,
                        job.status,
                        job.created_ms,
                        job.started_ms,
                        job.finished_ms,
                        job.expires_ms,
                        job.attempts,
                        job.owner,
                        job.outcome,
                        job.callback,
                        job.created_ms,
                    ),
                )
        except sqlite3.Error as exc:
            raise self._unavailable(exc) from None

    def claim(self, owner: str, *, now_ms: int, lease_ms: int) -> JobRecord | None:
        try:
            with self._write() as conn:
                row = conn.execute(
                    "UPDATE lockgate_jobs SET status = 'running', owner = ?, due = ?, started = ?, attempts = attempts + 1 "
                    "WHERE id = (SELECT id FROM lockgate_jobs WHERE due IS NOT NULL AND due <= ? ORDER BY due LIMIT 1) "
                    f"RETURNING {_COLUMNS}",
                    (owner, now_ms + lease_ms, now_ms, now_ms),
                ).fetchone()
        except sqlite3.Error as exc:
            raise self._unavailable(exc) from None
        return None if row is None else _record(row)

    def _held(self, sql: str, params: tuple[Any, ...]) -> bool:
        """Run one write that names the job and its owner; whether it changed a row."""
        try:
            with self._write() as conn:
                changed = conn.execute(sql, params).rowcount
        except sqlite3.Error as exc:
            raise self._unavailable(exc) from None
        return changed == 1

    def renew(self, job_id: str, owner: str, *, until_ms: int) -> bool:
        return self._held(
            "UPDATE lockgate_jobs SET due = ? WHERE id = ? AND owner = ? AND status = 'running'",
            (until_ms, job_id, owner),
        )

    def release(self, job_id: str, owner: str, *, due_ms: int, refund: bool) -> bool:
        return self._held(
            "UPDATE lockgate_jobs SET status = 'queued', owner = NULL, due = ?, attempts = attempts - ? "
            "WHERE id = ? AND owner = ? AND status = 'running'",
            (due_ms, 1 if refund else 0, job_id, owner),
        )

    def finish(
        self,
        job_id: str,
        owner: str,
        *,
        status: JobStatus,
        outcome: bytes,
        finished_ms: int,
        expires_ms: int,
        callback: bytes | None,
        callback_due_ms: int | None,
    ) -> bool:
        return self._held(
            "UPDATE lockgate_jobs SET status = ?, outcome = ?, finished = ?, expires = ?, callback = ?, "
            "mail_due = ?, due = NULL WHERE id = ? AND owner = ? AND status = 'running'",
            (status, outcome, finished_ms, expires_ms, callback, callback_due_ms, job_id, owner),
        )

    def get(self, job_id: str, *, now_ms: int) -> JobRecord | None:
        try:
            row = (
                self._conn()
                .execute(
                    f"SELECT {_COLUMNS} FROM lockgate_jobs WHERE id = ? AND (expires IS NULL OR expires > ?)",
                    (job_id, now_ms),
                )
                .fetchone()
            )
        except sqlite3.Error as exc:
            raise self._unavailable(exc) from None
        return None if row is None else _record(row)

    def claim_callback(self, owner: str, *, now_ms: int, lease_ms: int) -> JobRecord | None:
        try:
            with self._write() as conn:
                row = conn.execute(
                    "UPDATE lockgate_jobs SET mail_due = ?, mail_owner = ? WHERE id = (SELECT id FROM lockgate_jobs "
                    "WHERE mail_due IS NOT NULL AND mail_due <= ? AND expires > ? ORDER BY mail_due LIMIT 1) "
                    f"RETURNING {_COLUMNS}",
                    (now_ms + lease_ms, owner, now_ms, now_ms),
                ).fetchone()
        except sqlite3.Error as exc:
            raise self._unavailable(exc) from None
        return None if row is None else _record(row)

    def record_callback(self, job_id: str, owner: str, *, callback: bytes, due_ms: int | None) -> bool:
        return self._held(
            "UPDATE lockgate_jobs SET callback = ?, mail_due = ?, mail_owner = NULL WHERE id = ? AND mail_owner = ?",
            (callback, due_ms, job_id, owner),
        )

    def purge(self, *, now_ms: int) -> int:
        try:
            with self._write() as conn:
                removed: int = conn.execute("DELETE FROM lockgate_jobs WHERE expires <= ?", (now_ms,)).rowcount
        except sqlite3.Error as exc:
            raise self._unavailable(exc) from None
        return removed

    def close(self) -> None:
        with self._lock:
            connections, self._connections = self._connections, []
        for conn in connections:
            conn.close()
