"""Operating under load: TCP_NODELAY on accepted sockets, several workers behind one socket
with metrics summed over them, a killed worker replaced, batching at 32 connections, a
bounded queue answering 429, and SIGTERM draining in-flight requests before exit 0.

Most tests share one two-worker server (started once: it costs seconds); the last two change
it (a worker killed, then the server stopped) and run in file order.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import signal
import socket
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import uvloop
from prometheus_client.parser import text_string_to_metric_families
from sklearn.linear_model import LogisticRegression

import lockgate as lg
from lockgate.serving._metrics import ServerMetrics
from lockgate.serving._server import bind_listener
from tests.serving.conftest import FEATURES, Server, start_server, training_frame
from tests.serving.custom_models import SlowModel

RECORD = dict.fromkeys(FEATURES, 0.3)
DRAIN_SECONDS = 2.0


# -- TCP_NODELAY on the listener's accepted sockets (in process) -------------------------------


async def _accepted_nodelay(sock: socket.socket) -> int:
    loop = asyncio.get_running_loop()
    accepted: asyncio.Future[int] = loop.create_future()

    class Probe(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            conn = transport.get_extra_info("socket")
            accepted.set_result(conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            transport.close()

    server = await loop.create_server(Probe, sock=sock)
    try:
        _reader, writer = await asyncio.open_connection(*sock.getsockname()[:2])
        value = await asyncio.wait_for(accepted, 10)
        writer.close()
        return value
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize("run", [asyncio.run, uvloop.run], ids=["asyncio", "uvloop"])
def test_bind_listener_gives_accepted_sockets_tcp_nodelay(run: Callable[..., Any]) -> None:
    sock = bind_listener("127.0.0.1", 0)
    assert sock.proto == socket.IPPROTO_TCP
    assert run(_accepted_nodelay(sock)) == 1


def test_a_listener_bound_with_protocol_0_leaves_nagle_on_in_asyncio() -> None:
    """Why bind_listener names IPPROTO_TCP: what uvicorn's own multi-worker bind gets."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    assert asyncio.run(_accepted_nodelay(sock)) == 0


# -- metrics in process -------------------------------------------------------------------------


def test_a_batch_of_scores_lands_in_the_buckets_observe_would_put_it_in() -> None:
    scores = np.array([0.0, 0.05, 0.1, 0.1000001, 0.15, 0.5, 0.55, 0.95, 1.0, np.nan])
    batched, one_by_one = ServerMetrics(), ServerMetrics()
    batched.score("d", "1", scores)
    child = one_by_one.scores.labels("d", "1")
    for value in scores[~np.isnan(scores)]:
        child.observe(float(value))

    def samples(m: ServerMetrics) -> list[str]:
        text = m.render().decode()
        return [
            line
            for line in text.splitlines()
            if line.startswith("lockgate_prediction_score_") and "_created" not in line
        ]

    assert samples(batched) == samples(one_by_one)
    assert 'lockgate_prediction_score_count{deployment="d",model_version="1"} 9.0' in samples(batched)


# -- a two-worker server ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``clf-api`` (a classifier batching up to 2 ms) and ``slow-api`` (:class:`SlowModel`,
    one row per call, a queue of 2 rows)."""
    home = tmp_path_factory.mktemp("ops") / "ws"
    x, y = training_frame()
    with lg.Workspace.open(home) as ws:
        ws.models.register(LogisticRegression().fit(x, y), name="clf", input_example=x.head(20))
        ws.deployments.create("clf-api", "models:/clf/1", settings={"max_wait_ms": 2, "max_batch_size": 64})
        example = pd.DataFrame({"delay": [0.0, 0.0], "x": [1.0, 2.0]})
        ws.models.register(SlowModel(), name="slow", input_example=example)
        ws.deployments.create(
            "slow-api", "models:/slow/1", settings={"max_batch_size": 1, "max_queue": 2, "max_wait_ms": 0}
        )
    return home


@pytest.fixture(scope="module")
def server(home: Path) -> Iterator[Server]:
    server = start_server(home, "--no-onnx", "--drain", str(DRAIN_SECONDS), workers=2)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop(signal.SIGKILL if server.process.poll() is None else signal.SIGTERM, timeout=10)


def metrics(server: Server) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """One scrape (on a new connection, so on either worker): sample → value."""
    text = server.get("/metrics").body.decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def total(scrape: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    wanted = set(labels.items())
    return sum(v for (n, ls), v in scrape.items() if n == name and wanted <= ls)


def worker_pids(scrape: dict[tuple[str, frozenset[tuple[str, str]]], float]) -> set[str]:
    return {dict(ls)["pid"] for (n, ls), v in scrape.items() if n == "lockgate_worker_requests_total" and v > 0}


def predict(server: Server, name: str = "clf-api", **record: float) -> int:
    return server.post(f"/v1/endpoints/{name}/predict", {"records": [record or RECORD]}).status


def test_both_workers_answer_and_metrics_sum_over_them(server: Server) -> None:
    deadline = time.monotonic() + 90  # the second worker joins once its models are loaded
    while len(worker_pids(metrics(server))) < 2 and time.monotonic() < deadline:
        assert [predict(server) for _ in range(10)] == [200] * 10
    scrape = metrics(server)
    assert len(worker_pids(scrape)) == 2, f"one worker answered everything: {worker_pids(scrape)}"
    before = total(scrape, "lockgate_requests_total", deployment="clf-api")
    assert [predict(server) for _ in range(40)] == [200] * 40  # a new connection each
    scrapes = [metrics(server) for _ in range(6)]
    for scrape in scrapes:  # whichever worker answered the scrape, it counts every request
        assert total(scrape, "lockgate_requests_total", deployment="clf-api", code="200") == before + 40
        assert total(scrape, "lockgate_worker_requests_total") == total(scrape, "lockgate_requests_total")
        assert total(scrape, "lockgate_request_duration_seconds_count", deployment="clf-api") == before + 40
        assert total(scrape, "lockgate_model_info", deployment="clf-api", model_version="1") == 1


def test_two_workers_on_one_keep_alive_connection_do_not_wait_for_nagle(server: Server) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    body = json.dumps({"records": [RECORD]})
    times = []
    try:
        for _ in range(22):
            started = time.perf_counter()
            conn.request("POST", "/v1/endpoints/clf-api/predict", body, {"content-type": "application/json"})
            response = conn.getresponse()
            assert response.status == 200, response.read()
            response.read()
            times.append(time.perf_counter() - started)
    finally:
        conn.close()
    median = statistics.median(times[2:])
    assert median < 0.020, f"median {median * 1000:.1f} ms: the 40 ms delayed-ACK stall is back"


def test_32_connections_make_real_batches(server: Server) -> None:
    def scrape_batches() -> tuple[float, float, float]:
        scrape = metrics(server)
        calls = total(scrape, "lockgate_batch_size_count", deployment="clf-api")
        rows = total(scrape, "lockgate_batch_size_sum", deployment="clf-api")
        single = total(scrape, "lockgate_batch_size_bucket", deployment="clf-api", le="1.0")
        return calls, rows, single

    calls0, rows0, single0 = scrape_batches()
    body = json.dumps({"records": [RECORD]})
    start = threading.Barrier(32)

    def client(_: int) -> list[int]:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        statuses = []
        try:
            conn.connect()
            start.wait()
            for _ in range(20):
                conn.request("POST", "/v1/endpoints/clf-api/predict", body, {"content-type": "application/json"})
                response = conn.getresponse()
                response.read()
                statuses.append(response.status)
        finally:
            conn.close()
        return statuses

    with ThreadPoolExecutor(32) as pool:
        statuses = [s for ss in pool.map(client, range(32)) for s in ss]
    assert statuses == [200] * 640
    calls1, rows1, single1 = scrape_batches()
    calls, rows, single = calls1 - calls0, rows1 - rows0, single1 - single0
    assert rows == 640
    assert single < calls, "every model call scored one row: no batching at 32 connections"
    print(f"32 connections: 640 rows in {calls:.0f} model calls, {rows / calls:.1f} rows per call on average")


def test_a_full_queue_answers_429_with_retry_after_and_no_5xx(server: Server) -> None:
    def slow(_: int) -> tuple[int, str | None]:
        answer = server.post("/v1/endpoints/slow-api/predict", {"records": [{"delay": 0.3, "x": 1.0}]})
        return answer.status, answer.headers.get("retry-after")

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(slow, range(16)))
    statuses = [s for s, _ in answers]
    assert set(statuses) <= {200, 429}, statuses
    assert statuses.count(429) >= 4, statuses
    assert statuses.count(200) >= 2, statuses
    assert all(retry is not None and int(retry) >= 1 for s, retry in answers if s == 429)
    scrape = metrics(server)
    assert total(scrape, "lockgate_requests_total", deployment="slow-api", code="429") == statuses.count(429)
    assert total(scrape, "lockgate_request_errors_total", deployment="slow-api", code="429") == statuses.count(429)


def test_a_killed_worker_is_replaced_and_the_server_keeps_answering(server: Server) -> None:
    scrape = metrics(server)
    pids = worker_pids(scrape)
    assert len(pids) == 2
    answered = total(scrape, "lockgate_requests_total")
    victim = int(min(pids))
    os.kill(victim, signal.SIGKILL)
    assert [predict(server) for _ in range(20)] == [200] * 20  # the other worker takes every connection
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        scrape = metrics(server)
        if worker_pids(scrape) - pids:
            break
        assert predict(server) == 200
        time.sleep(0.05)
    new = worker_pids(scrape) - pids
    assert new, f"no new worker answered within 90 s:\n{server.log.read_text()}"
    assert total(scrape, "lockgate_requests_total") >= answered + 20  # the dead worker's counts stay
    assert f"(pid {victim}) exited with -9; starting a new one" in server.log.read_text()


def test_sigterm_drains_in_flight_requests_and_exits_0(server: Server) -> None:
    slow_done: list[int] = []
    slow = threading.Thread(
        target=lambda: slow_done.append(
            server.post("/v1/endpoints/slow-api/predict", {"records": [{"delay": 1.5, "x": 1.0}]}).status
        )
    )
    slow.start()
    time.sleep(0.5)  # the slow request is being scored
    assert not slow_done
    stopped = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + DRAIN_SECONDS / 2  # the signal goes through the supervisor
    while (ready := server.get("/v2/health/ready")).status == 200 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert ready.status == 503
    assert ready.json() == {"ready": False}
    assert not slow_done, "readiness waited for the slow model: it ran on the event loop"
    assert predict(server) == 200, "a request routed during the drain still gets its answer"
    slow.join(30)
    assert slow_done == [200]
    code = server.process.wait(60)
    assert code == 0, server.log.read_text()
    assert time.monotonic() - stopped >= DRAIN_SECONDS - 0.5
    assert "Traceback" not in server.log.read_text()
