"""Step outputs as stored bytes: tables as Parquet, JSON-able values as JSON, anything else
(a fitted model) with joblib. Each output is hashed by content, and the hash feeds the
cache keys of the steps downstream."""

from __future__ import annotations

import io
import json
import pickle
import struct
import zlib
from dataclasses import dataclass
from typing import Any

import joblib
import pyarrow as pa
import pyarrow.parquet as pq
from joblib.numpy_pickle import NumpyPickler

from lockgate.errors import InvalidInputError
from lockgate.hashing import canonical_json, sha256_bytes, table_hash
from lockgate.tables import to_arrow

__all__ = ["StoredValue", "decode", "encode", "value_hash"]


@dataclass(frozen=True, slots=True)
class StoredValue:
    kind: str  # "table", "pandas", "json" or "object"
    data: bytes
    content_hash: str

    @property
    def extension(self) -> str:
        return {"table": "parquet", "pandas": "parquet", "json": "json"}.get(self.kind, "joblib")


def _is_json(value: Any) -> bool:
    try:
        return bool(json.loads(canonical_json(value)) == value)
    except (TypeError, ValueError):
        return False


def encode(value: Any) -> StoredValue:
    """Serialize a step's return value."""
    module = type(value).__module__
    if isinstance(value, pa.Table) or (module.startswith("pandas") and type(value).__name__ == "DataFrame"):
        table = to_arrow(value)
        buf = io.BytesIO()
        pq.write_table(table.replace_schema_metadata(None), buf, compression="zstd")
        kind = "table" if isinstance(value, pa.Table) else "pandas"
        return StoredValue(kind, buf.getvalue(), table_hash(table))
    if value is None or (isinstance(value, (dict, list, str, int, float, bool)) and _is_json(value)):
        data = canonical_json(value)
        return StoredValue("json", data, sha256_bytes(data))
    try:
        data = canonical_pickle(value)
    except Exception as exc:  # noqa: BLE001 - any pickling failure means the same to the user
        raise InvalidInputError(f"a step returned a {type(value).__name__} that cannot be stored ({exc})") from None
    return StoredValue("object", data, sha256_bytes(data))


class _CanonicalPickler(NumpyPickler):  # type: ignore[misc]  # joblib ships no types
    """joblib's pickler (numpy arrays written raw), with strings never memoized.

    Pickle writes a second reference to the *same* object as a back-reference, so its bytes
    depend on which equal strings happen to be one object, which differs from process to
    process (interning, and whether an estimator was built by code or unpickled). Equal
    models must give equal bytes for reproduction and checkpoint resume to be checkable, so
    each string is written out in full: the bytes then follow from the values alone.
    """

    dispatch = NumpyPickler.dispatch.copy()

    def _save_str(self, obj: str) -> None:
        encoded = obj.encode("utf-8", "surrogatepass")
        n = len(encoded)
        if n <= 0xFF:
            self.write(pickle.SHORT_BINUNICODE + struct.pack("<B", n) + encoded)
        elif n > 0xFFFFFFFF:
            self._write_large_bytes(pickle.BINUNICODE8 + struct.pack("<Q", n), encoded)
        elif n >= self.framer._FRAME_SIZE_TARGET:
            self._write_large_bytes(pickle.BINUNICODE + struct.pack("<I", n), encoded)
        else:
            self.write(pickle.BINUNICODE + struct.pack("<I", n) + encoded)

    dispatch[str] = _save_str


def canonical_pickle(value: Any) -> bytes:
    """``value`` pickled by joblib's rules, zlib-compressed (``joblib.load`` reads it), with
    bytes that depend only on the values inside it."""
    buf = io.BytesIO()
    _CanonicalPickler(buf, protocol=4).dump(value)
    return zlib.compress(buf.getvalue(), 3)


def decode(kind: str, data: bytes) -> Any:
    """The value back from its bytes (callers verify the bytes' hash first)."""
    if kind in ("table", "pandas"):
        table = pq.read_table(io.BytesIO(data))
        return table if kind == "table" else table.to_pandas()
    if kind == "json":
        return json.loads(data)
    return joblib.load(io.BytesIO(data))


def value_hash(value: Any) -> str:
    """The hash of a constant argument (parameters and literals in the pipeline)."""
    if _is_json(value):
        return sha256_bytes(canonical_json(value))
    return encode(value).content_hash
