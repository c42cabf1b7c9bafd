"""A demo chapter's ``lockgate serve``: started as a user would, spoken to over HTTP, stopped
as an orchestrator stops it."""

from __future__ import annotations

import contextlib
import http.client
import json
import re
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from lockgate.errors import UnavailableError

__all__ = ["call", "start_server", "stop_server", "wait_ready"]

_ANNOUNCE = re.compile(r"on http://(127\.0\.0\.1:\d+)")


def start_server(home: Path, now: datetime, *extra: str) -> tuple[subprocess.Popen[str], str, threading.Thread]:
    """``lockgate serve`` on a free port, as a user starts it; its address once it says so."""
    command = [sys.executable, "-m", "lockgate", "--home", str(home), "serve", "--port", "0", "--poll", "0.5", *extra]
    process = subprocess.Popen(
        [*command, "--feature-time", now.isoformat()],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    assert process.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        found = _ANNOUNCE.search(line)
        if found:
            reader = threading.Thread(target=_drain, args=(process,), daemon=True)
            reader.start()
            return process, found.group(1), reader
    process.kill()
    raise UnavailableError(f"lockgate serve did not start: {''.join(lines)[-400:]}")


def stop_server(process: subprocess.Popen[str], reader: threading.Thread) -> None:
    """SIGTERM, as an orchestrator stops a server: it drains and writes its log out."""
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)
    reader.join(5)  # the server's output ends when it exits
    if process.stdout is not None:
        process.stdout.close()


def _drain(process: subprocess.Popen[str]) -> None:
    assert process.stdout is not None
    with contextlib.suppress(ValueError, OSError):  # closed by _stop once the server exited
        for _ in process.stdout:
            pass


def call(conn: http.client.HTTPConnection, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    payload = None if body is None else json.dumps(body)
    conn.request(method, path, body=payload, headers={"content-type": "application/json"})
    response = conn.getresponse()
    data = response.read()
    try:
        return response.status, json.loads(data)
    except ValueError:
        return response.status, data.decode(errors="replace")


def wait_ready(address: str, timeout: float = 60.0) -> None:
    host, port = address.split(":")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            conn = http.client.HTTPConnection(host, int(port), timeout=5)
            status, _ = call(conn, "GET", "/v2/health/ready")
            conn.close()
            if status == 200:
                return
        time.sleep(0.1)
    raise UnavailableError(f"the demo server at {address} was not ready within {timeout:.0f} s")
