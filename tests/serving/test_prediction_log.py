"""The prediction log as monitoring reads it: after traffic and a SIGTERM, Hive-partitioned
Parquet under <home>/predictions holds one row per scored row, in the documented columns,
with the request ids the responses carried, and nothing handed over before the stop is lost."""

from __future__ import annotations

import signal
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.linear_model import LinearRegression, LogisticRegression

import lockgate as lg
from tests.serving.conftest import FEATURES, start_server, training_frame

COLUMNS = ["request_id", "row", "ts", "endpoint", "role", "model", "model_version", "latency_ms", "inputs", "entities"]


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Traffic through every kind of request, then SIGTERM right after a burst (inside the
    log's one-second flush interval); what was sent and answered, and the log's root."""
    home = tmp_path_factory.mktemp("predlog") / "ws"
    x, y = training_frame()
    counts = pd.DataFrame({"n": [1, 2, 3, 4], "f": [0.5, 1.0, 1.5, 2.0]})
    with lg.Workspace.open(home) as ws:
        ws.models.register(LogisticRegression().fit(x, y), name="clf", input_example=x.head(20))
        ws.models.register(LinearRegression().fit(x, x.f0 * 2.0), name="reg", input_example=x.head(20))
        ws.models.register(LinearRegression().fit(counts, counts.n * 10.0), name="cnt", input_example=counts)
        ws.deployments.create("clf-api", "models:/clf/1")
        ws.deployments.create("reg-api", "models:/reg/1")
        ws.deployments.create("cnt-api", "models:/cnt/1")
    server = start_server(home, "--no-onnx")
    try:
        server.wait_ready()
        started = time.time()
        answers: dict[str, tuple[str, int, dict[str, Any]]] = {}  # request id -> deployment, rows, body

        def send(deployment: str, records: list[dict[str, float]], request_id: str | None = None) -> None:
            headers = {"x-request-id": request_id} if request_id else {}
            answer = server.post(f"/v1/endpoints/{deployment}/predict", {"records": records}, headers)
            assert answer.status == 200, answer.body
            body = answer.json()
            answers[body["request_id"]] = (deployment, len(records), body)

        for n in (1, 2, 3):
            send("clf-api", [dict.fromkeys(FEATURES, 0.1 * (i + 1)) for i in range(n)], f"clf-{n}")
        v2 = {"inputs": [{"name": "input", "shape": [2, 6], "datatype": "FP64", "data": [0.3] * 12}]}
        answer = server.post("/v2/models/clf-api/infer", v2, {"x-request-id": "v2-one"})
        assert answer.status == 200, answer.body
        answers["v2-one"] = ("clf-api", 2, answer.json())
        send("cnt-api", [{"n": 2.5, "f": 1.0}, {"n": 3, "f": 1.0}])  # 2.5 for an int64 column
        with ThreadPoolExecutor(8) as pool:  # the burst the stop must not lose
            list(pool.map(lambda i: send("reg-api", [dict.fromkeys(FEATURES, float(i))] * (1 + i % 3)), range(60)))
        code = server.stop(signal.SIGTERM, timeout=30)
        finished = time.time()
    finally:
        server.stop(signal.SIGKILL, timeout=10)
    return {
        "root": home / "predictions",
        "answers": answers,
        "code": code,
        "started": started,
        "finished": finished,
        "log": server.log.read_text(),
    }


def read(root: Path, where: str = "true") -> pd.DataFrame:
    pattern = f"{root}/*/*/*.parquet"
    query = f"SELECT * FROM read_parquet('{pattern}', hive_partitioning = true, union_by_name = true) WHERE {where}"
    return duckdb.sql(query).df()


def test_the_server_stopped_cleanly(logged: dict[str, Any]) -> None:
    assert logged["code"] == 0, logged["log"]
    assert "could not write" not in logged["log"]


def test_every_scored_row_is_one_log_row_under_its_request_id(logged: dict[str, Any]) -> None:
    log = read(logged["root"])
    sent = {rid: rows for rid, (_, rows, _) in logged["answers"].items()}
    assert log.groupby("request_id").size().to_dict() == sent
    assert len(log) == sum(sent.values())
    for rid, group in log.groupby("request_id"):
        assert sorted(group["row"]) == list(range(sent[str(rid)]))
        assert set(group["deployment"]) == {logged["answers"][str(rid)][0]}


def test_partitions_are_deployment_and_day(logged: dict[str, Any]) -> None:
    root: Path = logged["root"]
    folders = {p.parent.relative_to(root).as_posix() for p in root.rglob("*.parquet")}
    today = datetime.fromtimestamp(logged["started"], UTC).strftime("%Y-%m-%d")
    assert folders == {f"deployment={d}/date={today}" for d in ("clf-api", "reg-api", "cnt-api")}
    log = read(logged["root"])
    assert {pd.Timestamp(d).strftime("%Y-%m-%d") for d in log["date"]} == {today}  # DuckDB reads a DATE


def test_columns_and_types_are_the_documented_ones(logged: dict[str, Any]) -> None:
    clf_file = next((logged["root"] / "deployment=clf-api").rglob("*.parquet"))
    schema = pq.read_schema(clf_file)
    assert schema.names == [*COLUMNS, "label", "score", "probabilities"]
    assert schema.field("row").type == pa.int32()
    assert schema.field("model_version").type == pa.int32()
    assert schema.field("ts").type == pa.timestamp("ms", tz="UTC")
    assert schema.field("latency_ms").type == pa.float32()
    assert schema.field("probabilities").type == pa.list_(pa.float64())
    assert [f.name for f in schema.field("inputs").type] == FEATURES
    reg_file = next((logged["root"] / "deployment=reg-api").rglob("*.parquet"))
    assert pq.read_schema(reg_file).names == [*COLUMNS, "prediction"]


def test_values_match_what_the_responses_said(logged: dict[str, Any]) -> None:
    answers = logged["answers"]
    log = read(logged["root"]).sort_values(["request_id", "row"])
    clf = log[log.request_id == "clf-3"]
    body = answers["clf-3"][2]
    assert list(clf.label) == body["predictions"]
    assert list(clf.score) == pytest.approx(body["scores"])
    assert [p[1] for p in clf.probabilities] == pytest.approx(body["scores"])
    assert [r["f0"] for r in clf.inputs] == pytest.approx([0.1, 0.2, 0.3])
    assert set(clf.endpoint) == {"predict"}
    assert set(clf.model) == {"clf"}
    assert set(clf.model_version) == {1}
    v2 = log[log.request_id == "v2-one"]
    assert set(v2.endpoint) == {"v2"}
    assert len(v2) == 2
    for rid, (deployment, _, body) in answers.items():
        if deployment == "reg-api":
            assert list(log[log.request_id == rid].prediction) == pytest.approx(body["predictions"])
    assert log.entities.isna().all()  # records, not entity lookups
    started, finished = (
        pd.Timestamp(logged["started"] - 1, unit="s", tz="UTC"),
        pd.Timestamp(logged["finished"], unit="s", tz="UTC"),
    )
    ts = pd.to_datetime(log.ts, utc=True)
    assert ((ts >= started) & (ts <= finished)).all()
    assert (log.latency_ms > 0).all()
    assert (log.latency_ms < 30_000).all()


def test_a_value_outside_its_column_type_is_logged_as_scored(logged: dict[str, Any]) -> None:
    cnt = read(logged["root"], "deployment = 'cnt-api'").sort_values("row")
    assert [r["n"] for r in cnt.inputs] == [2.5, 3.0]
    assert list(cnt.prediction) == pytest.approx(logged["answers"][cnt.request_id.iloc[0]][2]["predictions"])
