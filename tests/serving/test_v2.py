"""Open Inference Protocol v2 tensors and JSON records to batches, and errors that say what to send."""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np
import pytest

from lockgate.errors import InvalidInputError
from lockgate.serving import (
    NumericBatch,
    Prediction,
    Signature,
    from_records,
    from_v2_inputs,
    to_v2_outputs,
    v2_metadata,
)
from lockgate.serving._batch import check_entity_rows
from lockgate.serving._v2 import V2Request, encode_response, parse_request

NUMERIC = Signature.from_registry(
    {
        "inputs": [{"name": "a", "type": "double"}, {"name": "b", "type": "int64"}],
        "kind": "classifier",
        "classes": [0, 1],
    }
)
MIXED = Signature.from_registry(
    {"inputs": [{"name": "channel", "type": "string"}, {"name": "amount", "type": "double"}], "kind": "regressor"}
)


def tensor(name: str, shape: list[int], datatype: str, data: Any) -> dict[str, Any]:
    return {"name": name, "shape": shape, "datatype": datatype, "data": data}


def test_numeric_input_tensor_flat_or_nested() -> None:
    flat = from_v2_inputs([tensor("input", [2, 2], "FP32", [1, 2, 3, 4])], NUMERIC)
    nested = from_v2_inputs([tensor("input", [2, 2], "FP64", [[1, 2], [3, 4]])], NUMERIC)
    assert isinstance(flat, NumericBatch)
    np.testing.assert_array_equal(flat.matrix, nested.matrix)
    np.testing.assert_array_equal(flat["b"], [2.0, 4.0])


def test_mixed_signature_takes_one_tensor_per_column() -> None:
    batch = from_v2_inputs(
        [tensor("amount", [2, 1], "FP64", [1.5, 2.5]), tensor("channel", [2], "BYTES", ["web", "pos"])], MIXED
    )
    assert batch["channel"].tolist() == ["web", "pos"]
    np.testing.assert_array_equal(batch["amount"], [1.5, 2.5])


@pytest.mark.parametrize(
    ("inputs", "signature", "message"),
    [
        (
            [tensor("x", [1, 2], "FP32", [1, 2])],
            NUMERIC,
            r"got tensor\(s\) x; this model takes one tensor 'input' of shape \[N, 2\]",
        ),
        (
            [tensor("input", [1, 3], "FP32", [1, 2, 3])],
            NUMERIC,
            r"has shape \[1, 3\]; this model takes one tensor 'input'",
        ),
        ([tensor("input", [2, 2], "FP32", [1, 2, 3])], NUMERIC, r"has 3 values, but shape \[2, 2\] needs 4"),
        ([tensor("input", [1, 2], "BYTES", ["a", "b"])], NUMERIC, r"datatype 'BYTES'; this feature is numeric"),
        ([tensor("input", [1, 2], "FP32", ["a", "b"])], NUMERIC, r"is FP32, so its data are numbers; got 'a'"),
        ([tensor("input", [1, -2], "FP32", [1, 2])], NUMERIC, r"send a list of non-negative integers"),
        ([tensor("amount", [1], "FP64", [1.0])], MIXED, r"lacks channel; this model takes one tensor per feature"),
        (
            [
                tensor("amount", [1], "FP64", [1.0]),
                tensor("channel", [1], "BYTES", ["w"]),
                tensor("zzz", [1], "FP64", [1]),
            ],
            MIXED,
            r"has unknown zzz",
        ),
        ([tensor("amount", [1], "FP64", [1.0]), tensor("channel", [1], "FP64", [1.0])], MIXED, r"send it as BYTES"),
        (
            [tensor("amount", [2], "FP64", [1.0, 2.0]), tensor("channel", [1], "BYTES", ["w"])],
            MIXED,
            r"send equal row counts",
        ),
        (
            [tensor("amount", [1, 2], "FP64", [1.0, 2.0]), tensor("channel", [1], "BYTES", ["w"])],
            MIXED,
            r"send \[N\] or \[N, 1\]",
        ),
        ([{"name": "input", "data": [1]}], NUMERIC, r"must be an object with name, shape, datatype and data"),
    ],
)
def test_v2_errors_say_what_to_send(inputs: list[dict[str, Any]], signature: Signature, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        from_v2_inputs(inputs, signature)


def test_record_errors() -> None:
    with pytest.raises(InvalidInputError, match=r"record 1 lacks feature\(s\) b"):
        from_records([{"a": 1, "b": 2}, {"a": 1}], NUMERIC)
    with pytest.raises(InvalidInputError, match=r"record 0: feature 'a' must be a number or null, got 'x'"):
        from_records([{"a": "x", "b": 2}], NUMERIC)
    with pytest.raises(InvalidInputError, match=r"feature 'channel' must be a string"):
        from_records([{"channel": 3, "amount": 1.0}], MIXED)
    with pytest.raises(InvalidInputError, match="no records"):
        from_records([], MIXED)


def test_outputs_and_metadata() -> None:
    pred = Prediction(kind="sklearn", label=np.array([1, 0]), probabilities=np.array([[0.2, 0.8], [0.9, 0.1]]))
    assert to_v2_outputs(pred) == [
        {"name": "label", "shape": [2], "datatype": "INT64", "data": [1, 0]},
        {"name": "probabilities", "shape": [2, 2], "datatype": "FP64", "data": [0.2, 0.8, 0.9, 0.1]},
    ]
    meta = v2_metadata(NUMERIC, "onnx")
    assert meta["inputs"] == [{"name": "input", "datatype": "FP64", "shape": [-1, 2]}]
    assert [o["name"] for o in meta["outputs"]] == ["label", "probabilities"]
    assert v2_metadata(MIXED, "sklearn")["inputs"][0] == {"name": "channel", "datatype": "BYTES", "shape": [-1]}


# -- the strictness the HTTP layer relies on (tests/serving/test_v2_protocol.py sends it over HTTP)

FLAGGED = Signature.from_registry(
    {"inputs": [{"name": "a", "type": "double"}, {"name": "on", "type": "bool"}], "kind": "regressor"}
)


def test_records_take_numbers_booleans_strings_or_null_by_column() -> None:
    batch = from_records([{"a": np.float64(1.5), "b": None}, {"a": 2, "b": 3}], NUMERIC)
    assert isinstance(batch, NumericBatch)
    np.testing.assert_array_equal(batch.matrix, [[1.5, np.nan], [2.0, 3.0]])
    assert list(batch) == ["a", "b"]
    assert "b" in batch
    assert len(batch) == 2
    np.testing.assert_array_equal(dict(batch)["a"], [1.5, 2.0])
    np.testing.assert_array_equal(from_records([{"a": 1.0, "on": True}], FLAGGED).matrix, [[1.0, 1.0]])
    with pytest.raises(InvalidInputError, match=r"feature 'on' must be true, false or null, got 1"):
        from_records([{"a": 1.0, "on": 1}], FLAGGED)
    for bad in (True, "1.5", [1.0], {"v": 1}):
        with pytest.raises(InvalidInputError, match=r"record 0: feature 'a' must be a number or null"):
            from_records([{"a": bad, "b": 1}], NUMERIC)
    with pytest.raises(InvalidInputError, match=r"record 1 is a list, not an object"):
        from_records([{"a": 1, "b": 2}, [1, 2]], NUMERIC)
    mixed = from_records([{"channel": None, "amount": None}], MIXED)
    assert mixed["channel"].tolist() == [None]
    assert np.isnan(mixed["amount"][0])


@pytest.mark.parametrize(
    ("datatype", "data", "message"),
    [
        ("FP64", [1.0, None], r"is FP64, so its data are numbers; got None"),
        ("FP32", [1.0, True], r"got True"),
        ("FP16", [1.0, 1e5], r"outside the range of FP16"),
        ("FP32", [1.0, -1e39], r"outside the range of FP32"),
        ("INT64", [1, 2.5], r"is INT64, so its data are integers; got 2.5"),
        ("INT64", [1, 2.0**63], r"got 9.223372036854776e\+18"),
        ("INT8", [1, 200], r"outside the range of INT8"),
        ("UINT16", [1, -1], r"outside the range of UINT16"),
        ("BOOL", [True, 0], r"is BOOL, so its data are booleans; got 0"),
        ("FP32", "1, 2", r"has data '1, 2'; send a list of values"),
    ],
)
def test_tensor_data_must_hold_values_of_its_datatype(datatype: str, data: Any, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        from_v2_inputs([tensor("input", [1, 2], datatype, data)], NUMERIC)


def test_tensor_data_of_every_number_type() -> None:
    for datatype, data in (("INT64", [1, 2.0]), ("UINT8", [0, 255]), ("BOOL", [True, False]), ("FP16", [0.5, 2])):
        batch = from_v2_inputs([tensor("input", [1, 2], datatype, data)], NUMERIC)
        np.testing.assert_array_equal(batch.matrix, [[float(v) for v in data]])
    raw = from_v2_inputs([tensor("input", [2, 2], "FP32", np.array([1, 2, 3, 4], dtype="<f4"))], NUMERIC)
    np.testing.assert_array_equal(raw.matrix, [[1, 2], [3, 4]])
    with pytest.raises(InvalidInputError, match=r"is sent twice"):
        from_v2_inputs([tensor("input", [1, 2], "FP32", [1, 2])] * 2, NUMERIC)
    with pytest.raises(InvalidInputError, match=r"has name 3; name each tensor with a string"):
        from_v2_inputs([tensor(3, [1, 2], "FP32", [1, 2])], NUMERIC)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match=r"N > 0"):
        from_v2_inputs([tensor("channel", [0], "BYTES", []), tensor("amount", [0], "FP64", [])], MIXED)
    with pytest.raises(InvalidInputError, match=r"its data are strings; got None"):
        from_v2_inputs([tensor("channel", [1], "BYTES", [None]), tensor("amount", [1], "FP64", [1.0])], MIXED)


def test_entity_rows_hold_exactly_their_keys_and_fields() -> None:
    rows: list[dict[str, Any]] = [{"card_id": "c1", "amount": 5}, {"card_id": 7.0, "amount": "12"}]
    check_entity_rows(rows, ("card_id",), ("amount",))
    assert rows[1]["card_id"] == 7
    assert isinstance(rows[1]["card_id"], int)
    for row, message in (
        ({"amount": 1}, r"key 'card_id' must be a string or a 64-bit integer, got nothing"),
        ({"card_id": 2**63, "amount": 1}, r"got 9223372036854775808"),
        ({"card_id": True, "amount": 1}, r"got True"),
        ({"card_id": "c1", "amount": None}, r"request field 'amount' must be a string or number, got None"),
        ({"card_id": "c1", "amount": 1, "zip": 2}, r"entity 0 has unknown key\(s\) 'zip'; send card_id, amount"),
    ):
        with pytest.raises(InvalidInputError, match=message):
            check_entity_rows([row], ("card_id",), ("amount",))
    with pytest.raises(InvalidInputError, match=r"non-empty list"):
        check_entity_rows([], ("card_id",), ())


def v2(body: Any, header_length: str | None = None) -> V2Request:
    return parse_request(body if isinstance(body, bytes) else json.dumps(body).encode(), header_length)


INPUT = {"name": "input", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"inputs": [INPUT], "input": []}, r"the request has unknown key\(s\) 'input'; the protocol's are id, inputs"),
        ({"inputs": [{**INPUT, "dtype": "FP32"}]}, r"input tensor 0 has unknown key\(s\) 'dtype'"),
        ({"inputs": [INPUT], "outputs": [{"name": "label", "binary": True}]}, r"output 'label' has unknown key"),
        ({"inputs": [INPUT], "id": 7}, r"the request's 'id' is 7; send a string, or leave it out"),
        ({"inputs": [INPUT], "parameters": None}, r"'parameters' of the request must be an object, not None"),
        ({"inputs": [INPUT], "outputs": None}, r"'outputs' must be a list"),
        ({"inputs": [INPUT], "outputs": [{"name": "label", "parameters": {"binary_data": 1}}]}, r"send true or false"),
        ({"inputs": [{**INPUT, "parameters": {"binary_data_size": 8}}]}, r"has both 'data' and a binary_data_size"),
    ],
)
def test_v2_requests_hold_the_protocols_keys_only(body: Any, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        v2(body)


def test_binary_tensors_are_cut_from_the_body() -> None:
    head = json.dumps(
        {
            "inputs": [
                {"name": "channel", "shape": [2], "datatype": "BYTES", "parameters": {"binary_data_size": 13}},
                {"name": "amount", "shape": [2], "datatype": "FP64", "parameters": {"binary_data_size": 16}},
            ],
            "outputs": [{"name": "label"}, {"name": "label", "parameters": {"binary_data": True}}],
        }
    ).encode()
    strings = struct.pack("<I", 3) + b"web" + struct.pack("<I", 2) + b"\xc3\xa9"
    numbers = struct.pack("<2d", 1.5, 2.5)
    request = v2(head + strings + numbers, str(len(head)))
    assert request.inputs[0]["data"] == ["web", "é"]
    assert request.outputs == ["label"]
    assert request.binary_outputs == {"label"}
    assert request.id is None
    batch = from_v2_inputs(request.inputs, MIXED)
    np.testing.assert_array_equal(batch["amount"], [1.5, 2.5])
    for length, message in (("1_0", r"Inference-Header-Content-Length is '1_0'"), (" 12", r"is ' 12'")):
        with pytest.raises(InvalidInputError, match=message):
            v2(head + strings + numbers, length)


def test_binary_outputs_follow_the_json_header() -> None:
    prediction = Prediction(kind="sklearn", label=np.array(["fraud", "ok"], dtype=object), probabilities=np.eye(2))
    request = v2({"inputs": [INPUT], "parameters": {"binary_data_output": True}, "id": "r1"})
    body, size = encode_response(prediction, request, model_name="m", model_version=3)
    assert size is not None
    head = json.loads(body[:size])
    assert head["id"] == "r1"
    assert head["model_version"] == "3"
    assert [(o["name"], o["datatype"], o["parameters"]) for o in head["outputs"]] == [
        ("label", "BYTES", {"binary_data_size": 15}),
        ("probabilities", "FP64", {"binary_data_size": 32}),
    ]
    assert body[size : size + 15] == struct.pack("<I", 5) + b"fraud" + struct.pack("<I", 2) + b"ok"
