"""Bad input against a running server: every malformed request gets a 4xx with one clear
sentence and the request id, never a 5xx, and the server keeps serving afterwards.

Wrong shapes, datatypes and feature names; malformed JSON and Triton binary framing; bodies
over ``--max-body-mb``; unknown deployments and versions; wrong methods; odd request ids.
"""

from __future__ import annotations

import http.client
import json
import struct
from typing import Any

import pytest

from tests.serving.conftest import FEATURES, Answer, Server
from tests.serving.shared_servers import shared_server

ROW = [0.3, -0.2, 1.1, 0.0, 0.5, -1.0]
RECORD = dict(zip(FEATURES, ROW, strict=True))
MIXED = [
    {"name": "channel", "shape": [1], "datatype": "BYTES", "data": ["web"]},
    {"name": "amount", "shape": [1], "datatype": "FP64", "data": [60.0]},
    {"name": "count", "shape": [1], "datatype": "INT64", "data": [3]},
]


@pytest.fixture(scope="session")
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Server:
    return shared_server(request, tmp_path_factory)


def tensor(name: str = "input", shape: Any = (1, 6), datatype: Any = "FP32", data: Any = ROW, **more: Any) -> Any:
    return {
        "name": name,
        "shape": list(shape) if isinstance(shape, tuple) else shape,
        "datatype": datatype,
        "data": data,
        **more,
    }


def infer(*tensors: Any, **more: Any) -> dict[str, Any]:
    return {"inputs": list(tensors), **more}


def send(server: Server, method: str, path: str, body: bytes | dict[str, Any] | None = None, **headers: str) -> Answer:
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    return server.request(method, path, data, {k.replace("_", "-"): v for k, v in headers.items()})


def assert_refused(answer: Answer, status: int, code: str, message: str) -> None:
    """A 4xx JSON error: its code, one sentence naming the problem, and the request id."""
    assert answer.status == status, answer.body
    body = answer.json()
    assert set(body) == {"error", "code", "request_id"}
    assert body["code"] == code
    assert message in body["error"], body["error"]
    assert "\n" not in body["error"]
    assert len(body["error"]) < 400
    assert body["request_id"] == answer.headers["x-request-id"]
    assert answer.headers["content-type"] == "application/json"


V2 = "/v2/models/clf-api/infer"
BAD_V2: list[tuple[str, str, Any, str]] = [
    # (case, path, body, message)
    (
        "wrong tensor name",
        V2,
        infer(tensor(name="x")),
        "got tensor(s) x; this model takes one tensor 'input' of shape [N, 6]",
    ),
    ("too many columns", V2, infer(tensor(shape=(1, 7), data=[*ROW, 1.0])), "has shape [1, 7]"),
    ("one-dimensional", V2, infer(tensor(shape=(6,))), "has shape [6]"),
    ("zero rows", V2, infer(tensor(shape=(0, 6), data=[])), "N > 0"),
    ("data short of shape", V2, infer(tensor(shape=(2, 6))), "has 6 values, but shape [2, 6] needs 12"),
    ("negative dimension", V2, infer(tensor(shape=[1, -6])), "send a list of non-negative integers"),
    ("boolean dimension", V2, infer(tensor(shape=[True, 6])), "send a list of non-negative integers"),
    ("unknown datatype", V2, infer(tensor(datatype="FP128")), "datatype 'FP128'; this feature is numeric"),
    ("datatype not a string", V2, infer(tensor(datatype=["FP32"])), "datatype ['FP32']"),
    ("BYTES for numbers", V2, infer(tensor(datatype="BYTES", data=["a"] * 6)), "datatype 'BYTES'"),
    ("string in FP32", V2, infer(tensor(data=[*ROW[:5], "1.5"])), "is FP32, so its data are numbers; got '1.5'"),
    ("null in FP64", V2, infer(tensor(datatype="FP64", data=[*ROW[:5], None])), "got None"),
    (
        "fraction in INT64",
        V2,
        infer(tensor(datatype="INT64", data=[1, 2, 3, 4, 5, 6.5])),
        "its data are integers; got 6.5",
    ),
    ("number in BOOL", V2, infer(tensor(datatype="BOOL", data=[1] * 6)), "its data are booleans"),
    ("UINT8 overflow", V2, infer(tensor(datatype="UINT8", data=[1, 2, 3, 4, 5, 300])), "outside the range of UINT8"),
    ("INT64 beyond 64 bits", V2, infer(tensor(datatype="INT64", data=[1, 2, 3, 4, 5, 2**70])), "got 1.18"),
    ("FP16 overflow", V2, infer(tensor(datatype="FP16", data=[1, 2, 3, 4, 5, 70000.0])), "outside the range of FP16"),
    ("data not a list", V2, infer(tensor(data={"a": 1})), "send a list of values"),
    ("ragged rows", V2, infer(tensor(shape=(2, 6), data=[ROW, ROW[:5]])), "has 11 values"),
    ("name not a string", V2, infer(tensor(name=7)), "has name 7; name each tensor with a string"),
    ("tensor twice", V2, infer(tensor(), tensor()), "tensor 'input' is sent twice"),
    (
        "tensor lacks data",
        V2,
        infer({"name": "input", "shape": [1, 6], "datatype": "FP32"}),
        "must be an object with name",
    ),
    ("tensor not an object", V2, infer([1, 2]), "input tensor 0 must be an object"),
    ("unknown tensor key", V2, infer(tensor(datatypes="FP32")), "input tensor 0 has unknown key(s) 'datatypes'"),
    ("no inputs", V2, {"inputs": []}, "the request has no 'inputs'"),
    ("inputs missing", V2, {"input": [tensor()]}, "unknown key(s) 'input'"),
    ("id a number", V2, infer(tensor(), id=42), "the request's 'id' is 42; send a string"),
    ("id null", V2, infer(tensor(), id=None), "the request's 'id' is None"),
    ("parameters a list", V2, infer(tensor(), parameters=[1]), "'parameters' of the request must be an object"),
    (
        "binary_data_output a string",
        V2,
        infer(tensor(), parameters={"binary_data_output": "yes"}),
        "send true or false",
    ),
    ("outputs not a list", V2, infer(tensor(), outputs={"name": "label"}), "'outputs' must be a list"),
    ("outputs null", V2, infer(tensor(), outputs=None), "'outputs' must be a list"),
    ("unknown output", V2, infer(tensor(), outputs=[{"name": "score"}]), "the model has no output score"),
    (
        "output without name",
        V2,
        infer(tensor(), outputs=[{"parameters": {}}]),
        "each requested output must be an object",
    ),
    (
        "unknown output key",
        V2,
        infer(tensor(), outputs=[{"name": "label", "binary": True}]),
        "output 'label' has unknown key(s)",
    ),
    (
        "output parameters null",
        V2,
        infer(tensor(), outputs=[{"name": "label", "parameters": None}]),
        "must be an object",
    ),
    ("tensor parameters a list", V2, infer(tensor(parameters=[])), "'parameters' of input tensor 0 must be an object"),
    (
        "binary size without bytes",
        V2,
        infer(tensor(parameters={"binary_data_size": 24})),
        "has both 'data' and a binary_data_size",
    ),
    (
        "negative binary size",
        V2,
        infer({"name": "input", "shape": [1, 6], "datatype": "FP32", "parameters": {"binary_data_size": -1}}),
        "send a non-negative integer",
    ),
    ("not JSON", V2, b'{"inputs": [', "the request body is not valid JSON"),
    ("empty body", V2, b"", "the request body is not valid JSON"),
    ("JSON array", V2, b"[]", "must be a JSON object with 'inputs'"),
    ("not UTF-8", V2, b'{"inputs": "\xff"}', "not valid JSON"),
    (
        "NaN literal",
        V2,
        b'{"inputs": [{"name": "input", "shape": [1, 1], "datatype": "FP64", "data": [NaN]}]}',
        "not valid JSON",
    ),
    # the mixed signature: one tensor per feature, BYTES for strings
    (
        "mixed: all-numeric form",
        "/v2/models/mixed-api/infer",
        infer(tensor(shape=(1, 3), data=[1, 2, 3])),
        "lacks channel, amount, count and has unknown input",
    ),
    ("mixed: missing feature", "/v2/models/mixed-api/infer", infer(*MIXED[:2]), "lacks count"),
    (
        "mixed: unknown feature",
        "/v2/models/mixed-api/infer",
        infer(*MIXED, tensor("zip", (1,), "FP64", [1.0])),
        "has unknown zip",
    ),
    (
        "mixed: string as FP64",
        "/v2/models/mixed-api/infer",
        infer({**MIXED[0], "datatype": "FP64", "data": [1.0]}, *MIXED[1:]),
        "send it as BYTES, not 'FP64'",
    ),
    (
        "mixed: number in BYTES",
        "/v2/models/mixed-api/infer",
        infer({**MIXED[0], "data": [5]}, *MIXED[1:]),
        "its data are strings; got 5",
    ),
    (
        "mixed: rows differ",
        "/v2/models/mixed-api/infer",
        infer({**MIXED[0], "shape": [2], "data": ["a", "b"]}, *MIXED[1:]),
        "send equal row counts",
    ),
    (
        "mixed: [N, 2] column",
        "/v2/models/mixed-api/infer",
        infer(MIXED[0], {**MIXED[1], "shape": [1, 2], "data": [1.0, 2.0]}, MIXED[2]),
        "send [N] or [N, 1]",
    ),
]


@pytest.mark.parametrize(("path", "body", "message"), [c[1:] for c in BAD_V2], ids=[c[0] for c in BAD_V2])
def test_malformed_v2_requests_get_400_with_one_sentence(server: Server, path: str, body: Any, message: str) -> None:
    assert_refused(send(server, "POST", path, body), 400, "invalid_input", message)


BAD_PREDICT: list[tuple[str, Any, str]] = [
    ("unknown top-level key", {"records": [RECORD], "debug": True}, "the body has unknown key(s) 'debug'"),
    ("both records and entities", {"records": [RECORD], "entities": [{"card_id": "c1"}]}, "exactly one of them"),
    ("neither", {}, "exactly one of them"),
    ("records not a list", {"records": RECORD}, "'records' must be a list"),
    ("no records", {"records": []}, "the request has no records"),
    ("record not an object", {"records": [ROW]}, "record 0 is a list, not an object of feature values"),
    ("missing feature", {"records": [RECORD, {"f0": 1.0}]}, "record 1 lacks feature(s) f1, f2, f3, f4, f5"),
    (
        "string for a number",
        {"records": [{**RECORD, "f3": "0.5"}]},
        "record 0: feature 'f3' must be a number or null, got '0.5'",
    ),
    ("boolean for a number", {"records": [{**RECORD, "f1": True}]}, "feature 'f1' must be a number or null, got True"),
    ("list for a number", {"records": [{**RECORD, "f1": [1.0]}]}, "got [1.0]"),
    (
        "entities without a feature service",
        {"entities": [{"card_id": "c1"}]},
        "has no feature service to look entities up in",
    ),
    ("body a list", [RECORD], "exactly one of them"),
]


@pytest.mark.parametrize(("body", "message"), [c[1:] for c in BAD_PREDICT], ids=[c[0] for c in BAD_PREDICT])
def test_malformed_predict_requests_get_400_with_one_sentence(server: Server, body: Any, message: str) -> None:
    data = json.dumps(body).encode()
    assert_refused(send(server, "POST", "/v1/endpoints/clf-api/predict", data), 400, "invalid_input", message)


def test_mixed_records_check_each_column_kind(server: Server) -> None:
    path = "/v1/endpoints/mixed-api/predict"
    record = {"channel": "web", "amount": 60.0, "count": 3}
    answer = send(server, "POST", path, {"records": [{**record, "channel": 7}]})
    assert_refused(answer, 400, "invalid_input", "feature 'channel' must be a string or null, got 7")
    answer = send(server, "POST", path, {"records": [{**record, "count": "3"}]})
    assert_refused(answer, 400, "invalid_input", "feature 'count' must be a number or null, got '3'")
    # null is a missing value: the model takes it (the one-hot encoder ignores it here)
    assert send(server, "POST", path, {"records": [{**record, "channel": None}]}).status == 200


# -- Triton's binary tensor extension ------------------------------------------------------------


def binary(header: dict[str, Any], *chunks: bytes, declared: str | None = None) -> tuple[bytes, dict[str, str]]:
    head = json.dumps(header).encode()
    length = str(len(head)) if declared is None else declared
    return head + b"".join(chunks), {"Inference-Header-Content-Length": length}


RAW = struct.pack("<6f", *ROW)
BINARY_HEADER = {
    "inputs": [{"name": "input", "shape": [1, 6], "datatype": "FP32", "parameters": {"binary_data_size": 24}}]
}
BAD_FRAMING: list[tuple[str, tuple[bytes, dict[str, str]], str]] = [
    (
        "length not a number",
        binary(BINARY_HEADER, RAW, declared="twelve"),
        "Inference-Header-Content-Length is 'twelve'",
    ),
    ("negative length", binary(BINARY_HEADER, RAW, declared="-5"), "Inference-Header-Content-Length is '-5'"),
    ("zero length", binary(BINARY_HEADER, RAW, declared="0"), "Inference-Header-Content-Length is 0 but the body has"),
    ("length past the body", binary(BINARY_HEADER, RAW, declared="100000"), "is 100000 but the body has"),
    ("length cuts the JSON", binary(BINARY_HEADER, RAW, declared="20"), "the request body is not valid JSON"),
    (
        "length takes the bytes too",
        binary(BINARY_HEADER, RAW, declared=str(len(json.dumps(BINARY_HEADER)) + 24)),
        "not valid JSON",
    ),
    ("truncated data", binary(BINARY_HEADER, RAW[:-3]), "declares 24 binary bytes but only 21 follow the header"),
    ("extra bytes", binary(BINARY_HEADER, RAW, b"\x00\x01"), "2 bytes follow the inputs' binary data"),
    ("bytes without a binary input", binary({"inputs": [tensor()]}, RAW), "24 bytes follow the inputs' binary data"),
    (
        "not whole FP32 values",
        binary({"inputs": [{**BINARY_HEADER["inputs"][0], "parameters": {"binary_data_size": 22}}]}, RAW[:22]),
        "not a whole number of FP32 values",
    ),
    (
        "FP16 bytes for the wrong count",
        binary({"inputs": [{**BINARY_HEADER["inputs"][0], "datatype": "FP16"}]}, RAW),
        "has 12 values, but shape [1, 6] needs 6",
    ),
    (
        "no binary form",
        binary({"inputs": [{**BINARY_HEADER["inputs"][0], "datatype": "FP128"}]}, RAW),
        "has no binary form here",
    ),
    (
        "BYTES element cut",
        binary(
            {"inputs": [{"name": "channel", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": 6}}]},
            struct.pack("<I", 9) + b"we",
        ),
        "a BYTES element longer than its data",
    ),
    (
        "BYTES length cut",
        binary(
            {"inputs": [{"name": "channel", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": 2}}]},
            b"\x03\x00",
        ),
        "a truncated BYTES element",
    ),
    (
        "BYTES not UTF-8",
        binary(
            {"inputs": [{"name": "channel", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": 5}}]},
            struct.pack("<I", 1) + b"\xff",
        ),
        "not UTF-8 text",
    ),
]


@pytest.mark.parametrize(("framed", "message"), [c[1:] for c in BAD_FRAMING], ids=[c[0] for c in BAD_FRAMING])
def test_malformed_binary_framing_gets_400(server: Server, framed: tuple[bytes, dict[str, str]], message: str) -> None:
    body, headers = framed
    path = "/v2/models/mixed-api/infer" if "channel" in body.decode(errors="replace") else V2
    assert_refused(server.request("POST", path, body, headers), 400, "invalid_input", message)


def test_binary_inputs_and_outputs_round_trip(server: Server) -> None:
    header = {
        **BINARY_HEADER,
        "outputs": [{"name": "probabilities", "parameters": {"binary_data": True}}, {"name": "label"}],
    }
    body, headers = binary(header, RAW)
    answer = server.request("POST", V2, body, headers)
    assert answer.status == 200, answer.body
    assert answer.headers["content-type"] == "application/octet-stream"
    size = int(answer.headers["inference-header-content-length"])
    head = json.loads(answer.body[:size])
    probabilities, label = head["outputs"]
    assert probabilities["parameters"] == {"binary_data_size": 16}
    assert "data" not in probabilities
    values = struct.unpack("<2d", answer.body[size:])
    assert abs(sum(values) - 1.0) < 1e-6
    assert label["data"] == [int(values[1] > 0.5)]
    json_answer = send(server, "POST", V2, infer(tensor()))
    assert json_answer.json()["outputs"][1]["data"] == pytest.approx(list(values), abs=1e-6)


def test_an_output_asked_twice_is_answered_once(server: Server) -> None:
    outputs = [{"name": "label"}, {"name": "label", "parameters": {"binary_data": True}}]
    answer = send(server, "POST", V2, infer(tensor(), outputs=outputs))
    assert answer.status == 200
    size = int(answer.headers["inference-header-content-length"])
    (label,) = json.loads(answer.body[:size])["outputs"]
    assert label["name"] == "label"
    assert label["parameters"] == {"binary_data_size": 8}


# -- sizes, routes, methods, ids -----------------------------------------------------------------


def test_bodies_over_the_limit_get_413(server: Server) -> None:
    big = json.dumps(infer(tensor(shape=(60_000, 6), data=ROW * 60_000))).encode()
    assert len(big) > 1024 * 1024  # the server runs with --max-body-mb 1
    assert_refused(send(server, "POST", V2, big), 413, "payload_too_large", "over this server's 1,048,576")
    assert_refused(send(server, "POST", "/v1/endpoints/clf-api/predict", big), 413, "payload_too_large", "bytes")
    # without a Content-Length the limit holds while the chunks arrive
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        connection.request(
            "POST", V2, body=iter([big[i : i + 65536] for i in range(0, len(big), 65536)]), encode_chunked=True
        )
        response = connection.getresponse()
        assert response.status == 413
        assert json.loads(response.read())["code"] == "payload_too_large"
    finally:
        connection.close()


@pytest.mark.parametrize(
    ("method", "path", "message"),
    [
        ("POST", "/v2/models/nope/infer", "no deployment named 'nope' (serving: clf-api, fs-api"),
        ("GET", "/v2/models/nope", "no deployment named 'nope'"),
        ("GET", "/v2/models/nope/ready", "no deployment named 'nope'"),
        ("POST", "/v1/endpoints/nope/predict", "create it with lockgate deploy create nope --model"),
        ("POST", "/v2/models/clf-api/versions/9/infer", "deployment 'clf-api' does not serve version 9 (it serves 1)"),
        ("GET", "/v2/models/clf-api/versions/2", "does not serve version 2"),
        ("GET", "/v2/models/clf-api/versions/2/ready", "does not serve version 2"),
        ("POST", "/v2/models/clf-api/versions/abc/infer", "model version 'abc' does not exist"),
        ("POST", "/v2/models/clf-api/versions/01/infer", "model version '01' does not exist"),
        ("POST", "/v2/models/clf-api/versions/%D9%A1/infer", "does not exist; versions are numbers"),
        ("POST", "/v2/models/clf-api/versions/99999999999/infer", "does not exist"),
        ("GET", "/v2/models/clf-api/versions", "name a version: /v2/models/clf-api/versions/N"),
        ("GET", "/v2/models/clf-api/explain", "no route /v2/models/clf-api/explain"),
        ("GET", "/v2/models", "no route /v2/models"),
        ("GET", "/", "no route /"),
        ("GET", "/v1/endpoints/clf-api", "no route /v1/endpoints/clf-api"),
    ],
)
def test_unknown_deployments_versions_and_routes_get_404(server: Server, method: str, path: str, message: str) -> None:
    body = json.dumps(infer(tensor())).encode() if method == "POST" else None
    assert_refused(send(server, method, path, body), 404, "not_found", message)


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("GET", "/v2/models/clf-api/infer", "POST"),
        ("PUT", "/v2/models/clf-api/versions/1/infer", "POST"),
        ("DELETE", "/v1/endpoints/clf-api/predict", "POST"),
        ("GET", "/v1/endpoints/nope/predict", "POST"),
        ("POST", "/v2/models/clf-api", "GET"),
        ("POST", "/v2/models/clf-api/ready", "GET"),
        ("PATCH", "/v2", "GET"),
        ("POST", "/v2/health/live", "GET"),
        ("POST", "/v2/health/ready", "GET"),
        ("POST", "/metrics", "GET"),
        ("PUT", "/openapi.json", "GET"),
        ("DELETE", "/v1/endpoints", "GET"),
        ("OPTIONS", "/v2", "GET"),
    ],
)
def test_wrong_methods_get_405_with_allow(server: Server, method: str, path: str, allowed: str) -> None:
    answer = send(server, method, path)
    assert_refused(answer, 405, "method_not_allowed", f"{method} is not allowed here; use {allowed}")
    assert answer.headers["allow"] == allowed


def test_request_ids_are_echoed_or_made(server: Server) -> None:
    mine = send(server, "POST", V2, infer(tensor()), x_request_id="trace-42")
    assert mine.status == 200
    assert mine.headers["x-request-id"] == "trace-42"
    refused = send(server, "POST", V2, infer(tensor(name="x")), x_request_id="trace-43")
    assert refused.headers["x-request-id"] == refused.json()["request_id"] == "trace-43"
    made = {send(server, "GET", "/v2/health/live").headers["x-request-id"] for _ in range(3)}
    assert len(made) == 3
    assert all(len(i) == 32 for i in made)
    for odd in ("x" * 500, "tab\there"):  # too long, or not printable: the server makes its own
        answer = send(server, "GET", "/v2", x_request_id=odd)
        assert answer.status == 200
        assert answer.headers["x-request-id"] != odd
    # the v2 request's own id goes back in the body
    answered = send(server, "POST", V2, infer(tensor(), id="req-7")).json()
    assert answered["id"] == "req-7"


def test_probing_names_does_not_grow_the_metrics(server: Server) -> None:
    for i in range(5):
        assert send(server, "POST", f"/v2/models/probe-{i}/infer", b"{}").status == 404
    metrics = send(server, "GET", "/metrics").body.decode()
    assert "probe-" not in metrics
    assert 'deployment="(unknown)"' in metrics


def test_the_server_survived_every_bad_request(server: Server) -> None:
    assert send(server, "GET", "/v2/health/live").status == 200
    assert send(server, "GET", "/v2/health/ready").status == 200
    answer = send(server, "POST", V2, infer(tensor(shape=(2, 6), data=[ROW, ROW])))
    assert answer.status == 200
    assert answer.json()["outputs"][0]["shape"] == [2]
    assert server.process.poll() is None
    assert "Traceback" not in server.log.read_text()


@pytest.mark.parametrize("depth", [990, 1020])
def test_data_nested_a_thousand_levels_deep_is_bad_input_not_a_crash(server: Server, depth: int) -> None:
    nested = "[" * depth + "1" + "]" * depth
    body = f'{{"inputs": [{{"name": "input", "shape": [1, 6], "datatype": "FP32", "data": {nested}}}]}}'
    assert_refused(send(server, "POST", V2, body.encode()), 400, "invalid_input", "nests values too deeply")
    assert send(server, "GET", "/v2/health/live").status == 200
