"""Shared fixtures: workspaces on every metadata backend, and real services.

Tests that need PostgreSQL or Redis talk to the real servers on 127.0.0.1. On a laptop
without them those tests skip with a reason; with ``LOCKGATE_REQUIRE_SERVICES=1`` (as CI
sets) a missing service fails the test instead.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import lockgate as lg

PG_ADMIN_URL = os.environ.get("LOCKGATE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
REQUIRE = os.environ.get("LOCKGATE_REQUIRE_SERVICES", "") not in ("", "0", "false")


def service_missing(what: str, why: str) -> None:
    message = f"{what} is not available ({why})"
    if REQUIRE:
        pytest.fail(f"{message}, and LOCKGATE_REQUIRE_SERVICES=1 requires it")
    pytest.skip(message)


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test reads the developer's own LOCKGATE_* settings or workspace."""
    for key in list(os.environ):
        if key.startswith("LOCKGATE_") and key not in ("LOCKGATE_REQUIRE_SERVICES", "LOCKGATE_TEST_PG"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("LOCKGATE_CAPTURE_CODE", "false")


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database, dropped afterwards."""
    try:
        import psycopg
    except ImportError:
        service_missing("PostgreSQL", "psycopg is not installed")
        raise
    name = f"lockgate_test_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        service_missing("PostgreSQL at 127.0.0.1:5432", str(exc).strip().splitlines()[0])
        raise
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgres"])
def backend_ws(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[lg.Workspace]:
    """A workspace on each metadata backend: the contract every backend must pass."""
    if request.param == "sqlite":
        ws = lg.Workspace.open(tmp_path / "ws")
    else:
        url = request.getfixturevalue("pg_url")
        ws = lg.Workspace.open(tmp_path / "ws", database_url=url, upgrade=True)
    try:
        yield ws
    finally:
        ws.close()


@pytest.fixture
def ws(tmp_path: Path) -> Iterator[lg.Workspace]:
    """A fresh embedded workspace (SQLite + local artifacts)."""
    workspace = lg.Workspace.open(tmp_path / "ws")
    try:
        yield workspace
    finally:
        workspace.close()


# Property tests explore at random on a laptop; in CI the same examples every time, so a
# red build always points at a change, never at luck.
from hypothesis import settings as _hypothesis_settings  # noqa: E402

_hypothesis_settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
_hypothesis_settings.register_profile("dev", deadline=None)
_hypothesis_settings.load_profile("ci" if os.environ.get("CI") else "dev")


# -- a hang after the last test -----------------------------------------------------------------
# Interpreter exit joins non-daemon threads, process-pool managers and multiprocessing children;
# one that never ends keeps pytest alive after its summary (seen once in CI, 85 minutes past a
# green run). The watchdog prints every thread's stack and the child processes still alive, so
# the culprit is named in the log, then leaves with pytest's own status.
_EXIT_GRACE_S = 90.0
_session_status: list[int] = []


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _session_status.append(int(exitstatus))


def pytest_unconfigure(config: pytest.Config) -> None:
    import faulthandler
    import subprocess
    import sys
    import threading

    status = _session_status[-1] if _session_status else 1

    def watchdog() -> None:
        sys.stderr.write(f"\npytest did not exit within {_EXIT_GRACE_S:.0f} s of its summary; stacks follow\n")
        faulthandler.dump_traceback(all_threads=True)
        children = subprocess.run(
            ["ps", "-o", "pid,stat,etime,args", "--ppid", str(os.getpid())], capture_output=True, text=True
        )
        sys.stderr.write(f"child processes still alive:\n{children.stdout}\n")
        sys.stderr.flush()
        os._exit(status)

    timer = threading.Timer(_EXIT_GRACE_S, watchdog)
    timer.daemon = True
    timer.start()
