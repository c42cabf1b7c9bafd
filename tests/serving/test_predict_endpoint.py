"""The friendly JSON endpoint ``POST /v1/endpoints/{name}/predict``: named feature records, or
entity keys looked up through the deployment's feature service under its stale policy, and
rows checked against the deployment's data contract."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

import lockgate as lg
from tests.serving.conftest import FEATURES, Answer, Server, training_frame
from tests.serving.shared_servers import CARD_FEATURES, shared_server

ATOL = 1e-5


@pytest.fixture(scope="session")
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Server:
    return shared_server(request, tmp_path_factory)


def predict(server: Server, deployment: str, body: dict[str, Any], **headers: str) -> Answer:
    return server.post(
        f"/v1/endpoints/{deployment}/predict", body, {k.replace("_", "-"): v for k, v in headers.items()}
    )


def cards(*ids: str) -> dict[str, Any]:
    return {"entities": [{"card_id": i} for i in ids]}


def online_records(server: Server, ids: list[str]) -> list[dict[str, Any]]:
    """What the online store holds for ``ids``, read in this process, as feature records."""
    with lg.Workspace.open(server.home) as ws:
        answer = ws.features.online("svc", [{"card_id": i} for i in ids])
        return [dict(row.values) for row in answer]


def test_records_get_predictions_scores_the_version_and_the_request_id(server: Server) -> None:
    x, _ = training_frame(rows=4, seed=5)
    answer = predict(server, "clf-api", {"records": x.to_dict("records")})
    assert answer.status == 200, answer.body
    body = answer.json()
    assert set(body) == {"request_id", "deployment", "model", "model_version", "predictions", "scores"}
    assert (body["deployment"], body["model"], body["model_version"]) == ("clf-api", "clf", 1)
    expected = server.extra["models"]["clf"].predict_proba(x)
    np.testing.assert_allclose(body["scores"], expected[:, 1], atol=ATOL)
    assert body["predictions"] == expected.argmax(axis=1).tolist()
    assert body["request_id"] == answer.headers["x-request-id"]
    echoed = predict(server, "clf-api", {"records": x.head(1).to_dict("records")}, x_request_id="order-981")
    assert echoed.json()["request_id"] == echoed.headers["x-request-id"] == "order-981"


def test_a_regressor_answers_predictions_without_scores(server: Server) -> None:
    x, _ = training_frame(rows=3, seed=6)
    body = predict(server, "reg-api", {"records": x.to_dict("records")}).json()
    assert "scores" not in body
    np.testing.assert_allclose(body["predictions"], server.extra["models"]["reg"].predict(x), atol=1e-4)


def test_keys_outside_the_signature_are_ignored_in_records(server: Server) -> None:
    record = {**dict.fromkeys(FEATURES, 0.1), "note": "ignored", "f9": [1, 2]}
    assert predict(server, "clf-api", {"records": [record]}).status == 200


def test_fresh_lookups_predict_what_the_same_records_do(server: Server) -> None:
    ids = ["c1", "c2", "c3", "c4", "c5"]
    looked_up = predict(server, "fs-api", cards(*ids))
    assert looked_up.status == 200, looked_up.body
    body = looked_up.json()
    assert body["feature_status"] == ["fresh"] * len(ids)
    records = online_records(server, ids)
    assert set(records[0]) == set(CARD_FEATURES)
    sent = predict(server, "fs-api", {"records": records}).json()
    assert sent["predictions"] == body["predictions"]
    assert sent["scores"] == pytest.approx(body["scores"], abs=1e-12)
    expected = server.extra["models"]["cards"].predict_proba(pd.DataFrame(records)[CARD_FEATURES])
    np.testing.assert_allclose(body["scores"], expected[:, 1], atol=ATOL)
    assert "feature_status" not in sent


def test_stale_features_under_fail_closed_answer_503_with_retry_after(server: Server) -> None:
    for ids in (["c_stale"], ["c1", "c_stale"], ["c_gone"]):
        answer = predict(server, "fs-strict", cards(*ids))
        assert answer.status == 503, answer.body
        assert answer.headers["retry-after"] == "60"
        body = answer.json()
        assert body["code"] == "stale_features"
        assert "feature view 'card_stats' has no fresh value for 1 requested entity" in body["error"]
        assert "its stale policy is fail_closed; materialize or push fresh values, then retry in 60 s" in body["error"]
    assert (
        "1 stale, the oldest 3d old against a ttl of 1d" in predict(server, "fs-strict", cards("c_stale")).body.decode()
    )
    assert "(1 missing)" in predict(server, "fs-strict", cards("c_gone")).body.decode()
    assert predict(server, "fs-strict", cards("c1", "c2")).json()["feature_status"] == ["fresh", "fresh"]


def test_last_known_serves_stale_and_missing_entities_and_says_so(server: Server) -> None:
    body = predict(server, "fs-api", cards("c1", "c_stale", "c_gone")).json()
    assert body["feature_status"] == ["fresh", "stale", "missing"]
    assert len(body["predictions"]) == len(body["scores"]) == 3
    # the stale card is scored on its last known values; the missing one on nulls (NaN), as in
    # a training set's point-in-time join for an entity without history
    stale = predict(server, "fs-api", {"records": [{"amount_avg": 42.0, "txn_count": 7}]}).json()
    assert body["scores"][1] == pytest.approx(stale["scores"][0], abs=1e-12)
    missing = predict(server, "fs-api", {"records": [{"amount_avg": None, "txn_count": None}]}).json()
    assert body["scores"][2] == pytest.approx(missing["scores"][0], abs=1e-12)


def test_the_default_policy_answers_the_views_defaults(server: Server) -> None:
    body = predict(server, "fs-default", cards("c_stale", "c_gone", "c1")).json()
    assert body["feature_status"] == ["default", "default", "fresh"]
    defaults = predict(server, "fs-default", {"records": [{"amount_avg": 0.0, "txn_count": 0}]}).json()
    assert body["scores"][:2] == pytest.approx(defaults["scores"] * 2, abs=1e-12)


def test_feature_statuses_are_counted(server: Server) -> None:
    predict(server, "fs-api", cards("c1", "c_stale", "c_gone"))
    metrics = server.get("/metrics").body.decode()
    for status in ("stale", "missing", "fresh"):
        assert f'lockgate_feature_values_total{{deployment="fs-api",status="{status}"}}' in metrics


@pytest.mark.parametrize(
    ("deployment", "body", "message"),
    [
        ("fs-api", {"entities": []}, "'entities' must be a non-empty list of objects of entity keys"),
        ("fs-api", {"entities": {"card_id": "c1"}}, "'entities' must be a non-empty list"),
        ("fs-api", {"entities": ["c1"]}, "entity 0 is a string; send an object of card_id"),
        (
            "fs-api",
            {"entities": [{"card": "c1"}]},
            "entity 0: key 'card_id' must be a string or a 64-bit integer, got nothing",
        ),
        ("fs-api", {"entities": [{"card_id": None}]}, "key 'card_id' must be a string or a 64-bit integer, got None"),
        ("fs-api", {"entities": [{"card_id": 1.5}]}, "got 1.5"),
        ("fs-api", {"entities": [{"card_id": {"id": 1}}]}, "got {'id': 1}"),
        (
            "fs-api",
            {"entities": [{"card_id": "c1", "amount": 5}]},
            "entity 0 has unknown key(s) 'amount'; send card_id",
        ),
        ("clf-api", cards("c1"), "deployment 'clf-api' has no feature service to look entities up in"),
    ],
)
def test_bad_entity_rows_get_400(server: Server, deployment: str, body: dict[str, Any], message: str) -> None:
    answer = predict(server, deployment, body)
    assert answer.status == 400, answer.body
    assert message in answer.json()["error"]


def test_an_integer_key_is_looked_up_as_sent(server: Server) -> None:
    body = predict(server, "fs-api", {"entities": [{"card_id": 17}, {"card_id": 17.0}]}).json()
    assert body["feature_status"] == ["missing", "missing"]  # the cards are named c0 … c199


GOOD = {"channel": "web", "amount": 60.0, "count": 3}


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({**GOOD, "channel": "fax"}, "channel: 1 row (50%) not among the allowed 'web', 'pos', 'app', e.g. 'fax'."),
        ({**GOOD, "amount": -5.0}, "amount: 1 row (50%) below the minimum 0, e.g. -5.0."),
        ({**GOOD, "amount": None}, "amount: 1 row (50%) missing, but the column is not nullable"),
        ({**GOOD, "count": 2.5}, "feature 'count' does not fit its type int64; send int64 values"),
        ({**GOOD, "count": 2**60}, "within ±9,007,199,254,740,991"),
    ],
)
def test_rows_breaking_the_deployments_contract_get_422(server: Server, row: dict[str, Any], message: str) -> None:
    answer = predict(server, "mixed-checked", {"records": [GOOD, row]})
    assert answer.status == 422, answer.body
    body = answer.json()
    assert body["code"] == "contract_violation"
    assert body["error"].startswith("the request breaks contract 'requests': ")
    assert message in body["error"]


def test_the_contract_holds_for_v2_requests_too(server: Server) -> None:
    def inputs(channel: str, amount: float) -> dict[str, Any]:
        return {
            "inputs": [
                {"name": "channel", "shape": [1], "datatype": "BYTES", "data": [channel]},
                {"name": "amount", "shape": [1], "datatype": "FP64", "data": [amount]},
                {"name": "count", "shape": [1], "datatype": "INT64", "data": [2]},
            ]
        }

    assert server.post("/v2/models/mixed-checked/infer", inputs("pos", 10.0)).status == 200
    refused = server.post("/v2/models/mixed-checked/infer", inputs("pos", -1.0))
    assert refused.status == 422
    assert refused.json()["code"] == "contract_violation"
    assert server.post("/v2/models/mixed-api/infer", inputs("fax", -1.0)).status == 200  # no contract there
    assert predict(server, "mixed-checked", {"records": [GOOD, {**GOOD, "channel": None, "count": 2.0}]}).status == 200


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (None, "the model refused these rows (ValueError: Input X contains NaN.); send values like those"),
        (1e300, "Input X contains infinity or a value too large for dtype('float32')"),
    ],
)
def test_values_the_model_itself_refuses_get_422(server: Server, value: Any, message: str) -> None:
    record = {**dict.fromkeys(FEATURES, 0.5), "f2": value}
    answer = predict(server, "strict-api", {"records": [record]})
    assert answer.status == 422, answer.body
    assert answer.json()["code"] == "model_rejected_input"
    assert message in answer.json()["error"]
    v2 = {"inputs": [{"name": "input", "shape": [1, 6], "datatype": "FP64", "data": [0.5, 0.5, 1e300, 0.5, 0.5, 0.5]}]}
    assert server.post("/v2/models/strict-api/infer", v2).status == 422
    assert predict(server, "strict-api", {"records": [dict.fromkeys(FEATURES, 0.5)]}).status == 200
