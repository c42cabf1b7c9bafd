"""Outside data: a file, a folder, an S3 key or prefix, or a SQL query; read as Arrow and
fingerprinted by content.

Everything lockgate reads from outside goes through a :class:`Source`: a pipeline's
``DataRef`` (whose fingerprint joins a step's cache key, so changed data is never a stale
cache hit) and data-contract validation.

==========================================  ==================================================
source                                      fingerprint
==========================================  ==================================================
local file (``path`` or ``file://path``)    sha256 of its bytes
local folder                                sha256 over sorted relative names and file hashes
                                            (dot-files skipped)
``s3://bucket/key`` or ``s3://bucket/pre/`` sha256 over sorted (relative key, size, ETag)
``postgresql://user@host/db`` + ``query``   sha256 of the query text and of the result's
                                            :func:`~lockgate.hashing.table_hash`
==========================================  ==================================================

Files are Parquet (``.parquet``, ``.pq``), CSV (``.csv``, ``.tsv``; UTF-8) or Arrow IPC
(``.arrow``, ``.feather``, ``.ipc``); a folder holds files of one format, in Hive partitions
(``day=2026-11-14/part-0.parquet``) or not; names starting with ``.`` or ``_`` are not data.

Errors are one sentence naming the data and the fix: :class:`~lockgate.errors.NotFoundError`
for missing data, :class:`~lockgate.errors.InvalidInputError` for data that cannot be read
(a truncated Parquet file, a CSV that is not UTF-8 or has ragged rows, an empty file, a bad
URI), :class:`~lockgate.errors.UnavailableError` when S3 or PostgreSQL cannot be reached.

>>> import pathlib, tempfile
>>> f = pathlib.Path(tempfile.mkdtemp()) / "prices.csv"
>>> _ = f.write_text("item,price\\nbook,12.5\\n")
>>> source = Source.parse(f)
>>> source.read().to_pydict()
{'item': ['book'], 'price': [12.5]}
>>> source.fingerprint() == Source.parse(f"file://{f}").fingerprint()
True
>>> Source.parse("postgresql://ml@db.internal/warehouse", query="SELECT * FROM transactions").kind
'postgresql'
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Literal, NoReturn
from urllib.parse import parse_qs, urlsplit

import fsspec
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.dataset as ds
import pyarrow.feather as feather
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from lockgate.artifacts import _S3_CONFIG, _S3FS_RETRIES, _backend_errors, _one_line, _s3_session
from lockgate.config import Settings, redact_uri
from lockgate.errors import InvalidInputError, NotFoundError, UnavailableError
from lockgate.hashing import sha256_file, sha256_json, table_hash

__all__ = ["Source", "SourceKind"]

SourceKind = Literal["local", "s3", "postgresql"]

_FORMATS = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".parq": "parquet",
    ".csv": "csv",
    ".tsv": "tsv",
    ".arrow": "arrow",
    ".feather": "arrow",
    ".ipc": "arrow",
}
_FORMAT_NAMES = {"parquet": "Parquet", "csv": "CSV", "tsv": "TSV", "arrow": "Arrow IPC"}
_PG_SCHEMES = ("postgresql", "postgres")
_PG_CONNECT_TIMEOUT = 5  # seconds: "unreachable" in seconds, as for S3 (see lockgate.artifacts)
_EXAMPLES = "e.g. 'data/transactions/', 's3://bucket/prefix/' or 'postgresql://user@host/db' with a query"


@dataclass(frozen=True, slots=True)
class Source:
    """Where outside data lives: a local path, an S3 key or prefix, or a PostgreSQL query.

    Build one with :meth:`parse`; the constructor validates the same way. Nothing is read
    until :meth:`read` or :meth:`fingerprint` is called.

    S3 is reached with the options lockgate's artifact store uses (short timeouts, one retry
    round): the endpoint is ``settings.s3_endpoint_url`` when set, else botocore's own
    (``AWS_ENDPOINT_URL``, the AWS config), with the usual AWS credential chain. A PostgreSQL
    URI must not hold a password (it would be recorded with the run); use a password file
    (``~/.pgpass`` or ``PGPASSFILE``) or trust authentication.

    >>> Source.parse("s3://lake/transactions/")
    Source(uri='s3://lake/transactions/', query=None)
    >>> Source.parse("postgresql://ml:hunter2@db/warehouse", query="SELECT 1")
    Traceback (most recent call last):
    ...
    lockgate.errors.InvalidInputError: the PostgreSQL URI postgresql://ml:***@db/warehouse holds a password, ...
    """

    uri: str
    query: str | None = None

    def __post_init__(self) -> None:
        _validate(self.uri, self.query)

    @classmethod
    def parse(cls, uri: str | os.PathLike[str], query: str | None = None) -> Source:
        """A validated source from a path or URI, and a query for ``postgresql://`` URIs."""
        return cls(os.fspath(uri) if isinstance(uri, os.PathLike) else uri, query)

    @property
    def kind(self) -> SourceKind:
        scheme = _scheme(self.uri)
        if scheme == "s3":
            return "s3"
        return "postgresql" if scheme in _PG_SCHEMES else "local"

    @property
    def path(self) -> Path:
        """The local path (``file://`` removed); only for local sources."""
        if self.kind != "local":
            raise InvalidInputError(f"data {redact_uri(self.uri)} is not a local path")
        return Path(self.uri.removeprefix("file://"))

    def fingerprint(self, *, settings: Settings | None = None) -> str:
        """A sha256 that changes whenever the content changes (see the module's table).

        On S3 this is S3's own content fingerprint: the ETag changes when an object is written
        with different bytes, so no object is downloaded; rewriting an object with the same
        bytes keeps it (a multipart or KMS-encrypted ETag may change, which costs a cache miss,
        never a stale hit). For SQL the query runs and its whole result is hashed: the cost of
        a read, paid each time the fingerprint is taken (a pipeline takes it once per run, and
        the step that reads the data runs the query again).

        ``settings`` gives the S3 endpoint; by default they are loaded as the CLI would
        (``LOCKGATE_*`` variables and ``lockgate.toml``).
        """
        kind = self.kind
        if kind == "postgresql":
            assert self.query is not None
            return sha256_json({"query": self.query, "result": table_hash(_read_query(self.uri, self.query))})
        if kind == "s3":
            return _S3Objects.fetch(self.uri, settings).fingerprint()
        return _local_fingerprint(self.uri, self.path)

    def read(self, *, settings: Settings | None = None) -> pa.Table:
        """The data as one Arrow table (a folder's files, with Hive partition columns)."""
        kind = self.kind
        if kind == "postgresql":
            assert self.query is not None
            return _read_query(self.uri, self.query)
        if kind == "s3":
            objects = _S3Objects.fetch(self.uri, settings)
            return _read(objects.files(), s3_uri=self.uri)
        return _read(_local_files(self.uri, self.path), s3_uri=None)


# -- validation --------------------------------------------------------------------------


def _scheme(uri: str) -> str:
    return uri.split("://", 1)[0].lower() if "://" in uri else ""


def _validate(uri: object, query: object) -> None:
    if not isinstance(uri, str) or not uri.strip():
        raise InvalidInputError(f"a data source needs a path or URI, {_EXAMPLES}")
    scheme = _scheme(uri)
    if scheme in _PG_SCHEMES:
        parts = urlsplit(uri)
        if parts.password or "password" in {k.lower() for k in parse_qs(parts.query)}:
            raise InvalidInputError(
                f"the PostgreSQL URI {redact_uri(uri)} holds a password, which would be recorded in plain text; "
                "remove it and use a password file (~/.pgpass or PGPASSFILE) or trust authentication"
            )
        if not isinstance(query, str) or not query.strip():
            raise InvalidInputError(
                f"data source {uri} needs a query, e.g. query='SELECT * FROM transactions'; "
                "a PostgreSQL source is read with SQL"
            )
        return
    if query is not None:
        raise InvalidInputError(
            f"data source {redact_uri(uri)} takes no query: a query needs a postgresql://user@host/db URI; "
            "drop the query or point at the database"
        )
    if scheme == "s3":
        if not uri[len("s3://") :].split("/", 1)[0]:
            raise InvalidInputError(f"data source {uri!r} names no bucket; use s3://bucket/prefix/")
    elif scheme not in ("", "file"):
        raise InvalidInputError(
            f"data sources of kind '{scheme}://' are not supported; use a local path, s3:// or postgresql:// "
            f"({_EXAMPLES})"
        )


# -- locating files ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Files:
    """The files of a source, as a pyarrow file system sees them.

    ``root`` is the file or folder in ``fs``; ``sizes`` maps each path relative to ``root``
    (the file's name for a single file) to its size; ``shown`` is how messages name ``root``.
    """

    fs: pafs.FileSystem
    root: str
    shown: str
    is_file: bool
    sizes: dict[str, int]

    def path(self, rel: str) -> str:
        return self.root if self.is_file else f"{self.root}/{rel}"

    def show(self, rel: str) -> str:
        return self.shown if self.is_file else f"{self.shown.rstrip('/')}/{rel}"


def _missing(uri: str) -> NoReturn:
    raise NotFoundError(f"data {uri} does not exist; check the path")


def _local_fingerprint(uri: str, path: Path) -> str:
    # Exactly the algorithm DataRef always used, so existing cache keys stay valid (and the
    # one a new-data trigger computes, lockgate.pipelines._watch).
    with _local_guard(uri):
        if path.is_file():
            return sha256_file(path)
        if not path.is_dir():
            _missing(uri)
        digest = hashlib.sha256()
        for file in sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")):
            digest.update(str(file.relative_to(path)).encode() + b"\0" + bytes.fromhex(sha256_file(file)))
        return digest.hexdigest()


def _local_files(uri: str, path: Path) -> _Files:
    root = os.path.abspath(path)
    with _local_guard(uri):
        if path.is_file():
            return _Files(pafs.LocalFileSystem(), root, str(path), True, {path.name: path.stat().st_size})
        if not path.is_dir():
            _missing(uri)
        sizes = {p.relative_to(path).as_posix(): p.stat().st_size for p in path.rglob("*") if p.is_file()}
    return _Files(pafs.LocalFileSystem(), root, str(path), False, sizes)


@contextmanager
def _local_guard(uri: str) -> Iterator[None]:
    try:
        yield
    except FileNotFoundError:
        _missing(uri)
    except OSError as exc:  # permission denied, a broken disk
        name = getattr(exc, "filename", None) or uri
        raise InvalidInputError(
            f"cannot read {name} ({exc.strerror or _one_line(exc)}); check its permissions"
        ) from None


@dataclass(frozen=True, slots=True)
class _S3Objects:
    """The objects under an S3 key or prefix, listed once."""

    uri: str
    fs: Any  # s3fs.S3FileSystem
    root: str  # bucket/key, without s3://
    is_file: bool
    objects: dict[str, dict[str, Any]]  # relative key -> s3fs info (size, ETag, ...)

    @classmethod
    def fetch(cls, uri: str, settings: Settings | None) -> _S3Objects:
        fs = _s3_filesystem(settings)
        root = uri[len("s3://") :].rstrip("/")
        with _s3_guard(uri):
            found: dict[str, dict[str, Any]] = fs.find(root, detail=True)
        objects: dict[str, dict[str, Any]] = {}
        is_file = False
        for name, info in found.items():
            if info.get("type") != "file" or name.endswith("/"):
                continue  # "folder" marker objects
            if name == root:
                is_file = True
                objects = {name.rsplit("/", 1)[-1]: info}
                break
            objects[name[len(root) + 1 :]] = info
        if not objects:
            raise NotFoundError(f"data {uri} does not exist: no object has that key or prefix; check the path")
        return cls(uri, fs, root, is_file, objects)

    def fingerprint(self) -> str:
        entries = [
            [rel, int(info.get("size") or 0), str(info.get("ETag") or f"modified:{info.get('LastModified')}")]
            for rel, info in sorted(self.objects.items())
            if not rel.rsplit("/", 1)[-1].startswith(".")  # as for a local folder
        ]
        return sha256_json({"s3": entries})

    def files(self) -> _Files:
        # pyarrow reads through s3fs (one client, lockgate's timeouts), never DuckDB's httpfs,
        # which cannot download its extension here.
        fs = pafs.PyFileSystem(pafs.FSSpecHandler(self.fs))
        sizes = {rel: int(info.get("size") or 0) for rel, info in self.objects.items()}
        return _Files(fs, self.root, self.uri, self.is_file, sizes)


def _s3_filesystem(settings: Settings | None) -> Any:
    """The s3fs client lockgate's ArtifactStore would open with these settings (the same instance)."""
    endpoint = (settings or Settings.load()).s3_endpoint_url
    options: dict[str, Any] = {"config_kwargs": dict(_S3_CONFIG), "use_listings_cache": False}
    if endpoint:
        options["client_kwargs"] = {"endpoint_url": endpoint}
    try:
        options["session"] = _s3_session()
        fs = fsspec.filesystem("s3", **options)
    except (ImportError, ValueError) as exc:
        raise UnavailableError(f"cannot read s3:// data ({exc}); install lockgate[s3]") from None
    fs.retries = _S3FS_RETRIES
    return fs


def _from_s3(exc: BaseException) -> bool:
    """True for an OSError s3fs made of an S3 error response (not one pyarrow raised for bad bytes)."""
    cause = exc.__cause__
    return cause is not None and type(cause).__module__.startswith(("botocore", "aiobotocore"))


@contextmanager
def _s3_guard(uri: str) -> Iterator[None]:
    unreachable, backend = _backend_errors()
    try:
        yield
    except FileNotFoundError as exc:
        raise NotFoundError(f"data {uri} does not exist ({_one_line(exc)}); check the bucket and the path") from None
    except PermissionError as exc:
        raise UnavailableError(f"S3 refused access to {uri} ({_one_line(exc)}); check the credentials") from None
    except unreachable as exc:
        raise UnavailableError(
            f"cannot reach S3 for {uri} ({_one_line(exc)}); check that it is up and the endpoint is right"
        ) from None
    except backend as exc:
        if isinstance(exc, OSError) and not _from_s3(exc):
            raise
        raise UnavailableError(f"reading {uri} from S3 failed ({_one_line(exc)}); check S3 and try again") from None


# -- reading files -------------------------------------------------------------------------


def _format(name: str) -> str | None:
    return _FORMATS.get(PurePosixPath(name).suffix.lower())


def _is_data(rel: str) -> bool:
    # What pyarrow's dataset discovery skips: any part of the path starting with "." or "_"
    # (_SUCCESS markers, .crc files, _temporary folders).
    return not any(part.startswith((".", "_")) for part in PurePosixPath(rel).parts)


def _read(files: _Files, *, s3_uri: str | None) -> pa.Table:
    if files.is_file:
        (name,) = files.sizes
        fmt = _format(name)
        if fmt is None:
            suffix = PurePosixPath(name).suffix or "(none)"
            raise InvalidInputError(
                f"cannot read {files.shown}: unknown file type '{suffix}'; use .parquet, .csv, .tsv or .arrow"
            )
        paths = [files.root]
    else:
        data = {rel: size for rel, size in sorted(files.sizes.items()) if _is_data(rel)}
        if not data:
            raise InvalidInputError(f"folder {files.shown} holds no data files; put Parquet or CSV files in it")
        found: dict[str, str] = {}
        for rel in data:
            found.setdefault(_format(rel) or "parquet", rel)
        if len(found) > 1:
            a, b = sorted(found.values())[:2]
            raise InvalidInputError(f"folder {files.shown} mixes file formats ({a}, {b}); keep one format per folder")
        ((fmt, _),) = found.items()
        paths = [files.path(rel) for rel in data]
    empty = next((rel for rel, size in files.sizes.items() if size == 0 and (files.is_file or _is_data(rel))), None)
    if empty is not None:
        raise InvalidInputError(f"cannot read {files.show(empty)}: it is empty (0 bytes); write the data again")
    bad_rows: list[Any] = []
    # The format guard sees a failure first and names a file's bad bytes; what is not the
    # bytes' fault (missing, refused, unreachable) goes on to the S3 or local guard.
    with _s3_guard(s3_uri) if s3_uri else _local_guard(files.shown), _format_guard(files, fmt, bad_rows):
        table = _read_paths(files, fmt, paths, bad_rows)
    if fmt in ("csv", "tsv"):
        _check_utf8(table, files.shown)
    return table


def _read_paths(files: _Files, fmt: str, paths: list[str], bad_rows: list[Any]) -> pa.Table:
    fs = files.fs
    if fmt == "parquet":
        # A folder goes through pq.read_table, exactly as lockgate always read one: Hive
        # partition columns come back dictionary-encoded, files whose names start with "."
        # or "_" are skipped.
        if files.is_file:
            with fs.open_input_file(files.root) as fh:
                return pq.read_table(fh)
        return pq.read_table(files.root, filesystem=fs)
    if fmt == "arrow":
        if files.is_file:
            with fs.open_input_file(files.root) as fh:
                return feather.read_table(fh)
        return _dataset(files, paths, ds.IpcFileFormat())
    read, parse, convert = _csv_options("\t" if fmt == "tsv" else ",", bad_rows)
    if files.is_file:
        with fs.open_input_stream(files.root) as stream:
            return pacsv.read_csv(stream, read_options=read, parse_options=parse, convert_options=convert)
    scan = ds.CsvFragmentScanOptions(convert_options=convert, read_options=read)
    return _dataset(files, paths, ds.CsvFileFormat(parse_options=parse, default_fragment_scan_options=scan))


def _dataset(files: _Files, paths: list[str], fmt: ds.FileFormat) -> pa.Table:
    partitioning = ds.HivePartitioning.discover(infer_dictionary=True)  # as pq.read_table does
    return ds.dataset(
        paths, filesystem=files.fs, format=fmt, partitioning=partitioning, partition_base_dir=files.root
    ).to_table()


def _csv_options(
    delimiter: str, bad_rows: list[Any]
) -> tuple[pacsv.ReadOptions, pacsv.ParseOptions, pacsv.ConvertOptions]:
    def on_bad_row(row: Any) -> str:
        bad_rows.append(row)
        return "error"

    # Quoted values may hold newlines (valid CSV, and what PostgreSQL writes).
    parse = pacsv.ParseOptions(delimiter=delimiter, newlines_in_values=True, invalid_row_handler=on_bad_row)
    return pacsv.ReadOptions(), parse, pacsv.ConvertOptions()


def _check_utf8(table: pa.Table, shown: str) -> None:
    """pyarrow reads values that are not UTF-8 as a binary column, and keeps such a header's bytes."""
    for field in table.schema:
        try:
            name = field.name
        except UnicodeDecodeError:
            where = "its header"
        else:
            if not (pa.types.is_binary(field.type) or pa.types.is_large_binary(field.type)):
                continue
            where = f"column '{name}'"
        raise InvalidInputError(
            f"cannot read {shown}: it is not UTF-8 text ({where} holds other bytes); re-save it as UTF-8"
        )


_SOURCE_IN_MESSAGE = re.compile(r"input source '([^']*)'")


@contextmanager
def _format_guard(files: _Files, fmt: str, bad_rows: list[Any]) -> Iterator[None]:
    """Turn a reader's failure into one sentence naming the file (in a folder, the bad one)."""
    try:
        yield
    except (pa.ArrowException, OSError) as exc:
        if isinstance(exc, (FileNotFoundError, PermissionError)) or (isinstance(exc, OSError) and _from_s3(exc)):
            raise  # not the bytes' fault: the S3 (or local) guard names it
        raise _unreadable(files, fmt, exc, bad_rows) from None


def _unreadable(files: _Files, fmt: str, exc: BaseException, bad_rows: list[Any]) -> InvalidInputError:
    text = _one_line(exc)
    match = _SOURCE_IN_MESSAGE.search(text)
    shown = files.shown
    if match:
        path = match.group(1)
        if not files.is_file and path.startswith(files.root + "/"):
            shown = files.show(path[len(files.root) + 1 :])  # the bad file in a folder
        text = text[match.end() :].lstrip(": ")
    if fmt in ("csv", "tsv"):
        if bad_rows:
            row = bad_rows[0]
            sample = row.text if len(row.text) <= 60 else row.text[:57] + "..."
            return InvalidInputError(
                f"cannot read {shown}: a row has {_fields(row.actual_columns)} where the header has "
                f"{_fields(row.expected_columns)} ({sample!r}); fix that row, or quote the value that holds the delimiter"
            )
        if "UTF8" in text or "UTF-8" in text:
            return InvalidInputError(f"cannot read {shown}: it is not UTF-8 text; re-save it as UTF-8")
    detail = text.split(". ", 1)[0].rstrip(".")
    what = _FORMAT_NAMES[fmt]
    if fmt == "parquet" or fmt == "arrow":
        return InvalidInputError(
            f"cannot read {shown}: it is not a readable {what} file, truncated or corrupted ({detail}); write it again"
        )
    return InvalidInputError(f"cannot read {shown}: it is not a readable {what} file ({detail}); fix the file")


def _fields(n: int) -> str:
    return f"{n} field" if n == 1 else f"{n} fields"


# -- PostgreSQL ----------------------------------------------------------------------------


def _arrow_type(oid: int, precision: int | None, scale: int | None) -> pa.DataType:
    """The Arrow type of a PostgreSQL result column; text for the types CSV cannot carry exactly
    (json, uuid, intervals, arrays, bytea in hex), as PostgreSQL prints them."""
    if oid == 1700:  # numeric
        if precision is not None and scale is not None:
            if precision <= 38:
                return pa.decimal128(precision, scale)
            if precision <= 76:
                return pa.decimal256(precision, scale)
        return pa.float64()  # unconstrained numeric: no fixed scale to give a decimal type
    return _PG_TYPES.get(oid, pa.string())


_PG_TYPES: dict[int, pa.DataType] = {
    16: pa.bool_(),
    20: pa.int64(),
    21: pa.int16(),
    23: pa.int32(),
    26: pa.int64(),  # oid
    700: pa.float32(),
    701: pa.float64(),
    1082: pa.date32(),
    1083: pa.time64("us"),
    1114: pa.timestamp("us"),
    1184: pa.timestamp("us", tz="UTC"),
}

# The session prints values one way whatever the server's defaults, so the same rows give the
# same table (and fingerprint) on every server.
_PG_SESSION = (
    "SET LOCAL TimeZone TO 'UTC'",
    "SET LOCAL DateStyle TO 'ISO, YMD'",
    "SET LOCAL IntervalStyle TO 'iso_8601'",
    "SET LOCAL extra_float_digits TO 3",
    "SET LOCAL bytea_output TO 'hex'",
)


def _read_query(uri: str, query: str) -> pa.Table:
    """Run ``query`` in a read-only transaction and return its result as Arrow.

    The rows travel as ``COPY (query) TO STDOUT WITH (FORMAT csv)`` and are parsed by
    pyarrow's multi-threaded C++ CSV reader, with each column's type taken from the query's
    result description (no type guessing; NULL and '' kept apart). That is the fastest correct
    path psycopg offers: fetching rows builds a Python object per value, ~2.5x slower on a
    million rows of four columns, and binary COPY would be parsed in Python too.
    """
    try:
        import psycopg
    except ImportError:
        raise UnavailableError(
            "cannot read postgresql:// data: psycopg is missing; install lockgate[postgres]"
        ) from None
    shown = redact_uri(uri)
    sql = query.strip().rstrip(";").rstrip()
    try:
        conn = psycopg.connect(uri, connect_timeout=_PG_CONNECT_TIMEOUT, application_name="lockgate")
    except psycopg.OperationalError as exc:
        raise UnavailableError(
            f"cannot connect to PostgreSQL at {shown} ({_pg_reason(exc)}); check that it is up and the URI is right"
        ) from None
    except psycopg.Error as exc:
        raise InvalidInputError(
            f"PostgreSQL URI {shown} is not valid ({_pg_reason(exc)}); use postgresql://user@host:5432/database"
        ) from None
    try:
        conn.read_only = True  # a data source reads; a query that writes fails
        with conn.cursor() as cur:
            for statement in _PG_SESSION:
                cur.execute(statement)
            # LIMIT 0 describes the result without computing it (PostgreSQL stops at once).
            cur.execute(f"SELECT * FROM ({sql}) AS lockgate_source LIMIT 0")
            columns = [(d.name, _arrow_type(d.type_code, d.precision, d.scale)) for d in cur.description or []]
            sink = pa.BufferOutputStream()
            with cur.copy(f"COPY ({sql}) TO STDOUT WITH (FORMAT csv)") as copy:
                for chunk in copy:
                    sink.write(chunk)
        conn.rollback()
    except psycopg.errors.ReadOnlySqlTransaction as exc:
        raise InvalidInputError(
            f"the query on {shown} tries to write ({_pg_reason(exc)}); a data source query must only read"
        ) from None
    except psycopg.OperationalError as exc:
        raise UnavailableError(f"the query on {shown} did not complete ({_pg_reason(exc)}); try again") from None
    except psycopg.Error as exc:
        raise InvalidInputError(f"the query on {shown} failed ({_pg_reason(exc)}); fix the query") from None
    finally:
        conn.close()
    names = [name for name, _ in columns]
    twice = next((n for n in names if names.count(n) > 1), None)
    if twice is not None:
        raise InvalidInputError(f"the query on {shown} returns two columns named '{twice}'; give them distinct aliases")
    schema = pa.schema(columns)
    data = sink.getvalue()
    if not data.size:
        return schema.empty_table()
    try:
        return pacsv.read_csv(
            pa.BufferReader(data),
            read_options=pacsv.ReadOptions(column_names=names),
            parse_options=pacsv.ParseOptions(newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(
                column_types=schema,
                true_values=["t"],
                false_values=["f"],
                null_values=[""],  # COPY writes NULL unquoted and '' quoted
                strings_can_be_null=True,
                quoted_strings_can_be_null=False,
            ),
        )
    except pa.ArrowException as exc:
        raise InvalidInputError(
            f"the query on {shown} returned a value lockgate cannot convert ({_one_line(exc)}); "
            "cast that column in the query (to text, say)"
        ) from None


def _pg_reason(exc: BaseException) -> str:
    diag = getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None)
    text = primary or (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return " ".join(text.split()).rstrip(".")
