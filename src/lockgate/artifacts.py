"""A content-addressed artifact store over fsspec.

Objects are stored under ``objects/ab/cd/<sha256>``; the hash is the name, so the same bytes
are stored once and a read can always prove it got what was written. A local folder is the
default backend; ``s3://bucket/prefix`` selects S3 (or any S3-compatible server).

Writes are atomic: on a local folder the bytes go to ``tmp/`` first and are renamed into
place; on S3 an object becomes visible only when its upload completes, so a killed writer
never leaves a partial object under its final name.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterator
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

_SHA = re.compile(r"^[0-9a-f]{64}$")
_CHUNK = 1 << 20


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
    if path.is_absolute() or any(part in ("..", "") for part in path.parts) or name.startswith("~"):
        raise InvalidInputError(
            f"artifact path {name!r} tries to leave the artifact root; use a relative path without '..'"
        )
    return str(path)


class ArtifactStore:
    """Content-addressed bytes, on a local folder or an object store."""

    def __init__(self, root: str, *, s3_endpoint_url: str | None = None) -> None:
        self.root = root.rstrip("/")
        options: dict[str, Any] = {}
        if self.root.startswith("s3://") and s3_endpoint_url:
            options["client_kwargs"] = {"endpoint_url": s3_endpoint_url}
        try:
            self._fs, self._base = fsspec.core.url_to_fs(self.root, **options)
        except (ImportError, ValueError) as exc:
            raise UnavailableError(
                f"cannot open artifact root {self.root} ({exc}); install lockgate[s3] for s3:// roots"
            ) from None
        self.is_local = self._fs.protocol in ("file", ("file", "local")) or "file" in _protocols(self._fs)
        if self.is_local:
            Path(self._base, "objects").mkdir(parents=True, exist_ok=True)
            Path(self._base, "tmp").mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"ArtifactStore({self.root!r})"

    def uri(self, sha256: str) -> str:
        return f"{self.root}/{self._key(sha256)}"

    def _key(self, sha256: str) -> str:
        if not _SHA.match(sha256):
            raise InvalidInputError(f"{sha256!r} is not a sha256 digest")
        return f"objects/{sha256[:2]}/{sha256[2:4]}/{sha256}"

    def _path(self, sha256: str) -> str:
        return f"{self._base}/{self._key(sha256)}"

    # -- writing ---------------------------------------------------------------------------

    def put_bytes(self, data: bytes) -> StoredObject:
        """Store ``data``; returns its digest and size."""
        sha = hashlib.sha256(data).hexdigest()
        if self.exists(sha):
            return StoredObject(sha, len(data))
        with tempfile.NamedTemporaryFile(dir=self._tmp_dir(), delete=False) as tmp:
            tmp.write(data)
        return self._commit(Path(tmp.name), sha, len(data))

    def put_file(self, path: str | Path) -> StoredObject:
        """Store a local file's bytes, hashing them while they are copied."""
        source = Path(path)
        if not source.is_file():
            raise NotFoundError(f"file {source} does not exist; check the path")
        with open(source, "rb") as fh:
            return self.put_stream(fh)

    def put_stream(self, stream: IO[bytes]) -> StoredObject:
        digest = hashlib.sha256()
        size = 0
        with tempfile.NamedTemporaryFile(dir=self._tmp_dir(), delete=False) as tmp:
            try:
                while chunk := stream.read(_CHUNK):
                    digest.update(chunk)
                    tmp.write(chunk)
                    size += len(chunk)
            except BaseException:
                tmp.close()
                os.unlink(tmp.name)
                raise
        sha = digest.hexdigest()
        if self.exists(sha):
            os.unlink(tmp.name)
            return StoredObject(sha, size)
        return self._commit(Path(tmp.name), sha, size)

    def _tmp_dir(self) -> str:
        if self.is_local:
            return f"{self._base}/tmp"
        return tempfile.gettempdir()

    def _commit(self, tmp: Path, sha: str, size: int) -> StoredObject:
        try:
            if self.is_local:
                final = Path(self._path(sha))
                final.parent.mkdir(parents=True, exist_ok=True)
                os.chmod(tmp, 0o444)
                os.replace(tmp, final)
            else:
                self._remote(lambda: self._fs.put_file(str(tmp), self._path(sha)))
        finally:
            if tmp.exists():
                tmp.unlink()
        return StoredObject(sha, size)

    # -- reading ---------------------------------------------------------------------------

    def exists(self, sha256: str) -> bool:
        return bool(self._remote(lambda: self._fs.exists(self._path(sha256))))

    def get_bytes(self, sha256: str) -> bytes:
        """Read an object whole, refusing it if its bytes no longer match their digest."""
        try:
            data: bytes = self._remote(lambda: self._fs.cat_file(self._path(sha256)))
        except FileNotFoundError:
            raise NotFoundError(
                f"artifact {sha256[:12]} is missing from {self.root}; re-log it or restore it"
            ) from None
        actual = hashlib.sha256(data).hexdigest()
        if actual != sha256:
            raise IntegrityError(
                f"artifact {sha256[:12]} in {self.root} is corrupted (its bytes hash to {actual[:12]}); "
                "restore it from a backup or log it again"
            )
        return data

    def download(self, sha256: str, dest: str | Path) -> Path:
        """Copy an object to a local file, verified, written atomically."""
        target = Path(dest)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
        try:
            with self.open(sha256) as src, open(tmp, "wb") as out:
                shutil.copyfileobj(src, out, _CHUNK)
            self.verify_file(tmp, sha256)
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        return target

    def open(self, sha256: str) -> IO[bytes]:
        """Open an object for streaming; callers that need proof use ``get_bytes`` or ``download``."""
        try:
            fh: IO[bytes] = self._remote(lambda: self._fs.open(self._path(sha256), "rb"))
        except FileNotFoundError:
            raise NotFoundError(
                f"artifact {sha256[:12]} is missing from {self.root}; re-log it or restore it"
            ) from None
        return fh

    def verify(self, sha256: str) -> bool:
        """True when the stored bytes still hash to their name."""
        with self.open(sha256) as fh:
            return sha256_stream(fh)[0] == sha256

    @staticmethod
    def verify_file(path: Path, sha256: str) -> None:
        with open(path, "rb") as fh:
            actual = sha256_stream(fh)[0]
        if actual != sha256:
            raise IntegrityError(
                f"artifact {sha256[:12]} is corrupted (its bytes hash to {actual[:12]}); restore it or log it again"
            )

    # -- housekeeping ----------------------------------------------------------------------

    def iter_objects(self) -> Iterator[StoredObject]:
        """Every stored object, with size and modification time where the backend knows it."""
        base = f"{self._base}/objects"
        try:
            found = self._remote(lambda: self._fs.find(base, detail=True))
        except FileNotFoundError:
            return
        for path, info in found.items():
            name = str(path).rsplit("/", 1)[-1]
            if _SHA.match(name):
                yield StoredObject(name, int(info.get("size") or 0), _mtime(info))

    def delete(self, sha256: str) -> None:
        path = self._path(sha256)
        if self.is_local:
            Path(path).unlink(missing_ok=True)
        else:
            self._remote(lambda: self._fs.rm_file(path))

    def _remote(self, call: Any) -> Any:
        try:
            return call()
        except (FileNotFoundError, PermissionError):
            raise
        except OSError as exc:
            raise UnavailableError(
                f"cannot reach the artifact store {self.root} ({exc}); check that it is up"
            ) from None


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
