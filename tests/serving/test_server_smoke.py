"""Smoke: the server answers both endpoints for the fixture's deployments."""

from __future__ import annotations

from tests.serving.conftest import FEATURES, Server


def test_both_endpoints_answer(server: Server) -> None:
    record = dict.fromkeys(FEATURES, 0.3)
    answer = server.post("/v1/endpoints/clf-api/predict", {"records": [record, record]})
    assert answer.status == 200, answer.body
    body = answer.json()
    assert body["model_version"] == 1
    assert len(body["predictions"]) == 2
    v2 = {"inputs": [{"name": "input", "shape": [1, 6], "datatype": "FP32", "data": [0.3] * 6}]}
    answer = server.post("/v2/models/reg-api/infer", v2)
    assert answer.status == 200, answer.body
    assert answer.json()["outputs"][0]["name"] == "prediction"
