"""Batch scoring through the Python API: the scores a user gets, the ids, the run and lineage it
leaves, and what a bad input does (one sentence, no output file, no run)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.linear_model import LinearRegression

import lockgate as lg
from lockgate.entities import NodeKind
from lockgate.errors import InvalidInputError, NotFoundError
from lockgate.hashing import sha256_file
from lockgate.serving import BatchPredictionResult, batch_predict
from tests.serving.conftest import FEATURES, training_frame
from tests.serving.custom_models import SlowModel


@pytest.fixture(scope="module")
def classifier() -> GradientBoostingClassifier:
    x, y = training_frame()
    return GradientBoostingClassifier(n_estimators=20, max_depth=3, random_state=0).fit(x, y)


@pytest.fixture
def model_uri(ws: lg.Workspace, classifier: GradientBoostingClassifier) -> str:
    x, _ = training_frame(rows=50, seed=1)
    with ws.start_run("train", experiment="fraud") as run:
        mv = run.log_model(classifier, name="fraud", input_example=x)
    ws.models.set_alias("fraud", "champion", mv.version)
    return "models:/fraud@champion"


def write_inputs(folder: Path, sizes: tuple[int, ...] = (700, 300), *, ids: bool = False) -> list[Path]:
    """Parquet files of FEATURES (float64), one per size, rows drawn from distinct seeds."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, rows in enumerate(sizes):
        frame, _ = training_frame(rows=rows, seed=10 + i)
        if ids:
            frame.insert(0, "transaction_id", [f"tx-{i}-{n}" for n in range(rows)])
        path = folder / f"part-{i}.parquet"
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path, row_group_size=256)
        paths.append(path)
    return paths


def features_of(paths: list[Path]) -> pd.DataFrame:
    return pd.concat([pd.read_parquet(p, columns=FEATURES) for p in paths], ignore_index=True)


def test_scores_are_the_models_own_predict_proba_with_file_and_row_ids(
    ws: lg.Workspace, model_uri: str, classifier: GradientBoostingClassifier, tmp_path: Path
) -> None:
    paths = write_inputs(tmp_path / "in")
    seen: list[tuple[int, int]] = []
    result = batch_predict(
        ws,
        model_uri,
        str(tmp_path / "in" / "*.parquet"),
        tmp_path / "scores.parquet",
        prefer_onnx=False,
        chunk_rows=200,
        progress=lambda done, total: seen.append((done, total)),
    )
    assert isinstance(result, BatchPredictionResult)
    assert (result.rows, result.runtime, result.executor, result.model_uri) == (
        1000,
        "sklearn",
        "local",
        "models:/fraud/1",
    )
    assert result.inputs == tuple(str(p) for p in paths)
    out = pq.read_table(tmp_path / "scores.parquet")
    assert out.column_names == ["input_file", "row", "model", "model_version", "label", "score", "probabilities"]
    assert out.column("input_file").to_pylist() == [str(paths[0])] * 700 + [str(paths[1])] * 300
    assert out.column("row").to_pylist() == list(range(700)) + list(range(300))
    assert set(out.column("model").to_pylist()) == {"fraud"}
    assert out.schema.field("model_version").type == pa.int32()
    assert set(out.column("model_version").to_pylist()) == {1}
    expected = classifier.predict_proba(features_of(paths))
    np.testing.assert_array_equal(out.column("score").to_numpy(), expected[:, 1])
    np.testing.assert_array_equal(np.array(out.column("probabilities").to_pylist()), expected)
    np.testing.assert_array_equal(out.column("label").to_numpy(), classifier.predict(features_of(paths)))
    assert seen[-1] == (1000, 1000)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_the_onnx_runtime_scores_within_its_tolerance(
    ws: lg.Workspace, model_uri: str, classifier: GradientBoostingClassifier, tmp_path: Path
) -> None:
    paths = write_inputs(tmp_path / "in")
    result = batch_predict(ws, model_uri, tmp_path / "in", tmp_path / "scores.parquet")
    assert result.runtime == "onnx"
    out = pq.read_table(tmp_path / "scores.parquet")
    expected = classifier.predict_proba(features_of(paths))
    np.testing.assert_allclose(out.column("score").to_numpy(), expected[:, 1], atol=1e-5)


def test_an_id_column_is_copied_as_the_row_id(ws: lg.Workspace, model_uri: str, tmp_path: Path) -> None:
    paths = write_inputs(tmp_path / "in", ids=True)
    batch_predict(ws, model_uri, paths, tmp_path / "scores.parquet", id_column="transaction_id", prefer_onnx=False)
    out = pq.read_table(tmp_path / "scores.parquet")
    assert out.column_names[:3] == ["transaction_id", "model", "model_version"]
    assert out.column("transaction_id").to_pylist() == [f"tx-0-{n}" for n in range(700)] + [
        f"tx-1-{n}" for n in range(300)
    ]


def test_inputs_are_read_in_the_order_given_each_file_once(ws: lg.Workspace, model_uri: str, tmp_path: Path) -> None:
    first, second = write_inputs(tmp_path / "in", (5, 7))
    result = batch_predict(ws, model_uri, [second, tmp_path / "in", first], tmp_path / "s.parquet", prefer_onnx=False)
    assert result.inputs == (str(second), str(first))
    out = pq.read_table(tmp_path / "s.parquet", columns=["input_file", "row"])
    assert out.column("input_file").to_pylist() == [str(second)] * 7 + [str(first)] * 5


def test_a_regressor_writes_its_prediction(ws: lg.Workspace, tmp_path: Path) -> None:
    x, _ = training_frame(rows=100)
    y = x.f0 * 2 + 1
    with ws.start_run("train") as run:
        run.log_model(LinearRegression().fit(x, y), name="amount", input_example=x.head(10))
    (path,) = write_inputs(tmp_path / "in", (40,))
    batch_predict(ws, "models:/amount/1", path, tmp_path / "s.parquet", prefer_onnx=False)
    out = pq.read_table(tmp_path / "s.parquet")
    assert "label" not in out.column_names
    assert "score" not in out.column_names
    np.testing.assert_allclose(out.column("prediction").to_numpy(), pd.read_parquet(path).f0 * 2 + 1)


def test_a_custom_model_is_scored_through_its_hooks(ws: lg.Workspace, tmp_path: Path) -> None:
    example = pd.DataFrame({"x": [1.0, 2.0], "delay": [0.0, 0.0]})
    with ws.start_run("custom") as run:
        run.log_model(SlowModel(), name="doubler", input_example=example)
    pq.write_table(pa.table({"x": np.arange(10.0), "delay": np.zeros(10)}), tmp_path / "x.parquet")
    result = batch_predict(ws, "models:/doubler/1", tmp_path / "x.parquet", tmp_path / "s.parquet", chunk_rows=3)
    assert result.runtime == "custom"
    assert pq.read_table(tmp_path / "s.parquet").column("prediction").to_pylist() == [2.0 * i for i in range(10)]


def test_the_scoring_is_a_run_with_lineage_from_input_hashes_and_model_to_the_output(
    ws: lg.Workspace, model_uri: str, tmp_path: Path
) -> None:
    paths = write_inputs(tmp_path / "in")
    result = batch_predict(ws, model_uri, paths, tmp_path / "scores.parquet", prefer_onnx=False)
    run = ws.runs.get(result.run_id)
    assert (run.status, run.experiment, run.name) == (lg.RunStatus.FINISHED, "batch-predict", "batch-predict")
    assert run.tags["lockgate.kind"] == "batch-predict"
    assert run.params["model"] == "models:/fraud/1"
    assert run.metrics["rows"] == 1000
    assert result.output_sha256 == sha256_file(tmp_path / "scores.parquet")
    graph = ws.lineage_of(f"runs:/{result.run_id}")
    edges = {(e.src_kind, e.src_id, e.relation, e.dst_kind, e.dst_id) for e in graph.edges}
    for path in paths:
        assert (NodeKind.DATASET, f"{path}@{sha256_file(path)}", "input:batch", NodeKind.RUN, run.id) in edges
    assert (NodeKind.MODEL_VERSION, "fraud/1", "input:model", NodeKind.RUN, run.id) in edges
    output = f"{tmp_path / 'scores.parquet'}@{result.output_sha256}"
    assert (NodeKind.RUN, run.id, "output", NodeKind.DATASET, output) in edges
    # From the model: which scores it produced.
    downstream = ws.lineage_of("models:/fraud@champion", direction="downstream")
    assert any(n.kind == NodeKind.DATASET and n.id == output for n in downstream.nodes)
    events = [e for e in ws.audit.events(object_kind="run", object_id=run.id) if e.action == "batch_predict.completed"]
    assert len(events) == 1
    assert events[0].actor == ws.settings.actor
    assert events[0].details["output"] == output
    assert events[0].details["rows"] == 1000


BadInput = Callable[[Path], dict[str, Any]]


def _missing_column(folder: Path) -> dict[str, Any]:
    paths = write_inputs(folder)
    pq.write_table(pq.read_table(paths[1]).drop(["f3"]), paths[1])
    return {"inputs": paths, "match": rf"input {paths[1]} has no column 'f3', which models:/fraud/1 takes"}


def _wrong_type(folder: Path) -> dict[str, Any]:
    paths = write_inputs(folder)
    table = pq.read_table(paths[1])
    table = table.set_column(2, "f2", table.column("f2").cast(pa.string()))
    pq.write_table(table, paths[1])
    return {"inputs": paths, "match": rf"input {paths[1]}: column 'f2' is string, but models:/fraud/1 takes numbers"}


def _not_parquet(folder: Path) -> dict[str, Any]:
    write_inputs(folder)
    (folder / "notes.csv").write_text("f0,f1\n1,2\n")
    return {
        "inputs": [folder],
        "match": rf"cannot read input {folder / 'notes.csv'}: it is not a readable Parquet file",
    }


def _no_id_column(folder: Path) -> dict[str, Any]:
    return {"inputs": write_inputs(folder), "id_column": "transaction_id", "match": "has no id column 'transaction_id'"}


@pytest.mark.parametrize("bad", [_missing_column, _wrong_type, _not_parquet, _no_id_column])
def test_a_bad_input_is_one_sentence_and_leaves_no_output_and_no_run(
    ws: lg.Workspace, model_uri: str, tmp_path: Path, bad: BadInput
) -> None:
    case = bad(tmp_path / "in")
    out = tmp_path / "out" / "scores.parquet"
    with pytest.raises(InvalidInputError, match=case["match"]) as caught:
        batch_predict(ws, model_uri, case["inputs"], out, id_column=case.get("id_column"), prefer_onnx=False)
    assert caught.value.exit_code == 2
    assert "\n" not in str(caught.value)
    assert not out.exists()
    assert not list(tmp_path.glob("out/.*"))  # no temporary file either
    assert ws.runs.search(experiment="batch-predict") == []


def test_missing_inputs_and_a_model_that_does_not_exist_are_not_found(
    ws: lg.Workspace, model_uri: str, tmp_path: Path
) -> None:
    with pytest.raises(NotFoundError, match=r"no file matches input '.*\*\.parquet'; check the pattern"):
        batch_predict(ws, model_uri, str(tmp_path / "*.parquet"), tmp_path / "s.parquet")
    with pytest.raises(NotFoundError, match="does not exist; check the path"):
        batch_predict(ws, model_uri, tmp_path / "nope.parquet", tmp_path / "s.parquet")
    (path,) = write_inputs(tmp_path / "in", (3,))
    with pytest.raises(NotFoundError, match="fraud"):
        batch_predict(ws, "models:/fraud/9", path, tmp_path / "s.parquet")


def test_a_failure_mid_stream_keeps_the_earlier_output_and_fails_the_run(
    ws: lg.Workspace, model_uri: str, tmp_path: Path
) -> None:
    paths = write_inputs(tmp_path / "in")
    table = pq.read_table(paths[1])
    values = table.column("f4").to_numpy().copy()
    values[250] = 1e39  # beyond float32: the ONNX runtime refuses it rather than score infinity
    pq.write_table(table.set_column(4, "f4", pa.array(values)), paths[1])
    out = tmp_path / "scores.parquet"
    out.write_bytes(b"yesterday's scores")
    with pytest.raises(
        InvalidInputError, match=rf"^input {paths[1]}, rows 200-299: row 50: value .*1e\+39.* is beyond"
    ):
        batch_predict(ws, model_uri, paths, out, chunk_rows=100)
    assert out.read_bytes() == b"yesterday's scores"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    (run,) = ws.runs.search(experiment="batch-predict")
    assert run.status == lg.RunStatus.FAILED


def test_an_output_that_is_an_input_or_not_local_is_refused(ws: lg.Workspace, model_uri: str, tmp_path: Path) -> None:
    (path,) = write_inputs(tmp_path / "in", (3,))
    with pytest.raises(InvalidInputError, match="is also an input"):
        batch_predict(ws, model_uri, path, path)
    with pytest.raises(InvalidInputError, match="is not a local path"):
        batch_predict(ws, model_uri, path, "s3://bucket/scores.parquet")
    with pytest.raises(InvalidInputError, match="chunk_rows must be a positive number"):
        batch_predict(ws, model_uri, path, tmp_path / "s.parquet", chunk_rows=0)
