"""Lineage: what a model version came from, and what a data set fed, on every backend."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest
from sklearn.dummy import DummyClassifier

import lockgate as lg
from lockgate.lineage import Node


@pytest.fixture
def capturing(backend_ws: lg.Workspace, monkeypatch: pytest.MonkeyPatch) -> Iterator[lg.Workspace]:
    """The same workspace (and database), opened with code capture on."""
    monkeypatch.setenv("LOCKGATE_CAPTURE_CODE", "true")
    ws = lg.Workspace.open(backend_ws.home, database_url=backend_ws.settings.database_url)
    assert ws.settings.capture_code
    try:
        yield ws
    finally:
        ws.close()


def _model() -> DummyClassifier:
    return DummyClassifier().fit([[0], [1]], [0, 1])


def test_upstream_of_a_model_reaches_its_run_data_code_and_environment(
    capturing: lg.Workspace, repo: Path, head_commit: str
) -> None:
    ws = capturing
    commit = head_commit
    with ws.runs.start("pipeline", experiment="fraud", code_dir=repo) as parent:
        with ws.runs.start("train", experiment="fraud", parent=parent, code_dir=repo) as run:
            data = run.log_dataset(pa.table({"x": [1, 2, 3]}), name="transactions")
            mv = run.log_model(_model(), name="fraud")
    ws.models.set_alias("fraud", "champion", mv.version)
    record = ws.runs.get(run.id)
    assert (record.git_commit, record.git_branch, record.git_dirty) == (commit, "main", False)

    graph = ws.lineage_of("models:/fraud@champion", direction="upstream")
    assert graph.root == Node("model_version", "fraud/1")
    assert {
        Node("run", run.id),
        Node("run", parent.id),
        Node("dataset", data.node_id),
        Node("code", f"{repo.resolve()}@{commit}"),
        Node("environment", record.environment_hash or ""),
        Node("artifact", mv.artifact_sha256),
    } <= graph.nodes
    relations = {(e.src_kind, e.relation, e.dst_kind) for e in graph.edges}
    assert relations >= {
        ("run", "produced", "model_version"),
        ("artifact", "artifact", "model_version"),
        ("dataset", "input:training", "run"),
        ("code", "code", "run"),
        ("environment", "environment", "run"),
        ("run", "parent", "run"),
    }
    # Upstream means upstream: nothing the model fed, nothing downstream of its inputs.
    assert all(e.dst_kind != "model_version" or e.dst_id == "fraud/1" for e in graph.edges)
    assert graph.downstream_of(Node("model_version", "fraud/1")) == []
    as_dict = graph.to_dict()
    assert as_dict["root"] == "model_version:fraud/1"
    assert {"from": f"run:{run.id}", "relation": "produced", "to": "model_version:fraud/1"} in as_dict["edges"]


def test_downstream_of_a_dataset_reaches_every_run_and_model_it_fed(backend_ws: lg.Workspace) -> None:
    ws = backend_ws
    table = pa.table({"x": [1, 2, 3]})
    with ws.start_run("train-a") as a:
        data = a.log_dataset(table, name="transactions")
        a.log_model(_model(), name="fraud")
    with ws.start_run("train-b") as b:
        b.log_dataset(table, name="transactions", role="validation")
        b.log_model(_model(), name="churn")
    with ws.start_run("unrelated") as other:
        other.log_dataset(pa.table({"y": [1]}), name="other")
        other.log_model(_model(), name="other")

    graph = ws.lineage_of(data.uri, direction="downstream")
    assert graph.root == Node("dataset", data.node_id)
    assert {n for n in graph.nodes if n.kind in ("run", "model_version")} == {
        Node("run", a.id),
        Node("run", b.id),
        Node("model_version", "fraud/1"),
        Node("model_version", "churn/1"),
    }
    assert {e.relation for e in graph.downstream_of(graph.root)} == {"input:training", "input:validation"}

    both = ws.lineage_of(f"runs:/{a.id[:8]}")
    assert Node("dataset", data.node_id) in both.nodes
    assert Node("model_version", "fraud/1") in both.nodes
    assert Node("run", b.id) not in both.nodes  # a sibling is neither upstream nor downstream


def test_lineage_starts_only_from_references_it_knows(ws: lg.Workspace) -> None:
    with pytest.raises(lg.InvalidReferenceError, match="not a reference lineage can start from"):
        ws.lineage_of("transactions")
    with pytest.raises(lg.InvalidReferenceError):
        ws.lineage_of("features:/card-aggregates")
    with pytest.raises(lg.NotFoundError):
        ws.lineage_of("features:/card_aggregates")
    with pytest.raises(lg.NotFoundError):
        ws.lineage_of("models:/fraud/1")
    with pytest.raises(lg.NotFoundError):
        ws.lineage_of("datasets:/transactions@abcd")


def test_untracked_secret_files_are_recorded_by_hash_only(capturing: lg.Workspace, repo: Path) -> None:
    (repo / ".env").write_text("DB_PASSWORD=hunter2\n")
    (repo / "server.key").write_text("-----BEGIN PRIVATE KEY-----\n")
    (repo / "notes.py").write_text("print('kept')\n")
    with capturing.runs.start("train", experiment="fraud", code_dir=repo) as run:
        pass
    record = capturing.runs.get(run.id)
    assert record.code_diff_sha256 is not None
    diff = capturing.artifacts.get_bytes(record.code_diff_sha256)
    assert b"print('kept')" in diff
    assert b"hunter2" not in diff
    assert b"PRIVATE KEY" not in diff
    assert b"--- untracked: .env\n<" in diff
