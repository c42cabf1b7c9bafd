"""Batch scoring reads Parquet from S3 (a moto server on 127.0.0.1): a prefix, a glob, and the
inputs' S3 fingerprints in lineage."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.linear_model import LogisticRegression

import lockgate as lg
from lockgate.data._sources import Source
from lockgate.errors import NotFoundError
from lockgate.serving import batch_predict

pytestmark = [pytest.mark.s3]


def _parquet(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


@pytest.fixture
def scored_bucket(s3_bucket: str, s3_admin: Any) -> dict[str, Any]:
    rng = np.random.default_rng(3)
    tables = [pa.table({"a": rng.normal(size=n), "b": rng.normal(size=n)}) for n in (40, 25)]
    for i, table in enumerate(tables):
        s3_admin.put_object(Bucket=s3_bucket, Key=f"in/day={i}/part-0.parquet", Body=_parquet(table))
    s3_admin.put_object(Bucket=s3_bucket, Key="in/_SUCCESS", Body=b"")
    return {"bucket": s3_bucket, "tables": tables}


@pytest.fixture
def s3_ws(tmp_path: Path, s3_env: str, monkeypatch: pytest.MonkeyPatch) -> lg.Workspace:
    monkeypatch.setenv("LOCKGATE_S3_ENDPOINT_URL", s3_env)
    ws = lg.Workspace.open(tmp_path / "ws")
    x = pa.table({"a": [0.0, 1.0, 2.0, 3.0], "b": [1.0, 0.0, 1.0, 0.0]})
    with ws.start_run("train") as run:
        run.log_model(LogisticRegression().fit(x.to_pandas(), [0, 0, 1, 1]), name="m", input_example=x)
    return ws


def test_an_s3_prefix_is_scored_file_by_file_with_s3_lineage(
    s3_ws: lg.Workspace, scored_bucket: dict[str, Any], tmp_path: Path
) -> None:
    bucket = scored_bucket["bucket"]
    result = batch_predict(s3_ws, "models:/m/1", f"s3://{bucket}/in/", tmp_path / "s.parquet", prefer_onnx=False)
    uris = [f"s3://{bucket}/in/day=0/part-0.parquet", f"s3://{bucket}/in/day=1/part-0.parquet"]
    assert result.inputs == tuple(uris)  # the _SUCCESS marker is not data
    out = pq.read_table(tmp_path / "s.parquet")
    assert out.column("input_file").to_pylist() == [uris[0]] * 40 + [uris[1]] * 25
    model = s3_ws.models.load("models:/m/1")
    expected = np.concatenate([model.predict_proba(t.to_pandas())[:, 1] for t in scored_bucket["tables"]])
    np.testing.assert_array_equal(out.column("score").to_numpy(), expected)
    edges = s3_ws.lineage_of(f"runs:/{result.run_id}").to_dict()["edges"]
    inputs = {e["from"] for e in edges if e["relation"] == "input:batch"}
    assert inputs == {f"dataset:{u}@{Source.parse(u).fingerprint(settings=s3_ws.settings)}" for u in uris}


def test_an_s3_glob_and_a_missing_prefix(s3_ws: lg.Workspace, scored_bucket: dict[str, Any], tmp_path: Path) -> None:
    bucket = scored_bucket["bucket"]
    result = batch_predict(s3_ws, "models:/m/1", f"s3://{bucket}/in/*1/*.parquet", tmp_path / "s.parquet")
    assert result.inputs == (f"s3://{bucket}/in/day=1/part-0.parquet",)
    assert result.rows == 25
    with pytest.raises(NotFoundError, match=f"input s3://{bucket}/nothing/ does not exist"):
        batch_predict(s3_ws, "models:/m/1", f"s3://{bucket}/nothing/", tmp_path / "t.parquet")
    assert not (tmp_path / "t.parquet").exists()
