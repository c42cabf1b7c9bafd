"""``lockgate batch-predict`` as a user runs it: the summary line, --json, exit codes and
one-sentence errors, and the lineage another command shows afterwards."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.linear_model import LogisticRegression

import lockgate as lg
from lockgate.cli import main

FEATURES = ["amount", "hour"]


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A workspace with models:/fraud@champion (two float inputs), and two input files."""
    rng = np.random.default_rng(0)
    x = pa.table({"amount": rng.gamma(2.0, 30.0, 200), "hour": rng.integers(0, 24, 200).astype(float)})
    y = (x.column("amount").to_numpy() > 60).astype(int)
    path = tmp_path / "ws"
    ws = lg.Workspace.open(path)
    with ws.start_run("train") as run:
        run.log_model(LogisticRegression().fit(x.to_pandas(), y), name="fraud", input_example=x.slice(0, 20))
    ws.models.set_alias("fraud", "champion", 1)
    ws.close()
    data = tmp_path / "data"
    data.mkdir()
    for i in range(2):
        ids = pa.array([f"tx{i}-{n}" for n in range(50)])
        pq.write_table(x.slice(i * 50, 50).append_column("transaction_id", ids), data / f"day-{i}.parquet")
    return path


def cli(home: Path, *args: str) -> int:
    return main(["--home", str(home), *args])


def test_scores_files_and_prints_one_summary_line(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "scores.parquet"
    code = cli(
        home, "batch-predict", "models:/fraud@champion", "--input", str(tmp_path / "data" / "*.parquet"), "-o", str(out)
    )
    assert code == 0
    printed = capsys.readouterr().out.strip()
    assert printed.startswith("scored 100 rows in ")
    assert "rows/s) with models:/fraud/1 (onnx)" in printed
    assert str(out) in " ".join(printed.split())  # rich may wrap a long path
    assert pq.read_metadata(out).num_rows == 100


def test_json_output_and_the_lineage_it_leaves(home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "scores.parquet"
    args = ["batch-predict", "models:/fraud/1", "-i", str(tmp_path / "data"), "-o", str(out)]
    assert cli(home, *args, "--id-column", "transaction_id", "--no-onnx", "--chunk-rows", "16", "--json") == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result) == {
        "rows",
        "seconds",
        "rows_per_second",
        "output",
        "output_sha256",
        "run_id",
        "model_uri",
        "runtime",
        "executor",
        "inputs",
    }
    assert (result["rows"], result["runtime"], result["executor"]) == (100, "sklearn", "local")
    assert pq.read_table(out).column("transaction_id").to_pylist()[:2] == ["tx0-0", "tx0-1"]
    assert cli(home, "lineage", f"runs:/{result['run_id']}", "--json") == 0
    edges = json.loads(capsys.readouterr().out)["edges"]
    relations = {(e["relation"], e["from"].split(":")[0], e["to"].split(":")[0]) for e in edges}
    assert ("input:batch", "dataset", "run") in relations
    assert ("input:model", "model_version", "run") in relations
    assert {
        "from": f"run:{result['run_id']}",
        "relation": "output",
        "to": f"dataset:{out}@{result['output_sha256']}",
    } in edges


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["models:/fraud/7"], "fraud"),
        (["models:/fraud@champion", "--id-column", "order_id"], "has no id column 'order_id'"),
        (["models:/fraud@champion", "--chunk-rows", "0"], "chunk_rows must be a positive number"),
    ],
)
def test_bad_usage_exits_2_with_one_line_and_no_output(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    out = tmp_path / "scores.parquet"
    assert cli(home, "batch-predict", *args, "-i", str(tmp_path / "data"), "-o", str(out)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ")
    assert message in " ".join(err.split())
    assert not out.exists()


def test_an_input_that_does_not_match_the_signature_exits_2_naming_file_and_column(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "data" / "day-1.parquet"
    pq.write_table(pq.read_table(bad).drop(["hour"]), bad)
    out = tmp_path / "scores.parquet"
    assert cli(home, "batch-predict", "models:/fraud@champion", "-i", str(tmp_path / "data"), "-o", str(out)) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"error: input {bad} has no column 'hour', which models:/fraud/1 takes" in err
    assert not out.exists()
    assert list(tmp_path.glob(".*")) == []


def test_a_file_that_is_not_parquet_exits_2(home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    csv = tmp_path / "data" / "extra.parquet"
    csv.write_text("amount,hour\n1,2\n")
    assert cli(home, "batch-predict", "models:/fraud@champion", "-i", str(csv), "-o", str(tmp_path / "s.parquet")) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"cannot read input {csv}: it is not a readable Parquet file" in err


def test_an_unreachable_ray_cluster_exits_3_in_seconds_and_records_no_run(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("ray", reason="--executor ray needs lockgate[ray]")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    args = ["models:/fraud@champion", "-i", str(tmp_path / "data"), "-o", str(tmp_path / "s.parquet")]
    assert cli(home, "batch-predict", *args, "--executor", "ray", "--ray-address", f"127.0.0.1:{port}") == 3
    assert f"cannot reach the Ray cluster at 127.0.0.1:{port}" in capsys.readouterr().err
    with lg.Workspace.open(home) as ws:
        assert ws.runs.search(experiment="batch-predict") == []
