"""Typed references to outside data, whose content hash joins a step's cache key.

The classic cache bug of pipeline tools is a stale hit after the data behind a path changed;
a :class:`DataRef` is hashed by content every time a pipeline runs, so it cannot happen here.
What can be referenced, and how each is read and hashed, is :class:`lockgate.data._sources.Source`'s
business: a local file or folder, an S3 key or prefix, or a PostgreSQL query.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lockgate.config import Settings
from lockgate.hashing import canonical_json, sha256_bytes

if TYPE_CHECKING:
    from lockgate.data._sources import Source

__all__ = ["DataRef", "decode_params", "encode_params"]


@dataclass(frozen=True, slots=True)
class DataRef:
    """Data a step reads: a file, a folder, ``s3://bucket/prefix`` or a PostgreSQL query.

    ``DataRef(uri)`` for files, folders and S3; ``DataRef("postgresql://user@host/db",
    query="SELECT ...")`` for a query (no password in the URI: use ``~/.pgpass``,
    ``PGPASSFILE`` or trust authentication). A step calls :meth:`read`; the runner hashes
    :meth:`content_hash` into the step's cache key before every run.

    >>> import tempfile, pathlib
    >>> f = pathlib.Path(tempfile.mkdtemp()) / "a.csv"
    >>> _ = f.write_text("x\\n1\\n")
    >>> DataRef(str(f)).content_hash() == DataRef(str(f)).content_hash()
    True
    >>> DataRef("postgresql://ml@db/warehouse", query="SELECT * FROM tx").key
    'postgresql://ml@db/warehouse#query=...'
    """

    uri: str
    query: str | None = None

    def __post_init__(self) -> None:
        self.source  # noqa: B018 - validates: one set of rules for every outside data

    @property
    def source(self) -> Source:
        # Imported here: the readers (pyarrow.dataset, s3fs) cost seconds, and every CLI
        # command imports lockgate, while only pipelines that touch data need them.
        from lockgate.data._sources import Source

        return Source(self.uri, self.query)

    @property
    def key(self) -> str:
        """What tells this data apart from other data: the URI, plus a hash of the query if any.

        Keys the run's data hashes (``pipeline.json``) and names the data in lineage
        (``key@content_hash``); for a file, folder or S3 prefix it is the URI itself.
        """
        if self.query is None:
            return self.uri
        return f"{self.uri}#query={sha256_bytes(self.query.encode())[:16]}"

    @property
    def path(self) -> Path:
        """The local path; only for local files and folders."""
        return self.source.path

    def content_hash(self, *, settings: Settings | None = None) -> str:
        """The data's fingerprint (see :meth:`lockgate.data._sources.Source.fingerprint`)."""
        return self.source.fingerprint(settings=settings)

    def read(self, *, settings: Settings | None = None) -> Any:
        """The data as an Arrow table (Parquet, CSV or Arrow files, a folder of them, a query's result)."""
        return self.source.read(settings=settings)


_TAG = "__dataref__"
_QUERY = "query"


def encode_params(params: dict[str, Any]) -> dict[str, Any]:
    """Pipeline parameters as JSON (stored with runs and triggers); DataRefs keep their type.

    >>> decode_params(encode_params({"source": DataRef("data/"), "n": 3})) == {"source": DataRef("data/"), "n": 3}
    True
    >>> encode_params({"tx": DataRef("postgresql://db/ml", query="SELECT 1")})
    {'tx': {'__dataref__': 'postgresql://db/ml', 'query': 'SELECT 1'}}
    """
    return {k: _encode(v) if isinstance(v, DataRef) else json.loads(canonical_json(v)) for k, v in params.items()}


def _encode(ref: DataRef) -> dict[str, str]:
    return {_TAG: ref.uri} if ref.query is None else {_TAG: ref.uri, _QUERY: ref.query}


def decode_params(params: dict[str, Any] | None) -> dict[str, Any]:
    """The inverse of :func:`encode_params`."""
    return {k: _decode(v) for k, v in (params or {}).items()}


def _decode(value: Any) -> Any:
    if isinstance(value, dict) and _TAG in value and set(value) <= {_TAG, _QUERY}:
        return DataRef(value[_TAG], value.get(_QUERY))
    return value
