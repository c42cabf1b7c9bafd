"""Parquet files on a local disk or S3, as the offline store lists, reads and writes them.

S3 goes through s3fs with the options lockgate's artifact store uses (short timeouts, one
retry round), wrapped as a pyarrow file system, so pyarrow datasets (and DuckDB, which scans
them) read S3 without DuckDB's httpfs extension, which cannot be downloaded here.

A write is never seen half-done: a local file is written under a hidden temporary name in
its folder and renamed into place; an S3 object is uploaded from a finished local file, and
S3 shows an object only once its upload completes.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from lockgate.artifacts import _S3_CONFIG, _S3FS_RETRIES, _backend_errors, _one_line, _s3_session
from lockgate.errors import InvalidInputError, NotFoundError, UnavailableError

__all__ = ["FileColumns", "Files", "Location", "file_columns", "typed_dataset"]


def _hidden(rel: str) -> bool:
    # What pyarrow's discovery skips too: _SUCCESS markers, .crc files, our own temporary names.
    return any(part.startswith((".", "_")) for part in PurePosixPath(rel).parts)


@dataclass(frozen=True, slots=True)
class Files:
    """The Parquet files under a URI: a single file, or a folder's files (Hive partitions allowed)."""

    uri: str
    fs: pafs.FileSystem
    root: str  # the file or folder, as ``fs`` names it
    is_file: bool
    paths: tuple[str, ...]  # sorted, as ``fs`` names them

    def shown(self, path: str) -> str:
        """How a message names one of the files: its URI."""
        if self.is_file:
            return self.uri
        return f"{self.uri.rstrip('/')}/{path[len(self.root) + 1 :]}"

    def dataset(self) -> ds.FileSystemDataset:
        """The files as a dataset, with the schema pyarrow infers from the first one."""
        partitioning = None if self.is_file else ds.HivePartitioning.discover(infer_dictionary=False)
        with self.guard(self.paths[0]):
            return ds.dataset(
                list(self.paths),
                format="parquet",
                filesystem=self.fs,
                partitioning=partitioning,
                partition_base_dir=None if self.is_file else self.root,
            )

    @contextmanager
    def guard(self, path: str | None = None) -> Iterator[None]:
        """Turn a read failure into one sentence naming the file."""
        shown = self.shown(path) if path else self.uri
        unreachable, backend = _backend_errors()
        try:
            yield
        except FileNotFoundError:
            raise NotFoundError(f"{shown} does not exist (any more); check the path") from None
        except unreachable as exc:
            raise UnavailableError(f"cannot reach {shown} ({_one_line(exc)}); check that S3 is up") from None
        except (pa.ArrowException, *backend) as exc:
            if isinstance(exc, pa.ArrowInvalid) or not isinstance(exc, OSError) or "://" not in shown:
                raise InvalidInputError(
                    f"cannot read {shown}: it is not a readable Parquet file ({_detail(exc)}); write it again"
                ) from None
            raise UnavailableError(f"reading {shown} failed ({_one_line(exc)}); check S3 and try again") from None


@dataclass(frozen=True, slots=True)
class FileColumns:
    """One file of a dataset, its URI, and its columns (its own and its Hive partition keys) with their types."""

    fragment: ds.Fragment
    shown: str
    columns: dict[str, pa.DataType]


def file_columns(files: Files) -> list[FileColumns]:
    """Every file's columns, read from its footer (kept by the fragment for the scan that follows)."""
    dataset = files.dataset()
    partitioning = dataset.partitioning
    partition_types = {f.name: f.type for f in partitioning.schema} if partitioning is not None else {}
    found = []
    for fragment in dataset.get_fragments():
        with files.guard(fragment.path):
            physical = fragment.physical_schema
        columns = {f.name: f.type for f in physical}
        for name in ds.get_partition_keys(fragment.partition_expression):
            columns.setdefault(name, partition_types.get(name, pa.string()))
        found.append(FileColumns(fragment, files.shown(fragment.path), columns))
    return found


def typed_dataset(files: Files, found: list[FileColumns], schema: pa.Schema) -> ds.FileSystemDataset:
    """The files read with ``schema``: each column cast to its type as it is read."""
    return ds.FileSystemDataset([f.fragment for f in found], schema, ds.ParquetFileFormat(), files.fs)


class Location:
    """A root (a folder or ``s3://bucket/prefix``) where files are listed, read and written."""

    def __init__(self, *, s3_endpoint_url: str | None = None) -> None:
        self.s3_endpoint_url = s3_endpoint_url
        self._s3: Any = None

    def _fs_path(self, uri: str) -> tuple[pafs.FileSystem, str]:
        if uri.startswith("s3://"):
            return pafs.PyFileSystem(pafs.FSSpecHandler(self.s3fs())), uri[len("s3://") :].rstrip("/")
        return pafs.LocalFileSystem(), os.path.abspath(uri.removeprefix("file://"))

    def s3fs(self) -> Any:
        if self._s3 is None:
            options: dict[str, Any] = {"config_kwargs": dict(_S3_CONFIG), "use_listings_cache": False}
            if self.s3_endpoint_url:
                options["client_kwargs"] = {"endpoint_url": self.s3_endpoint_url}
            try:
                import fsspec

                options["session"] = _s3_session()
                fs = fsspec.filesystem("s3", **options)
            except (ImportError, ValueError) as exc:
                raise UnavailableError(f"cannot use s3:// data ({exc}); install lockgate[s3]") from None
            fs.retries = _S3FS_RETRIES
            self._s3 = fs
        return self._s3

    def files(self, uri: str, *, missing_ok: bool = False, what: str = "data") -> Files | None:
        """The data files under ``uri`` (a file or a folder); None when there are none and ``missing_ok``.

        ``what`` names the data in the error for a missing file or an empty folder.
        """
        fs, root = self._fs_path(uri)
        if uri.startswith("s3://"):
            is_file, rels = self._s3_listing(uri, root)
            exists = bool(rels)
        else:
            is_file, rels = _local_listing(uri, Path(root))
            exists = Path(root).exists()
        paths = (root,) if is_file else tuple(f"{root}/{rel}" for rel in rels)
        if not paths:
            if missing_ok:
                return None
            if exists:
                raise NotFoundError(f"{what} {uri} holds no Parquet files; put the data there or fix the path")
            raise NotFoundError(f"{what} {uri} does not exist; check the path")
        return Files(uri=uri, fs=fs, root=root, is_file=is_file, paths=paths)

    def _s3_listing(self, uri: str, root: str) -> tuple[bool, list[str]]:
        s3 = self.s3fs()
        with _s3_guard(uri):
            found: dict[str, dict[str, Any]] = s3.find(root, detail=True)
        rels = []
        for name, info in found.items():
            if info.get("type") != "file" or name.endswith("/"):
                continue
            if name == root:
                return True, []
            rel = name[len(root) + 1 :]
            if not _hidden(rel):
                rels.append(rel)
        return False, sorted(rels)

    def write_parquet(self, uri: str, table: pa.Table) -> None:
        """Write ``table`` to ``uri`` as one Parquet file, all or nothing."""
        path = self._fs_path(uri)[1]
        if not uri.startswith("s3://"):
            target = Path(path)
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.parent / f".{target.name}.{uuid.uuid4().hex}.tmp"
            try:
                pq.write_table(table, tmp)
                os.replace(tmp, target)
            finally:
                tmp.unlink(missing_ok=True)
            return
        # Finished locally first: a failure while encoding must not leave a partial object.
        with tempfile.TemporaryDirectory(prefix="lockgate-offline-") as tmpdir:
            local = os.path.join(tmpdir, "data.parquet")
            pq.write_table(table, local)
            with _s3_guard(uri):
                self.s3fs().put_file(local, path)


def _detail(exc: BaseException) -> str:
    """The useful end of a pyarrow message: "Parquet magic bytes not found in footer", not the call chain."""
    text = _one_line(exc)
    return text.rsplit("': ", 1)[-1].split(". ", 1)[0].rstrip(".")


def _local_listing(uri: str, path: Path) -> tuple[bool, list[str]]:
    try:
        if path.is_file():
            return True, []
        if not path.is_dir():
            return False, []
        rels = sorted(p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file())
    except OSError as exc:
        raise InvalidInputError(
            f"cannot read {uri} ({exc.strerror or _one_line(exc)}); check its permissions"
        ) from None
    return False, [rel for rel in rels if not _hidden(rel)]


@contextmanager
def _s3_guard(uri: str) -> Iterator[None]:
    unreachable, backend = _backend_errors()
    try:
        yield
    except FileNotFoundError:
        raise NotFoundError(f"{uri} does not exist; check the bucket and the path") from None
    except PermissionError as exc:
        raise UnavailableError(f"S3 refused access to {uri} ({_one_line(exc)}); check the credentials") from None
    except unreachable as exc:
        raise UnavailableError(
            f"cannot reach S3 for {uri} ({_one_line(exc)}); check that it is up and the endpoint is right"
        ) from None
    except backend as exc:
        raise UnavailableError(f"S3 failed for {uri} ({_one_line(exc)}); check S3 and try again") from None
