"""Async inference jobs: the job store contract on SQLite and on the real Redis, claims that
stay atomic across stores and processes, and :class:`Jobs` scoring with a real model,
retrying, expiring, reclaiming a dead worker's job and calling back a real HTTP receiver.

Redis tests use the server at 127.0.0.1:6379 (``LOCKGATE_TEST_REDIS``), each under its own key
prefix, deleted afterwards; without it they skip, or fail with ``LOCKGATE_REQUIRE_SERVICES=1``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from lockgate.clock import now_millis
from lockgate.config import Settings
from lockgate.errors import ConfigError, InvalidInputError, NotFoundError, UnavailableError
from lockgate.serving._callbacks import CallbackSettings, verify_signature
from lockgate.serving._job_store import JobRecord, JobStore, open_job_store
from lockgate.serving._jobs import Jobs, ScoreFn
from tests.conftest import service_missing
from tests.serving.conftest import FEATURES, training_frame

REDIS_URL = os.environ.get("LOCKGATE_TEST_REDIS", "redis://127.0.0.1:6379/0")
SECRET = b"test-secret-0123456789"
RECORD = dict.fromkeys(FEATURES, 0.3)


# -- stores ------------------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty job store: a SQLite file, or a fresh key prefix on the real Redis."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'jobs.db'}"
        return
    try:
        import redis
    except ImportError:
        service_missing("Redis", "the redis package is not installed")
        raise
    admin = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2, socket_timeout=5)
    try:
        admin.ping()
    except redis.RedisError as exc:
        admin.close()
        service_missing(f"Redis at {REDIS_URL}", str(exc))
        raise
    prefix = f"lockgate-test-{uuid.uuid4().hex[:12]}:"
    try:
        yield f"{REDIS_URL}?prefix={prefix}"
    finally:
        keys = list(admin.scan_iter(match=prefix + "*", count=1000))
        if keys:
            admin.unlink(*keys)
        admin.close()


@pytest.fixture
def store(store_url: str) -> Iterator[JobStore]:
    opened = open_job_store(store_url)
    try:
        yield opened
    finally:
        opened.close()


def queued(job_id: str | None = None, *, created_ms: int | None = None, callback_url: str | None = None) -> JobRecord:
    return JobRecord(
        id=job_id or uuid.uuid4().hex,
        deployment="clf-api",
        request_id="req-1",
        payload=json.dumps({"records": [RECORD]}).encode(),
        callback_url=callback_url,
        status="queued",
        created_ms=now_millis() if created_ms is None else created_ms,
    )


# -- the store contract ------------------------------------------------------------------------


def test_a_claim_takes_the_longest_waiting_job_and_holds_it_for_its_lease(store: JobStore) -> None:
    now = now_millis()
    store.add(queued("b" * 32, created_ms=now - 10))
    store.add(queued("a" * 32, created_ms=now - 20))
    first = store.claim("w1", now_ms=now, lease_ms=1000)
    assert first is not None
    assert (first.id, first.status, first.owner, first.attempts, first.started_ms) == (
        "a" * 32,
        "running",
        "w1",
        1,
        now,
    )
    assert first.payload == json.dumps({"records": [RECORD]}).encode()
    second = store.claim("w2", now_ms=now, lease_ms=1000)
    assert second is not None
    assert second.id == "b" * 32
    assert store.claim("w3", now_ms=now + 999, lease_ms=1000) is None  # both held
    again = store.claim("w3", now_ms=now + 1001, lease_ms=1000)  # the first lease ran out
    assert again is not None
    assert (again.id, again.owner, again.attempts) == ("a" * 32, "w3", 2)
    got = store.get("a" * 32, now_ms=now)
    assert got is not None
    assert got.owner == "w3"
    assert store.get("c" * 32, now_ms=now) is None


def test_only_the_job_s_owner_renews_releases_or_finishes_it(store: JobStore) -> None:
    now = now_millis()
    store.add(queued("a" * 32, created_ms=now))
    assert store.claim("w1", now_ms=now, lease_ms=1000) is not None
    assert store.renew("a" * 32, "w1", until_ms=now + 5000)
    assert store.claim("w2", now_ms=now + 2000, lease_ms=1000) is None  # the renewal holds
    assert not store.renew("a" * 32, "w2", until_ms=now + 9000)
    assert not store.release("a" * 32, "w2", due_ms=now, refund=False)
    finish = {"status": "succeeded", "outcome": b'{"predictions": [1]}', "finished_ms": now + 10}
    assert not store.finish("a" * 32, "w2", **finish, expires_ms=now + 60_000, callback=None, callback_due_ms=None)  # type: ignore[arg-type]
    taken = store.claim("w2", now_ms=now + 5001, lease_ms=1000)  # w1 stopped renewing
    assert taken is not None
    assert taken.owner == "w2"
    assert not store.finish("a" * 32, "w1", **finish, expires_ms=now + 60_000, callback=None, callback_due_ms=None)  # type: ignore[arg-type]
    assert store.finish("a" * 32, "w2", **finish, expires_ms=now + 60_000, callback=None, callback_due_ms=None)  # type: ignore[arg-type]
    done = store.get("a" * 32, now_ms=now)
    assert done is not None
    assert (done.status, done.outcome, done.finished_ms, done.attempts) == (
        "succeeded",
        b'{"predictions": [1]}',
        now + 10,
        2,
    )
    assert store.claim("w3", now_ms=now + 99_000, lease_ms=1000) is None  # finished jobs are not claimed
    assert not store.renew("a" * 32, "w2", until_ms=now + 9000)  # nor renewed


def test_a_released_job_waits_until_due_and_a_refund_does_not_count_as_an_attempt(store: JobStore) -> None:
    now = now_millis()
    store.add(queued("a" * 32, created_ms=now))
    assert store.claim("w1", now_ms=now, lease_ms=1000) is not None
    assert store.release("a" * 32, "w1", due_ms=now + 500, refund=True)
    back = store.get("a" * 32, now_ms=now)
    assert back is not None
    assert (back.status, back.attempts, back.owner) == ("queued", 0, None)
    assert store.claim("w2", now_ms=now + 499, lease_ms=1000) is None
    claimed = store.claim("w2", now_ms=now + 500, lease_ms=1000)
    assert claimed is not None
    assert claimed.attempts == 1
    assert store.release("a" * 32, "w2", due_ms=now + 500, refund=False)
    counted = store.claim("w3", now_ms=now + 500, lease_ms=1000)
    assert counted is not None
    assert counted.attempts == 2


def test_a_finished_job_is_gone_once_it_expires(store: JobStore) -> None:
    now = now_millis()
    store.add(queued("a" * 32, created_ms=now))
    assert store.claim("w1", now_ms=now, lease_ms=1000) is not None
    assert store.finish(
        "a" * 32,
        "w1",
        status="failed",
        outcome=b'{"error": "x"}',
        finished_ms=now,
        expires_ms=now + 300,
        callback=None,
        callback_due_ms=None,
    )
    assert store.get("a" * 32, now_ms=now + 299) is not None
    assert store.get("a" * 32, now_ms=now + 300) is None
    time.sleep(0.35)  # Redis drops the key itself; SQLite's purge deletes the row
    store.purge(now_ms=now_millis())
    assert store.get("a" * 32, now_ms=now) is None


def test_a_finished_job_s_callback_is_claimed_when_due_and_its_attempts_recorded(store: JobStore) -> None:
    now = now_millis()
    store.add(queued("a" * 32, created_ms=now, callback_url="http://127.0.0.1:1/cb"))
    assert store.claim_callback("c1", now_ms=now, lease_ms=1000) is None  # not finished yet
    assert store.claim("w1", now_ms=now, lease_ms=1000) is not None
    state = b'{"status": "pending", "attempts": 0}'
    assert store.finish(
        "a" * 32,
        "w1",
        status="succeeded",
        outcome=b"{}",
        finished_ms=now,
        expires_ms=now + 60_000,
        callback=state,
        callback_due_ms=now + 100,
    )
    assert store.claim_callback("c1", now_ms=now + 99, lease_ms=1000) is None
    mail = store.claim_callback("c1", now_ms=now + 100, lease_ms=1000)
    assert mail is not None
    assert (mail.id, mail.callback, mail.callback_url) == ("a" * 32, state, "http://127.0.0.1:1/cb")
    assert store.claim_callback("c2", now_ms=now + 200, lease_ms=1000) is None  # c1 holds it
    assert not store.record_callback("a" * 32, "c2", callback=b"{}", due_ms=None)
    retry = b'{"status": "pending", "attempts": 1}'
    assert store.record_callback("a" * 32, "c1", callback=retry, due_ms=now + 2000)
    assert store.claim_callback("c2", now_ms=now + 1999, lease_ms=1000) is None
    again = store.claim_callback("c2", now_ms=now + 2000, lease_ms=1000)
    assert again is not None
    assert again.callback == retry
    assert store.record_callback("a" * 32, "c2", callback=b'{"status": "delivered"}', due_ms=None)
    assert store.claim_callback("c3", now_ms=now + 99_000, lease_ms=1000) is None
    delivered = store.get("a" * 32, now_ms=now)
    assert delivered is not None
    assert delivered.callback == b'{"status": "delivered"}'


def test_claims_are_atomic_across_stores_sharing_one_place(store_url: str) -> None:
    stores = [open_job_store(store_url) for _ in range(3)]
    try:
        ids = [uuid.uuid4().hex for _ in range(150)]
        for i, job_id in enumerate(ids):
            stores[0].add(queued(job_id, created_ms=1000 + i))

        def drain(k: int) -> list[str]:
            got = []
            while (job := stores[k % 3].claim(f"w{k}", now_ms=now_millis(), lease_ms=60_000)) is not None:
                got.append(job.id)
            return got

        with ThreadPoolExecutor(6) as pool:
            claimed = [job_id for got in pool.map(drain, range(6)) for job_id in got]
    finally:
        for s in stores:
            s.close()
    assert sorted(claimed) == sorted(ids)  # every job once: none lost, none twice


_CLAIMER = """
import sys
import time
from lockgate.clock import now_millis
from lockgate.serving._job_store import open_job_store
store = open_job_store(sys.argv[1])
sys.stdout.write("ready\\n"); sys.stdout.flush()
sys.stdin.readline()  # start together
while (job := store.claim(sys.argv[2], now_ms=now_millis(), lease_ms=60_000)) is not None:
    sys.stdout.write(job.id + "\\n")
    time.sleep(0.002)  # as if it scored the job: the other process claims meanwhile
store.close()
"""


def test_claims_are_atomic_across_processes(store_url: str) -> None:
    with_store = open_job_store(store_url)
    ids = [uuid.uuid4().hex for _ in range(120)]
    try:
        for i, job_id in enumerate(ids):
            with_store.add(queued(job_id, created_ms=1000 + i))
    finally:
        with_store.close()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _CLAIMER, store_url, f"proc{i}"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    for proc in procs:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "ready\n"
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    outputs = [proc.communicate(timeout=60)[0].split() for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0]
    assert all(outputs), "one process claimed nothing: the test did not race"
    assert sorted(outputs[0] + outputs[1]) == sorted(ids)


def test_a_store_url_of_another_kind_is_refused() -> None:
    with pytest.raises(InvalidInputError, match=r"use redis://host:port/db or sqlite:///path/jobs\.db"):
        open_job_store("postgresql://db/jobs")


def test_a_redis_that_does_not_answer_is_unavailable() -> None:
    with pytest.raises(
        UnavailableError,
        match=r"the job store at redis://:\*\*\*@127\.0\.0\.1:1/0 does not answer \(connection refused\)",
    ) as info:
        open_job_store("redis://:hunter2@127.0.0.1:1/0")
    assert "hunter2" not in str(info.value)


# -- Jobs, with a real model -------------------------------------------------------------------


@pytest.fixture(scope="module")
def model() -> LogisticRegression:
    x, y = training_frame()
    return LogisticRegression().fit(x, y)


def model_score(model: LogisticRegression) -> ScoreFn:
    """What the app's predict path answers, over a real scikit-learn model: its predictions and
    positive-class scores, or the errors it raises for a wrong deployment or record."""

    async def score(deployment: str, payload: dict[str, Any], request_id: str) -> dict[str, Any]:
        if deployment != "clf-api":
            raise NotFoundError(f"deployment '{deployment}' does not exist; see GET /v1/endpoints")
        records = payload.get("records") or []
        for record in records:
            if set(record) != set(FEATURES):
                raise InvalidInputError(f"a record needs exactly the features {', '.join(FEATURES)}")
        x = pd.DataFrame(records, columns=FEATURES)
        return {
            "request_id": request_id,
            "deployment": deployment,
            "model": "clf",
            "model_version": 1,
            "predictions": model.predict(x).tolist(),
            "scores": model.predict_proba(x)[:, 1].tolist(),
        }

    return score


def make_jobs(url: str, **options: Any) -> Jobs:
    options = {"workers": 2, "poll_s": 0.05, "lease_s": 2.0, **options}
    return Jobs(open_job_store(url), **options)


async def finished(jobs: Jobs, job_id: str, timeout: float = 15.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        view = await jobs.get(job_id)
        if view["status"] in ("succeeded", "failed"):
            return view
        await asyncio.sleep(0.02)
    raise AssertionError(f"job {job_id} did not finish within {timeout} s: {view}")


def test_a_submitted_job_is_scored_by_the_model_and_its_result_polled(
    store_url: str, model: LogisticRegression
) -> None:
    records = [RECORD, dict.fromkeys(FEATURES, -1.0), dict.fromkeys(FEATURES, 2.0)]

    async def scenario() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        jobs = make_jobs(store_url)
        await jobs.start(model_score(model))
        try:
            submitted = await jobs.submit("clf-api", {"records": records}, callback_url=None, request_id="req-42")
            polled = await jobs.get(submitted["id"])
            return submitted, polled, await finished(jobs, submitted["id"])
        finally:
            await jobs.stop()

    submitted, polled, done = asyncio.run(scenario())
    assert submitted["status"] == "queued"
    assert submitted["deployment"] == "clf-api"
    assert submitted["url"] == f"/v1/jobs/{submitted['id']}"
    assert submitted["created_at"].endswith("+00:00")
    assert "result" not in submitted
    assert "callback" not in submitted
    assert polled["status"] in ("queued", "running", "succeeded")
    x = pd.DataFrame(records, columns=FEATURES)
    assert done["status"] == "succeeded"
    assert done["result"] == {
        "request_id": "req-42",
        "deployment": "clf-api",
        "model": "clf",
        "model_version": 1,
        "predictions": model.predict(x).tolist(),
        "scores": model.predict_proba(x)[:, 1].tolist(),
    }
    assert done["attempts"] == 1
    assert done["started_at"] >= done["created_at"]
    assert done["expires_at"] > done["finished_at"]


def test_a_job_fails_with_the_error_the_predict_endpoint_would_answer(
    store_url: str, model: LogisticRegression
) -> None:
    async def scenario() -> tuple[dict[str, Any], dict[str, Any]]:
        jobs = make_jobs(store_url)
        await jobs.start(model_score(model))
        try:
            bad = await jobs.submit("clf-api", {"records": [{"f0": 1.0}]}, callback_url=None, request_id="r1")
            gone = await jobs.submit("deleted-api", {"records": [RECORD]}, callback_url=None, request_id="r2")
            return await finished(jobs, bad["id"]), await finished(jobs, gone["id"])
        finally:
            await jobs.stop()

    bad, gone = asyncio.run(scenario())
    assert bad["status"] == "failed"
    assert bad["error"] == {
        "error": f"a record needs exactly the features {', '.join(FEATURES)}",
        "code": "invalid_input",
        "status": 400,
    }
    assert "result" not in bad
    assert (gone["error"]["code"], gone["error"]["status"]) == ("not_found", 404)


def test_an_unavailable_deployment_puts_the_job_back_until_it_scores(store_url: str, model: LogisticRegression) -> None:
    real = model_score(model)
    calls = []

    async def loading_at_first(deployment: str, payload: dict[str, Any], request_id: str) -> dict[str, Any]:
        calls.append(time.monotonic())
        if len(calls) < 2:
            raise UnavailableError(f"deployment '{deployment}' is loading; retry in a moment")
        return await real(deployment, payload, request_id)

    async def scenario() -> dict[str, Any]:
        jobs = make_jobs(store_url)
        await jobs.start(loading_at_first)
        try:
            job = await jobs.submit("clf-api", {"records": [RECORD]}, callback_url=None, request_id="r")
            return await finished(jobs, job["id"])
        finally:
            await jobs.stop()

    done = asyncio.run(scenario())
    assert done["status"] == "succeeded"
    assert done["attempts"] == 1  # waiting for the deployment is not an attempt
    assert len(calls) == 2
    assert calls[1] - calls[0] >= 0.9  # the error's retry_after (1 s) is honoured


def test_finished_jobs_expire_and_unknown_ids_are_not_found(store_url: str, model: LogisticRegression) -> None:
    async def scenario() -> tuple[dict[str, Any], list[str]]:
        jobs = make_jobs(store_url, result_ttl_s=0.4)
        await jobs.start(model_score(model))
        try:
            job = await jobs.submit("clf-api", {"records": [RECORD]}, callback_url=None, request_id="r")
            done = await finished(jobs, job["id"])
            await asyncio.sleep(0.5)
            messages = []
            for job_id in (job["id"], uuid.uuid4().hex, "../../etc/passwd", ""):
                with pytest.raises(NotFoundError) as info:
                    await jobs.get(job_id)
                messages.append(str(info.value))
            return done, messages
        finally:
            await jobs.stop()

    done, messages = asyncio.run(scenario())
    assert done["status"] == "succeeded"
    assert messages[0] == (
        f"job '{done['id']}' does not exist or has expired (results are kept for 0.4s); "
        "submit it again with POST /v1/endpoints/{name}/jobs"
    )
    assert all("does not exist or has expired" in m for m in messages)


def test_a_dead_worker_s_job_is_claimed_again_once_its_lease_runs_out(
    store_url: str, model: LogisticRegression
) -> None:
    async def scenario() -> dict[str, Any]:
        jobs = make_jobs(store_url, workers=1)
        job = await jobs.submit("clf-api", {"records": [RECORD]}, callback_url=None, request_id="r")
        # A process that claimed the job and died: its claim is never renewed.
        dead = open_job_store(store_url)
        try:
            assert dead.claim("dead-worker", now_ms=now_millis(), lease_ms=400) is not None
        finally:
            dead.close()
        started = time.monotonic()
        await jobs.start(model_score(model))
        try:
            assert (await jobs.get(job["id"]))["status"] == "running"
            done = await finished(jobs, job["id"])
            done["waited"] = time.monotonic() - started
            return done
        finally:
            await jobs.stop()

    done = asyncio.run(scenario())
    assert done["status"] == "succeeded"
    assert done["attempts"] == 2
    assert done["waited"] >= 0.3


def test_a_job_interrupted_more_than_its_attempts_fails(store_url: str, model: LogisticRegression) -> None:
    async def scenario() -> dict[str, Any]:
        jobs = make_jobs(store_url, max_attempts=1)
        job = await jobs.submit("clf-api", {"records": [RECORD]}, callback_url=None, request_id="r")
        dead = open_job_store(store_url)
        try:
            assert dead.claim("dead-worker", now_ms=now_millis(), lease_ms=100) is not None
        finally:
            dead.close()
        await asyncio.sleep(0.15)
        await jobs.start(model_score(model))
        try:
            return await finished(jobs, job["id"])
        finally:
            await jobs.stop()

    done = asyncio.run(scenario())
    assert done["status"] == "failed"
    assert done["error"]["code"] == "interrupted"
    assert done["error"]["error"].startswith("the job was interrupted 1 times")


def test_workers_bound_how_many_jobs_score_at_once(store_url: str, model: LogisticRegression) -> None:
    real = model_score(model)
    busy = [0]
    peak = [0]

    async def slow(deployment: str, payload: dict[str, Any], request_id: str) -> dict[str, Any]:
        busy[0] += 1
        peak[0] = max(peak[0], busy[0])
        await asyncio.sleep(0.15)
        busy[0] -= 1
        return await real(deployment, payload, request_id)

    async def scenario() -> list[dict[str, Any]]:
        jobs = make_jobs(store_url, workers=2)
        await jobs.start(slow)
        try:
            submitted = [
                await jobs.submit("clf-api", {"records": [RECORD]}, callback_url=None, request_id=str(i))
                for i in range(6)
            ]
            return [await finished(jobs, job["id"]) for job in submitted]
        finally:
            await jobs.stop()

    done = asyncio.run(scenario())
    assert [d["status"] for d in done] == ["succeeded"] * 6
    assert peak[0] == 2


def test_stopping_puts_a_running_job_back_for_the_next_process(store_url: str, model: LogisticRegression) -> None:
    real = model_score(model)

    async def scenario() -> dict[str, Any]:
        running = asyncio.Event()

        async def very_slow(deployment: str, payload: dict[str, Any], request_id: str) -> dict[str, Any]:
            running.set()
            await asyncio.sleep(60)
            raise AssertionError("not reached")

        first = make_jobs(store_url, stop_grace_s=0.1)
        await first.start(very_slow)
        job = await first.submit("clf-api", {"records": [RECORD]}, callback_url=None, request_id="r")
        await asyncio.wait_for(running.wait(), 10)
        await first.stop()
        second = make_jobs(store_url, lease_s=60.0)  # it need not wait for a lease: the job was released
        await second.start(real)
        try:
            return await finished(second, job["id"], timeout=5.0)
        finally:
            await second.stop()

    done = asyncio.run(scenario())
    assert done["status"] == "succeeded"
    assert done["attempts"] == 1  # the stopped server's claim was refunded


@pytest.mark.parametrize(
    "payload",
    [{}, {"records": [RECORD], "entities": [{"card_id": 1}]}, {"rows": [RECORD]}, [RECORD]],
    ids=["empty", "both", "unknown-key", "not-an-object"],
)
def test_a_body_that_is_not_records_or_entities_is_refused_at_submit(tmp_path: Path, payload: Any) -> None:
    jobs = make_jobs(f"sqlite:///{tmp_path / 'jobs.db'}")
    try:
        with pytest.raises(InvalidInputError, match=r'\{"records": \[\.\.\.\]\} or \{"entities": \[\.\.\.\]\}'):
            asyncio.run(jobs.submit("clf-api", payload, callback_url=None, request_id="r"))
        assert jobs.store.claim("w", now_ms=now_millis() + 1000, lease_ms=1) is None  # nothing queued
    finally:
        jobs.close()


# -- callbacks ---------------------------------------------------------------------------------


@dataclass
class Call:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float


@dataclass
class Receiver:
    """A real HTTP server on 127.0.0.1 that records each POST and answers the next scripted
    status (200 once the script is used up); a 3xx answer carries ``location``."""

    port: int = 0
    answers: list[int] = field(default_factory=list)
    location: str = ""
    calls: list[Call] = field(default_factory=list)

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            state.calls.append(Call(self.path, {k.lower(): v for k, v in self.headers.items()}, body, time.monotonic()))
            status = state.answers.pop(0) if state.answers else 200
            self.send_response(status)
            if 300 <= status < 400:
                self.send_header("location", state.location)
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def callbacks(**options: Any) -> CallbackSettings:
    return CallbackSettings(**{"allowlist": ("127.0.0.1",), "secret": SECRET, "backoff_s": 0.1, **options})


async def delivered(jobs: Jobs, job_id: str, timeout: float = 15.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        view = await jobs.get(job_id)
        if view.get("callback", {}).get("status") in ("delivered", "failed"):
            return view
        await asyncio.sleep(0.02)
    raise AssertionError(f"the callback of job {job_id} was not settled within {timeout} s: {view}")


def test_a_callback_is_signed_and_retried_with_backoff_until_delivered(
    store_url: str, model: LogisticRegression, receiver: Receiver
) -> None:
    receiver.answers = [500, 503]

    async def scenario() -> tuple[dict[str, Any], dict[str, Any]]:
        jobs = make_jobs(store_url, callbacks=callbacks())
        await jobs.start(model_score(model))
        try:
            job = await jobs.submit(
                "clf-api", {"records": [RECORD]}, callback_url=receiver.url("/hook?token=t0k"), request_id="r"
            )
            return job, await delivered(jobs, job["id"])
        finally:
            await jobs.stop()

    job, done = asyncio.run(scenario())
    assert job["callback"] == {"url": receiver.url(), "status": "waiting", "attempts": 0}
    assert done["callback"]["status"] == "delivered"
    assert done["callback"]["attempts"] == 3
    assert done["callback"]["last_status"] == 200
    assert done["callback"]["delivered_at"] >= done["finished_at"]
    assert [c.path for c in receiver.calls] == ["/hook?token=t0k"] * 3
    assert [c.headers["x-lockgate-attempt"] for c in receiver.calls] == ["1", "2", "3"]
    gaps = [b.at - a.at for a, b in zip(receiver.calls, receiver.calls[1:], strict=False)]
    assert gaps[0] >= 0.08  # backoff 0.1 s (±20%), then doubling
    assert gaps[1] >= 0.16
    for call in receiver.calls:
        assert verify_signature(
            SECRET,
            call.body,
            timestamp=call.headers["x-lockgate-timestamp"],
            signature=call.headers["x-lockgate-signature"],
        )
        assert not verify_signature(
            b"another-secret-0123456",
            call.body,
            timestamp=call.headers["x-lockgate-timestamp"],
            signature=call.headers["x-lockgate-signature"],
        )
        assert call.headers["x-lockgate-job"] == job["id"]
        assert call.headers["content-type"] == "application/json"
    body = json.loads(receiver.calls[-1].body)
    assert body == {k: v for k, v in done.items() if k != "callback"}  # the job, as GET shows it
    assert body["result"]["predictions"] == model.predict(pd.DataFrame([RECORD])).tolist()
    # A signature over another timestamp, or an old one, does not verify: no replays.
    call = receiver.calls[-1]
    ts = int(call.headers["x-lockgate-timestamp"])
    sig = call.headers["x-lockgate-signature"]
    assert not verify_signature(SECRET, call.body, timestamp=str(ts + 1), signature=sig)
    assert not verify_signature(SECRET, call.body, timestamp=str(ts), signature=sig, now=ts + 301)


def test_a_callback_that_keeps_failing_is_given_up_and_shown_on_the_job(
    tmp_path: Path, model: LogisticRegression, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.answers = [500] * 10

    async def scenario() -> dict[str, Any]:
        jobs = make_jobs(f"sqlite:///{tmp_path / 'jobs.db'}", callbacks=callbacks(attempts=2, backoff_s=0.05))
        await jobs.start(model_score(model))
        try:
            job = await jobs.submit(
                "clf-api", {"records": [RECORD]}, callback_url=receiver.url("/h?token=s3cret"), request_id="r"
            )
            return await delivered(jobs, job["id"])
        finally:
            await jobs.stop()

    with caplog.at_level(logging.WARNING, logger="lockgate"):
        done = asyncio.run(scenario())
    assert done["status"] == "succeeded"  # the job did; its callback did not
    assert len(receiver.calls) == 2
    state = done["callback"]
    assert (state["status"], state["attempts"], state["last_status"]) == ("failed", 2, 500)
    assert state["last_error"] == "127.0.0.1 answered HTTP 500"
    assert state["url"] == receiver.url("/h")
    assert "callback to http://127.0.0.1" in caplog.text
    assert "s3cret" not in caplog.text  # a token in the URL stays out of logs and job records
    assert "s3cret" not in json.dumps(done)


def test_a_callback_unreachable_is_retried_then_given_up(tmp_path: Path, model: LogisticRegression) -> None:
    from tests.serving.conftest import free_port

    async def scenario() -> dict[str, Any]:
        jobs = make_jobs(f"sqlite:///{tmp_path / 'jobs.db'}", callbacks=callbacks(attempts=2, backoff_s=0.05))
        await jobs.start(model_score(model))
        try:
            url = f"http://127.0.0.1:{free_port()}/nobody-listens"
            job = await jobs.submit("clf-api", {"records": [RECORD]}, callback_url=url, request_id="r")
            return await delivered(jobs, job["id"])
        finally:
            await jobs.stop()

    state = asyncio.run(scenario())["callback"]
    assert (state["status"], state["attempts"], state["last_status"]) == ("failed", 2, None)
    assert state["last_error"].startswith("127.0.0.1 could not be reached (ConnectionRefusedError")


def test_a_redirect_off_the_allowlist_is_not_followed(
    tmp_path: Path, model: LogisticRegression, receiver: Receiver
) -> None:
    receiver.answers = [307, 307]
    receiver.location = "http://169.254.169.254/latest/meta-data"

    async def scenario() -> dict[str, Any]:
        jobs = make_jobs(f"sqlite:///{tmp_path / 'jobs.db'}", callbacks=callbacks(attempts=3, backoff_s=0.05))
        await jobs.start(model_score(model))
        try:
            job = await jobs.submit("clf-api", {"records": [RECORD]}, callback_url=receiver.url(), request_id="r")
            return await delivered(jobs, job["id"])
        finally:
            await jobs.stop()

    state = asyncio.run(scenario())["callback"]
    assert (state["status"], state["attempts"], state["last_status"]) == ("failed", 1, 307)  # no retry
    assert state["last_error"] == "127.0.0.1 redirected to a host outside the callback allowlist; not followed"
    assert len(receiver.calls) == 1


def test_a_redirect_to_an_allowed_host_is_followed(
    tmp_path: Path, model: LogisticRegression, receiver: Receiver
) -> None:
    receiver.answers = [308]
    receiver.location = "/moved"

    async def scenario() -> dict[str, Any]:
        jobs = make_jobs(f"sqlite:///{tmp_path / 'jobs.db'}", callbacks=callbacks())
        await jobs.start(model_score(model))
        try:
            job = await jobs.submit("clf-api", {"records": [RECORD]}, callback_url=receiver.url(), request_id="r")
            return await delivered(jobs, job["id"])
        finally:
            await jobs.stop()

    state = asyncio.run(scenario())["callback"]
    assert (state["status"], state["attempts"]) == ("delivered", 1)
    assert [c.path for c in receiver.calls] == ["/hook", "/moved"]
    assert receiver.calls[0].body == receiver.calls[1].body


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("http://evil.example.net/hook", "callback host evil.example.net is not on this server's callback allowlist"),
        ("http://127.0.0.2/hook", "callback host 127.0.0.2 is not on this server's callback allowlist"),
        ("http://hooks.example.com:8443/x", "callback host hooks.example.com is not on"),  # only :443 allowed
        ("https://example.org/x", "callback host example.org is not on"),  # *.example.org is subdomains only
        ("ftp://127.0.0.1/x", "must be http:// or https:// with a host"),
        ("http://user:pw@127.0.0.1/x", "must not carry credentials"),
        ("http://[::1/x", "does not parse"),
        ("not a url", "must be http:// or https:// with a host"),
    ],
)
def test_a_callback_url_outside_the_allowlist_is_refused_and_nothing_queued(
    tmp_path: Path, url: str, fragment: str
) -> None:
    allowlist = ("127.0.0.1", "hooks.example.com:443", "*.example.org")
    jobs = make_jobs(f"sqlite:///{tmp_path / 'jobs.db'}", callbacks=callbacks(allowlist=allowlist))
    try:
        with pytest.raises(InvalidInputError) as info:
            asyncio.run(jobs.submit("clf-api", {"records": [RECORD]}, callback_url=url, request_id="r"))
        assert fragment in str(info.value)
        assert jobs.store.claim("w", now_ms=now_millis() + 1000, lease_ms=1) is None
        for allowed in ("http://127.0.0.1:9/x", "https://hooks.example.com/x", "https://a.b.example.org/x"):
            asyncio.run(jobs.submit("clf-api", {"records": [RECORD]}, callback_url=allowed, request_id="r"))
    finally:
        jobs.close()


def test_without_an_allowlist_callbacks_are_refused_saying_how_to_allow_hosts(tmp_path: Path) -> None:
    jobs = make_jobs(f"sqlite:///{tmp_path / 'jobs.db'}")
    try:
        with pytest.raises(InvalidInputError) as info:
            asyncio.run(jobs.submit("clf-api", {"records": [RECORD]}, callback_url="http://127.0.0.1/", request_id="r"))
    finally:
        jobs.close()
    assert str(info.value) == (
        "this server sends no job callbacks; allow hosts with LOCKGATE_CALLBACK_ALLOWLIST=host[,host...] "
        "(or callback_allowlist in lockgate.toml)"
    )


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"allowlist": ("127.0.0.1",), "secret": None}, "set LOCKGATE_CALLBACK_SECRET"),
        ({"allowlist": ("127.0.0.1",), "secret": b"short"}, "shorter than 16 characters"),
        ({"allowlist": ("https://hooks.example.com",), "secret": SECRET}, "is not a host"),
        ({"allowlist": ("hooks.example.com/path",), "secret": SECRET}, "is not a host"),
        ({"allowlist": ("*",), "secret": SECRET}, "is not a host"),
    ],
)
def test_invalid_callback_settings_are_a_config_error(options: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        CallbackSettings(**options)


def test_jobs_from_settings_use_the_configured_store_and_callbacks(store_url: str, tmp_path: Path) -> None:
    settings = Settings.load(
        home=tmp_path / "ws",
        jobs_url=store_url,
        job_workers=3,
        job_result_ttl="2h",
        callback_allowlist=["127.0.0.1"],
        callback_secret="from-settings-0123456789",
    )
    jobs = Jobs.from_settings(settings)
    try:
        assert (jobs.workers, jobs.result_ttl_s, jobs.callbacks.secret) == (3, 7200.0, b"from-settings-0123456789")
        assert "from-settings" not in repr(jobs.callbacks)
        job = asyncio.run(
            jobs.submit("clf-api", {"records": [RECORD]}, callback_url="http://127.0.0.1/", request_id="r")
        )
        assert asyncio.run(jobs.get(job["id"]))["status"] == "queued"
    finally:
        jobs.close()
    default = Jobs.from_settings(Settings.load(home=tmp_path / "ws"), workers=0)
    try:
        assert default.store.url == f"sqlite:///{(tmp_path / 'ws').resolve() / 'jobs.db'}"
        assert default.workers == 0
    finally:
        default.close()


def test_the_async_jobs_doc_s_python_examples_run() -> None:
    import re

    doc = Path(__file__).resolve().parents[2] / "docs" / "async-jobs.md"
    blocks = re.findall(r"```python\n(.*?)```", doc.read_text(), flags=re.DOTALL)
    assert blocks
    for code in blocks:
        exec(compile(code, str(doc), "exec"), {"__name__": "doc"})
