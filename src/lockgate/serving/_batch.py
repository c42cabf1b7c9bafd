"""Request data as batches: columns in signature order, built from JSON records or Open
Inference Protocol v2 tensors, and predictions back as v2 output tensors.

A batch is an Arrow table or a mapping of column name to a 1-d numpy array. For an
all-numeric signature the converters return a :class:`NumericBatch`: still such a mapping
(each column a view), but carrying the ``[N, F]`` matrix too, so a numeric runtime feeds the
model without stacking the columns again.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
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
_V2_INPUT = "input"


class NumericBatch(dict[str, "np.ndarray[Any, Any]"]):
    """Columns that are views of one ``[N, F]`` float64 matrix in signature order."""

    __slots__ = ("matrix",)

    def __init__(self, matrix: np.ndarray[Any, Any], names: Sequence[str]) -> None:
        super().__init__((name, matrix[:, i]) for i, name in enumerate(names))
        self.matrix = matrix


def v2_datatype(dtype: np.dtype[Any]) -> str:
    """The v2 datatype of a numpy dtype (strings and objects are ``BYTES``)."""
    for name, np_type in _V2_NUMERIC.items():
        if dtype == np_type:
            return name
    return "BYTES"


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
    missing = [n for n in signature.names if n not in (batch.column_names if isinstance(batch, pa.Table) else batch)]
    if missing:
        raise InvalidInputError(f"the batch lacks feature(s) {', '.join(missing)}; send every signature column")
    if isinstance(batch, pa.Table):
        return {n: batch.column(n).to_numpy(zero_copy_only=False) for n in signature.names}
    cols = {n: np.asarray(batch[n]) for n in signature.names}
    sizes = {len(v) for v in cols.values()}
    if len(sizes) > 1:
        raise InvalidInputError(f"the batch's columns have different lengths ({sorted(sizes)}); send equal columns")
    return cols


def numeric_matrix(batch: Batch, signature: Signature, names: Sequence[str] | None = None) -> np.ndarray[Any, Any]:
    """An all-numeric batch as one float64 ``[N, F]`` matrix, columns in ``names`` order
    (signature order by default); free for a :class:`NumericBatch` in signature order."""
    order = signature.names if names is None else tuple(names)
    if isinstance(batch, NumericBatch) and order == signature.names:
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
    if signature.all_numeric:
        return NumericBatch(np.concatenate([numeric_matrix(b, signature) for b in batches]), signature.names)
    parts = [batch_columns(b, signature) for b in batches]
    return {n: np.concatenate([p[n] for p in parts]) for n in signature.names}


def from_records(records: Sequence[Mapping[str, Any]], signature: Signature) -> Batch:
    """A batch from JSON records (one dict per row); keys outside the signature are ignored.

    >>> sig = Signature.from_registry({"inputs": [{"name": "a", "type": "double"}, {"name": "b", "type": "int64"}]})
    >>> from_records([{"a": 1.5, "b": 2}], sig).matrix
    array([[1.5, 2. ]])
    """
    if not records:
        raise InvalidInputError("the request has no records; send at least one")
    names = signature.names
    for i, record in enumerate(records):
        if not isinstance(record, Mapping):
            raise InvalidInputError(f"record {i} is a {type(record).__name__}, not an object of feature values")
        if len(record) < len(names) or any(n not in record for n in names):
            missing = [n for n in names if n not in record]
            if missing:
                raise InvalidInputError(
                    f"record {i} lacks feature(s) {', '.join(missing)}; send every signature column"
                )
    if signature.all_numeric:
        try:
            matrix = np.array([[r[n] for n in names] for r in records], dtype=np.float64)
        except (TypeError, ValueError):
            raise InvalidInputError(_first_non_number(records, names)) from None
        return NumericBatch(matrix, names)
    cols: dict[str, np.ndarray[Any, Any]] = {}
    for col in signature.columns:
        values = [r[col.name] for r in records]
        if col.is_string:
            bad = next((i for i, v in enumerate(values) if v is not None and not isinstance(v, str)), None)
            if bad is not None:
                raise InvalidInputError(f"record {bad}: feature '{col.name}' must be a string, got {values[bad]!r}")
            cols[col.name] = np.array(values, dtype=object)
        else:
            try:
                cols[col.name] = np.array(values, dtype=np.float64)
            except (TypeError, ValueError):
                raise InvalidInputError(_first_non_number(records, (col.name,))) from None
    return cols


def _first_non_number(records: Sequence[Mapping[str, Any]], names: Sequence[str]) -> str:
    for i, r in enumerate(records):
        for n in names:
            value = r[n]
            if value is not None and (isinstance(value, str) or not isinstance(value, int | float)):
                return f"record {i}: feature '{n}' must be a number, got {value!r}"
    return "a feature that must be a number has another value"


def from_v2_inputs(inputs: Sequence[Mapping[str, Any]], signature: Signature) -> Batch:
    """A batch from v2 request tensors.

    An all-numeric signature takes one tensor ``input`` of shape ``[N, F]`` (columns in
    signature order, any numeric datatype). Otherwise each signature column is one tensor
    named after it, shape ``[N]`` or ``[N, 1]``, ``BYTES`` for strings. ``data`` may be flat
    (row-major, as the protocol says) or nested.

    >>> sig = Signature.from_registry({"inputs": [{"name": "a", "type": "double"}, {"name": "b", "type": "double"}]})
    >>> from_v2_inputs([{"name": "input", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}], sig).matrix
    array([[1., 2.]])
    """
    by_name: dict[str, Mapping[str, Any]] = {}
    for i, tensor in enumerate(inputs):
        if not isinstance(tensor, Mapping) or not {"name", "shape", "datatype", "data"} <= tensor.keys():
            raise InvalidInputError(f"input tensor {i} must be an object with name, shape, datatype and data")
        by_name[str(tensor["name"])] = tensor
    if signature.all_numeric:
        expected = (
            f"one tensor '{_V2_INPUT}' of shape [N, {len(signature.columns)}] (columns {', '.join(signature.names)})"
        )
        if set(by_name) != {_V2_INPUT}:
            raise InvalidInputError(
                f"got tensor(s) {', '.join(sorted(by_name)) or 'none'}; this model takes {expected}"
            )
        tensor = by_name[_V2_INPUT]
        shape = _shape(tensor)
        if len(shape) != 2 or shape[1] != len(signature.columns):
            raise InvalidInputError(f"tensor '{_V2_INPUT}' has shape {shape}; this model takes {expected}")
        return NumericBatch(_numeric_data(tensor, shape).astype(np.float64, copy=False), signature.names)
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
        if not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)):
            raise InvalidInputError(f"tensor '{col.name}' has shape {shape}; send [N] or [N, 1]")
        if rows is not None and shape[0] != rows:
            raise InvalidInputError(f"tensor '{col.name}' has {shape[0]} rows, others {rows}; send equal row counts")
        rows = shape[0]
        if col.is_string:
            if tensor["datatype"] != "BYTES":
                raise InvalidInputError(
                    f"tensor '{col.name}' is a string feature; send it as BYTES, not {tensor['datatype']}"
                )
            values = np.array(_flat(tensor["data"]), dtype=object)
            if values.size != rows:
                raise InvalidInputError(f"tensor '{col.name}' has {values.size} values for shape {shape}")
            cols[col.name] = values
        else:
            cols[col.name] = _numeric_data(tensor, shape).reshape(-1).astype(np.float64, copy=False)
    return cols


def _shape(tensor: Mapping[str, Any]) -> list[int]:
    shape = tensor["shape"]
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise InvalidInputError(f"tensor '{tensor['name']}' has shape {shape!r}; send a list of non-negative integers")
    return shape


def _flat(data: Any) -> list[Any]:
    if isinstance(data, list) and data and isinstance(data[0], list):
        return [v for row in data for v in _flat(row)]
    return data if isinstance(data, list) else [data]


def _numeric_data(tensor: Mapping[str, Any], shape: list[int]) -> np.ndarray[Any, Any]:
    name, datatype = tensor["name"], tensor["datatype"]
    np_type = _V2_NUMERIC.get(datatype)
    if np_type is None:
        raise InvalidInputError(
            f"tensor '{name}' has datatype {datatype!r}; this feature is numeric, send FP64, FP32, INT64 or another number type"
        )
    try:
        values: np.ndarray[Any, Any] = np.asarray(tensor["data"], dtype=np_type)
    except (TypeError, ValueError, OverflowError):
        raise InvalidInputError(f"tensor '{name}' holds values that are not {datatype}") from None
    if values.size != math.prod(shape):
        raise InvalidInputError(f"tensor '{name}' has {values.size} values, but shape {shape} needs {math.prod(shape)}")
    return values.reshape(shape)


def to_v2_outputs(prediction: Any) -> list[dict[str, Any]]:
    """v2 output tensors of a :class:`~lockgate.serving.Prediction`: ``label`` and
    ``probabilities`` for a classifier, ``prediction`` for a regressor, then any extra outputs
    of a custom model. ``data`` is flat (row-major) and JSON-ready."""
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
                "data": arr.reshape(-1).tolist(),
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
