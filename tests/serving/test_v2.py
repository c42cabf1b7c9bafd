"""Open Inference Protocol v2 tensors and JSON records to batches, and errors that say what to send."""

from __future__ import annotations

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
        ([tensor("input", [1, 2], "FP32", ["a", "b"])], NUMERIC, r"holds values that are not FP32"),
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
    with pytest.raises(InvalidInputError, match=r"record 0: feature 'a' must be a number, got 'x'"):
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
