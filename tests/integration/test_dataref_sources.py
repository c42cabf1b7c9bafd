"""The cache bug lockgate exists to prevent, on outside data behind real services: a step
that read an S3 prefix or a SQL query is never a cache hit after the data behind the same
DataRef changed, and it sees the new data."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import lockgate as lg
from lockgate.pipelines import DataRef, Pipeline, load_pipeline, reproduce, run_pipeline

FLOW = """
import pyarrow as pa
import pyarrow.compute as pc

from lockgate.pipelines import DataRef, pipeline, step


@step
def load(source: DataRef) -> pa.Table:
    return source.read()


@step
def total(data: pa.Table) -> dict[str, float]:
    return {"rows": float(data.num_rows), "amount": float(pc.sum(data["amount"]).as_py())}


@pipeline
def flow(source: DataRef):
    return total(load(source))
"""


@pytest.fixture(autouse=True)
def _no_workspace_here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings are loaded as the CLI would, from the current folder: make it an empty one."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def flow(tmp_path: Path) -> Pipeline:
    (tmp_path / "project").mkdir()
    (tmp_path / "project" / "flow.py").write_text(FLOW)
    return load_pipeline(str(tmp_path / "project" / "flow.py"))


def _run(ws: lg.Workspace, flow: Pipeline, ref: DataRef) -> tuple[dict[str, str], Any]:
    result = run_pipeline(ws, flow, params={"source": ref}, executor="inline")
    return {s.name: s.status for s in result.steps}, result.output("total")


def _parquet(amounts: list[float]) -> bytes:
    sink = io.BytesIO()
    pq.write_table(pa.table({"amount": amounts}), sink)
    return sink.getvalue()


@pytest.mark.s3
def test_an_overwritten_object_under_an_s3_prefix_is_never_a_stale_hit(
    ws: lg.Workspace, flow: Pipeline, s3_admin: Any, s3_bucket: str
) -> None:
    s3_admin.put_object(Bucket=s3_bucket, Key="tx/day=1/part-0.parquet", Body=_parquet([1.0, 2.0]))
    s3_admin.put_object(Bucket=s3_bucket, Key="tx/day=2/part-0.parquet", Body=_parquet([3.0]))
    ref = DataRef(f"s3://{s3_bucket}/tx/")

    assert _run(ws, flow, ref) == ({"load": "SUCCEEDED", "total": "SUCCEEDED"}, {"rows": 3.0, "amount": 6.0})
    assert _run(ws, flow, ref) == ({"load": "CACHED", "total": "CACHED"}, {"rows": 3.0, "amount": 6.0})

    s3_admin.put_object(Bucket=s3_bucket, Key="tx/day=2/part-0.parquet", Body=_parquet([30.0]))
    assert _run(ws, flow, ref) == ({"load": "SUCCEEDED", "total": "SUCCEEDED"}, {"rows": 3.0, "amount": 33.0})


@pytest.fixture
def pg_tx(pg_url: str) -> Iterator[tuple[str, Any]]:
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE tx (id int8 PRIMARY KEY, amount numeric(10, 2))")
        conn.execute("INSERT INTO tx VALUES (1, 1.50), (2, 2.50)")
        yield pg_url, conn


@pytest.mark.postgres
def test_a_new_row_behind_a_sql_dataref_is_never_a_stale_hit(
    ws: lg.Workspace, flow: Pipeline, pg_tx: tuple[str, Any]
) -> None:
    url, conn = pg_tx
    ref = DataRef(url, query="SELECT id, amount FROM tx")

    assert _run(ws, flow, ref) == ({"load": "SUCCEEDED", "total": "SUCCEEDED"}, {"rows": 2.0, "amount": 4.0})
    assert _run(ws, flow, ref)[0] == {"load": "CACHED", "total": "CACHED"}

    conn.execute("INSERT INTO tx VALUES (3, 6.00)")
    statuses, total = _run(ws, flow, ref)
    assert statuses == {"load": "SUCCEEDED", "total": "SUCCEEDED"}
    assert total == {"rows": 3.0, "amount": 10.0}

    # Another query on the same database is other data: its own parameter, hash and lineage node.
    other = DataRef(url, query="SELECT id, amount FROM tx WHERE id < 3")
    assert other.key != ref.key
    result = run_pipeline(ws, flow, params={"source": other}, executor="inline")
    # load runs (new data key); total is a hit, for load gave the very table of the first run
    assert [s.status for s in result.steps] == ["SUCCEEDED", "CACHED"]
    assert result.output("total") == {"rows": 2.0, "amount": 4.0}
    assert ws.runs.get(result.step_run("load")).params["source"] == other.key
    upstream = ws.lineage.walk(lg.lineage.Node("run", result.step_run("load")), direction="upstream")
    assert [n.id for n in upstream.nodes if n.kind == "dataset"] == [f"{other.key}@{other.content_hash()}"]


@pytest.mark.postgres
def test_reproduce_rereads_a_sql_dataref_and_names_changed_rows(
    ws: lg.Workspace, flow: Pipeline, pg_tx: tuple[str, Any]
) -> None:
    url, conn = pg_tx
    ref = DataRef(url, query="SELECT id, amount FROM tx")
    run_id = run_pipeline(ws, flow, params={"source": ref}, executor="inline").run_id
    assert reproduce(ws, run_id, executor="inline").ok

    conn.execute("UPDATE tx SET amount = 9.99 WHERE id = 2")
    report = reproduce(ws, run_id, executor="inline")
    assert not report.ok
    assert [n.what for n in report.notes if n.what.startswith("data ")] == [f"data {ref.key}"]
    assert any("changed data" in d.cause and ref.key in d.cause for d in report.differences)
