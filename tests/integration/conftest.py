"""A real S3-compatible server for the integration tests: moto's standalone server on 127.0.0.1.

The server is started once per session; every test gets its own bucket and an environment
with fake credentials that points every AWS client at that server, so no request can reach
real AWS (or the instance-metadata service). ``loopback_only`` proves it: it records every
socket connect and DNS lookup the test makes and fails the test if one is not for 127.0.0.1.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

_LOOPBACK = {"127.0.0.1", "::1", "localhost"}


class _ConnectAudit:
    """Records non-loopback connects while active; audit hooks cannot be removed, so it toggles."""

    def __init__(self) -> None:
        self.active = False
        self.loopback_connects = 0
        self.foreign: list[str] = []

    def __call__(self, event: str, args: tuple[Any, ...]) -> None:
        if not self.active:
            return
        if event == "socket.connect":
            address = args[1]
            host = address[0] if isinstance(address, tuple) else None
            if host is None:  # a Unix socket: local by definition
                return
            if host in _LOOPBACK:
                self.loopback_connects += 1
            else:
                self.foreign.append(f"connect to {address!r}")
        elif event == "socket.getaddrinfo":
            host = args[0]
            if isinstance(host, bytes):
                host = host.decode()
            if host is not None and host not in _LOOPBACK:
                self.foreign.append(f"DNS lookup of {host!r}")


_AUDIT = _ConnectAudit()
sys.addaudithook(_AUDIT)


@pytest.fixture
def loopback_only() -> Iterator[_ConnectAudit]:
    _AUDIT.active, _AUDIT.loopback_connects, _AUDIT.foreign = True, 0, []
    try:
        yield _AUDIT
    finally:
        _AUDIT.active = False
    assert _AUDIT.foreign == [], f"the test talked to something other than 127.0.0.1: {_AUDIT.foreign}"


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """The URL of a moto S3 server on a free port of 127.0.0.1, for the whole session."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


_FAKE_CREDENTIALS = {"aws_access_key_id": "lockgate-test", "aws_secret_access_key": "lockgate-test-secret"}


@pytest.fixture(scope="session")
def s3_admin(s3_endpoint: str) -> Iterator[Any]:
    """A boto3 client on the moto server, for setting up and inspecting buckets behind the store's back."""
    client = boto3.session.Session(**_FAKE_CREDENTIALS, region_name="us-east-1").client("s3", endpoint_url=s3_endpoint)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def s3_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, s3_endpoint: str, loopback_only: Any) -> str:
    """Fake credentials, and every AWS client pointed at the moto server; returns its URL."""
    for key in list(os.environ):
        if key.startswith("AWS_") or key.lower() in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", _FAKE_CREDENTIALS["aws_access_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", _FAKE_CREDENTIALS["aws_secret_access_key"])
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    # A developer's ~/.aws (profiles, SSO, credential_process) must not take part.
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    return s3_endpoint


@pytest.fixture
def s3_bucket(s3_env: str, s3_admin: Any) -> str:
    """A fresh, empty bucket on the moto server."""
    name = f"lockgate-test-{uuid.uuid4().hex[:12]}"
    s3_admin.create_bucket(Bucket=name)
    return name
