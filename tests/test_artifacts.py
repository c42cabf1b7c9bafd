"""The artifact store contract, and the local-folder backend that must pass it.

``ArtifactContract`` is backend-neutral: a backend's test class subclasses it and supplies
four things (the ``store`` fixture, ``spool_dir`` where partial writes may sit, the raw
object keys as the backend itself sees them, and a way to flip a stored byte). The local
folder runs it here; ``tests/integration/test_s3_artifacts.py`` runs the very same class
against a real S3-compatible server.
"""

from __future__ import annotations

import hashlib
import io
import os
import select
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lockgate.artifacts import ArtifactStore, safe_relpath
from lockgate.errors import IntegrityError, InvalidInputError, NotFoundError

# A stream the kill -9 test feeds a writer: CHUNKS chunks of CHUNK_SIZE bytes, chunk i all i's.
CHUNKS = 40
CHUNK_SIZE = 64 * 1024


def slow_stream_bytes() -> bytes:
    return b"".join(bytes([i]) * CHUNK_SIZE for i in range(1, CHUNKS + 1))


_KILLED_WRITER = textwrap.dedent(
    f"""
    import sys, time
    from lockgate.artifacts import ArtifactStore

    class SlowStream:
        def __init__(self):
            self.sent = 0

        def read(self, size=-1):
            if self.sent == {CHUNKS}:
                return b""
            if self.sent >= 2:
                time.sleep(0.5)
            self.sent += 1
            if self.sent == 3:
                print("writing", flush=True)  # two chunks are already in the temp file
            return bytes([self.sent]) * {CHUNK_SIZE}

    store = ArtifactStore(sys.argv[1], s3_endpoint_url=sys.argv[2] or None)
    store.put_stream(SlowStream())
    print("finished", flush=True)
    """
)


class FailingStream(io.RawIOBase):
    """Yields ``good`` bytes, then raises as a broken disk or socket would."""

    def __init__(self, good: bytes) -> None:
        self._good = io.BytesIO(good)

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        chunk = self._good.read(size)
        if not chunk:
            raise OSError("simulated read failure")
        return chunk


def files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


class ArtifactContract:
    """Every artifact backend passes these tests; subclasses provide the fixtures below."""

    @pytest.fixture
    def store(self) -> ArtifactStore:
        raise NotImplementedError

    @pytest.fixture
    def endpoint(self) -> str | None:
        """The S3 endpoint a separate process needs to reach the same store, if any."""
        return None

    @pytest.fixture
    def spool_dir(self, store: ArtifactStore) -> Path:
        """Where the backend keeps a write in progress (what a killed writer may leave)."""
        raise NotImplementedError

    def raw_objects(self, store: ArtifactStore) -> list[str]:
        """Everything under ``objects/``, listed by the backend itself, not by the store."""
        raise NotImplementedError

    def corrupt(self, store: ArtifactStore, sha256: str) -> None:
        """Flip one byte of the stored object, behind the store's back."""
        raise NotImplementedError

    # -- round trips ---------------------------------------------------------------------

    def test_bytes_round_trip(self, store: ArtifactStore) -> None:
        data = b"model weights \x00\xff"
        stored = store.put_bytes(data)
        assert stored.sha256 == hashlib.sha256(data).hexdigest()
        assert stored.size == len(data)
        assert store.get_bytes(stored.sha256) == data
        assert store.uri(stored.sha256).startswith(store.root + "/objects/")

    def test_empty_bytes_round_trip(self, store: ArtifactStore) -> None:
        stored = store.put_bytes(b"")
        assert stored.size == 0
        assert store.get_bytes(stored.sha256) == b""

    def test_file_round_trip(self, store: ArtifactStore, tmp_path: Path) -> None:
        source = tmp_path / "metrics.json"
        source.write_bytes(b'{"auc": 0.93}')
        stored = store.put_file(source)
        assert store.get_bytes(stored.sha256) == source.read_bytes()

    def test_missing_file_is_not_found(self, store: ArtifactStore, tmp_path: Path) -> None:
        with pytest.raises(NotFoundError, match="does not exist"):
            store.put_file(tmp_path / "nope.bin")

    def test_stream_round_trip_spanning_chunks(self, store: ArtifactStore) -> None:
        data = os.urandom((5 << 19) + 17)  # 2.5 MiB: several 1 MiB reads and a short tail
        stored = store.put_stream(io.BytesIO(data))
        assert (stored.sha256, stored.size) == (hashlib.sha256(data).hexdigest(), len(data))
        with store.open(stored.sha256) as fh:
            assert fh.read() == data

    def test_text_stream_is_refused(self, store: ArtifactStore, spool_dir: Path) -> None:
        with pytest.raises(InvalidInputError, match="binary mode"):
            store.put_stream(io.StringIO("not bytes"))  # type: ignore[arg-type]
        assert files_under(spool_dir) == []

    @settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(data=st.binary(max_size=4096))
    def test_random_bytes_round_trip(self, store: ArtifactStore, data: bytes) -> None:
        # The store is content-addressed, so sharing it between examples is harmless.
        stored = store.put_bytes(data)
        assert stored.sha256 == hashlib.sha256(data).hexdigest()
        assert store.get_bytes(stored.sha256) == data
        assert store.put_stream(io.BytesIO(data)) == stored

    # -- dedup and listing ---------------------------------------------------------------

    def test_same_bytes_are_stored_once(self, store: ArtifactStore, tmp_path: Path) -> None:
        data = b"the same bytes, three ways"
        source = tmp_path / "same.txt"
        source.write_bytes(data)
        results = {store.put_bytes(data), store.put_file(source), store.put_stream(io.BytesIO(data))}
        assert len(results) == 1
        (stored,) = results
        assert len(self.raw_objects(store)) == 1
        assert [o.sha256 for o in store.iter_objects()] == [stored.sha256]

    def test_exists(self, store: ArtifactStore) -> None:
        stored = store.put_bytes(b"present")
        assert store.exists(stored.sha256)
        assert not store.exists(hashlib.sha256(b"absent").hexdigest())

    def test_iter_objects_lists_what_was_stored_with_sizes(self, store: ArtifactStore) -> None:
        assert list(store.iter_objects()) == []
        blobs = [b"a", b"bb" * 100, os.urandom(70_000)]
        expected = {hashlib.sha256(b).hexdigest(): len(b) for b in blobs}
        before = time.time() - 5
        for blob in blobs:
            store.put_bytes(blob)
        listed = list(store.iter_objects())
        assert {o.sha256: o.size for o in listed} == expected
        assert all(o.modified is not None and o.modified >= before for o in listed)

    def test_delete(self, store: ArtifactStore) -> None:
        keep, drop = store.put_bytes(b"keep"), store.put_bytes(b"drop")
        store.delete(drop.sha256)
        assert not store.exists(drop.sha256)
        assert [o.sha256 for o in store.iter_objects()] == [keep.sha256]
        with pytest.raises(NotFoundError):
            store.get_bytes(drop.sha256)
        store.delete(drop.sha256)  # deleting what is gone is not an error
        assert store.get_bytes(keep.sha256) == b"keep"

    # -- reading what is not there, or not right -----------------------------------------

    def test_missing_object_is_not_found(self, store: ArtifactStore, tmp_path: Path) -> None:
        sha = hashlib.sha256(b"never stored").hexdigest()
        for read in (store.get_bytes, store.open, store.verify, lambda s: store.download(s, tmp_path / "out")):
            with pytest.raises(NotFoundError, match=f"artifact {sha[:12]} is missing from {store.root}"):
                read(sha)
        assert not (tmp_path / "out").exists()
        assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")] == []

    @pytest.mark.parametrize(
        "digest",
        [
            "",
            "abc",
            "A" * 64,
            "g" * 64,
            "0" * 63,
            "0" * 65,
            "0" * 64 + "\n",
            "../" + "0" * 61,
            "00/00/" + "0" * 58,
        ],
        ids=["empty", "short", "upper", "non-hex", "63", "65", "newline", "dotdot", "slashes"],
    )
    def test_invalid_digests_are_refused(self, store: ArtifactStore, tmp_path: Path, digest: str) -> None:
        calls = [
            store.exists,
            store.get_bytes,
            store.open,
            store.verify,
            store.delete,
            store.uri,
            lambda d: store.download(d, tmp_path / "out"),
        ]
        for call in calls:
            with pytest.raises(InvalidInputError, match="is not a sha256 digest"):
                call(digest)
        assert not (tmp_path / "out").exists()

    def test_corruption_is_detected(self, store: ArtifactStore, tmp_path: Path) -> None:
        data = b"weights that must not change " * 50
        stored = store.put_bytes(data)
        self.corrupt(store, stored.sha256)
        assert store.exists(stored.sha256)
        assert not store.verify(stored.sha256)
        with pytest.raises(IntegrityError, match=f"artifact {stored.sha256[:12]} in {store.root} is corrupted"):
            store.get_bytes(stored.sha256)
        dest = tmp_path / "downloads" / "model.bin"
        dest.parent.mkdir()
        dest.write_bytes(b"the previous good copy")
        with pytest.raises(IntegrityError, match=f"artifact {stored.sha256[:12]} .*is corrupted"):
            store.download(stored.sha256, dest)
        assert dest.read_bytes() == b"the previous good copy"  # untouched, no half-written file
        assert files_under(dest.parent) == [dest]

    def test_logging_again_repairs_a_corrupted_object(self, store: ArtifactStore) -> None:
        # The IntegrityError message says "log it again"; that has to actually work.
        data = b"log me twice"
        stored = store.put_bytes(data)
        self.corrupt(store, stored.sha256)
        assert store.put_stream(io.BytesIO(data)) == stored
        assert store.get_bytes(stored.sha256) == data

    def test_download_is_verified_and_atomic(self, store: ArtifactStore, tmp_path: Path) -> None:
        data = os.urandom(3 << 20)
        stored = store.put_bytes(data)
        dest = tmp_path / "nested" / "dir" / "weights.bin"
        assert store.download(stored.sha256, dest) == dest
        assert dest.read_bytes() == data
        assert store.download(stored.sha256, dest) == dest  # overwriting is fine
        assert files_under(tmp_path / "nested") == [dest]  # no temp files left beside it

    # -- failed and killed writers -------------------------------------------------------

    def test_failing_stream_leaves_nothing_behind(self, store: ArtifactStore, spool_dir: Path) -> None:
        with pytest.raises(OSError, match="simulated read failure"):
            store.put_stream(FailingStream(os.urandom(3 << 20)))
        assert self.raw_objects(store) == []
        assert list(store.iter_objects()) == []
        assert files_under(spool_dir) == []

    def test_killed_writer_leaves_no_visible_object(
        self, store: ArtifactStore, spool_dir: Path, endpoint: str | None
    ) -> None:
        env = {**os.environ, "TMPDIR": str(spool_dir)}  # where an S3 writer spools the stream
        writer = subprocess.Popen(
            [sys.executable, "-c", _KILLED_WRITER, store.root, endpoint or ""],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        try:
            assert writer.stdout is not None
            ready, _, _ = select.select([writer.stdout], [], [], 20)
            line = writer.stdout.readline() if ready else b""
            assert line == b"writing\n", writer.stderr.read() if writer.stderr else line
            deadline = time.monotonic() + 5
            while not any(p.stat().st_size for p in files_under(spool_dir)) and time.monotonic() < deadline:
                time.sleep(0.02)
            os.kill(writer.pid, signal.SIGKILL)
        finally:
            writer.kill()
            writer.communicate(timeout=10)
        assert writer.returncode == -signal.SIGKILL

        partial = files_under(spool_dir)
        assert len(partial) == 1
        assert 0 < partial[0].stat().st_size < CHUNKS * CHUNK_SIZE  # it really died mid-write
        assert self.raw_objects(store) == []
        assert list(store.iter_objects()) == []

        data = slow_stream_bytes()
        sha = hashlib.sha256(data).hexdigest()
        assert not store.exists(sha)
        assert store.put_stream(io.BytesIO(data)).sha256 == sha
        assert store.get_bytes(sha) == data
        assert [o.sha256 for o in store.iter_objects()] == [sha]


class TestLocalArtifactStore(ArtifactContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> ArtifactStore:
        return ArtifactStore(str(tmp_path / "store"))

    @pytest.fixture
    def spool_dir(self, store: ArtifactStore) -> Path:
        return Path(store.root) / "tmp"

    def raw_objects(self, store: ArtifactStore) -> list[str]:
        objects = Path(store.root) / "objects"
        return [str(p.relative_to(objects)) for p in files_under(objects)]

    def corrupt(self, store: ArtifactStore, sha256: str) -> None:
        path = Path(store.root, "objects", sha256[:2], sha256[2:4], sha256)
        path.chmod(0o644)  # objects are stored read-only
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))


# -- local-only behaviour ------------------------------------------------------------------


def test_local_objects_are_read_only_and_laid_out_by_hash(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path / "store") + "/")
    stored = store.put_bytes(b"x")
    path = tmp_path / "store" / "objects" / stored.sha256[:2] / stored.sha256[2:4] / stored.sha256
    assert path.read_bytes() == b"x"
    assert path.stat().st_mode & 0o222 == 0
    assert store.root == str(tmp_path / "store")


def test_putting_again_makes_an_object_young_again(tmp_path: Path) -> None:
    # gc keeps objects younger than an hour because a writer stores bytes before the record that
    # points at them; a put that found the object already there must reset that clock.
    store = ArtifactStore(str(tmp_path / "store"))
    stored = store.put_bytes(b"reused")
    os.utime(tmp_path / "store" / "objects" / stored.sha256[:2] / stored.sha256[2:4] / stored.sha256, (0, 0))
    assert [o.modified for o in store.iter_objects()] == [0]
    store.put_bytes(b"reused")
    (listed,) = store.iter_objects()
    assert listed.modified is not None
    assert listed.modified > time.time() - 60


def test_empty_root_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="artifact root"):
        ArtifactStore("")


# -- safe_relpath --------------------------------------------------------------------------

_SEGMENT = st.text(alphabet="abcxyzABC0129_-. ", min_size=1, max_size=8).filter(lambda s: s not in (".", ".."))


@given(st.lists(_SEGMENT, min_size=1, max_size=5).map("/".join))
def test_safe_relpath_accepts_ordinary_relative_paths(name: str) -> None:
    assert safe_relpath(name) == name


@given(
    st.one_of(
        st.text(max_size=30),
        st.lists(st.sampled_from(["a", "..", ".", "", "~", "\\", "/", "b.txt", "\x00", "C:"]), max_size=6).map(
            "/".join
        ),
    )
)
def test_safe_relpath_never_returns_an_escaping_path(name: str) -> None:
    try:
        result = safe_relpath(name)
    except InvalidInputError:
        return
    parts = result.split("/")
    assert ".." not in parts
    assert "" not in parts
    assert "." not in parts
    assert not result.startswith(("/", "~"))
    assert "\\" not in result
    assert "\x00" not in result
    assert safe_relpath(result) == result


@pytest.mark.parametrize(
    "name", ["", ".", "./", "..", "../x", "a/../../x", "/etc/passwd", "a\\b", "~/x", "~root", "./~", ".//~/x", "a\x00b"]
)
def test_safe_relpath_refuses_escapes(name: str) -> None:
    with pytest.raises(InvalidInputError, match="artifact path"):
        safe_relpath(name)


@pytest.mark.parametrize(("name", "normal"), [("a//b", "a/b"), ("./a/./b/", "a/b"), ("plots/roc.png", "plots/roc.png")])
def test_safe_relpath_normalises(name: str, normal: str) -> None:
    assert safe_relpath(name) == normal
