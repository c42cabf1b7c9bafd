"""Open Inference Protocol v2 request and response bodies, JSON and Triton's binary tensors.

A request is a JSON object, or — with Triton's binary tensor extension — a JSON header of
``Inference-Header-Content-Length`` bytes followed by the raw bytes of every input whose
``parameters.binary_data_size`` says how many it takes, in input order. Outputs go back as
JSON ``data``, or as raw bytes after the JSON header when the request asks for it per output
(``parameters.binary_data``) or for all (``parameters.binary_data_output``): what
``tritonclient.http`` does by default.

Raw tensor bytes are little-endian and row-major; a ``BYTES`` element is a 4-byte
little-endian length followed by that many bytes.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from lockgate.errors import InvalidInputError
from lockgate.serving._batch import to_v2_outputs
from lockgate.serving._runtimes import Prediction

__all__ = ["V2Request", "encode_response", "parse_request"]

_RAW_DTYPES: dict[str, str] = {
    "BOOL": "|b1",
    "UINT8": "|u1",
    "UINT16": "<u2",
    "UINT32": "<u4",
    "UINT64": "<u8",
    "INT8": "|i1",
    "INT16": "<i2",
    "INT32": "<i4",
    "INT64": "<i8",
    "FP16": "<f2",
    "FP32": "<f4",
    "FP64": "<f8",
}
_LENGTH = struct.Struct("<I")


@dataclass(frozen=True, slots=True)
class V2Request:
    """A parsed inference request: input tensors (``data`` as lists or numpy arrays), the
    outputs asked for (None: all), which of them go back as raw bytes, and the request id."""

    inputs: list[dict[str, Any]]
    outputs: list[str] | None
    binary_outputs: frozenset[str]
    binary_all: bool
    id: str | None


_REQUEST_KEYS = frozenset({"id", "parameters", "inputs", "outputs"})
_TENSOR_KEYS = frozenset({"name", "shape", "datatype", "parameters", "data"})
_OUTPUT_KEYS = frozenset({"name", "parameters"})


def parse_request(body: bytes, header_length: str | None) -> V2Request:
    """Parse an infer request body; ``header_length`` is the ``Inference-Header-Content-Length``
    header when the client sent binary tensors.

    The protocol's keys only (``id``, ``parameters``, ``inputs``, ``outputs``; ``name``,
    ``shape``, ``datatype``, ``parameters``, ``data`` in a tensor), so a misspelt key is an
    error rather than silently ignored; ``parameters`` objects may carry anything besides
    the binary extension's ``binary_data_size``, ``binary_data_output`` and ``binary_data``.

    >>> parse_request(b'{"inputs": [{"name": "input", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}]}', None).inputs[0]["name"]
    'input'
    """
    if header_length is None:
        head, tail = body, b""
    else:
        if not (header_length.isascii() and header_length.isdigit()):
            raise InvalidInputError(
                f"Inference-Header-Content-Length is {header_length[:40]!r}; send the JSON header's size in bytes"
            )
        size = int(header_length)
        if not 0 < size <= len(body):
            raise InvalidInputError(
                f"Inference-Header-Content-Length is {size} but the body has {len(body)} bytes; "
                "send the size of the JSON header that starts the body"
            )
        head, tail = body[:size], body[size:]
    try:
        request = orjson.loads(head)
    except orjson.JSONDecodeError as exc:
        raise InvalidInputError(f"the request body is not valid JSON ({exc}); send a v2 inference request") from None
    if not isinstance(request, dict):
        raise InvalidInputError("the request body must be a JSON object with 'inputs'")
    if not request.keys() <= _REQUEST_KEYS:
        raise InvalidInputError(_unknown_keys("the request", request, _REQUEST_KEYS))
    inputs = request.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise InvalidInputError("the request has no 'inputs'; send a list of input tensors")
    offset = 0
    for i, tensor in enumerate(inputs):
        if not isinstance(tensor, dict):
            raise InvalidInputError(f"input tensor {i} must be an object with name, shape, datatype and data")
        if not tensor.keys() <= _TENSOR_KEYS:
            raise InvalidInputError(_unknown_keys(f"input tensor {i}", tensor, _TENSOR_KEYS))
        declared = _binary_size(tensor, f"input tensor {i}")
        if declared is None:
            continue
        if "data" in tensor:
            raise InvalidInputError(
                f"input '{tensor.get('name')}' has both 'data' and a binary_data_size; send its values one way"
            )
        size = declared
        if offset + size > len(tail):
            raise InvalidInputError(
                f"input '{tensor.get('name')}' declares {size} binary bytes but only {len(tail) - offset} follow "
                "the header; send every binary input's bytes after the JSON header, in input order"
            )
        tensor["data"] = _decode_raw(tensor, tail[offset : offset + size])
        offset += size
    if offset != len(tail):
        raise InvalidInputError(
            f"{len(tail) - offset} bytes follow the inputs' binary data; send only the declared bytes"
        )
    params = _parameters(request, "the request")
    binary_all = _flag(params, "binary_data_output", "the request")
    wanted: list[str] | None = None
    binary: set[str] = set()
    if "outputs" in request:
        outputs = request["outputs"]
        if not isinstance(outputs, list):
            raise InvalidInputError("'outputs' must be a list of objects with a 'name'")
        wanted = []
        for out in outputs:
            if not isinstance(out, dict) or not isinstance(out.get("name"), str):
                raise InvalidInputError("each requested output must be an object with a 'name'")
            name = out["name"]
            if not out.keys() <= _OUTPUT_KEYS:
                raise InvalidInputError(_unknown_keys(f"output '{name}'", out, _OUTPUT_KEYS))
            if name not in wanted:  # asked twice: answered once, as bytes if either asks so
                wanted.append(name)
            if _flag(_parameters(out, f"output '{name}'"), "binary_data", f"output '{name}'"):
                binary.add(name)
    request_id = request.get("id")
    if "id" in request and not isinstance(request_id, str):
        raise InvalidInputError(f"the request's 'id' is {_show(request_id)}; send a string, or leave it out")
    return V2Request(
        inputs=inputs,
        outputs=wanted,
        binary_outputs=frozenset(binary),
        binary_all=binary_all,
        id=request_id,
    )


def _unknown_keys(what: str, obj: Mapping[str, Any], known: frozenset[str]) -> str:
    unknown = sorted(k for k in obj if k not in known)
    return (
        f"{what} has unknown key(s) {', '.join(repr(k) for k in unknown)}; "
        f"the protocol's are {', '.join(sorted(known))}"
    )


def _parameters(obj: Mapping[str, Any], what: str) -> Mapping[str, Any]:
    if "parameters" not in obj:
        return {}
    params = obj["parameters"]
    if not isinstance(params, dict):
        raise InvalidInputError(f"'parameters' of {what} must be an object, not {_show(params)}")
    return params


def _flag(params: Mapping[str, Any], key: str, what: str) -> bool:
    value = params.get(key, False)
    if not isinstance(value, bool):
        raise InvalidInputError(f"parameter '{key}' of {what} is {_show(value)}; send true or false")
    return value


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _binary_size(tensor: Mapping[str, Any], what: str) -> int | None:
    params = _parameters(tensor, what)
    if "binary_data_size" not in params:
        return None
    size = params["binary_data_size"]
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise InvalidInputError(f"{what} has binary_data_size {_show(size)}; send a non-negative integer")
    return size


def _decode_raw(tensor: Mapping[str, Any], raw: bytes) -> Any:
    name, datatype = tensor.get("name"), tensor.get("datatype")
    if datatype == "BYTES":
        items: list[str] = []
        at = 0
        while at < len(raw):
            if at + 4 > len(raw):
                raise InvalidInputError(f"input '{name}' has a truncated BYTES element; prefix each with its length")
            (length,) = _LENGTH.unpack_from(raw, at)
            at += 4
            if at + length > len(raw):
                raise InvalidInputError(f"input '{name}' has a BYTES element longer than its data")
            try:
                items.append(raw[at : at + length].decode())
            except UnicodeDecodeError:
                raise InvalidInputError(f"input '{name}' has a BYTES element that is not UTF-8 text") from None
            at += length
        return items
    dtype = _RAW_DTYPES.get(datatype) if isinstance(datatype, str) else None
    if dtype is None:
        raise InvalidInputError(f"input '{name}' has datatype {_show(datatype)}, which has no binary form here")
    width = np.dtype(dtype).itemsize
    if len(raw) % width:
        raise InvalidInputError(f"input '{name}' has {len(raw)} bytes, not a whole number of {datatype} values")
    return np.frombuffer(raw, dtype=dtype)


def encode_response(
    prediction: Prediction, request: V2Request, *, model_name: str, model_version: int
) -> tuple[bytes, int | None]:
    """The response body and, when some output is binary, the JSON header's length (for the
    ``Inference-Header-Content-Length`` header)."""
    tensors = to_v2_outputs(prediction, raw=True)
    if request.outputs is not None:
        by_name = {t["name"]: t for t in tensors}
        unknown = [n for n in request.outputs if n not in by_name]
        if unknown:
            raise InvalidInputError(
                f"the model has no output {', '.join(unknown)}; ask for {', '.join(by_name)} or leave 'outputs' out"
            )
        tensors = [by_name[n] for n in request.outputs]
    chunks: list[bytes] = []
    for tensor in tensors:
        values: np.ndarray[Any, Any] = tensor.pop("data")
        if request.binary_all or tensor["name"] in request.binary_outputs:
            raw = _encode_raw(values, tensor["datatype"])
            tensor["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            tensor["data"] = values.reshape(-1).tolist()
    head = orjson.dumps(
        {"model_name": model_name, "model_version": str(model_version), "id": request.id, "outputs": tensors}
        if request.id is not None
        else {"model_name": model_name, "model_version": str(model_version), "outputs": tensors}
    )
    if not chunks:
        return head, None
    return head + b"".join(chunks), len(head)


def _encode_raw(values: np.ndarray[Any, Any], datatype: str) -> bytes:
    if datatype == "BYTES":
        parts = []
        for v in values.reshape(-1):
            data = v if isinstance(v, bytes) else str(v).encode()
            parts.append(_LENGTH.pack(len(data)) + data)
        return b"".join(parts)
    return np.ascontiguousarray(values, dtype=_RAW_DTYPES[datatype]).tobytes()
