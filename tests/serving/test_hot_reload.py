"""A running server follows the metadata store: new, changed and deleted deployments and alias
moves are served without a restart, and a pinned deployment stays where it is."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd
import pytest
from sklearn.linear_model import LinearRegression, LogisticRegression

import lockgate as lg
from tests.serving.conftest import FEATURES, Answer, Server, start_server, training_frame
from tests.serving.custom_models import LOAD_SECONDS, SlowLoading

T = TypeVar("T")
RECORD = dict.fromkeys(FEATURES, 0.3)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Classifier ``clf`` v1, v2 (champion → v1), regressor ``reg`` v1 (2 * f0), v2 (3 * f0), and
    :class:`SlowLoading` ``big``; ``clf-api`` follows clf@champion, ``clf-pinned`` is pinned to
    clf/1, ``big-api`` serves big/1."""
    home = tmp_path_factory.mktemp("reload") / "ws"
    x, y = training_frame()
    with lg.Workspace.open(home) as ws:
        for c in (1.0, 0.01):
            ws.models.register(LogisticRegression(C=c).fit(x, y), name="clf", input_example=x.head(20))
        ws.models.set_alias("clf", "champion", 1)
        for k in (2.0, 3.0):
            ws.models.register(LinearRegression().fit(x, x.f0 * k), name="reg", input_example=x.head(20))
        ws.models.register(SlowLoading(), name="big", input_example=pd.DataFrame({"x": [1.0, 2.0]}))
        ws.deployments.create("clf-api", "models:/clf@champion")
        ws.deployments.create("clf-pinned", "models:/clf/1")
        ws.deployments.create("big-api", "models:/big/1")
    return home


@pytest.fixture(scope="module")
def server(home: Path) -> Iterator[Server]:
    """A server over ``home``; ``server.extra["readiness"]`` holds what readiness answered
    while it started."""
    server = start_server(home, "--no-onnx")
    try:
        statuses = server.extra["readiness"] = []
        deadline = time.monotonic() + 90
        while not statuses or statuses[-1] != 200:
            assert server.process.poll() is None, server.log.read_text()
            assert time.monotonic() < deadline, server.log.read_text()
            try:
                statuses.append(server.get("/v2/health/ready").status)
            except OSError:
                time.sleep(0.05)
        yield server
    finally:
        server.stop(signal.SIGTERM, timeout=20)


def test_readiness_is_false_until_every_model_is_loaded(server: Server) -> None:
    statuses = server.extra["readiness"]
    assert 503 in statuses, statuses
    assert statuses[-1] == 200, statuses
    assert statuses.index(200) > statuses.index(503)
    assert predict(server, "big-api", x=1.5).json()["predictions"] == [3.0]


def eventually(probe: Callable[[], T], ok: Callable[[T], bool], *, timeout: float = 20.0) -> T:
    """``probe()`` until ``ok`` says yes (the server polls every 0.2 s); its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if ok(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def predict(server: Server, name: str, **record: float) -> Answer:
    return server.post(f"/v1/endpoints/{name}/predict", {"records": [record or RECORD]})


def version_of(answer: Answer) -> Any:
    return answer.json().get("model_version") if answer.status == 200 else answer.status


def test_a_new_deployment_is_served_without_restart(server: Server) -> None:
    assert predict(server, "fresh-api").status == 404
    with lg.Workspace.open(server.home) as ws:
        ws.deployments.create("fresh-api", "models:/reg/1")
    answer = eventually(lambda: predict(server, "fresh-api"), lambda a: a.status == 200)
    assert answer.status == 200, answer.body
    assert server.get("/v2/health/ready").status == 200
    assert answer.json()["predictions"] == pytest.approx([0.6], abs=1e-6)
    v2 = {"inputs": [{"name": "input", "shape": [1, 6], "datatype": "FP64", "data": [0.3] * 6}]}
    assert server.post("/v2/models/fresh-api/infer", v2).json()["model_version"] == "1"


def test_a_changed_deployment_serves_its_new_model_and_settings(server: Server) -> None:
    with lg.Workspace.open(server.home) as ws:
        ws.deployments.create("moving-api", "models:/reg/1")
    assert eventually(lambda: version_of(predict(server, "moving-api")), lambda v: v == 1) == 1
    with lg.Workspace.open(server.home) as ws:
        ws.deployments.update("moving-api", model="models:/reg/2")
    answer = eventually(lambda: predict(server, "moving-api"), lambda a: version_of(a) == 2)
    assert version_of(answer) == 2
    assert answer.json()["predictions"] == pytest.approx([0.9], abs=1e-6)
    with lg.Workspace.open(server.home) as ws:
        ws.deployments.update("moving-api", settings={"max_batch_size": 3})
    listed = eventually(
        lambda: server.get("/v1/endpoints").json()["endpoints"],
        lambda es: (
            any(e["name"] == "moving-api" and e["ready"] for e in es) and version_of(predict(server, "moving-api")) == 2
        ),
    )
    assert [e["versions"] for e in listed if e["name"] == "moving-api"] == [[2]]


def test_a_model_loading_does_not_hold_up_the_other_deployments(server: Server) -> None:
    with lg.Workspace.open(server.home) as ws:
        ws.deployments.create("big-copy", "models:/big/1")  # LOAD_SECONDS on the loader thread
    slowest = 0.0
    while (answer := predict(server, "big-copy", x=1.0)).status != 200:
        assert answer.status == 404, answer.body
        started = time.perf_counter()
        assert predict(server, "clf-pinned").status == 200
        assert server.get("/v2/health/ready").status == 200
        slowest = max(slowest, time.perf_counter() - started)
    assert slowest < LOAD_SECONDS / 3, f"a request waited {slowest:.2f} s for the load"


def test_a_deleted_deployment_answers_404(server: Server) -> None:
    with lg.Workspace.open(server.home) as ws:
        ws.deployments.create("doomed-api", "models:/reg/1")
    assert eventually(lambda: predict(server, "doomed-api").status, lambda s: s == 200) == 200
    with lg.Workspace.open(server.home) as ws:
        ws.deployments.delete("doomed-api")
    answer = eventually(lambda: predict(server, "doomed-api"), lambda a: a.status == 404)
    assert answer.status == 404
    assert "no deployment named 'doomed-api'" in answer.json()["error"]
    assert server.get("/v2/models/doomed-api").status == 404
    assert "doomed-api" not in [e["name"] for e in server.get("/v1/endpoints").json()["endpoints"]]


def test_an_alias_move_swaps_the_model_without_a_failed_request_and_a_pinned_one_stays(server: Server) -> None:
    assert version_of(predict(server, "clf-api")) == 1
    assert version_of(predict(server, "clf-pinned")) == 1
    seen: list[Any] = []
    stop = threading.Event()

    def traffic() -> None:  # requests all through the swap: none may fail
        while not stop.is_set():
            seen.append(version_of(predict(server, "clf-api")))

    sender = threading.Thread(target=traffic)
    sender.start()
    try:
        with lg.Workspace.open(server.home) as ws:
            ws.models.set_alias("clf", "champion", 2)
        eventually(lambda: version_of(predict(server, "clf-api")), lambda v: v == 2)
        time.sleep(0.3)
    finally:
        stop.set()
        sender.join()
    assert set(seen) <= {1, 2}, seen
    assert seen[-1] == 2, seen
    assert seen == sorted(seen), "once the alias moved, no answer came from the old version"
    assert version_of(predict(server, "clf-pinned")) == 1
    meta = server.get("/v2/models/clf-api").json()
    assert meta["versions"] == ["2"]
    with lg.Workspace.open(server.home) as ws:
        ws.models.set_alias("clf", "champion", 1)
    assert eventually(lambda: version_of(predict(server, "clf-api")), lambda v: v == 1) == 1
