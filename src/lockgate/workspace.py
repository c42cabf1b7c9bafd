"""The composition root: opens settings, the metadata store and the artifact store once, and
hands each service only what it needs.

>>> import lockgate as lg, tempfile
>>> ws = lg.Workspace.open(tempfile.mkdtemp())
>>> ws.backends()["metadata"]
'sqlite'
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from lockgate.artifacts import ArtifactStore
from lockgate.audit import AuditLog
from lockgate.config import CONFIG_FILE, Settings
from lockgate.data import ContractRegistry, DataService, ModelConsumers
from lockgate.deploy import DeploymentService, RolloutService
from lockgate.entities import DatasetVersion, NodeKind, RunRecord, RunStatus
from lockgate.errors import InvalidReferenceError
from lockgate.features import FeatureStore, FeatureViewConsumers
from lockgate.lineage import LineageGraph, LineageService, Node, openlineage_events
from lockgate.refs import DatasetRef, FeatureRef, ModelRef, RunRef, is_valid_name, parse_ref
from lockgate.registry import ModelRegistry
from lockgate.store import Database, RunRepository
from lockgate.store import migrate as migrations
from lockgate.store.database import redact_url
from lockgate.tracking import ActiveRun, DatasetService, RunService

__all__ = ["GcReport", "Workspace"]

_TOML_TEMPLATE = """\
# lockgate workspace settings. Environment variables (LOCKGATE_*) override these.
[lockgate]
# database_url = "postgresql://user@db.example.com/lockgate"   # default: SQLite in this folder
# artifact_root = "s3://bucket/lockgate"                        # default: ./artifacts in this folder
# identity = "user:alice"                                       # default: the OS user
"""


@dataclass(frozen=True, slots=True)
class GcReport:
    """What ``Workspace.gc`` found and removed."""

    scanned: int
    unreferenced: int
    removed: int
    freed_bytes: int
    dry_run: bool
    checkpoints: int = 0
    """Step checkpoints removed because their pipeline run finished (or is gone)."""


class Workspace:
    """A lockgate workspace: ``ws.runs``, ``ws.models``, ``ws.datasets``, ``ws.data``, ``ws.features``,
    ``ws.deployments``, ``ws.rollouts``, ``ws.lineage``, ``ws.audit``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.home = settings.home
        self.db = Database(settings.resolved_database_url)
        self.artifacts = ArtifactStore(settings.resolved_artifact_root, s3_endpoint_url=settings.s3_endpoint_url)
        actor = settings.actor
        self.audit = AuditLog(self.db, key_file=settings.key_file, anchor_file=settings.home / "audit-anchor.json")
        self.lineage = LineageService(self.db)
        self.datasets = DatasetService(self.db, self.artifacts, self.audit, actor=actor)
        self.runs = RunService(
            self.db,
            self.artifacts,
            self.audit,
            self.lineage,
            self.datasets,
            actor=actor,
            capture_code=settings.capture_code,
        )
        self.models = ModelRegistry(self.db, self.artifacts, self.audit, self.lineage, actor=actor)
        self.runs.model_logger = self.models.log_from_run
        contracts = ContractRegistry(self.db, self.audit, actor=actor, consumer_providers=[ModelConsumers(self.db)])
        self.data = DataService(self.datasets, contracts)
        self.features = FeatureStore(
            self.db,
            self.audit,
            self.lineage,
            self.datasets,
            actor=actor,
            home=settings.home,
            offline_root=settings.resolved_offline_store,
            online_url=settings.online_store_url,
            s3_endpoint_url=settings.s3_endpoint_url,
        )
        contracts.add_consumer_provider(FeatureViewConsumers(self.db))
        self.deployments = DeploymentService(self.db, self.audit, self.models, actor=actor)
        self.rollouts = RolloutService(self.db, self.audit, self.models, actor=actor)

    @classmethod
    def open(
        cls,
        home: str | Path | None = None,
        *,
        database_url: str | None = None,
        artifact_root: str | None = None,
        identity: str | None = None,
        upgrade: bool | None = None,
    ) -> Workspace:
        """Open (creating if needed) the workspace at ``home`` (``./.lockgate`` by default).

        A local SQLite database is migrated on open; a shared PostgreSQL one is only
        checked, and ``lockgate db upgrade`` migrates it.
        """
        settings = Settings.load(home=home, database_url=database_url, artifact_root=artifact_root, identity=identity)
        settings.home.mkdir(parents=True, exist_ok=True)
        toml = settings.home / CONFIG_FILE
        if not toml.exists():
            toml.write_text(_TOML_TEMPLATE)
        ws = cls(settings)
        try:
            if upgrade if upgrade is not None else ws.db.is_sqlite:
                if migrations.current_revision(ws.db) != migrations.head_revision():
                    migrations.upgrade(ws.db)
            else:
                migrations.check_current(ws.db)
        except BaseException:
            ws.close()
            raise
        return ws

    def close(self) -> None:
        self.features.close()
        self.db.dispose()

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Workspace {self.home} db={self.backends()['metadata']} artifacts={self.artifacts.root}>"

    def start_run(
        self,
        name: str | None = None,
        *,
        experiment: str = "default",
        params: dict[str, Any] | None = None,
        tags: dict[str, Any] | None = None,
        parent: str | ActiveRun | None = None,
    ) -> ActiveRun:
        """Start a run (use it as a context manager); MLflow's ``start_run``, bound to this workspace."""
        return self.runs.start(name, experiment=experiment, params=params, tags=tags, parent=parent)

    def backends(self) -> dict[str, str]:
        return {
            "metadata": self.db.dialect,
            "database_url": redact_url(self.db.url),
            "artifacts": "s3" if self.artifacts.root.startswith("s3://") else "local",
            "artifact_root": self.artifacts.root,
            "identity": self.settings.actor,
        }

    # -- lineage -----------------------------------------------------------------------------

    def node(self, ref: str) -> Node:
        """The lineage node behind a reference (aliases resolved to their current version)."""
        parsed = parse_ref(ref) if ":/" in ref else None
        if isinstance(parsed, ModelRef):
            mv = self.models.get(parsed)
            return Node(NodeKind.MODEL_VERSION, mv.node_id)
        if isinstance(parsed, RunRef):
            return Node(NodeKind.RUN, self.runs.resolve(ref))
        if isinstance(parsed, DatasetRef):
            return Node(NodeKind.DATASET, self.datasets.get(ref).node_id)
        if isinstance(parsed, FeatureRef):
            found = self.features.registry.get(parsed.name, version=parsed.version)
            return Node(NodeKind(found.kind), f"{found.name}@{found.version}")
        raise InvalidReferenceError(
            f"'{ref}' is not a reference lineage can start from; use models:/, runs:/, datasets:/ or features:/"
        )

    def lineage_of(self, ref: str, *, direction: Literal["upstream", "downstream", "both"] = "both") -> LineageGraph:
        """Everything ``ref`` came from (upstream) and fed (downstream)."""
        return self.lineage.walk(self.node(ref), direction=direction)

    def openlineage(
        self, ref: str, *, direction: Literal["upstream", "downstream", "both"] = "both"
    ) -> list[dict[str, Any]]:
        """The runs around ``ref`` as OpenLineage RunEvents (dicts, ready for JSON)."""
        graph = self.lineage_of(ref, direction=direction)
        run_ids = [n.id for n in graph.nodes if n.kind == NodeKind.RUN]
        runs = self.run_records(run_ids)
        datasets: dict[str, DatasetVersion] = {}
        for n in graph.nodes:
            if n.kind == NodeKind.DATASET:
                name, _, digest = n.id.partition("@")
                if not is_valid_name(name):
                    continue  # outside data a pipeline read by path (a DataRef): exported by name only
                datasets[n.id] = self.datasets.get(f"datasets:/{name}@{digest}")
        return openlineage_events(graph, runs, datasets)

    def run_records(self, ids: list[str]) -> dict[str, RunRecord]:
        with self.db.read() as conn:
            return {r.id: r for r in RunRepository().get(conn, ids)}

    # -- housekeeping ------------------------------------------------------------------------

    def gc(self, *, dry_run: bool = False, older_than_s: float = 3600.0) -> GcReport:
        """Remove stored objects no live record points to: orphans of interrupted writes, and
        the bytes of deleted model versions.

        Objects younger than ``older_than_s`` are kept: a writer stores bytes first and
        commits the record after, and gc must not collect bytes in between. Each candidate is
        checked again (references and age) just before it is deleted.
        """
        repo = RunRepository()
        with self.db.read() as conn:
            referenced = repo.referenced_artifacts(conn)
        cutoff = time.time() - older_than_s
        scanned = 0
        candidates = []
        for obj in self.artifacts.iter_objects():
            scanned += 1
            if obj.sha256 not in referenced:
                candidates.append(obj)
        with self.db.read() as conn:
            referenced = repo.referenced_artifacts(conn)  # records committed while we listed
        removed: list[str] = []
        freed = 0
        for obj in candidates:
            if obj.sha256 in referenced:
                continue
            modified = self.artifacts.modified(obj.sha256)
            if modified is None or modified > cutoff:
                continue  # gone already, or written again since it was listed
            if not dry_run:
                self.artifacts.delete(obj.sha256)
            removed.append(obj.sha256)
            freed += obj.size
        if removed and not dry_run:
            with self.db.write() as conn:
                repo.forget_artifacts(conn, removed)
        return GcReport(scanned, len(candidates), len(removed), freed, dry_run, self._gc_checkpoints(dry_run))

    def _gc_checkpoints(self, dry_run: bool) -> int:
        """Checkpoints serve only a retry or a ``--resume`` of their pipeline run, which a run that
        finished can no longer have; those of failed, killed or crashed runs stay for a resume.
        A finished run writes no more checkpoints, so no age check is needed."""
        names = self.artifacts.list_named("checkpoints")
        by_run: dict[str, list[str]] = {}
        for name in names:
            parts = name.split("/")
            if len(parts) >= 3:
                by_run.setdefault(parts[1], []).append(name)
        records = self.run_records(list(by_run))
        # Only a run on record as finished: a missing record may be one not committed yet.
        done = [r for r in by_run if r in records and records[r].status == RunStatus.FINISHED]
        doomed = [name for run in done for name in by_run[run]]
        if not dry_run:
            for name in doomed:
                self.artifacts.delete_named(name)
        return len(doomed)
