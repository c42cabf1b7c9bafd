"""The records lockgate keeps, as plain frozen dataclasses.

Stores return these; services hand them to users. They carry no behaviour that touches a
database, so they travel safely between layers (and, later, over HTTP).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from lockgate.clock import to_iso

__all__ = [
    "AuditEvent",
    "DatasetVersion",
    "Experiment",
    "LineageEdge",
    "Metric",
    "ModelVersion",
    "NodeKind",
    "RunRecord",
    "RunStatus",
]


class RunStatus(StrEnum):
    RUNNING = "RUNNING"
    FINISHED = "FINISHED"
    FAILED = "FAILED"
    KILLED = "KILLED"
    CRASHED = "CRASHED"


class NodeKind(StrEnum):
    """The kinds of thing a lineage edge can connect."""

    RUN = "run"
    DATASET = "dataset"
    MODEL_VERSION = "model_version"
    ARTIFACT = "artifact"
    CODE = "code"
    ENVIRONMENT = "environment"
    FEATURE_VIEW = "feature_view"
    ON_DEMAND_FEATURE = "on_demand_feature"
    FEATURE_SERVICE = "feature_service"


@dataclass(frozen=True, slots=True, kw_only=True)
class Experiment:
    id: int
    name: str
    created_at: int
    created_by: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Metric:
    key: str
    value: float
    step: int
    timestamp: int


@dataclass(frozen=True, slots=True, kw_only=True)
class RunRecord:
    """A run as stored: attributes, params, latest metrics and tags."""

    id: str
    experiment: str
    name: str
    status: RunStatus
    actor: str
    start_time: int
    end_time: int | None
    parent_id: str | None = None
    host: str = ""
    pid: int = 0
    git_repo: str | None = None
    git_commit: str | None = None
    git_branch: str | None = None
    git_dirty: bool | None = None
    code_diff_sha256: str | None = None
    environment_hash: str | None = None
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def uri(self) -> str:
        return f"runs:/{self.id}"

    @property
    def duration_ms(self) -> int | None:
        return None if self.end_time is None else self.end_time - self.start_time

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "experiment": self.experiment,
            "name": self.name,
            "status": str(self.status),
            "actor": self.actor,
            "start_time": to_iso(self.start_time),
            "end_time": to_iso(self.end_time),
            "parent_id": self.parent_id,
            "code": {
                "repo": self.git_repo,
                "commit": self.git_commit,
                "branch": self.git_branch,
                "dirty": self.git_dirty,
                "diff_sha256": self.code_diff_sha256,
            },
            "environment_hash": self.environment_hash,
            "params": dict(self.params),
            "metrics": dict(self.metrics),
            "tags": dict(self.tags),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class DatasetVersion:
    """A data set version: its identity is its content hash."""

    id: int
    name: str
    content_hash: str
    source_uri: str | None
    schema: list[dict[str, Any]]
    num_rows: int
    artifact_sha256: str | None
    created_at: int
    created_by: str

    @property
    def uri(self) -> str:
        return f"datasets:/{self.name}@{self.content_hash[:12]}"

    @property
    def node_id(self) -> str:
        return f"{self.name}@{self.content_hash}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "content_hash": self.content_hash,
            "uri": self.uri,
            "source_uri": self.source_uri,
            "schema": self.schema,
            "num_rows": self.num_rows,
            "artifact_sha256": self.artifact_sha256,
            "created_at": to_iso(self.created_at),
            "created_by": self.created_by,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelVersion:
    """One registered version of a model."""

    name: str
    version: int
    run_id: str | None
    artifact_sha256: str
    flavor: str
    signature: dict[str, Any]
    features: list[str]
    created_at: int
    created_by: str
    description: str | None = None
    aliases: tuple[str, ...] = ()

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"

    @property
    def node_id(self) -> str:
        return f"{self.name}/{self.version}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "uri": self.uri,
            "aliases": list(self.aliases),
            "run_id": self.run_id,
            "artifact_sha256": self.artifact_sha256,
            "flavor": self.flavor,
            "signature": self.signature,
            "features": list(self.features),
            "description": self.description,
            "created_at": to_iso(self.created_at),
            "created_by": self.created_by,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class LineageEdge:
    """``src`` flowed into ``dst``: upstream on the left, downstream on the right."""

    src_kind: str
    src_id: str
    relation: str
    dst_kind: str
    dst_id: str
    created_at: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditEvent:
    seq: int
    ts: int
    actor: str
    action: str
    object_kind: str
    object_id: str
    details: dict[str, Any]
    prev_hash: str
    hash: str
    mac: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "ts": to_iso(self.ts),
            "actor": self.actor,
            "action": self.action,
            "object": f"{self.object_kind}:{self.object_id}",
            "details": self.details,
            "hash": self.hash,
        }
