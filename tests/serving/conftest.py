"""A real ``lockgate serve`` process over a workspace with models and deployments.

The server runs as a subprocess on a free loopback port, exactly as a user starts it, so the
tests see its sockets, signals and worker processes as they are.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.linear_model import LinearRegression

import lockgate as lg

FEATURES = [f"f{i}" for i in range(6)]


def training_frame(rows: int = 600, seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(seed)
    x = pd.DataFrame(rng.normal(size=(rows, len(FEATURES))), columns=FEATURES)
    y = ((x.f0 + x.f1 > 0) | (x.f2 > 1.5)).astype(int)
    return x, y


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Server:
    """A running server: its base URL, process, workspace home and log file."""

    url: str
    port: int
    process: subprocess.Popen[bytes]
    home: Path
    log: Path
    workers: int = 1
    extra: dict[str, Any] = field(default_factory=dict)

    def request(
        self, method: str, path: str, body: bytes | dict[str, Any] | None = None, headers: dict[str, str] | None = None
    ) -> Answer:
        data = json.dumps(body).encode() if isinstance(body, dict) else body
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return Answer(resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read())
        except urllib.error.HTTPError as err:
            return Answer(err.code, {k.lower(): v for k, v in err.headers.items()}, err.read())

    def get(self, path: str) -> Answer:
        return self.request("GET", path)

    def post(self, path: str, body: bytes | dict[str, Any], headers: dict[str, str] | None = None) -> Answer:
        return self.request("POST", path, body, {"content-type": "application/json", **(headers or {})})

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"the server exited with {self.process.returncode}:\n{self.log.read_text()}")
            try:
                if self.get("/v2/health/ready").status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"the server was not ready within {timeout} s:\n{self.log.read_text()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.process.poll() is None:
            if sig == signal.SIGKILL:
                os.killpg(self.process.pid, sig)
            else:
                self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        with contextlib.suppress(ProcessLookupError):  # no worker outlives its test
            os.killpg(self.process.pid, signal.SIGKILL)
        return self.process.returncode


def start_server(home: Path, *args: str, workers: int = 1, env: dict[str, str] | None = None) -> Server:
    """``lockgate serve`` on a free port in its own process group (its workers die with it)."""
    port = free_port()
    log = home / f"serve-{port}.log"
    with log.open("wb") as out:  # the child keeps its own descriptor
        process = subprocess.Popen(
            [
                *(sys.executable, "-m", "lockgate", "--home", str(home), "serve", "--port", str(port)),
                *("--workers", str(workers), "--poll", "0.2", *args),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
    return Server(url=f"http://127.0.0.1:{port}", port=port, process=process, home=home, log=log, workers=workers)


@pytest.fixture
def served_workspace(tmp_path: Path) -> Path:
    """A workspace with a classifier ``clf`` (alias champion → v1; v2 registered too) deployed as
    ``clf-api`` (following the alias), and a regressor ``reg`` deployed pinned as ``reg-api``."""
    home = tmp_path / "ws"
    x, y = training_frame()
    with lg.Workspace.open(home) as ws:
        for seed in (0, 1):
            model = GradientBoostingClassifier(n_estimators=10, max_depth=2, random_state=seed).fit(x, y)
            ws.models.register(model, name="clf", input_example=x.head(40))
        ws.models.set_alias("clf", "champion", 1)
        ws.models.register(LinearRegression().fit(x, x.f0 * 2.0), name="reg", input_example=x.head(40))
        ws.deployments.create("clf-api", "models:/clf@champion", settings={"max_wait_ms": 2})
        ws.deployments.create("reg-api", "models:/reg/1")
    return home


@pytest.fixture
def server_factory(served_workspace: Path) -> Iterator[Callable[..., Server]]:
    """Start servers over ``served_workspace``; every one started is stopped afterwards."""
    started: list[Server] = []

    def make(*args: str, workers: int = 1, home: Path | None = None, ready: bool = True) -> Server:
        server = start_server(home or served_workspace, *args, workers=workers)
        started.append(server)
        if ready:
            server.wait_ready()
        return server

    yield make
    for server in started:
        server.stop(signal.SIGKILL if server.process.poll() is None else signal.SIGTERM, timeout=10)


@pytest.fixture
def server(server_factory: Callable[..., Server]) -> Server:
    """One single-worker server over ``served_workspace``, ready."""
    return server_factory()
