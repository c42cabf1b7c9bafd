"""Async inference jobs: submit now, score in the background, poll or be called back.

::

    POST /v1/endpoints/{name}/jobs   -> 202 Jobs.submit(...)   the job, queued
    GET  /v1/jobs/{id}               -> 200 Jobs.get(id)       status, then the result or error

Each server process runs one dispatcher that claims jobs from the shared store (see
``_job_store``) while fewer than ``workers`` of its jobs are scoring, and one courier that
delivers due callbacks. Both poll the store every ``poll_s`` seconds; a job submitted to this
process wakes them at once. Scoring goes through the same path as
``POST /v1/endpoints/{name}/predict`` (the ``score`` function the app hands to :meth:`Jobs.start`),
so a job's ``result`` is exactly the answer that endpoint gives.

What happens when things go wrong:

- the payload is wrong (unknown feature, contract broken, ...): the job fails with the error the
  predict endpoint would answer (``{"error", "code", "status"}``);
- the deployment is briefly unavailable (loading, overloaded, the server stopping): the job goes
  back to the queue, not counted as an attempt, and fails only after ``patience_s`` of that;
- the worker dies mid-job: its claim runs out after ``lease_s`` and another process claims the
  job (at-least-once); after ``max_attempts`` claims it fails as interrupted;
- a callback fails: it is retried with exponential backoff up to the configured attempts, the
  state of each attempt recorded on the job, so ``GET`` shows it.

The store is blocking I/O, so every call to it runs on a small thread pool, and callbacks on
another: a slow store or receiver never stalls the event loop that answers requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import re
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any, TypeVar

import orjson

from lockgate.clock import format_duration, now_millis, to_iso
from lockgate.config import Settings
from lockgate.errors import InvalidInputError, LockgateError, NotFoundError, UnavailableError
from lockgate.serving._callbacks import CallbackSettings, deliver, display_url, signed_headers
from lockgate.serving._job_store import JobRecord, JobStatus, JobStore, open_job_store
from lockgate.serving._wire import first_line, status_of

__all__ = ["Jobs", "ScoreFn"]

ScoreFn = Callable[[str, dict[str, Any], str], Awaitable[dict[str, Any]]]
"""``score(deployment, payload, request_id)``: the answer ``/v1/endpoints/{name}/predict``
gives for ``payload``; raises :class:`LockgateError` subclasses for what the payload gets wrong."""

_log = logging.getLogger(__name__)
_T = TypeVar("_T")

_ID = re.compile(r"[0-9a-f]{32}")
_PAYLOAD_KEYS = frozenset({"records", "entities"})
_STORE_THREADS = 4
_DELIVERIES = 8  # callbacks in flight per process
_PURGE_EVERY_S = 60.0
_OPTS = orjson.OPT_SERIALIZE_NUMPY


class Jobs:
    """Async inference jobs over a :class:`JobStore`, scored by the app's own predict path.

    Args:
        store: where jobs live (shared by every server process).
        workers: jobs this process scores at once; 0 submits and answers but scores none.
        result_ttl_s: how long a finished job (and its result) is kept.
        lease_s: how long a claim lasts without a heartbeat (renewed every third of it).
        max_attempts: claims of one job before it fails as interrupted.
        callbacks: the allowlist, signing key and retry policy of callbacks.
        poll_s: how often idle workers look for jobs other processes submitted.
        patience_s: how long a job waits for an unavailable deployment before it fails.
        stop_grace_s: how long :meth:`stop` lets running jobs finish.
    """

    def __init__(
        self,
        store: JobStore,
        *,
        workers: int,
        result_ttl_s: float = 86400.0,
        lease_s: float = 30.0,
        max_attempts: int = 3,
        callbacks: CallbackSettings | None = None,
        poll_s: float = 0.5,
        patience_s: float = 600.0,
        stop_grace_s: float = 10.0,
    ) -> None:
        if workers < 0:
            raise InvalidInputError(f"job workers must be 0 or more, not {workers}")
        if not (result_ttl_s > 0 and lease_s > 0 and poll_s > 0 and max_attempts >= 1):
            raise InvalidInputError("job result ttl, lease and poll interval must be positive, attempts at least 1")
        self.store = store
        self.workers = workers
        self.result_ttl_s = result_ttl_s
        self.lease_s = lease_s
        self.max_attempts = max_attempts
        self.callbacks = callbacks or CallbackSettings()
        self.poll_s = poll_s
        self.patience_s = patience_s
        self.stop_grace_s = stop_grace_s
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._pool = ThreadPoolExecutor(_STORE_THREADS, thread_name_prefix="lockgate-jobs")
        self._mail_pool = ThreadPoolExecutor(_DELIVERIES, thread_name_prefix="lockgate-callbacks")
        self._score: ScoreFn | None = None
        self._stopping = False
        self._closed = False
        self._loops: list[asyncio.Task[None]] = []
        self._running: dict[str, asyncio.Task[None]] = {}
        self._delivering: dict[str, asyncio.Task[None]] = {}
        self._wake_work: asyncio.Event | None = None
        self._wake_mail: asyncio.Event | None = None

    @classmethod
    def from_settings(cls, settings: Settings, *, workers: int | None = None, **options: Any) -> Jobs:
        """Jobs in the store ``settings.jobs_url`` names (SQLite in the workspace by default),
        with the settings' workers, ttl, lease, attempts and callback policy; ``options``
        override :class:`Jobs` keywords."""
        secret = settings.callback_secret
        callbacks = CallbackSettings(
            allowlist=tuple(settings.callback_allowlist),
            secret=None if secret is None else secret.get_secret_value().encode(),
            attempts=settings.callback_attempts,
            backoff_s=settings.callback_backoff,
            timeout_s=settings.callback_timeout,
        )
        store = open_job_store(settings.resolved_jobs_url)
        try:
            return cls(
                store,
                workers=settings.job_workers if workers is None else workers,
                result_ttl_s=settings.job_result_ttl,
                lease_s=settings.job_lease,
                max_attempts=settings.job_attempts,
                callbacks=callbacks,
                **options,
            )
        except BaseException:
            store.close()
            raise

    @property
    def _lease_ms(self) -> int:
        return max(int(self.lease_s * 1000), 1)

    async def _call(self, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        """A blocking store call, on the jobs' thread pool."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, functools.partial(fn, *args, **kwargs))

    # -- the API the routes call ---------------------------------------------------------------

    async def submit(
        self, deployment: str, payload: dict[str, Any], *, callback_url: str | None, request_id: str
    ) -> dict[str, Any]:
        """Queue ``payload`` (``{"records": [...]}`` or ``{"entities": [...]}``) for
        ``deployment``; the answer is the queued job (the 202 body).

        A ``callback_url`` outside the callback allowlist is refused
        (:class:`InvalidInputError`) and nothing is queued."""
        if not isinstance(payload, dict) or len(payload) != 1 or not payload.keys() <= _PAYLOAD_KEYS:
            raise InvalidInputError(
                'a job\'s body is {"records": [...]} or {"entities": [...]}, exactly one of them, '
                'and optionally "callback_url"'
            )
        if callback_url is not None:
            self.callbacks.check(callback_url)
        job = JobRecord(
            id=uuid.uuid4().hex,
            deployment=deployment,
            request_id=request_id,
            payload=orjson.dumps(payload, option=_OPTS),
            callback_url=callback_url,
            status="queued",
            created_ms=now_millis(),
        )
        await self._call(self.store.add, job)
        if self._wake_work is not None:
            self._wake_work.set()
        return self._view(job)

    async def get(self, job_id: str) -> dict[str, Any]:
        """The job's status, and its ``result`` or ``error`` once finished.

        :class:`NotFoundError` when no such job exists or its result has expired."""
        job = None
        if isinstance(job_id, str) and _ID.fullmatch(job_id):
            job = await self._call(self.store.get, job_id, now_ms=now_millis())
        if job is None:
            kept = format_duration(timedelta(seconds=self.result_ttl_s))
            raise NotFoundError(
                f"job {str(job_id)[:64]!r} does not exist or has expired (results are kept for {kept}); "
                "submit it again with POST /v1/endpoints/{name}/jobs"
            )
        return self._view(job)

    def _view(self, job: JobRecord, *, with_callback: bool = True) -> dict[str, Any]:
        """The job as ``GET /v1/jobs/{id}`` shows it (and as its callback's body)."""
        view: dict[str, Any] = {
            "id": job.id,
            "status": job.status,
            "deployment": job.deployment,
            "request_id": job.request_id,
            "created_at": to_iso(job.created_ms),
            "started_at": to_iso(job.started_ms),
            "finished_at": to_iso(job.finished_ms),
            "expires_at": to_iso(job.expires_ms),
            "attempts": job.attempts,
            "url": f"/v1/jobs/{job.id}",
        }
        if job.outcome is not None:
            view["result" if job.status == "succeeded" else "error"] = orjson.loads(job.outcome)
        if with_callback and job.callback_url is not None:
            state = orjson.loads(job.callback) if job.callback else {"status": "waiting", "attempts": 0}
            view["callback"] = {
                "url": display_url(job.callback_url),
                **{k: _iso(v) if k.endswith("_at") else v for k, v in state.items()},
            }
        return view

    # -- the workers ---------------------------------------------------------------------------

    @property
    def callbacks_allowed(self) -> bool:
        """Whether a job may name a callback URL (an allowlist and a signing key are set)."""
        return bool(self.callbacks.allowlist) and self.callbacks.secret is not None

    async def start(self, score: ScoreFn) -> None:
        """Begin scoring jobs with ``score`` (up to ``workers`` at once) and delivering
        callbacks, on the running event loop."""
        if self._score is not None:
            return
        self._score = score
        self._wake_work = asyncio.Event()
        self._wake_mail = asyncio.Event()
        if self.workers > 0:
            self._loops.append(asyncio.create_task(self._dispatch(), name="lockgate-jobs-dispatch"))
        if self.callbacks.allowlist and self.callbacks.secret is not None:
            self._loops.append(asyncio.create_task(self._courier(), name="lockgate-jobs-callbacks"))

    async def stop(self) -> None:
        """Stop claiming; let running jobs and deliveries finish for up to ``stop_grace_s``,
        then put the rest back in the queue for another process; close the store."""
        self._stopping = True
        for event in (self._wake_work, self._wake_mail):
            if event is not None:
                event.set()
        if self._loops:
            # The loops end after their current store call (bounded by the store's timeouts).
            _done, late = await asyncio.wait(self._loops, timeout=self.stop_grace_s + 15.0)
            for task in late:
                task.cancel()
        busy = [*self._running.values(), *self._delivering.values()]
        if busy:
            _done, late = await asyncio.wait(busy, timeout=self.stop_grace_s)
            for task in late:
                task.cancel()  # a job releases itself; a delivery's claim runs out and is retried
            if late:
                await asyncio.wait(late, timeout=15.0)
        await asyncio.get_running_loop().run_in_executor(None, self.close)

    def close(self) -> None:
        """Release the threads and the store (what :meth:`stop` ends with)."""
        if self._closed:
            return
        self._closed = True
        self._stopping = True
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._mail_pool.shutdown(wait=False, cancel_futures=True)  # a delivery may wait on its timeout
        self.store.close()

    async def _wait(self, event: asyncio.Event, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout)
        event.clear()

    async def _dispatch(self) -> None:
        assert self._wake_work is not None
        purged = time.monotonic()
        failures = 0
        while not self._stopping:
            if len(self._running) >= self.workers:
                await self._wait(self._wake_work, self.poll_s)
                continue
            try:
                job = await self._call(self.store.claim, self.owner, now_ms=now_millis(), lease_ms=self._lease_ms)
                if job is None and time.monotonic() - purged > _PURGE_EVERY_S:
                    purged = time.monotonic()
                    await self._call(self.store.purge, now_ms=now_millis())
            except Exception as exc:  # noqa: BLE001 - the dispatcher must outlive any failure
                # Logged once per outage, not once per poll.
                if failures == 0:
                    if isinstance(exc, UnavailableError):
                        _log.warning("async jobs paused: %s", exc)
                    else:
                        _log.exception("async jobs paused: claiming a job failed")
                failures = min(failures + 1, 8)
                await self._wait(self._wake_work, min(self.poll_s * 2**failures, 10.0))
                continue
            if failures:
                _log.warning("async jobs resumed: the job store answers again")
                failures = 0
            if job is None:
                await self._wait(self._wake_work, self.poll_s)
                continue
            if self._stopping:  # claimed as stop began: another process takes it now
                await self._release(job, delay_s=0.0, refund=True)
                break
            task = asyncio.create_task(self._run(job), name=f"lockgate-job-{job.id}")
            self._running[job.id] = task
            task.add_done_callback(functools.partial(self._ran, job.id))

    def _ran(self, job_id: str, task: asyncio.Task[None]) -> None:
        self._running.pop(job_id, None)
        if not task.cancelled() and task.exception() is not None:
            _log.error("job %s failed in the job runner", job_id, exc_info=task.exception())
        if self._wake_work is not None:
            self._wake_work.set()  # a worker is free

    async def _run(self, job: JobRecord) -> None:
        if job.attempts > self.max_attempts:
            await self._finish(
                job,
                "failed",
                {
                    "error": f"the job was interrupted {job.attempts - 1} times (its server stopped or died while "
                    "scoring it); submit it again, or look for what stops the server in its log",
                    "code": "interrupted",
                    "status": 500,
                },
            )
            return
        assert self._score is not None
        heartbeat = asyncio.create_task(self._heartbeat(job.id))
        try:
            try:
                answer = await self._score(job.deployment, orjson.loads(job.payload), job.request_id)
            finally:
                heartbeat.cancel()
        except asyncio.CancelledError:
            # stop() ran out of patience: another process takes the job now, not after the lease.
            await asyncio.shield(self._release(job, delay_s=0.0, refund=True))
            raise
        except UnavailableError as exc:
            # Loading, overloaded, stopping, fail-closed features: the deployment, not the
            # payload, is the problem, so the job waits for it (up to patience_s).
            if self._stopping or (now_millis() - job.created_ms) / 1000 < self.patience_s:
                delay = 0.0 if self._stopping else float(getattr(exc, "retry_after", 1))
                await self._release(job, delay_s=delay, refund=True)
            else:
                await self._finish(job, "failed", _error(exc))
            return
        except LockgateError as exc:
            await self._finish(job, "failed", _error(exc))
            return
        except Exception as exc:  # noqa: BLE001 - a bug: the job fails, the log has the traceback
            _log.exception("job %s of deployment %s failed", job.id, job.deployment)
            error = f"internal error ({type(exc).__name__}); the server log has the details"
            await self._finish(job, "failed", {"error": error, "code": "internal", "status": 500})
            return
        await self._finish(job, "succeeded", answer)

    async def _heartbeat(self, job_id: str) -> None:
        """Renew the claim every third of the lease while the job scores."""
        while True:
            await asyncio.sleep(self.lease_s / 3)
            try:
                held = await self._call(self.store.renew, job_id, self.owner, until_ms=now_millis() + self._lease_ms)
            except UnavailableError as exc:
                _log.warning("job %s: could not renew its claim (%s)", job_id, exc)
                continue
            if not held:
                _log.warning("job %s: another worker took it over (this one was too slow to renew)", job_id)
                return

    async def _release(self, job: JobRecord, *, delay_s: float, refund: bool) -> None:
        try:
            await self._call(
                self.store.release, job.id, self.owner, due_ms=now_millis() + int(delay_s * 1000), refund=refund
            )
        except (UnavailableError, RuntimeError) as exc:  # RuntimeError: the pool already shut down
            _log.warning(
                "job %s could not be put back in the queue (%s); it is retried once its claim runs out", job.id, exc
            )

    async def _finish(self, job: JobRecord, status: JobStatus, outcome: dict[str, Any]) -> None:
        now = now_millis()
        callback = None
        if job.callback_url is not None:
            callback = orjson.dumps({"status": "pending", "attempts": 0})
        try:
            held = await self._call(
                self.store.finish,
                job.id,
                self.owner,
                status=status,
                outcome=orjson.dumps(outcome, option=_OPTS),
                finished_ms=now,
                expires_ms=now + int(self.result_ttl_s * 1000),
                callback=callback,
                callback_due_ms=None if callback is None else now,
            )
        except UnavailableError as exc:
            _log.warning("job %s: its outcome could not be stored (%s); it is scored again later", job.id, exc)
            return
        if not held:
            _log.warning("job %s finished here after another worker took it over; that worker's outcome stands", job.id)
        elif callback is not None and self._wake_mail is not None:
            self._wake_mail.set()

    # -- callbacks -----------------------------------------------------------------------------

    @property
    def _delivery_lease_ms(self) -> int:
        # One delivery: up to four requests (redirects), each bounded by the timeout.
        return int((self.callbacks.timeout_s * 4 + 10.0) * 1000)

    async def _courier(self) -> None:
        assert self._wake_mail is not None
        while not self._stopping:
            if len(self._delivering) >= _DELIVERIES:
                await self._wait(self._wake_mail, self.poll_s)
                continue
            try:
                job = await self._call(
                    self.store.claim_callback, self.owner, now_ms=now_millis(), lease_ms=self._delivery_lease_ms
                )
            except UnavailableError:
                await self._wait(self._wake_mail, 5.0)  # the dispatcher logs the outage
                continue
            except Exception:  # noqa: BLE001 - the courier must outlive any failure
                _log.exception("job callbacks: claiming a delivery failed")
                await self._wait(self._wake_mail, 5.0)
                continue
            if job is None:
                await self._wait(self._wake_mail, self.poll_s)
                continue
            task = asyncio.create_task(self._deliver(job), name=f"lockgate-callback-{job.id}")
            self._delivering[job.id] = task
            task.add_done_callback(functools.partial(self._delivered, job.id))

    def _delivered(self, job_id: str, task: asyncio.Task[None]) -> None:
        self._delivering.pop(job_id, None)
        if not task.cancelled() and task.exception() is not None:
            _log.error("the callback of job %s failed in the courier", job_id, exc_info=task.exception())
        if self._wake_mail is not None:
            self._wake_mail.set()

    async def _deliver(self, job: JobRecord) -> None:
        assert job.callback_url is not None
        assert self.callbacks.secret is not None
        state: dict[str, Any] = orjson.loads(job.callback) if job.callback else {"attempts": 0}
        attempt = int(state.get("attempts", 0)) + 1
        body = orjson.dumps(self._view(job, with_callback=False))
        headers = signed_headers(self.callbacks.secret, body, job_id=job.id, attempt=attempt)
        loop = asyncio.get_running_loop()
        call = functools.partial(deliver, job.callback_url, body, headers, settings=self.callbacks)
        outcome = await loop.run_in_executor(self._mail_pool, call)
        now = now_millis()
        state.update(attempts=attempt, last_attempt_at=now, last_status=outcome.status, last_error=outcome.error)
        due: int | None = None
        if outcome.ok:
            state.update(status="delivered", delivered_at=now, next_attempt_at=None)
        elif outcome.retry and attempt < self.callbacks.attempts:
            due = now + int(self.callbacks.delay(attempt) * 1000)
            state.update(status="pending", next_attempt_at=due)
        else:
            state.update(status="failed", next_attempt_at=None)
            _log.warning(
                "job %s: its callback to %s failed after %d attempt(s): %s",
                job.id,
                display_url(job.callback_url),
                attempt,
                outcome.error,
            )
        try:
            await self._call(self.store.record_callback, job.id, self.owner, callback=orjson.dumps(state), due_ms=due)
        except UnavailableError as exc:
            _log.warning("job %s: its callback's state could not be stored (%s)", job.id, exc)


def _iso(value: Any) -> str | None:
    return to_iso(value) if isinstance(value, int) else None


def _error(exc: LockgateError) -> dict[str, Any]:
    """An error as a failed job records it: what the predict endpoint would answer."""
    status, code, _headers = status_of(exc)
    return {"error": first_line(exc), "code": code, "status": status}
