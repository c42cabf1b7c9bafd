"""Request data as batches: columns in signature order, built from JSON records or Open
Inference Protocol v2 tensors, and predictions back as v2 output tensors.

A batch is an Arrow table or a mapping of column name to a 1-d numpy array. For an
all-numeric signature the converters return a :class:`NumericBatch`: still such a mapping
(each column a view), but carrying the ``[N, F]`` matrix too, so a numeric runtime feeds the
model without stacking the columns again.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from itertools import chain
from typing import Any, TypeAlias

import numpy as np
import pyarrow as pa

from lockgate.errors import InvalidInputError
from lockgate.serving._signature import Signature

__all__ = [
    "Batch",
    "NumericBatch",
    "batch_columns",
    "batch_rows",
    "check_entity_rows",
    "column_kinds",
    "concat_batches",
    "from_records",
    "from_v2_inputs",
    "numeric_matrix",
    "to_v2_outputs",
    "v2_datatype",
    "v2_metadata",
]

Batch: TypeAlias = "pa.Table | Mapping[str, np.ndarray[Any, Any]]"

_V2_NUMERIC = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
}
_V2_OF_DTYPE: dict[np.dtype[Any], str] = {np.dtype(t): name for name, t in _V2_NUMERIC.items()}
_V2_INPUT = "input"


class NumericBatch(Mapping[str, "np.ndarray[Any, Any]"]):
    """Columns that are views of one ``[N, F]`` float64 matrix in signature order.

    A read-only mapping whose columns are sliced on access: building twenty views up front
    cost 6.7 µs of a one-row request that never reads them (a numeric runtime takes
    :attr:`matrix`).
    """

    __slots__ = ("_index", "matrix")

    def __init__(self, matrix: np.ndarray[Any, Any], names: Sequence[str]) -> None:
        self.matrix = matrix
        self._index = _column_index(names)

    def __getitem__(self, name: str) -> np.ndarray[Any, Any]:
        column: np.ndarray[Any, Any] = self.matrix[:, self._index[name]]
        return column

    def __contains__(self, name: object) -> bool:
        return name in self._index

    def __iter__(self) -> Iterator[str]:
        return iter(self._index)

    def __len__(self) -> int:
        return len(self._index)


_INDEXES: dict[int, tuple[Sequence[str], dict[str, int]]] = {}


def _column_index(names: Sequence[str]) -> dict[str, int]:
    """Name → position, cached per names object (a signature's plan passes the same tuple each time)."""
    entry = _INDEXES.get(id(names))
    if entry is None or entry[0] is not names:
        if len(_INDEXES) > 4096:
            _INDEXES.clear()
        entry = _INDEXES[id(names)] = (names, {name: i for i, name in enumerate(names)})
    return entry[1]


def v2_datatype(dtype: np.dtype[Any]) -> str:
    """The v2 datatype of a numpy dtype (strings and objects are ``BYTES``)."""
    return _V2_OF_DTYPE.get(dtype, "BYTES")


def batch_rows(batch: Batch) -> int:
    if isinstance(batch, pa.Table):
        return int(batch.num_rows)
    if isinstance(batch, NumericBatch):
        return int(batch.matrix.shape[0])
    for values in batch.values():
        return len(values)
    return 0


def batch_columns(batch: Batch, signature: Signature) -> dict[str, np.ndarray[Any, Any]]:
    """The batch's columns in signature order, as 1-d numpy arrays (extra columns dropped)."""
    names = _plan(signature).names
    missing = [n for n in names if n not in (batch.column_names if isinstance(batch, pa.Table) else batch)]
    if missing:
        raise InvalidInputError(f"the batch lacks feature(s) {', '.join(missing)}; send every signature column")
    if isinstance(batch, pa.Table):
        return {n: batch.column(n).to_numpy(zero_copy_only=False) for n in names}
    cols = {n: np.asarray(batch[n]) for n in names}
    sizes = {len(v) for v in cols.values()}
    if len(sizes) > 1:
        raise InvalidInputError(f"the batch's columns have different lengths ({sorted(sizes)}); send equal columns")
    return cols


def numeric_matrix(batch: Batch, signature: Signature, names: Sequence[str] | None = None) -> np.ndarray[Any, Any]:
    """An all-numeric batch as one float64 ``[N, F]`` matrix, columns in ``names`` order
    (signature order by default); free for a :class:`NumericBatch` in signature order."""
    own = _plan(signature).names
    order = own if names is None else tuple(names)
    if isinstance(batch, NumericBatch) and (order is own or order == own):
        return batch.matrix
    cols = batch_columns(batch, signature)
    try:
        return np.column_stack([cols[n].astype(np.float64, copy=False) for n in order])
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"the batch has a non-numeric value in a numeric feature ({exc})") from None


def concat_batches(batches: Sequence[Batch], signature: Signature) -> Batch:
    """One batch of all rows, in order: how a dynamic batcher merges requests."""
    if len(batches) == 1:
        return batches[0]
    plan = _plan(signature)
    if plan.all_numeric:
        return NumericBatch(np.concatenate([numeric_matrix(b, signature) for b in batches]), plan.names)
    parts = [batch_columns(b, signature) for b in batches]
    return {n: np.concatenate([p[n] for p in parts]) for n in plan.names}


def from_records(records: Sequence[Mapping[str, Any]], signature: Signature) -> Batch:
    """A batch from JSON records (one dict per row); keys outside the signature are ignored.

    A numeric feature takes a number, a boolean one ``true`` or ``false``, a string one a
    string; ``null`` is a missing value for any of them (NaN for numbers), which the model
    takes or refuses as it was trained.

    >>> sig = Signature.from_registry({"inputs": [{"name": "a", "type": "double"}, {"name": "b", "type": "int64"}]})
    >>> from_records([{"a": 1.5, "b": 2}], sig).matrix
    array([[1.5, 2. ]])
    """
    if not records:
        raise InvalidInputError("the request has no records; send at least one")
    plan = _plan(signature)
    names = plan.names
    try:
        rows = [[r[n] for n in names] for r in records]
    except (KeyError, TypeError, IndexError):
        raise InvalidInputError(_record_problem(records, names)) from None
    if not (plan.plain_numbers and _plain(rows)):
        _check_rows(rows, plan)
    if plan.all_numeric:
        return NumericBatch(np.array(rows, dtype=np.float64), names)
    cols: dict[str, np.ndarray[Any, Any]] = {}
    for i, (name, kind) in enumerate(zip(names, plan.kinds, strict=True)):
        values = [row[i] for row in rows]
        cols[name] = np.array(values, dtype=object if kind == "string" else np.float64)
    return cols


_PLAIN = frozenset({float, int, type(None)})


def _plain(rows: list[list[Any]]) -> bool:
    """Every value a plain float, int or None: the common case, checked without per-column work."""
    if len(rows) == 1:
        return _PLAIN.issuperset(map(type, rows[0]))
    return _PLAIN.issuperset(map(type, chain.from_iterable(rows)))


def _record_problem(records: Sequence[Any], names: Sequence[str]) -> str:
    for i, record in enumerate(records):
        if not isinstance(record, Mapping):
            return f"record {i} is {_kind_of(record)}, not an object of feature values"
        missing = [n for n in names if n not in record]
        if missing:
            return f"record {i} lacks feature(s) {', '.join(missing)}; send every signature column"
    return "a record is not an object of feature values"


def _check_rows(rows: list[list[Any]], plan: _Plan) -> None:
    for i, row in enumerate(rows):
        for name, kind, value in zip(plan.names, plan.kinds, row, strict=True):
            if value is not None and not _ACCEPTS[kind](value):
                raise InvalidInputError(f"record {i}: feature '{name}' must be {_WANTED[kind]}, got {_show(value)}")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)


def _is_bool(value: Any) -> bool:
    return isinstance(value, bool | np.bool_)


def _is_str(value: Any) -> bool:
    return isinstance(value, str)


_ACCEPTS: dict[str, Callable[[Any], bool]] = {"number": _is_number, "bool": _is_bool, "string": _is_str}
_WANTED = {"number": "a number or null", "bool": "true, false or null", "string": "a string or null"}


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _kind_of(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number" if isinstance(value, int | float) else f"a {type(value).__name__}"
    )


class _Plan:
    """What the converters need of a signature, worked out once per signature."""

    __slots__ = ("all_numeric", "kinds", "names", "plain_numbers", "signature")

    def __init__(self, signature: Signature) -> None:
        self.signature = signature
        self.names = signature.names
        self.kinds = tuple(
            "string" if c.is_string else "bool" if pa.types.is_boolean(c.type) else "number" for c in signature.columns
        )
        self.all_numeric = signature.all_numeric
        self.plain_numbers = all(k == "number" for k in self.kinds)


_PLANS: dict[int, _Plan] = {}


def _plan(signature: Signature) -> _Plan:
    plan = _PLANS.get(id(signature))
    if plan is None or plan.signature is not signature:
        if len(_PLANS) > 1024:
            _PLANS.clear()
        plan = _PLANS[id(signature)] = _Plan(signature)
    return plan


def column_kinds(signature: Signature) -> dict[str, str]:
    """Each input column's JSON kind: ``number``, ``bool`` or ``string`` (what a record holds)."""
    plan = _plan(signature)
    return dict(zip(plan.names, plan.kinds, strict=True))


def check_entity_rows(rows: Any, keys: Sequence[str], fields: Sequence[str]) -> None:
    """Entity rows of a friendly request: objects of exactly the join ``keys`` (strings or
    integers) and the on-demand features' request ``fields`` (strings or numbers)."""
    if not isinstance(rows, list) or not rows:
        raise InvalidInputError("'entities' must be a non-empty list of objects of entity keys")
    wanted = ", ".join([*keys, *fields])
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise InvalidInputError(f"entity {i} is {_kind_of(row)}; send an object of {wanted}")
        for key in keys:
            value = row.get(key)
            if type(value) is float and value.is_integer() and abs(value) <= _EXACT_FLOAT_INT:
                value = row[key] = int(value)  # JSON's 42.0 is the integer 42
            if not (isinstance(value, str) or (type(value) is int and -(2**63) <= value < 2**63)):
                got = "nothing" if key not in row else _show(value)
                raise InvalidInputError(f"entity {i}: key '{key}' must be a string or a 64-bit integer, got {got}")
        for name in fields:
            value = row.get(name)
            if not (isinstance(value, str) or _is_number(value)):
                got = "nothing" if name not in row else _show(value)
                raise InvalidInputError(f"entity {i}: request field '{name}' must be a string or number, got {got}")
        if len(row) != len(keys) + len(fields):
            unknown = sorted(k for k in row if k not in keys and k not in fields)
            raise InvalidInputError(f"entity {i} has unknown key(s) {', '.join(map(repr, unknown))}; send {wanted}")


_TENSOR_KEYS = frozenset({"name", "shape", "datatype", "data"})


def from_v2_inputs(inputs: Sequence[Mapping[str, Any]], signature: Signature) -> Batch:
    """A batch from v2 request tensors.

    An all-numeric signature takes one tensor ``input`` of shape ``[N, F]`` (columns in
    signature order, any numeric datatype). Otherwise each signature column is one tensor
    named after it, shape ``[N]`` or ``[N, 1]``, ``BYTES`` for strings. ``data`` may be flat
    (row-major, as the protocol says) or nested, and holds values of its datatype: numbers
    for ``FP*``, integers for ``INT*`` and ``UINT*``, booleans for ``BOOL``, strings for
    ``BYTES``. A request has at least one row.

    >>> sig = Signature.from_registry({"inputs": [{"name": "a", "type": "double"}, {"name": "b", "type": "double"}]})
    >>> from_v2_inputs([{"name": "input", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}], sig).matrix
    array([[1., 2.]])
    """
    by_name: dict[str, Mapping[str, Any]] = {}
    for i, tensor in enumerate(inputs):
        if not isinstance(tensor, Mapping) or not tensor.keys() >= _TENSOR_KEYS:
            raise InvalidInputError(f"input tensor {i} must be an object with name, shape, datatype and data")
        name = tensor["name"]
        if not isinstance(name, str):
            raise InvalidInputError(f"input tensor {i} has name {_show(name)}; name each tensor with a string")
        if name in by_name:
            raise InvalidInputError(f"tensor '{name}' is sent twice; send each input once")
        by_name[name] = tensor
    plan = _plan(signature)
    if plan.all_numeric:
        expected = f"one tensor '{_V2_INPUT}' of shape [N, {len(plan.names)}] (columns {', '.join(plan.names)})"
        if set(by_name) != {_V2_INPUT}:
            raise InvalidInputError(
                f"got tensor(s) {', '.join(sorted(by_name)) or 'none'}; this model takes {expected}"
            )
        tensor = by_name[_V2_INPUT]
        shape = _shape(tensor)
        if len(shape) != 2 or shape[1] != len(plan.names) or shape[0] == 0:
            raise InvalidInputError(f"tensor '{_V2_INPUT}' has shape {shape}; this model takes {expected}, N > 0")
        return NumericBatch(_numeric_data(tensor, shape).astype(np.float64, copy=False), plan.names)
    unknown = sorted(set(by_name) - set(signature.names))
    missing = [n for n in signature.names if n not in by_name]
    if unknown or missing:
        parts = ([f"lacks {', '.join(missing)}"] if missing else []) + (
            [f"has unknown {', '.join(unknown)}"] if unknown else []
        )
        raise InvalidInputError(
            f"the request {' and '.join(parts)}; this model takes one tensor per feature: {', '.join(signature.names)}"
        )
    cols: dict[str, np.ndarray[Any, Any]] = {}
    rows: int | None = None
    for col in signature.columns:
        tensor = by_name[col.name]
        shape = _shape(tensor)
        if not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)) or shape[0] == 0:
            raise InvalidInputError(f"tensor '{col.name}' has shape {shape}; send [N] or [N, 1] with N > 0")
        if rows is not None and shape[0] != rows:
            raise InvalidInputError(f"tensor '{col.name}' has {shape[0]} rows, others {rows}; send equal row counts")
        rows = shape[0]
        if col.is_string:
            cols[col.name] = _string_data(tensor, rows)
        else:
            cols[col.name] = _numeric_data(tensor, shape).reshape(-1).astype(np.float64, copy=False)
    return cols


def _shape(tensor: Mapping[str, Any]) -> list[int]:
    shape = tensor["shape"]
    if type(shape) is not list or not _dims_ok(shape):
        raise InvalidInputError(
            f"tensor '{tensor['name']}' has shape {_show(shape)}; send a list of non-negative integers"
        )
    return shape


def _dims_ok(shape: list[Any]) -> bool:
    return all(type(d) is int and d >= 0 for d in shape)  # type(True) is bool: no dimension


def _flat(tensor: Mapping[str, Any]) -> list[Any]:
    data = tensor["data"]
    if not isinstance(data, list):
        raise InvalidInputError(f"tensor '{tensor['name']}' has data {_show(data)}; send a list of values")
    return _flatten(data) if data and isinstance(data[0], list) else data


def _flatten(data: list[Any]) -> list[Any]:
    out: list[Any] = []
    for item in data:
        if isinstance(item, list):
            out.extend(_flatten(item))
        else:
            out.append(item)
    return out


def _string_data(tensor: Mapping[str, Any], rows: int) -> np.ndarray[Any, Any]:
    name, datatype = tensor["name"], tensor["datatype"]
    if datatype != "BYTES":
        raise InvalidInputError(f"tensor '{name}' is a string feature; send it as BYTES, not {_show(datatype)}")
    values = _flat(tensor)
    bad = next((v for v in values if not isinstance(v, str)), _NONE)
    if bad is not _NONE:
        raise InvalidInputError(f"tensor '{name}' is BYTES, so its data are strings; got {_show(bad)}")
    if len(values) != rows:
        raise InvalidInputError(f"tensor '{name}' has {len(values)} values for {rows} rows")
    return np.array(values, dtype=object)


_NONE = object()
_FLOATS = frozenset({"FP16", "FP32", "FP64"})


def _is_integer(value: Any) -> bool:
    """An integer, or a float holding one exactly: JSON's ``2.0`` is an integer, but the parser
    reads an integer beyond 64 bits as an inexact float, which is none."""
    if isinstance(value, float):
        return value.is_integer() and abs(value) <= _EXACT_FLOAT_INT
    return isinstance(value, int) and not isinstance(value, bool)


_EXACT_FLOAT_INT = 2.0**53
_INTEGER_TYPES = ("INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64")
_VALUE_OK: dict[str, Callable[[Any], bool]] = {
    "BOOL": _is_bool,
    **dict.fromkeys(_INTEGER_TYPES, _is_integer),
    **dict.fromkeys(_FLOATS, _is_number),
}
_VALUE_WANTED = {"BOOL": "booleans", **dict.fromkeys(_FLOATS, "numbers")}


def _numeric_data(tensor: Mapping[str, Any], shape: list[int]) -> np.ndarray[Any, Any]:
    name, datatype = tensor["name"], tensor["datatype"]
    np_type = _V2_NUMERIC.get(datatype) if isinstance(datatype, str) else None
    if np_type is None:
        raise InvalidInputError(
            f"tensor '{name}' has datatype {_show(datatype)}; this feature is numeric, "
            "send FP64, FP32, INT64 or another number type"
        )
    data = tensor["data"]
    if isinstance(data, np.ndarray):  # raw bytes of the binary extension, already of the datatype
        values: np.ndarray[Any, Any] = data
    else:
        flat = _flat(tensor)
        if not (datatype in _FLOATS and _plain_numbers(flat)):
            ok = _VALUE_OK[datatype]
            bad = next((v for v in flat if not ok(v)), _NONE)
            if bad is not _NONE:
                wanted = _VALUE_WANTED.get(datatype, "integers")
                raise InvalidInputError(f"tensor '{name}' is {datatype}, so its data are {wanted}; got {_show(bad)}")
        limit = _FLOAT_MAX.get(datatype)
        if limit is not None and flat and not _within(flat, limit):
            raise InvalidInputError(f"tensor '{name}' holds a value outside the range of {datatype} (±{limit:.6g})")
        try:
            values = np.asarray(flat, dtype=np_type)
        except OverflowError:
            raise InvalidInputError(f"tensor '{name}' holds a value outside the range of {datatype}") from None
    if values.size != math.prod(shape):
        raise InvalidInputError(f"tensor '{name}' has {values.size} values, but shape {shape} needs {math.prod(shape)}")
    return values.reshape(shape)


_PLAIN_NUMBERS = frozenset({float, int})
_FLOAT_MAX = {"FP16": float(np.finfo(np.float16).max), "FP32": float(np.finfo(np.float32).max)}


def _within(flat: list[Any], limit: float) -> bool:
    """Every value sent fits a narrower float (checked before the cast would round it to inf)."""
    if len(flat) <= 256:
        return bool(-limit <= min(flat) and max(flat) <= limit)
    wide = np.asarray(flat, dtype=np.float64)
    return bool(-limit <= wide.min() and wide.max() <= limit)


def _plain_numbers(values: list[Any]) -> bool:
    return _PLAIN_NUMBERS.issuperset(map(type, values))


def to_v2_outputs(prediction: Any, *, raw: bool = False) -> list[dict[str, Any]]:
    """v2 output tensors of a :class:`~lockgate.serving.Prediction`: ``label`` and
    ``probabilities`` for a classifier, ``prediction`` for a regressor, then any extra outputs
    of a custom model. ``data`` is flat (row-major) and JSON-ready, or the numpy array itself
    with ``raw`` (for an encoder that may send it as bytes)."""
    tensors = [
        ("label", prediction.label),
        ("probabilities", prediction.probabilities),
        ("prediction", prediction.prediction),
    ]
    tensors.extend(prediction.extras.items())
    out = []
    for name, values in tensors:
        if values is None:
            continue
        arr: np.ndarray[Any, Any] = np.asarray(values)
        out.append(
            {
                "name": name,
                "shape": list(arr.shape),
                "datatype": v2_datatype(arr.dtype),
                "data": arr if raw else arr.reshape(-1).tolist(),
            }
        )
    return out


def v2_metadata(signature: Signature, runtime_kind: str, *, label_dtype: np.dtype[Any] | None = None) -> dict[str, Any]:
    """The ``inputs``, ``outputs`` and ``platform`` of a v2 model-metadata answer (the server
    adds ``name`` and ``versions``).

    >>> sig = Signature.from_registry({"inputs": [{"name": "a", "type": "double"}], "kind": "regressor"})
    >>> v2_metadata(sig, "onnx")["inputs"]
    [{'name': 'input', 'datatype': 'FP64', 'shape': [-1, 1]}]
    """
    if signature.all_numeric:
        inputs = [{"name": _V2_INPUT, "datatype": "FP64", "shape": [-1, len(signature.columns)]}]
    else:
        inputs = [{"name": c.name, "datatype": v2_datatype(c.dtype), "shape": [-1]} for c in signature.columns]
    if signature.task == "classification":
        if label_dtype is None:
            label_dtype = np.asarray(signature.classes if signature.classes else [0]).dtype
        n_classes = len(signature.classes) if signature.classes else -1
        outputs = [
            {"name": "label", "datatype": v2_datatype(label_dtype), "shape": [-1]},
            {"name": "probabilities", "datatype": "FP64", "shape": [-1, n_classes]},
        ]
    else:
        outputs = [{"name": "prediction", "datatype": "FP64", "shape": [-1]}]
    return {"platform": runtime_kind, "inputs": inputs, "outputs": outputs}
