"""NVIDIA's own ``tritonclient.http`` works against the server unchanged: health, metadata,
readiness, and inference with binary tensors (its default) and JSON, numeric and string
features; the answers match the models scored in this process."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from tests.serving.conftest import FEATURES, Server, training_frame
from tests.serving.shared_servers import MIXED_COLUMNS, mixed_frame, shared_server

ATOL = 1e-5  # the ONNX fast path is accepted within 1e-5 of scikit-learn on the registration example


@pytest.fixture(scope="session")
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Server:
    return shared_server(request, tmp_path_factory)


@pytest.fixture
def client(server: Server) -> Iterator[triton.InferenceServerClient]:
    client = triton.InferenceServerClient(f"127.0.0.1:{server.port}")
    yield client
    client.close()


def frame(rows: np.ndarray[Any, Any]) -> pd.DataFrame:
    """Rows as the models were fitted: a frame of float64 features."""
    return pd.DataFrame(rows.astype(np.float64), columns=FEATURES)


def numeric_input(rows: np.ndarray[Any, Any], datatype: str, *, binary: bool = True) -> triton.InferInput:
    dtype = {"FP32": np.float32, "FP64": np.float64, "INT64": np.int64}[datatype]
    tensor = triton.InferInput("input", list(rows.shape), datatype)
    tensor.set_data_from_numpy(rows.astype(dtype), binary_data=binary)
    return tensor


def mixed_inputs(rows: pd.DataFrame, *, binary: bool = True) -> list[triton.InferInput]:
    channel = triton.InferInput("channel", [len(rows)], "BYTES")
    channel.set_data_from_numpy(rows.channel.to_numpy(dtype=object), binary_data=binary)
    amount = triton.InferInput("amount", [len(rows)], "FP64")
    amount.set_data_from_numpy(rows.amount.to_numpy(np.float64), binary_data=binary)
    count = triton.InferInput("count", [len(rows), 1], "INT64")
    count.set_data_from_numpy(rows["count"].to_numpy(np.int64).reshape(-1, 1), binary_data=binary)
    return [amount, count, channel]  # any order: tensors are matched by name


def test_health_and_server_metadata(client: triton.InferenceServerClient) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    metadata = client.get_server_metadata()
    assert metadata["name"] == "lockgate"
    assert "binary_tensor_data" in metadata["extensions"]


def test_model_metadata_says_which_tensors_to_send(client: triton.InferenceServerClient) -> None:
    clf = client.get_model_metadata("clf-api")
    assert clf["name"] == "clf-api"
    assert clf["versions"] == ["1"]
    assert clf["inputs"] == [{"name": "input", "datatype": "FP64", "shape": [-1, len(FEATURES)]}]
    assert [(o["name"], o["datatype"]) for o in clf["outputs"]] == [("label", "INT64"), ("probabilities", "FP64")]
    mixed = client.get_model_metadata("mixed-api", model_version="1")
    assert [(i["name"], i["datatype"]) for i in mixed["inputs"]] == [
        ("channel", "BYTES"),
        ("amount", "FP64"),
        ("count", "INT64"),
    ]
    assert [o["name"] for o in client.get_model_metadata("reg-api")["outputs"]] == ["prediction"]


def test_model_readiness_by_name_and_version(client: triton.InferenceServerClient) -> None:
    assert client.is_model_ready("clf-api")
    assert client.is_model_ready("clf-api", "1")
    assert not client.is_model_ready("clf-api", "2")  # registered, but the alias points at 1
    assert not client.is_model_ready("no-such-model")


@pytest.mark.parametrize("datatype", ["FP32", "FP64", "INT64"])
@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_classifier_inference_matches_the_model(
    client: triton.InferenceServerClient, server: Server, datatype: str, binary: bool
) -> None:
    x, _ = training_frame(rows=25, seed=7)
    rows = x.to_numpy() * (10 if datatype == "INT64" else 1)
    sent = rows.astype({"FP32": np.float32, "FP64": np.float64, "INT64": np.int64}[datatype])
    outputs = (
        None if binary else [triton.InferRequestedOutput(n, binary_data=False) for n in ("label", "probabilities")]
    )
    result = client.infer("clf-api", [numeric_input(rows, datatype, binary=binary)], outputs=outputs)
    model = server.extra["models"]["clf"]
    expected = model.predict_proba(frame(sent))
    np.testing.assert_allclose(result.as_numpy("probabilities"), expected, atol=ATOL)
    np.testing.assert_array_equal(result.as_numpy("label"), model.classes_[expected.argmax(axis=1)])
    response = result.get_response()
    assert response["model_name"] == "clf-api"
    assert response["model_version"] == "1"
    assert all(("parameters" in o) == binary for o in response["outputs"])


def test_a_subset_of_outputs_mixing_binary_and_json(client: triton.InferenceServerClient, server: Server) -> None:
    x, _ = training_frame(rows=5, seed=8)
    wanted = [triton.InferRequestedOutput("probabilities", binary_data=True)]
    result = client.infer("clf-api", [numeric_input(x.to_numpy(), "FP32")], outputs=wanted, request_id="abc-1")
    response = result.get_response()
    assert [o["name"] for o in response["outputs"]] == ["probabilities"]
    assert response["id"] == "abc-1"
    assert result.as_numpy("label") is None
    expected = server.extra["models"]["clf"].predict_proba(frame(x.to_numpy(np.float32)))
    np.testing.assert_allclose(result.as_numpy("probabilities"), expected, atol=ATOL)
    label_only = client.infer(
        "clf-api",
        [numeric_input(x.to_numpy(), "FP32", binary=False)],
        outputs=[triton.InferRequestedOutput("label", binary_data=False)],
    )
    assert label_only.get_response()["outputs"][0]["data"] == expected.argmax(axis=1).tolist()


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_string_features_as_bytes_tensors(client: triton.InferenceServerClient, server: Server, binary: bool) -> None:
    rows, _ = mixed_frame(rows=30, seed=11)
    rows.loc[0, "channel"] = "kiosk"  # a category the encoder never saw: ignored, as in training
    result = client.infer("mixed-api", mixed_inputs(rows, binary=binary))
    expected = server.extra["models"]["mixed"].predict_proba(rows[MIXED_COLUMNS])
    np.testing.assert_allclose(result.as_numpy("probabilities"), expected, atol=ATOL)
    np.testing.assert_array_equal(result.as_numpy("label"), expected.argmax(axis=1))


def test_a_version_path_and_the_regressor(client: triton.InferenceServerClient, server: Server) -> None:
    x, _ = training_frame(rows=10, seed=9)
    pinned = client.infer("reg-api", [numeric_input(x.to_numpy(), "FP64")], model_version="1")
    expected = server.extra["models"]["reg"].predict(x)
    np.testing.assert_allclose(pinned.as_numpy("prediction"), expected, atol=1e-4)
    assert pinned.get_response()["model_version"] == "1"
    by_version = client.infer("clf-api", [numeric_input(x.to_numpy(), "FP64")], model_version="1")
    current = client.infer("clf-api", [numeric_input(x.to_numpy(), "FP64")])
    np.testing.assert_array_equal(by_version.as_numpy("probabilities"), current.as_numpy("probabilities"))


def test_errors_reach_the_client_as_one_sentence(client: triton.InferenceServerClient) -> None:
    wrong = triton.InferInput("input", [1, 3], "FP32")
    wrong.set_data_from_numpy(np.zeros((1, 3), np.float32))
    with pytest.raises(InferenceServerException, match=r"has shape \[1, 3\]; this model takes one tensor 'input'"):
        client.infer("clf-api", [wrong])
    with pytest.raises(InferenceServerException, match="does not serve version 7"):
        client.infer("clf-api", [numeric_input(np.zeros((1, 6)), "FP32")], model_version="7")
    with pytest.raises(InferenceServerException, match="no deployment named 'nope'"):
        client.get_model_metadata("nope")
