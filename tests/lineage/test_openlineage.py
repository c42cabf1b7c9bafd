"""OpenLineage export, validated by openlineage-python's own classes (no schema is fetched)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.facet_v2 import parent_run, schema_dataset, source_code_location_job
from openlineage.client.serde import Serde
from sklearn.dummy import DummyClassifier

import lockgate as lg
from lockgate.lineage._openlineage import PRODUCER


def _capturing(ws: lg.Workspace, monkeypatch: pytest.MonkeyPatch) -> lg.Workspace:
    monkeypatch.setenv("LOCKGATE_CAPTURE_CODE", "true")
    return lg.Workspace.open(ws.home, database_url=ws.settings.database_url)


@pytest.fixture
def capturing(backend_ws: lg.Workspace, monkeypatch: pytest.MonkeyPatch) -> Iterator[lg.Workspace]:
    ws = _capturing(backend_ws, monkeypatch)
    try:
        yield ws
    finally:
        ws.close()


# -- rebuilding events with openlineage-python's classes ------------------------------------------


def _facet_kwargs(d: dict[str, Any]) -> dict[str, Any]:
    kwargs = {k: v for k, v in d.items() if not k.startswith("_")}
    kwargs["producer"] = d["_producer"]
    return kwargs


def _job_facet(name: str, d: dict[str, Any]) -> Any:
    assert name == "sourceCodeLocation", f"unexpected job facet {name}"
    return source_code_location_job.SourceCodeLocationJobFacet(**_facet_kwargs(d))


def _run_facet(name: str, d: dict[str, Any]) -> Any:
    assert name == "parent", f"unexpected run facet {name}"
    return parent_run.ParentRunFacet(
        run=parent_run.Run(**d["run"]), job=parent_run.Job(**d["job"]), producer=d["_producer"]
    )


def _dataset_facet(name: str, d: dict[str, Any]) -> Any:
    assert name == "schema", f"unexpected dataset facet {name}"
    fields = [schema_dataset.SchemaDatasetFacetFields(**f) for f in d["fields"]]
    return schema_dataset.SchemaDatasetFacet(fields=fields, producer=d["_producer"])


def _dataset(cls: type[Any], d: dict[str, Any]) -> Any:
    facets = {k: _dataset_facet(k, v) for k, v in d.get("facets", {}).items()}
    extra = "inputFacets" if cls is InputDataset else "outputFacets"
    assert not d.get(extra), f"unexpected {extra}"
    return cls(namespace=d["namespace"], name=d["name"], facets=facets)


def _rebuild(event: dict[str, Any]) -> RunEvent:
    assert set(event) <= {"eventType", "eventTime", "producer", "schemaURL", "run", "job", "inputs", "outputs"}
    run, job = event["run"], event["job"]
    return RunEvent(
        eventType=RunState(event["eventType"]),
        eventTime=event["eventTime"],
        producer=event["producer"],
        run=Run(runId=run["runId"], facets={k: _run_facet(k, v) for k, v in run.get("facets", {}).items()}),
        job=Job(
            namespace=job["namespace"],
            name=job["name"],
            facets={k: _job_facet(k, v) for k, v in job.get("facets", {}).items()},
        ),
        inputs=[_dataset(InputDataset, d) for d in event.get("inputs", [])],
        outputs=[_dataset(OutputDataset, d) for d in event.get("outputs", [])],
    )


def _check_round_trip(events: list[dict[str, Any]]) -> None:
    for event in events:
        assert json.loads(json.dumps(event)) == event  # ready for JSON as it is
        assert Serde.to_dict(_rebuild(event)) == event
        assert event["producer"] == PRODUCER
        assert datetime.fromisoformat(event["eventTime"]).utcoffset() is not None


def _by_job(events: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        out.setdefault(event["job"]["name"], []).append(event)
    return out


# -- the tests --------------------------------------------------------------------------------------


def test_a_model_exports_start_and_complete_events_that_openlineage_accepts(
    capturing: lg.Workspace, repo: Path, head_commit: str
) -> None:
    ws = capturing
    commit = head_commit
    with ws.runs.start("pipeline", experiment="fraud", code_dir=repo) as parent:
        with ws.runs.start("train", experiment="fraud", parent=parent, code_dir=repo) as run:
            data = run.log_dataset(pa.table({"amount": [1.5, 2.5], "merchant": ["a", "b"]}), name="transactions")
            run.log_model(DummyClassifier().fit([[0], [1]], [0, 1]), name="fraud")

    events = ws.openlineage("models:/fraud/1")
    _check_round_trip(events)
    jobs = _by_job(events)
    assert set(jobs) == {"fraud.train", "fraud.pipeline"}
    start, complete = jobs["fraud.train"]
    assert (start["eventType"], complete["eventType"]) == ("START", "COMPLETE")
    assert start["run"]["runId"] == complete["run"]["runId"] == str(uuid.UUID(run.id))
    assert [d["name"] for d in start["inputs"]] == ["transactions"]
    fields = start["inputs"][0]["facets"]["schema"]["fields"]
    assert [(f["name"], f["type"]) for f in fields] == [("amount", "double"), ("merchant", "string")]
    assert start["outputs"] == []
    assert [d["name"] for d in complete["outputs"]] == ["models/fraud/1"]
    assert complete["inputs"] == start["inputs"]
    assert start["eventTime"] <= complete["eventTime"]
    assert data.node_id.startswith("transactions@")

    parent_facet = start["run"]["facets"]["parent"]
    assert parent_facet["run"]["runId"] == str(uuid.UUID(parent.id))
    assert (parent_facet["job"]["namespace"], parent_facet["job"]["name"]) == ("lockgate", "fraud.pipeline")
    source = start["job"]["facets"]["sourceCodeLocation"]
    assert (source["type"], source["version"], source["branch"]) == ("git", commit, "main")
    assert source["repoUrl"] == str(repo.resolve())
    assert source["_producer"] == PRODUCER


def _read_then_raise(
    ws: lg.Workspace, name: str, table: pa.Table, error: BaseException, runs: list[lg.ActiveRun]
) -> None:
    with ws.start_run(name, experiment="e") as run:
        runs.append(run)
        run.log_dataset(table, name="transactions")
        raise error


def test_failed_and_killed_runs_export_fail_and_abort(backend_ws: lg.Workspace) -> None:
    ws = backend_ws
    table = pa.table({"x": [1, 2, 3]})
    with ws.start_run("ok", experiment="e") as ok:
        data = ok.log_dataset(table, name="transactions")
    ended: list[lg.ActiveRun] = []
    with pytest.raises(ValueError):
        _read_then_raise(ws, "failed", table, ValueError("bad batch"), ended)
    with pytest.raises(KeyboardInterrupt):
        _read_then_raise(ws, "killed", table, KeyboardInterrupt(), ended)
    failed, killed = ended
    running = ws.start_run("running", experiment="e")
    running.log_dataset(table, name="transactions")

    events = ws.openlineage(data.uri, direction="downstream")
    _check_round_trip(events)
    kinds = {job: [e["eventType"] for e in evs] for job, evs in _by_job(events).items()}
    assert kinds == {
        "e.ok": ["START", "COMPLETE"],
        "e.failed": ["START", "FAIL"],
        "e.killed": ["START", "ABORT"],
        "e.running": ["START"],  # not over yet: no terminal event
    }
    assert all("sourceCodeLocation" not in e["job"]["facets"] for e in events)  # capture is off here
    assert {ok.id, failed.id, killed.id, running.id} == {uuid.UUID(e["run"]["runId"]).hex for e in events}
    running.end()


def test_a_dirty_working_tree_is_stored_as_an_artifact_untracked_files_included(
    ws: lg.Workspace, repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (repo / "train.py").write_text("print('train harder')\n")
    (repo / "notes.txt").write_text("try a deeper tree\n")
    capturing = _capturing(ws, monkeypatch)
    with capturing.runs.start("dirty", code_dir=repo) as run:
        pass
    record = capturing.runs.get(run.id)
    assert record.git_dirty is True
    assert record.code_diff_sha256 is not None
    diff = capturing.artifacts.get_bytes(record.code_diff_sha256)
    assert b"+print('train harder')" in diff
    assert b"untracked: notes.txt" in diff
    assert b"try a deeper tree" in diff
    # The diff is a referenced artifact: housekeeping keeps it.
    capturing.gc(older_than_s=0)
    assert capturing.artifacts.get_bytes(record.code_diff_sha256) == diff
    # The code node names the diff too, so two different dirty states are two lineage nodes.
    code = [e for e in capturing.lineage_of(run.uri, direction="upstream").edges if e.relation == "code"]
    assert len(code) == 1
    assert code[0].src_id.startswith(f"{repo.resolve()}@{record.git_commit}+")
    capturing.close()


def test_a_clean_tree_stores_no_diff_and_outside_a_repository_nothing_is_claimed(
    ws: lg.Workspace, repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    capturing = _capturing(ws, monkeypatch)
    with capturing.runs.start("clean", code_dir=repo) as clean:
        pass
    plain = tmp_path / "plain"
    plain.mkdir()
    with capturing.runs.start("nowhere", code_dir=plain) as nowhere:
        pass
    record = capturing.runs.get(clean.id)
    assert (record.git_dirty, record.code_diff_sha256) == (False, None)
    outside = capturing.runs.get(nowhere.id)
    assert (outside.git_repo, outside.git_commit, outside.git_branch, outside.git_dirty) == (None, None, None, None)
    assert outside.code_diff_sha256 is None
    events = capturing.openlineage(nowhere.uri)
    _check_round_trip(events)
    assert all("sourceCodeLocation" not in e["job"]["facets"] for e in events)
    capturing.close()
