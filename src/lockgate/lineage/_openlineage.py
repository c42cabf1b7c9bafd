"""Export runs and their inputs and outputs as OpenLineage RunEvents.

Events are built with openlineage-python's own classes, so a malformed event fails here
rather than in the user's Marquez or DataHub. That library (and the HTTP stack it brings) is
imported on first export, not with lockgate: most processes never export lineage.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from lockgate.clock import to_iso
from lockgate.entities import DatasetVersion, NodeKind, RunRecord, RunStatus
from lockgate.lineage._graph import LineageGraph

if TYPE_CHECKING:
    from openlineage.client.event_v2 import InputDataset, Job, OutputDataset

__all__ = ["PRODUCER", "openlineage_events"]

PRODUCER = "https://github.com/lockgate/lockgate"

_TERMINAL = {
    RunStatus.FINISHED: "COMPLETE",
    RunStatus.FAILED: "FAIL",
    RunStatus.CRASHED: "FAIL",
    RunStatus.KILLED: "ABORT",
}


def openlineage_events(
    graph: LineageGraph,
    runs: Mapping[str, RunRecord],
    datasets: Mapping[str, DatasetVersion],
    *,
    namespace: str = "lockgate",
) -> list[dict[str, Any]]:
    """One START and, for ended runs, one COMPLETE / FAIL / ABORT event per run in ``graph``."""
    from openlineage.client.event_v2 import Run, RunEvent, RunState
    from openlineage.client.serde import Serde

    events: list[dict[str, Any]] = []
    for node in sorted(n for n in graph.nodes if n.kind == NodeKind.RUN):
        run = runs.get(node.id)
        if run is None:
            continue
        inputs = [
            _input(e.src_kind, e.src_id, datasets, namespace)
            for e in graph.upstream_of(node)
            if e.src_kind in (NodeKind.DATASET, NodeKind.MODEL_VERSION)
        ]
        outputs = [
            _output(e.dst_kind, e.dst_id, datasets, namespace)
            for e in graph.downstream_of(node)
            if e.dst_kind in (NodeKind.DATASET, NodeKind.MODEL_VERSION)
        ]
        job = _job(run, namespace)
        ol_run = Run(runId=str(uuid.UUID(run.id)), facets=_run_facets(run, runs, namespace))
        start = RunEvent(
            eventType=RunState.START,
            eventTime=to_iso(run.start_time) or "",
            run=ol_run,
            job=job,
            producer=PRODUCER,
            inputs=inputs,
            outputs=[],
        )
        events.append(Serde.to_dict(start))
        if run.status in _TERMINAL and run.end_time is not None:
            end = RunEvent(
                eventType=RunState(_TERMINAL[run.status]),
                eventTime=to_iso(run.end_time) or "",
                run=ol_run,
                job=job,
                producer=PRODUCER,
                inputs=inputs,
                outputs=outputs,
            )
            events.append(Serde.to_dict(end))
    return events


def _job(run: RunRecord, namespace: str) -> Job:
    from openlineage.client.event_v2 import Job
    from openlineage.client.facet_v2 import source_code_location_job

    facets: dict[str, Any] = {}
    if run.git_commit:
        repo = run.git_repo or ""
        facets["sourceCodeLocation"] = source_code_location_job.SourceCodeLocationJobFacet(
            type="git",
            url=f"{repo}@{run.git_commit}" if repo else run.git_commit,
            repoUrl=repo or None,
            version=run.git_commit,
            branch=run.git_branch,
            producer=PRODUCER,
        )
    return Job(namespace=namespace, name=f"{run.experiment}.{run.name}", facets=facets)


def _run_facets(run: RunRecord, runs: Mapping[str, RunRecord], namespace: str) -> dict[str, Any]:
    from openlineage.client.facet_v2 import parent_run

    parent = runs.get(run.parent_id) if run.parent_id else None
    if parent is None:
        return {}
    return {
        "parent": parent_run.ParentRunFacet(
            run=parent_run.Run(runId=str(uuid.UUID(parent.id))),
            job=parent_run.Job(namespace=namespace, name=f"{parent.experiment}.{parent.name}"),
            producer=PRODUCER,
        )
    }


def _dataset_facets(kind: str, ident: str, datasets: Mapping[str, DatasetVersion]) -> tuple[str, dict[str, Any]]:
    from openlineage.client.facet_v2 import schema_dataset

    if kind == NodeKind.DATASET:
        version = datasets.get(ident)
        name = ident.split("@", 1)[0]
        if version is None:
            return name, {}
        fields = [schema_dataset.SchemaDatasetFacetFields(name=c["name"], type=c["type"]) for c in version.schema]
        return name, {"schema": schema_dataset.SchemaDatasetFacet(fields=fields, producer=PRODUCER)}
    return f"models/{ident}", {}


def _input(kind: str, ident: str, datasets: Mapping[str, DatasetVersion], namespace: str) -> InputDataset:
    from openlineage.client.event_v2 import InputDataset

    name, facets = _dataset_facets(kind, ident, datasets)
    return InputDataset(namespace=namespace, name=name, facets=facets)


def _output(kind: str, ident: str, datasets: Mapping[str, DatasetVersion], namespace: str) -> OutputDataset:
    from openlineage.client.event_v2 import OutputDataset

    name, facets = _dataset_facets(kind, ident, datasets)
    return OutputDataset(namespace=namespace, name=name, facets=facets)
