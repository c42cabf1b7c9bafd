"""A content-addressed artifact store over fsspec.

Objects are stored under ``objects/ab/cd/<sha256>``; the hash is the name, so the same bytes
are stored once and a read can always prove it got what was written. A local folder is the
default backend; ``s3://bucket/prefix`` selects S3 (or any S3-compatible server).

Writes are atomic: on a local folder the bytes go to ``tmp/`` first, are flushed to disk and
renamed into place; on S3 an object becomes visible only when its upload completes, so a killed
writer never leaves a partial object under its final name (a local ``tmp/`` file may remain).

Every put writes, even when the object already exists: the bytes are the same, so this is
harmless, and it repairs a damaged object ("log it again" really fixes it) and refreshes the
object's age, so ``Workspace.gc`` cannot collect it between the put and the record that
references it.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import os
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any

import fsspec

from lockgate.errors import (
    IntegrityError,
    InvalidInputError,
    NotFoundError,
    UnavailableError,
)
from lockgate.hashing import sha256_stream

__all__ = ["ArtifactStore", "StoredObject", "safe_relpath"]

_CHUNK = 1 << 20
_HEX = frozenset("0123456789abcdef")

# How lockgate talks to S3: a user must hear "unreachable" in seconds, not minutes. Left to
# their defaults, botocore (legacy mode: 5 attempts with backoff) and s3fs (5 more rounds of
# those on timeouts) keep a refused connection waiting ~12 s and a silent server ~6 minutes.
# Here botocore alone retries, 3 attempts in all (a refused connection gives up in ~2 s, a
# server that never answers in under a minute), and s3fs is told to try once (``retries``).
_S3_CONFIG: dict[str, Any] = {
    "connect_timeout": 3,
    "read_timeout": 15,
    "retries": {"total_max_attempts": 3, "mode": "standard"},
}
_S3FS_RETRIES = 1


@dataclass(frozen=True, slots=True)
class StoredObject:
    """One object in the store."""

    sha256: str
    size: int
    modified: float | None = None


def safe_relpath(name: str) -> str:
    """Normalise an artifact path, refusing anything that could escape its root.

    >>> safe_relpath("plots/roc.png")
    'plots/roc.png'
    """
    if not name or "\x00" in name or "\\" in name:
        raise InvalidInputError(f"artifact path {name!r} is not allowed; use a relative path like 'plots/roc.png'")
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or str(path).startswith("~"):
        raise InvalidInputError(
            f"artifact path {name!r} tries to leave the artifact root; use a relative path without '..'"
        )
    if not path.parts:
        raise InvalidInputError(f"artifact path {name!r} names no file; use a relative path like 'plots/roc.png'")
    return str(path)


def _is_sha256(value: object) -> bool:
    return isinstance(value, str) and len(value) == 64 and _HEX.issuperset(value)


class ArtifactStore:
    """Content-addressed bytes, on a local folder or an object store."""

    def __init__(self, root: str, *, s3_endpoint_url: str | None = None) -> None:
        self.root = root.rstrip("/")
        if not self.root:
            raise InvalidInputError(f"artifact root {root!r} is empty; use a folder or s3://bucket/prefix")
        options: dict[str, Any] = {}
        if self.root.startswith("s3://"):
            options["config_kwargs"] = dict(_S3_CONFIG)
            # Other processes write and delete objects; a cached listing would answer
            # ``exists`` and ``iter_objects`` from a stale view of the bucket.
            options["use_listings_cache"] = False
            if s3_endpoint_url:
                options["client_kwargs"] = {"endpoint_url": s3_endpoint_url}
        try:
            if self.root.startswith("s3://"):
                options["session"] = _s3_session()
            self._fs, self._base = fsspec.core.url_to_fs(self.root, **options)
        except (ImportError, ValueError) as exc:
            raise UnavailableError(
                f"cannot open artifact root {self.root} ({exc}); install lockgate[s3] for s3:// roots"
            ) from None
        self._unreachable, self._backend_errors = _backend_errors()
        self.is_local = "file" in _protocols(self._fs)
        if "session" in options:
            # Only lockgate's stores share this instance (its options hold lockgate's session).
            self._fs.retries = _S3FS_RETRIES
        if self.is_local:
            with self._guard():
                Path(self._base, "objects").mkdir(parents=True, exist_ok=True)
                Path(self._base, "tmp").mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"ArtifactStore({self.root!r})"

    def uri(self, sha256: str) -> str:
        return f"{self.root}/{self._key(sha256)}"

    def _key(self, sha256: str) -> str:
        if not _is_sha256(sha256):
            raise InvalidInputError(f"{sha256!r} is not a sha256 digest; pass 64 lowercase hex characters")
        return f"objects/{sha256[:2]}/{sha256[2:4]}/{sha256}"

    def _path(self, sha256: str) -> str:
        return f"{self._base}/{self._key(sha256)}"

    # -- writing ---------------------------------------------------------------------------

    def put_bytes(self, data: bytes) -> StoredObject:
        """Store ``data``; returns its digest and size."""
        sha = hashlib.sha256(data).hexdigest()
        if self.is_local:
            self._put_local(data, sha)
        else:
            path = self._path(sha)
            with self._guard():
                self._fs.pipe_file(path, bytes(data))
        return StoredObject(sha, len(data))

    def put_file(self, path: str | Path) -> StoredObject:
        """Store a local file's bytes, hashing them while they are copied."""
        source = Path(path)
        if not source.is_file():
            raise NotFoundError(f"file {source} does not exist; check the path")
        with open(source, "rb") as fh:
            return self.put_stream(fh)

    def put_stream(self, stream: IO[bytes]) -> StoredObject:
        """Store everything ``stream`` yields, hashing it on the way; nothing is kept if reading fails."""
        digest = hashlib.sha256()
        size = 0
        tmp = self._new_tmp()
        try:
            with open(tmp, "wb") as out:
                while chunk := stream.read(_CHUNK):
                    if not isinstance(chunk, (bytes, bytearray, memoryview)):
                        raise InvalidInputError(
                            f"put_stream read {type(chunk).__name__}, not bytes; open the file in binary mode ('rb')"
                        )
                    digest.update(chunk)
                    with self._guard():
                        out.write(chunk)
                    size += len(chunk)
                if self.is_local:
                    with self._guard():
                        out.flush()
                        os.fsync(out.fileno())
            sha = digest.hexdigest()
            self._commit(tmp, sha)
        finally:
            tmp.unlink(missing_ok=True)
        return StoredObject(sha, size)

    def _put_local(self, data: bytes, sha: str) -> None:
        tmp = self._new_tmp()
        try:
            with self._guard(), open(tmp, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            self._commit(tmp, sha)
        finally:
            tmp.unlink(missing_ok=True)

    def _new_tmp(self) -> Path:
        directory = f"{self._base}/tmp" if self.is_local else None
        with self._guard():
            fd, name = tempfile.mkstemp(dir=directory, prefix="lockgate-put-", suffix=".part")
        os.close(fd)
        return Path(name)

    def _commit(self, tmp: Path, sha: str) -> None:
        """Move a complete, flushed temp file to the object's final name in one step."""
        with self._guard():
            if self.is_local:
                final = Path(self._path(sha))
                final.parent.mkdir(parents=True, exist_ok=True)
                os.chmod(tmp, 0o444)
                os.replace(tmp, final)
            else:
                self._fs.put_file(str(tmp), self._path(sha))

    # -- reading ---------------------------------------------------------------------------

    def exists(self, sha256: str) -> bool:
        path = self._path(sha256)
        with self._guard():
            return bool(self._fs.exists(path))

    def get_bytes(self, sha256: str) -> bytes:
        """Read an object whole, refusing it if its bytes no longer match their digest."""
        path = self._path(sha256)
        with self._guard(sha256):
            data: bytes = self._fs.cat_file(path)
        actual = hashlib.sha256(data).hexdigest()
        if actual != sha256:
            raise IntegrityError(self._corrupted(sha256, actual))
        return data

    def download(self, sha256: str, dest: str | Path) -> Path:
        """Copy an object to a local file, verified, written atomically."""
        path = self._path(sha256)
        target = Path(dest)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
        digest = hashlib.sha256()
        try:
            with self._guard(sha256):
                src = self._fs.open(path, "rb")
            with src, open(tmp, "wb") as out:
                while True:
                    with self._guard(sha256):
                        chunk = src.read(_CHUNK)
                    if not chunk:
                        break
                    digest.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            actual = digest.hexdigest()
            if actual != sha256:
                raise IntegrityError(self._corrupted(sha256, actual))
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        return target

    def open(self, sha256: str) -> IO[bytes]:
        """Open an object for streaming; callers that need proof use ``get_bytes`` or ``download``."""
        path = self._path(sha256)
        with self._guard(sha256):
            fh: IO[bytes] = self._fs.open(path, "rb")
        return fh

    def verify(self, sha256: str) -> bool:
        """True when the stored bytes still hash to their name."""
        with self._guard(sha256), self.open(sha256) as fh:
            return sha256_stream(fh)[0] == sha256

    def _corrupted(self, sha256: str, actual: str) -> str:
        return (
            f"artifact {sha256[:12]} in {self.root} is corrupted (its bytes hash to {actual[:12]}); "
            "restore it from a backup or log it again"
        )

    # -- named objects ---------------------------------------------------------------------
    # Some bytes are found by name, not by hash: a step's checkpoints are listed by a prefix
    # the runner derives (pipeline run, step, cache key) on whichever machine resumes it.
    # They live under ``named/``, outside ``objects/``, so ``gc`` never sweeps them.

    def _named(self, name: str) -> str:
        return f"{self._base}/named/{safe_relpath(name)}"

    def put_named(self, name: str, data: bytes) -> None:
        """Write ``data`` under ``name`` atomically (a reader sees all of it or nothing)."""
        path = self._named(name)
        if not self.is_local:
            with self._guard():
                self._fs.pipe_file(path, bytes(data))
            return
        tmp = self._new_tmp()
        try:
            with self._guard():
                with open(tmp, "wb") as out:
                    out.write(data)
                    out.flush()
                    os.fsync(out.fileno())
                Path(path).parent.mkdir(parents=True, exist_ok=True)
                os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)

    def get_named(self, name: str) -> bytes:
        with self._guard():
            data: bytes = self._fs.cat_file(self._named(name))
        return data

    def list_named(self, prefix: str) -> list[str]:
        """Names under ``prefix`` (a folder-like path), sorted; empty when there are none."""
        base = self._named(prefix)
        try:
            with self._guard():
                found = self._fs.find(base)
        except NotFoundError:
            return []
        root = f"{self._base}/named/"
        return sorted(str(p).split(root, 1)[-1] for p in found)

    def delete_named(self, name: str) -> None:
        path = self._named(name)
        try:
            with self._guard():
                self._fs.rm_file(path)
        except NotFoundError:
            pass

    # -- housekeeping ----------------------------------------------------------------------

    def iter_objects(self) -> Iterator[StoredObject]:
        """Every stored object, with size and modification time where the backend knows it."""
        base = f"{self._base}/objects"
        try:
            with self._guard():
                found = self._fs.find(base, detail=True)
        except NotFoundError:
            return
        for path, info in sorted(found.items()):
            name = str(path).rsplit("/", 1)[-1]
            if _is_sha256(name) and str(path).endswith(self._key(name)):
                yield StoredObject(name, int(info.get("size") or 0), _mtime(info))

    def modified(self, sha256: str) -> float | None:
        """When the object was last written (epoch seconds), None if it is gone or unknown."""
        try:
            with self._guard(sha256):
                return _mtime(self._fs.info(self._path(sha256)))
        except NotFoundError:
            return None

    def delete(self, sha256: str) -> None:
        path = self._path(sha256)
        with self._guard():
            if self.is_local:
                Path(path).unlink(missing_ok=True)
            else:
                self._fs.rm_file(path)

    @contextmanager
    def _guard(self, sha256: str | None = None) -> Iterator[None]:
        """Turn backend failures (OSError, botocore errors) into lockgate's one-sentence errors."""
        try:
            yield
        except FileNotFoundError:
            if sha256 is not None:
                raise NotFoundError(
                    f"artifact {sha256[:12]} is missing from {self.root}; re-log it or restore it"
                ) from None
            raise NotFoundError(
                f"artifact root {self.root} does not exist; create the bucket or folder, or fix artifact_root"
            ) from None
        except PermissionError as exc:
            raise UnavailableError(
                f"the artifact store {self.root} refused access ({_one_line(exc)}); "
                "check its credentials or permissions"
            ) from None
        except self._unreachable as exc:
            raise UnavailableError(
                f"cannot reach the artifact store {self.root} ({_one_line(exc)}); "
                "check that it is up and the endpoint is right"
            ) from None
        except self._backend_errors as exc:
            raise UnavailableError(
                f"the artifact store {self.root} failed ({_one_line(exc)}); "
                "check its credentials and that it is reachable and writable"
            ) from None


@functools.cache
def _s3_session() -> Any:
    """The aiobotocore session every S3 store uses, without ``Expect: 100-continue`` on uploads.

    botocore adds that header to every PUT; synchronous botocore sends the body anyway after
    a second without an answer, but aiohttp (under s3fs) waits for the interim response with
    no timeout at all, so a server that accepts the connection and stays silent hangs a write
    forever. Without the header the read timeout applies, as it does to every other request.
    """
    session = importlib.import_module("aiobotocore.session").AioSession()
    session.unregister("before-call.s3", importlib.import_module("botocore.handlers").add_expect_header)
    return session


def _backend_errors() -> tuple[tuple[type[BaseException], ...], tuple[type[BaseException], ...]]:
    """``(cannot reach the store, any other backend failure)``, with botocore's when it is installed."""
    unreachable: list[type[BaseException]] = [ConnectionError, TimeoutError]
    failed: list[type[BaseException]] = [OSError]
    try:
        boto = importlib.import_module("botocore.exceptions")
    except ImportError:
        pass
    else:
        unreachable += [boto.ConnectionError, boto.HTTPClientError]
        failed.append(boto.BotoCoreError)
    return tuple(unreachable), tuple(failed)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text.rstrip(".")


def _protocols(fs: Any) -> tuple[str, ...]:
    proto = fs.protocol
    return tuple(proto) if isinstance(proto, (tuple, list)) else (proto,)


def _mtime(info: dict[str, Any]) -> float | None:
    for key in ("mtime", "LastModified", "last_modified", "created"):
        value = info.get(key)
        if value is None:
            continue
        if hasattr(value, "timestamp"):
            return float(value.timestamp())
        try:
            return float(value)
        except (TypeError, ValueError):
            continue
    return None
