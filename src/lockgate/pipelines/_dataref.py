"""Typed references to outside data, whose content hash joins a step's cache key.

The classic cache bug of pipeline tools is a stale hit after the data behind a path changed;
a :class:`DataRef` is hashed by content every time a pipeline runs, so it cannot happen here.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lockgate.errors import InvalidInputError, NotFoundError
from lockgate.hashing import canonical_json, sha256_file
from lockgate.tables import read_table

__all__ = ["DataRef", "decode_params", "encode_params"]


@dataclass(frozen=True, slots=True)
class DataRef:
    """A file or a folder of files, read by the step that receives it.

    >>> import tempfile, pathlib
    >>> f = pathlib.Path(tempfile.mkdtemp()) / "a.csv"
    >>> _ = f.write_text("x\\n1\\n")
    >>> DataRef(str(f)).content_hash() == DataRef(str(f)).content_hash()
    True
    """

    uri: str

    def __post_init__(self) -> None:
        if not isinstance(self.uri, str) or not self.uri:
            raise InvalidInputError("a DataRef needs a path, e.g. DataRef('data/transactions/')")
        if "://" in self.uri and not self.uri.startswith("file://"):
            raise InvalidInputError(
                f"DataRef {self.uri!r}: only local files and folders are supported yet; copy the data locally"
            )

    @property
    def path(self) -> Path:
        return Path(self.uri.removeprefix("file://"))

    def content_hash(self) -> str:
        """sha256 over the files' relative names and contents (folders: every file, sorted)."""
        path = self.path
        if path.is_file():
            return sha256_file(path)
        if not path.is_dir():
            raise NotFoundError(f"data {self.uri} does not exist; check the path the pipeline was given")
        digest = hashlib.sha256()
        for file in sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")):
            digest.update(str(file.relative_to(path)).encode() + b"\0" + bytes.fromhex(sha256_file(file)))
        return digest.hexdigest()

    def read(self) -> Any:
        """The data as an Arrow table (Parquet, CSV or Arrow files, or a folder of Parquet)."""
        return read_table(self.path)


_TAG = "__dataref__"


def encode_params(params: dict[str, Any]) -> dict[str, Any]:
    """Pipeline parameters as JSON (stored with runs and triggers); DataRefs keep their type.

    >>> decode_params(encode_params({"source": DataRef("data/"), "n": 3})) == {"source": DataRef("data/"), "n": 3}
    True
    """
    return {k: {_TAG: v.uri} if isinstance(v, DataRef) else json.loads(canonical_json(v)) for k, v in params.items()}


def decode_params(params: dict[str, Any] | None) -> dict[str, Any]:
    """The inverse of :func:`encode_params`."""
    return {k: DataRef(v[_TAG]) if isinstance(v, dict) and set(v) == {_TAG} else v for k, v in (params or {}).items()}
