"""The online store contract on Redis, against the real server at 127.0.0.1:6379.

The same ``OnlineStoreContract`` the SQLite store passes (``tests/features/test_online.py``)
runs here unchanged; the tests below it cover what only Redis has: keys that expire with the
view's ttl, values already past it that are never stored, and a URL that does not answer.
Every test writes under its own key prefix and deletes it afterwards.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from lockgate.errors import UnavailableError
from lockgate.features._online import OnlineStore, open_online_store
from tests.conftest import service_missing

pytestmark = pytest.mark.redis

REDIS_URL = os.environ.get("LOCKGATE_TEST_REDIS", "redis://127.0.0.1:6379/0")


def _load_contract() -> ModuleType:
    """Import ``tests/features/test_online.py`` by path (tests are not a package; pytest uses importlib mode)."""
    name = "lockgate_tests_online_contract"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).parents[1] / "features" / "test_online.py")
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


contract = _load_contract()
make_view, rows, at, values = contract.make_view, contract.rows, contract.at, contract.values


@pytest.fixture
def admin() -> Iterator[Any]:
    """A plain client on the test server, for looking behind the store's back."""
    try:
        import redis
    except ImportError:
        service_missing("Redis", "the redis package is not installed")
        raise
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2, socket_timeout=5)
    try:
        client.ping()
    except redis.RedisError as exc:
        client.close()
        service_missing(f"Redis at {REDIS_URL}", str(exc))
        raise
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def prefix(admin: Any) -> Iterator[str]:
    prefix = f"lockgate-test-{uuid.uuid4().hex[:12]}:"
    try:
        yield prefix
    finally:
        keys = list(admin.scan_iter(match=prefix + "*", count=1000))
        if keys:
            admin.unlink(*keys)


class TestRedisOnlineStore(contract.OnlineStoreContract):  # type: ignore[name-defined]
    @pytest.fixture
    def store(self, prefix: str, tmp_path: Path) -> Iterator[OnlineStore]:
        store = open_online_store(f"{REDIS_URL}?prefix={prefix}", home=tmp_path)
        try:
            yield store
        finally:
            store.close()

    def test_keys_name_the_view_and_version_and_expire_with_the_ttl(
        self, store: OnlineStore, admin: Any, prefix: str
    ) -> None:
        assert store.backend == "redis"
        view = make_view(ttl="1d")
        store.write(view, rows((1, 1.0, 10.0, 1)))
        key = f"{prefix}fv:card_stats:{view.version}:1"
        assert admin.hgetall(key) == {
            b"spend": b"10",
            b"count": b"1",
            b":et": str(int(at(1.0).timestamp() * 1_000_000)).encode(),
            b":ct": b"0",
        }
        expected_ms = (at(1.0).timestamp() + 86400 - time.time()) * 1000
        assert admin.pttl(key) == pytest.approx(expected_ms, abs=5000)
        # The expiry follows the value: a newer one pushes it out.
        store.write(view, rows((1, 3.0, 30.0, 3)))
        assert admin.pttl(key) == pytest.approx(expected_ms + 2 * 3600 * 1000, abs=5000)

    def test_a_value_past_its_ttl_is_not_stored(self, store: OnlineStore, admin: Any, prefix: str) -> None:
        view = make_view(ttl="1h")
        assert store.write(view, rows((1, -48.0, 10.0, 1), (2, 5.5, 20.0, 2))) == 1
        assert admin.exists(f"{prefix}fv:card_stats:{view.version}:1") == 0
        # So last_known has nothing left to answer once Redis dropped the value.
        assert store.read(view, [{"card_id": 1}, {"card_id": 2}]).statuses == ["missing", "fresh"]

    def test_watermarks_live_in_redis(self, store: OnlineStore, admin: Any, prefix: str) -> None:
        view = make_view()
        store.materialize(view, rows((1, 1.0, 10.0, 1)), end=at(2))
        raw = admin.hget(f"{prefix}watermarks", f"card_stats:{view.version}")
        assert int(raw) == int(at(2).timestamp() * 1_000_000)

    def test_a_failure_mid_write_keeps_whole_chunks_and_the_old_watermark(
        self, store: OnlineStore, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from lockgate.features import _online_redis

        monkeypatch.setattr(_online_redis, "_CHUNK", 10)
        view = make_view()
        history = rows(*[(i, 1.0, float(i), i) for i in range(50)])

        def progress(read: int, written: int) -> None:
            if written >= 20:
                raise ConnectionError("lost Redis")

        with pytest.raises(ConnectionError):
            store.materialize(view, history, end=at(2), progress=progress)
        assert store.get_watermark(view) is None
        assert values(store, view, 0, 19, 20, 49) == [0.0, 19.0, None, None]
        rerun = store.materialize(view, history, end=at(2))
        assert (rerun.entities, rerun.written) == (50, 30)
        assert store.get_watermark(view) == at(2)

    def test_password_is_hidden_from_the_url(self, prefix: str, tmp_path: Path) -> None:
        secret_url = REDIS_URL.replace("redis://", "redis://user:hunter2@")
        with pytest.raises(UnavailableError, match="refused the credentials") as caught:
            open_online_store(f"{secret_url}?prefix={prefix}", home=tmp_path)
        assert "hunter2" not in str(caught.value)
        assert "***" in str(caught.value)


def test_a_closed_port_is_unavailable_at_once(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(UnavailableError, match=rf"redis://127.0.0.1:{port}/0 does not answer") as caught:
        open_online_store(f"redis://127.0.0.1:{port}/0", home=tmp_path)
    assert time.monotonic() - started < 1.0
    message = str(caught.value)
    assert message.count(". ") == 0
    assert "start Redis" in message


def test_a_server_that_never_answers_is_unavailable_within_about_two_seconds(tmp_path: Path) -> None:
    # Accepts the TCP connection, then says nothing: the case a plain connect check misses.
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        port = server.getsockname()[1]
        held: list[socket.socket] = []
        stop = threading.Event()

        def accept() -> None:
            server.settimeout(0.2)
            while not stop.is_set():
                try:
                    conn, _ = server.accept()
                    held.append(conn)
                except TimeoutError:
                    continue

        thread = threading.Thread(target=accept, daemon=True)
        thread.start()
        try:
            started = time.monotonic()
            with pytest.raises(UnavailableError, match="does not answer"):
                open_online_store(f"redis://127.0.0.1:{port}/0", home=tmp_path)
            assert time.monotonic() - started < 3.0
        finally:
            stop.set()
            thread.join()
            for conn in held:
                conn.close()
