"""Async jobs through a real ``lockgate serve``: 202 then the result by polling, a signed
callback to a real receiver on 127.0.0.1, refusals at submit (4xx, nothing queued), and a job
that survives its server being killed mid-job, on SQLite and on the real Redis."""

from __future__ import annotations

import json
import signal
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

import lockgate as lg
from lockgate.serving._callbacks import verify_signature
from tests.serving.conftest import FEATURES, Server, start_server, training_frame
from tests.serving.custom_models import SlowModel

SECRET = "http-test-secret-0123456789"
RECORD = dict.fromkeys(FEATURES, 0.3)
ENV = {
    "LOCKGATE_CALLBACK_SECRET": SECRET,
    "LOCKGATE_CALLBACK_ALLOWLIST": "127.0.0.1",
    "LOCKGATE_CALLBACK_BACKOFF": "0.1",
    "LOCKGATE_JOB_LEASE": "1s",
}


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``clf-api`` (a logistic regression) and ``slow-api`` (:class:`SlowModel`)."""
    home = tmp_path_factory.mktemp("jobs") / "ws"
    x, y = training_frame()
    with lg.Workspace.open(home) as ws:
        ws.models.register(LogisticRegression().fit(x, y), name="clf", input_example=x.head(20))
        ws.deployments.create("clf-api", "models:/clf/1")
        example = pd.DataFrame({"delay": [0.0, 0.0], "x": [1.0, 2.0]})
        ws.models.register(SlowModel(), name="slow", input_example=example)
        ws.deployments.create("slow-api", "models:/slow/1")
    return home


@pytest.fixture(scope="module")
def server(home: Path) -> Iterator[Server]:
    server = start_server(home, "--no-onnx", env=ENV)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop(signal.SIGKILL if server.process.poll() is None else signal.SIGTERM, timeout=10)


class Receiver:
    """A real HTTP server on 127.0.0.1 that records each callback and answers 200."""

    def __init__(self) -> None:
        self.calls: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                receiver.calls.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/lockgate-done"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    try:
        yield r
    finally:
        r.close()


def poll(server: Server, job_id: str, until: tuple[str, ...] = ("succeeded", "failed"), timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = server.get(f"/v1/jobs/{job_id}")
        assert answer.status == 200, answer.body
        job = answer.json()
        if job["status"] in until:
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not reach {until} within {timeout} s: {job}")


def test_a_job_is_accepted_scored_polled_and_called_back_signed(server: Server, receiver: Receiver) -> None:
    records = [RECORD, dict.fromkeys(FEATURES, -1.0)]
    answer = server.post("/v1/endpoints/clf-api/jobs", {"records": records, "callback_url": receiver.url})
    assert answer.status == 202, answer.body
    job = answer.json()
    assert (job["status"], job["deployment"]) == ("queued", "clf-api")
    assert answer.headers["location"] == f"/v1/jobs/{job['id']}"
    assert job["callback"] == {"url": receiver.url, "status": "waiting", "attempts": 0}

    done = poll(server, job["id"])
    assert done["status"] == "succeeded"
    direct = server.post("/v1/endpoints/clf-api/predict", {"records": records}).json()
    assert done["result"] == {**direct, "request_id": done["request_id"]}  # what predict answers

    deadline = time.monotonic() + 10
    while not receiver.calls and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(receiver.calls) == 1
    headers, body = receiver.calls[0]
    assert verify_signature(
        SECRET.encode(), body, timestamp=headers["x-lockgate-timestamp"], signature=headers["x-lockgate-signature"]
    )
    assert json.loads(body) == {k: v for k, v in done.items() if k != "callback"}
    settled = poll(server, job["id"])
    deadline = time.monotonic() + 10
    while settled["callback"]["status"] != "delivered" and time.monotonic() < deadline:
        time.sleep(0.05)
        settled = poll(server, job["id"])
    assert (settled["callback"]["status"], settled["callback"]["attempts"]) == ("delivered", 1)


def test_what_a_client_gets_wrong_is_a_4xx_and_nothing_is_queued(server: Server, home: Path) -> None:
    def jobs_stored() -> int:
        with sqlite3.connect(home / "jobs.db") as conn:
            count: int = conn.execute("SELECT count(*) FROM lockgate_jobs").fetchone()[0]
        return count

    before = jobs_stored()
    outside = server.post(
        "/v1/endpoints/clf-api/jobs", {"records": [RECORD], "callback_url": "https://attacker.example.net/x"}
    )
    assert outside.status == 400
    assert outside.json()["code"] == "invalid_input"
    assert outside.json()["error"].startswith(
        "callback host attacker.example.net is not on this server's callback allowlist; "
        "allow hosts with LOCKGATE_CALLBACK_ALLOWLIST="
    )
    unknown = server.post("/v1/endpoints/no-such-api/jobs", {"records": [RECORD]})
    assert (unknown.status, unknown.json()["code"]) == (404, "not_found")
    for body in ({"rows": [RECORD]}, {"records": [RECORD], "entities": []}, {}, {"records": "x"}):
        bad = server.post("/v1/endpoints/clf-api/jobs", body)
        assert bad.status == 400, (body, bad.body)
        assert bad.json()["code"] == "invalid_input"
    assert server.post("/v1/endpoints/clf-api/jobs", b"{not json").status == 400
    assert jobs_stored() == before

    missing = server.get(f"/v1/jobs/{uuid.uuid4().hex}")
    assert missing.status == 404
    assert "does not exist or has expired (results are kept for 1d)" in missing.json()["error"]
    assert server.get("/v1/jobs/not-an-id").status == 404


def test_rows_predict_would_refuse_are_refused_at_submit_with_the_same_error(server: Server) -> None:
    body = {"records": [{"f0": "high", **dict.fromkeys(FEATURES[1:], 0)}]}
    answer = server.post("/v1/endpoints/clf-api/jobs", body)
    direct = server.post("/v1/endpoints/clf-api/predict", body)
    assert answer.status == direct.status == 400
    assert answer.json()["error"] == direct.json()["error"]
    assert "'f0' must be a number or null, got 'high'" in answer.json()["error"]


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def jobs_env(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    if request.param == "sqlite":
        yield ENV
        return
    url = request.getfixturevalue("store_url")
    yield {**ENV, "LOCKGATE_JOBS_URL": url}


@pytest.fixture
def store_url(tmp_path: Path) -> Iterator[str]:
    """A fresh key prefix on the real Redis (the same fixture as the store tests')."""
    import os

    import redis

    from tests.conftest import service_missing

    base = os.environ.get("LOCKGATE_TEST_REDIS", "redis://127.0.0.1:6379/0")
    admin = redis.Redis.from_url(base, socket_connect_timeout=2, socket_timeout=5)
    try:
        admin.ping()
    except redis.RedisError as exc:
        admin.close()
        service_missing(f"Redis at {base}", str(exc))
        raise
    prefix = f"lockgate-test-{uuid.uuid4().hex[:12]}:"
    try:
        yield f"{base}?prefix={prefix}"
    finally:
        keys = list(admin.scan_iter(match=prefix + "*", count=1000))
        if keys:
            admin.unlink(*keys)
        admin.close()


def test_a_job_survives_its_server_being_killed_mid_job(home: Path, jobs_env: dict[str, str], tmp_path: Path) -> None:
    first = start_server(home, "--no-onnx", env=jobs_env)
    second: Server | None = None
    try:
        first.wait_ready()
        answer = first.post("/v1/endpoints/slow-api/jobs", {"records": [{"delay": 1.0, "x": 21.0}]})
        assert answer.status == 202, answer.body
        job_id = answer.json()["id"]
        assert poll(first, job_id, until=("running",), timeout=10)["attempts"] == 1
        first.stop(signal.SIGKILL)  # no drain, no release: only the lease running out frees the job

        second = start_server(home, "--no-onnx", env=jobs_env)
        second.wait_ready()
        done = poll(second, job_id, timeout=30)
    finally:
        first.stop(signal.SIGKILL)
        if second is not None:
            second.stop()
    assert done["status"] == "succeeded"
    assert done["result"]["predictions"] == [42.0]
    assert done["attempts"] == 2  # scored again by the new server: at least once
