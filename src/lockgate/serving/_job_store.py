"""Where async inference jobs are kept: the record, the store interface, and opening one by URL.

Every server process (and every worker process of one server) opens the same store, so what
one process submits another may score. A job moves::

    queued ──claim──► running ──finish──► succeeded | failed ──(result_ttl)──► gone
      ▲                  │
      └──release─────────┤  (the server stopping, or the deployment briefly unavailable)
                         └─ lease runs out (the worker died) ──► claimable again

A claim is atomic (one SQLite write transaction, one Redis script), and lasts ``lease``
milliseconds; the worker renews it while the job runs. A worker that dies stops renewing, and
another claims the job once the lease has run out: at-least-once scoring. Callbacks of
finished jobs have their own due time and claim, so a delivery interrupted by a restart is
retried too.

Two stores pass one contract (``tests/serving/test_jobs.py``): SQLite (a file in the
workspace, by default) and Redis (``redis://``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from lockgate.errors import InvalidInputError

__all__ = ["JobRecord", "JobStatus", "JobStore", "open_job_store"]

JobStatus = Literal["queued", "running", "succeeded", "failed"]


@dataclass(frozen=True, slots=True, kw_only=True)
class JobRecord:
    """One job as stored. Times are milliseconds since the epoch; JSON stays bytes, so the
    store never parses what it only keeps."""

    id: str
    deployment: str
    request_id: str
    payload: bytes
    """The request body to score (``{"records": ...}`` or ``{"entities": ...}``), as JSON."""
    callback_url: str | None
    status: JobStatus
    created_ms: int
    started_ms: int | None = None
    finished_ms: int | None = None
    expires_ms: int | None = None
    attempts: int = 0
    """How many times the job was claimed (a claim released by a stopping server is not counted)."""
    owner: str | None = None
    outcome: bytes | None = None
    """The predict answer (succeeded) or ``{"error", "code", "status"}`` (failed), as JSON."""
    callback: bytes | None = None
    """The delivery state of the callback, as JSON (see ``_jobs``)."""


class JobStore(Protocol):
    """What :class:`~lockgate.serving._jobs.Jobs` needs from a job store. Every method blocks
    (call it off the event loop); ``owner`` names the claiming worker, and a call about a job
    it no longer holds changes nothing and returns False."""

    url: str
    """Where the jobs are, without any password."""

    def add(self, job: JobRecord) -> None:
        """Store a new queued job, claimable at once."""
        ...

    def claim(self, owner: str, *, now_ms: int, lease_ms: int) -> JobRecord | None:
        """Take the longest-waiting claimable job (queued and due, or running with its lease
        run out): it becomes running, held by ``owner`` until ``now_ms + lease_ms``, its
        attempts one more. None when there is none. Atomic across processes."""
        ...

    def renew(self, job_id: str, owner: str, *, until_ms: int) -> bool:
        """Extend ``owner``'s claim on a running job; False when it lost the claim."""
        ...

    def release(self, job_id: str, owner: str, *, due_ms: int, refund: bool) -> bool:
        """Put a running job back in the queue, claimable from ``due_ms``; with ``refund``
        this claim does not count as an attempt."""
        ...

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
        """Record a running job's outcome; it is kept until ``expires_ms``. With
        ``callback_due_ms`` its callback becomes claimable from then."""
        ...

    def get(self, job_id: str, *, now_ms: int) -> JobRecord | None:
        """The job, or None when it does not exist or has expired."""
        ...

    def claim_callback(self, owner: str, *, now_ms: int, lease_ms: int) -> JobRecord | None:
        """Take the finished job whose callback is due soonest (and due by ``now_ms``), held by
        ``owner`` until ``now_ms + lease_ms``. None when there is none."""
        ...

    def record_callback(self, job_id: str, owner: str, *, callback: bytes, due_ms: int | None) -> bool:
        """Record a delivery attempt; the callback is due again at ``due_ms``, or is done (None)."""
        ...

    def purge(self, *, now_ms: int) -> int:
        """Delete jobs expired by ``now_ms``; how many."""
        ...

    def close(self) -> None: ...


def open_job_store(url: str) -> JobStore:
    """The job store at ``url``: ``sqlite:///path/jobs.db`` or ``redis://host:port/db``
    (``?prefix=`` sets the key prefix, ``lockgate:jobs:`` by default)."""
    if url.startswith("sqlite:///"):
        from lockgate.serving._job_store_sqlite import SqliteJobStore

        return SqliteJobStore(path=Path(url[len("sqlite:///") :].split("?", 1)[0]))
    if url.startswith(("redis://", "rediss://", "unix://")):
        from lockgate.serving._job_store_redis import RedisJobStore

        return RedisJobStore(url=url)
    raise InvalidInputError(
        f"jobs_url {url.split('://', 1)[0]}://… is not supported; use redis://host:port/db or sqlite:///path/jobs.db"
    )
