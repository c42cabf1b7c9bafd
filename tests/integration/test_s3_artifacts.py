"""The artifact store contract on S3, against a real S3-compatible server (moto) on 127.0.0.1.

The same ``ArtifactContract`` the local folder passes (``tests/test_artifacts.py``) runs here
unchanged; the tests below it cover what only S3 has: invisible incomplete uploads, a missing
bucket, an unreachable endpoint, and a whole workspace whose artifacts live in a bucket.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import socket
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import lockgate as lg
from lockgate.artifacts import ArtifactStore
from lockgate.errors import IntegrityError, NotFoundError, UnavailableError

pytestmark = pytest.mark.s3

PREFIX = "lockgate"


def _load_contract() -> ModuleType:
    """Import ``tests/test_artifacts.py`` by path (tests are not a package; pytest uses importlib mode)."""
    name = "lockgate_tests_artifact_contract"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).parents[1] / "test_artifacts.py")
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


contract = _load_contract()


def _flip_middle_byte(s3: Any, bucket: str, key: str) -> None:
    data = bytearray(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    data[len(data) // 2] ^= 0xFF
    s3.put_object(Bucket=bucket, Key=key, Body=bytes(data))


def _key(sha256: str) -> str:
    return f"{PREFIX}/objects/{sha256[:2]}/{sha256[2:4]}/{sha256}"


class TestS3ArtifactStore(contract.ArtifactContract):
    @pytest.fixture(autouse=True)
    def _admin(self, s3_admin: Any, s3_bucket: str) -> None:
        self.s3, self.bucket = s3_admin, s3_bucket

    @pytest.fixture
    def store(self, s3_bucket: str, s3_env: str) -> ArtifactStore:
        return ArtifactStore(f"s3://{s3_bucket}/{PREFIX}", s3_endpoint_url=s3_env)

    @pytest.fixture
    def endpoint(self, s3_env: str) -> str:
        return s3_env

    @pytest.fixture
    def spool_dir(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
        # An S3 writer spools the stream to the system temp folder, then uploads it whole.
        spool = tmp_path / "spool"
        spool.mkdir()
        monkeypatch.setattr(tempfile, "tempdir", str(spool))
        return spool

    def raw_objects(self, store: ArtifactStore) -> list[str]:
        listed = self.s3.list_objects_v2(Bucket=self.bucket, Prefix=f"{PREFIX}/objects/")
        return sorted(o["Key"] for o in listed.get("Contents", []))

    def corrupt(self, store: ArtifactStore, sha256: str) -> None:
        _flip_middle_byte(self.s3, self.bucket, _key(sha256))


# -- S3 only -------------------------------------------------------------------------------


def test_requests_stay_on_loopback(s3_bucket: str, s3_env: str, loopback_only: Any) -> None:
    """The loopback guard is not vacuous: it sees the store's connections to moto."""
    store = ArtifactStore(f"s3://{s3_bucket}/{PREFIX}", s3_endpoint_url=s3_env)
    stored = store.put_bytes(b"where did this go?")
    assert store.get_bytes(stored.sha256) == b"where did this go?"
    assert loopback_only.loopback_connects > 0
    assert loopback_only.foreign == []


def test_incomplete_multipart_upload_is_invisible(s3_bucket: str, s3_env: str, s3_admin: Any) -> None:
    """What a writer killed mid-upload leaves on S3: parts, but no object under the final name."""
    store = ArtifactStore(f"s3://{s3_bucket}/{PREFIX}", s3_endpoint_url=s3_env)
    data = b"p" * (5 << 20) + b"tail"
    sha = hashlib.sha256(data).hexdigest()
    upload = s3_admin.create_multipart_upload(Bucket=s3_bucket, Key=_key(sha))
    s3_admin.upload_part(
        Bucket=s3_bucket, Key=_key(sha), UploadId=upload["UploadId"], PartNumber=1, Body=data[: 5 << 20]
    )
    try:
        assert not store.exists(sha)
        assert list(store.iter_objects()) == []
        with pytest.raises(NotFoundError):
            store.get_bytes(sha)
        assert store.put_stream(io.BytesIO(data)).sha256 == sha
        assert store.get_bytes(sha) == data
    finally:
        s3_admin.abort_multipart_upload(Bucket=s3_bucket, Key=_key(sha), UploadId=upload["UploadId"])


def test_listing_is_never_stale(s3_bucket: str, s3_env: str, s3_admin: Any) -> None:
    """Other processes add and delete objects; the store must not answer from a cached listing."""
    store = ArtifactStore(f"s3://{s3_bucket}/{PREFIX}", s3_endpoint_url=s3_env)
    gone, added = b"deleted by another process", b"written by another process"
    sha_gone, sha_added = (hashlib.sha256(b).hexdigest() for b in (gone, added))
    store.put_bytes(gone)
    assert [o.sha256 for o in store.iter_objects()] == [sha_gone]
    s3_admin.delete_object(Bucket=s3_bucket, Key=_key(sha_gone))
    s3_admin.put_object(Bucket=s3_bucket, Key=_key(sha_added), Body=added)
    assert not store.exists(sha_gone)
    with pytest.raises(NotFoundError):
        store.get_bytes(sha_gone)
    assert store.exists(sha_added)
    assert [o.sha256 for o in store.iter_objects()] == [sha_added]


def test_uploads_do_not_wait_for_100_continue(s3_env: str) -> None:
    """botocore asks for ``Expect: 100-continue`` on every PUT, and aiohttp then waits for the
    interim answer with no timeout, so a server that stays silent would hang a write forever.
    The store drops the header; this server records what it was sent and answers at once."""
    seen: list[bytes] = []
    server = socket.create_server(("127.0.0.1", 0))

    def answer_one() -> None:
        conn, _ = server.accept()
        with conn:
            request = b""
            while b"\r\n\r\n" not in request:
                request += conn.recv(65536)
            seen.append(request.split(b"\r\n\r\n", 1)[0].lower())
            conn.sendall(b'HTTP/1.1 200 OK\r\nETag: "0"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n')

    with server:
        thread = threading.Thread(target=answer_one, daemon=True)
        thread.start()
        port = server.getsockname()[1]
        store = ArtifactStore("s3://lockgate-silent/prefix", s3_endpoint_url=f"http://127.0.0.1:{port}")
        store.put_bytes(b"payload")
        thread.join(10)
    assert len(seen) == 1
    assert seen[0].startswith(b"put /lockgate-silent/prefix/objects/")
    assert b"expect:" not in seen[0]


def test_missing_bucket_is_not_found(s3_env: str) -> None:
    store = ArtifactStore("s3://lockgate-no-such-bucket/prefix", s3_endpoint_url=s3_env)
    with pytest.raises(NotFoundError, match="artifact root s3://lockgate-no-such-bucket/prefix does not exist"):
        store.put_bytes(b"nowhere to go")
    assert list(store.iter_objects()) == []


def test_unreachable_endpoint_fails_fast_with_one_sentence(
    s3_env: str, unused_tcp_port: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    closed = f"http://127.0.0.1:{unused_tcp_port}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", closed)
    store = ArtifactStore("s3://lockgate-unreachable/prefix", s3_endpoint_url=closed)
    sha = hashlib.sha256(b"x").hexdigest()
    source = tmp_path / "f.bin"
    source.write_bytes(b"x")
    operations = {
        "put_bytes": lambda: store.put_bytes(b"x"),
        "put_file": lambda: store.put_file(source),
        "get_bytes": lambda: store.get_bytes(sha),
        "exists": lambda: store.exists(sha),
        "download": lambda: store.download(sha, tmp_path / "out" / "f.bin"),
        "open": lambda: store.open(sha),
        "iter_objects": lambda: list(store.iter_objects()),
        "delete": lambda: store.delete(sha),
    }

    def attempt(call: Any) -> tuple[BaseException | None, float]:
        started = time.monotonic()
        try:
            call()
        except Exception as exc:  # noqa: BLE001 - the assertions below say which type is right
            return exc, time.monotonic() - started
        return None, time.monotonic() - started

    # Each operation retries a little with backoff; running them side by side keeps the test short.
    with ThreadPoolExecutor(len(operations)) as pool:
        results = dict(zip(operations, pool.map(attempt, operations.values()), strict=True))

    for name, (error, elapsed) in results.items():
        assert isinstance(error, UnavailableError), f"{name} raised {error!r}"
        message = str(error)
        assert message.startswith("cannot reach the artifact store s3://lockgate-unreachable/prefix ("), name
        assert message.endswith("; check that it is up and the endpoint is right"), name
        assert "\n" not in message, name
        assert "Traceback" not in message, name
        assert error.__cause__ is None, name
        assert error.__suppress_context__, name
        assert elapsed < 10, f"{name} took {elapsed:.1f}s to give up"
    assert not (tmp_path / "out" / "f.bin").exists()


@pytest.fixture
def unused_tcp_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_workspace_end_to_end_on_s3(
    s3_bucket: str, s3_env: str, s3_admin: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sklearn.tree import DecisionTreeClassifier

    monkeypatch.setenv("LOCKGATE_S3_ENDPOINT_URL", s3_env)
    report = tmp_path / "report.txt"
    report.write_text("auc=0.93\n")
    features = [[0.0, 1.0], [1.0, 0.0], [0.0, 0.0], [1.0, 1.0]]
    labels = [0, 1, 0, 1]

    with lg.Workspace.open(tmp_path / "ws", artifact_root=f"s3://{s3_bucket}/{PREFIX}") as ws:
        assert ws.backends()["artifacts"] == "s3"
        with ws.start_run("train", experiment="s3") as run:
            assert run.log_artifact(report, artifact_path="reports") == ["reports/report.txt"]
            mv = run.log_model(DecisionTreeClassifier(random_state=0).fit(features, labels), name="clf")

        (logged,) = ws.runs.artifacts(run.id)
        assert logged["path"] == "reports/report.txt"
        body = s3_admin.get_object(Bucket=s3_bucket, Key=_key(logged["sha256"]))["Body"].read()
        assert body == report.read_bytes()
        assert ws.artifacts.get_bytes(mv.artifact_sha256)  # the model's bytes are in the bucket too

        model = ws.models.load(f"models:/clf/{mv.version}")
        assert list(model.predict(features)) == labels

        _flip_middle_byte(s3_admin, s3_bucket, _key(mv.artifact_sha256))
        with pytest.raises(IntegrityError, match=f"artifact {mv.artifact_sha256[:12]} in s3://{s3_bucket}/"):
            ws.models.load(f"models:/clf/{mv.version}")
