"""Runs: the active-run handle users log through, and the service that finds runs later."""

from __future__ import annotations

import atexit
import builtins
import contextlib
import itertools
import os
import re
import socket
import sys
import threading
import time
import uuid
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

import pyarrow as pa
from sqlalchemy.engine import Connection

from lockgate.artifacts import ArtifactStore, safe_relpath
from lockgate.audit import AuditLog
from lockgate.clock import now_millis
from lockgate.entities import DatasetVersion, LineageEdge, Metric, ModelVersion, NodeKind, RunRecord, RunStatus
from lockgate.errors import ConflictError, InvalidInputError, NotFoundError, ParamConflictError
from lockgate.lineage import LineageService
from lockgate.refs import RunRef, parse_ref
from lockgate.store import Database, RunRepository
from lockgate.tracking._datasets import DatasetService
from lockgate.tracking._environment import capture_code, capture_environment
from lockgate.tracking._search import parse_filter, parse_order_by

__all__ = ["ActiveRun", "ModelLogger", "RunList", "RunService"]

_KEY = re.compile(r"[A-Za-z0-9_\-./: ]{1,256}")  # fullmatch: "$" lets a trailing newline in
# Params are stored in plain text and shown everywhere: refuse what looks like a credential.
_SECRET_ENDINGS = ("password", "passwd", "pwd", "secret", "token", "apikey", "privatekey", "accesskey", "credential")
_HEARTBEAT_EVERY_MS = 30_000
_STALE_HEARTBEAT_MS = 15 * 60_000


def _process_host() -> str:
    """Where a pid means something: the host name plus the PID namespace, because containers
    often share a host name but not their process table."""
    try:
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return socket.gethostname()
    return f"{socket.gethostname()}/pidns:{namespace}"


_HOST = _process_host()


class ModelLogger(Protocol):
    """Registers a model produced by a run; the workspace binds the model registry here."""

    def __call__(
        self,
        run: ActiveRun,
        model: Any,
        *,
        name: str,
        input_example: Any | None,
        features: Sequence[str] | None,
        description: str | None,
    ) -> ModelVersion: ...


class RunList(list[RunRecord]):
    """Runs, with conversions for analysis."""

    def to_arrow(self) -> pa.Table:
        """One row per run: attributes, then ``params.*``, ``metrics.*`` and ``tags.*`` columns."""
        ts = pa.timestamp("ms", tz="UTC")
        columns: dict[str, pa.Array] = {
            "run_id": pa.array([r.id for r in self], pa.string()),
            "experiment": pa.array([r.experiment for r in self], pa.string()),
            "name": pa.array([r.name for r in self], pa.string()),
            "status": pa.array([str(r.status) for r in self], pa.string()),
            "actor": pa.array([r.actor for r in self], pa.string()),
            "start_time": pa.array([r.start_time for r in self], pa.int64()).cast(ts),
            "end_time": pa.array([r.end_time for r in self], pa.int64()).cast(ts),
        }
        for prefix, attr, kind in (
            ("params", "params", pa.string()),
            ("metrics", "metrics", pa.float64()),
            ("tags", "tags", pa.string()),
        ):
            keys = sorted({k for r in self for k in getattr(r, attr)})
            for key in keys:
                columns[f"{prefix}.{key}"] = pa.array([getattr(r, attr).get(key) for r in self], kind)
        return pa.table(columns)

    def to_pandas(self) -> Any:
        """The same table as :meth:`to_arrow`, as a pandas DataFrame (MLflow's ``search_runs`` shape)."""
        return self.to_arrow().to_pandas()


def looks_like_secret(key: str) -> bool:
    """True for names like ``db_password``, ``API_KEY``, ``authToken``; not ``max_tokens`` or ``tokenizer``.

    >>> [looks_like_secret(k) for k in ("db_password", "apiKey", "max_tokens", "tokenizer", "num_passes")]
    [True, True, False, False, False]
    """
    segments = [s for s in re.split(r"[^a-z0-9]+", key.lower()) if s]
    words = segments + [a + b for a, b in itertools.pairwise(segments)]
    return any(w.endswith(_SECRET_ENDINGS) or w.rstrip("s").endswith(_SECRET_ENDINGS[-1]) for w in words)


def _check_key(kind: str, key: str) -> None:
    if not isinstance(key, str) or not _KEY.fullmatch(key):
        raise InvalidInputError(f"{kind} name {key!r} is not valid; use up to 256 letters, digits, spaces or _ - . / :")


def _text_value(kind: str, key: str, value: Any) -> str:
    text = str(value)
    if "\x00" in text:
        # SQLite would keep it and PostgreSQL refuses it: refuse it on both, with a sentence.
        raise InvalidInputError(f"{kind} '{key}' contains a NUL character (\\x00), which cannot be stored; remove it")
    return text


def _param_values(params: Mapping[str, Any]) -> dict[str, str]:
    values = {}
    for key, value in params.items():
        _check_key("param", key)
        if looks_like_secret(key):
            raise InvalidInputError(
                f"param '{key}' looks like a secret, and params are stored in plain text; "
                "pass secrets through the environment or a secret store, not as params"
            )
        values[key] = _text_value("param", key, value)
    return values


def _metric_point(key: str, value: Any, step: Any, timestamp: Any) -> Metric:
    """One validated metric point: every way into the metrics table goes through here."""
    _check_key("metric", key)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InvalidInputError(f"metric '{key}' must be a number, not {value!r}") from None
    if isinstance(value, (str, bytes)):
        raise InvalidInputError(f"metric '{key}' must be a number, not the text {value!r}")
    try:
        return Metric(key=key, value=number, step=int(step), timestamp=int(timestamp))
    except (TypeError, ValueError):
        raise InvalidInputError(
            f"metric '{key}' needs an integer step and timestamp, not {step!r} and {timestamp!r}"
        ) from None


def _tag_values(tags: Mapping[str, Any]) -> dict[str, str]:
    for key in tags:
        _check_key("tag", key)
    return {k: _text_value("tag", k, v) for k, v in tags.items()}


class ActiveRun:
    """A run in progress. Use it as a context manager; logging calls are durable once they return.

    >>> import lockgate as lg, tempfile
    >>> ws = lg.Workspace.open(tempfile.mkdtemp())
    >>> with ws.start_run("demo", experiment="docs", params={"lr": 0.1}) as run:
    ...     run.log_metric("loss", 0.5, step=1)
    >>> ws.runs.get(run.id).metrics
    {'loss': 0.5}
    """

    def __init__(
        self,
        *,
        run_id: str,
        name: str,
        experiment: str,
        db: Database,
        artifacts: ArtifactStore,
        audit: AuditLog,
        lineage: LineageService,
        datasets: DatasetService,
        model_logger: ModelLogger | None,
        actor: str,
    ) -> None:
        self.id = run_id
        self.name = name
        self.experiment = experiment
        self._db = db
        self._artifacts = artifacts
        self._audit = audit
        self._lineage = lineage
        self._datasets = datasets
        self._model_logger = model_logger
        self._actor = actor
        self._repo = RunRepository()
        self._status: RunStatus = RunStatus.RUNNING
        self._last_heartbeat = now_millis()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<ActiveRun {self.id[:8]} {self.experiment}/{self.name} {self._status}>"

    @property
    def uri(self) -> str:
        return f"runs:/{self.id}"

    @property
    def status(self) -> RunStatus:
        return self._status

    def __enter__(self) -> ActiveRun:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._status is not RunStatus.RUNNING:
            return
        if exc_type is None:
            self.end(RunStatus.FINISHED)
        elif issubclass(exc_type, KeyboardInterrupt):
            self.end(RunStatus.KILLED)
        else:
            self.end(RunStatus.FAILED)

    def _ensure_running(self) -> None:
        if self._status is not RunStatus.RUNNING:
            raise ConflictError(f"run {self.id[:8]} has already ended ({self._status}); start a new run to log more")

    def _beat(self, conn: Connection, now: int) -> None:
        if now - self._last_heartbeat > _HEARTBEAT_EVERY_MS:
            self._repo.heartbeat(conn, self.id, now)
            self._last_heartbeat = now

    def _heartbeat(self) -> None:
        """Tell other hosts this run is alive, even while it logs nothing (the heartbeat thread)."""
        now = now_millis()
        if self._status is not RunStatus.RUNNING or self._db.closed or now - self._last_heartbeat < _HEARTBEAT_EVERY_MS:
            return
        with self._db.write() as conn:
            self._repo.heartbeat(conn, self.id, now)
        self._last_heartbeat = now

    # -- params, metrics, tags -------------------------------------------------------------

    def log_param(self, key: str, value: Any) -> None:
        self.log_params({key: value})

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Params are write-once: the same value again is fine, a different one is refused."""
        self._ensure_running()
        values = _param_values(params)
        if not values:
            return
        with self._db.write() as conn:
            self._insert_params(conn, values)

    def _insert_params(self, conn: Connection, values: dict[str, str]) -> None:
        stored = self._repo.insert_params(conn, self.id, values)
        clashes = {k: (stored[k], v) for k, v in values.items() if stored.get(k) != v}
        if clashes:  # raising rolls the whole transaction back: nothing of this call is kept
            key, (old, new) = next(iter(clashes.items()))
            raise ParamConflictError(
                f"param '{key}' of run {self.id[:8]} is already '{old}' and params are write-once; "
                f"log '{new}' under another name or start a new run"
            )

    def log_metric(self, key: str, value: float, *, step: int = 0, timestamp: int | None = None) -> None:
        """Append one metric point; durable once this returns."""
        self.log_metrics({key: value}, step=step, timestamp=timestamp)

    def log_metrics(self, metrics: Mapping[str, float], *, step: int = 0, timestamp: int | None = None) -> None:
        self._ensure_running()
        now = now_millis()
        ts = now if timestamp is None else int(timestamp)
        points = [_metric_point(key, value, step, ts) for key, value in metrics.items()]
        if not points:
            return
        with self._db.write() as conn:
            self._repo.insert_metrics(conn, self.id, points)
            self._beat(conn, now)

    def log_batch(
        self,
        *,
        params: Mapping[str, Any] | None = None,
        metrics: Sequence[Metric] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> None:
        """Params, metric points and tags in one transaction: all of them are kept, or none."""
        self._ensure_running()
        param_values = _param_values(params or {})
        points = [_metric_point(m.key, m.value, m.step, m.timestamp) for m in metrics or []]
        tag_values = _tag_values(tags or {})
        with self._db.write() as conn:
            if param_values:
                self._insert_params(conn, param_values)
            if points:
                self._repo.insert_metrics(conn, self.id, points)
            if tag_values:
                self._repo.set_tags(conn, self.id, tag_values)
            self._beat(conn, now_millis())

    def set_tag(self, key: str, value: Any) -> None:
        self.set_tags({key: value})

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """Tags, unlike params, may change."""
        values = _tag_values(tags)
        if not values:
            return
        with self._db.write() as conn:
            self._repo.set_tags(conn, self.id, values)

    # -- artifacts, datasets, models -------------------------------------------------------

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> list[str]:
        """Store a file (or every file under a folder); returns the artifact paths recorded."""
        self._ensure_running()
        source = Path(path)
        if not source.exists():
            raise NotFoundError(f"cannot log artifact {source}: it does not exist; check the path")
        prefix = safe_relpath(artifact_path) if artifact_path else None
        if source.is_dir():
            files = sorted(p for p in source.rglob("*") if p.is_file())
            names = [str(p.relative_to(source)) for p in files]
        else:
            files, names = [source], [source.name]
        entries = []
        for file, name in zip(files, names, strict=True):
            logical = safe_relpath(f"{prefix}/{name}" if prefix else name)
            stored = self._artifacts.put_file(file)
            entries.append((logical, stored.sha256, stored.size))
        now = now_millis()
        with self._db.write() as conn:
            for logical, sha, size in entries:
                self._repo.record_artifact(conn, sha, size, now)
                self._repo.attach_artifact(conn, self.id, logical, sha, size)
            self._lineage.record(
                conn,
                [
                    LineageEdge(
                        src_kind=NodeKind.RUN, src_id=self.id, relation="wrote", dst_kind=NodeKind.ARTIFACT, dst_id=sha
                    )
                    for _, sha, _ in entries
                ],
            )
        return [e[0] for e in entries]

    def log_dict(self, value: Any, artifact_file: str) -> str:
        """Store a JSON-serialisable value as an artifact file."""
        import json

        self._ensure_running()
        logical = safe_relpath(artifact_file)
        stored = self._artifacts.put_bytes(json.dumps(value, indent=2, sort_keys=True, default=str).encode())
        with self._db.write() as conn:
            self._repo.record_artifact(conn, stored.sha256, stored.size, now_millis())
            self._repo.attach_artifact(conn, self.id, logical, stored.sha256, stored.size)
        return logical

    def log_dataset(
        self, data: Any, *, name: str, role: str = "training", source_uri: str | None = None, store: bool = True
    ) -> DatasetVersion:
        """Record that this run consumed a data set: content hash, schema and row count.

        The rows are also stored as Parquet (deduplicated by content) unless ``store=False``,
        so the run can be reproduced from what lockgate kept.
        """
        self._ensure_running()
        _check_key("dataset role", role)
        if isinstance(data, (str, Path)) and source_uri is None:
            source_uri = str(Path(data).resolve())
        table, content_hash, sha, size = self._datasets.prepare(data, store=store)
        with self._db.write() as conn:
            version = self._datasets.register(
                conn, name=name, table=table, content_hash=content_hash, artifact=(sha, size), source_uri=source_uri
            )
            self._lineage.record(
                conn,
                [
                    LineageEdge(
                        src_kind=NodeKind.DATASET,
                        src_id=version.node_id,
                        relation=f"input:{role}",
                        dst_kind=NodeKind.RUN,
                        dst_id=self.id,
                    )
                ],
            )
        return version

    def log_model(
        self,
        model: Any,
        *,
        name: str,
        input_example: Any | None = None,
        features: Sequence[str] | None = None,
        description: str | None = None,
    ) -> ModelVersion:
        """Store the model and register it as the next version of ``name``."""
        self._ensure_running()
        if self._model_logger is None:
            raise ConflictError("this run has no model registry attached; open it through a Workspace")
        return self._model_logger(
            self, model, name=name, input_example=input_example, features=features, description=description
        )

    # -- ending ------------------------------------------------------------------------------

    def end(self, status: RunStatus | str = RunStatus.FINISHED) -> None:
        """Finish the run with ``status``; calling it again does nothing."""
        with self._lock:
            if self._status is not RunStatus.RUNNING:
                return
            final = RunStatus(status)
            with self._db.write() as conn:
                self._repo.set_status(conn, self.id, final, end_time=now_millis())
                self._audit.record(
                    conn, actor=self._actor, action=f"run.{final.lower()}", object_kind="run", object_id=self.id
                )
            self._status = final
            _OPEN_RUNS.discard(self)


# Runs a script forgot to end are finished when the interpreter exits, as MLflow does; a
# process that is killed leaves its run RUNNING until ``RunService.reap`` marks it crashed.
_OPEN_RUNS: weakref.WeakSet[ActiveRun] = weakref.WeakSet()


# Runs on other hosts are reaped when their heartbeat is older than _STALE_HEARTBEAT_MS; a
# training step that logs nothing for longer than that must not look dead. One daemon thread
# per process beats for every open run (it dies with the process, as a heartbeat should).
_BEATER_LOCK = threading.Lock()
_beater: threading.Thread | None = None


def _ensure_heartbeat_thread() -> None:
    global _beater
    with _BEATER_LOCK:
        if _beater is None or not _beater.is_alive():  # also after a fork, where threads are gone
            _beater = threading.Thread(target=_beat_forever, name="lockgate-heartbeat", daemon=True)
            _beater.start()


def _beat_forever() -> None:
    runs: list[ActiveRun] = []
    while True:
        time.sleep(min(1.0, _HEARTBEAT_EVERY_MS / 1000))
        with contextlib.suppress(RuntimeError):  # the set changed while it was copied: next round
            runs = list(_OPEN_RUNS)
        for run in runs:
            with contextlib.suppress(Exception):  # a missed beat is retried next round
                run._heartbeat()


_uncaught: list[BaseException] = []
_previous_excepthook = sys.excepthook


def _remember_uncaught(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    _uncaught.append(exc)
    _previous_excepthook(kind, exc, tb)


sys.excepthook = _remember_uncaught


@atexit.register
def _end_open_runs() -> None:
    # A script that dies of an uncaught exception failed, even if it never closed its run.
    status = RunStatus.FAILED if _uncaught else RunStatus.FINISHED
    for run in list(_OPEN_RUNS):
        with contextlib.suppress(Exception):  # best effort at interpreter exit
            run.end(status)


class RunService:
    """Start, find, compare and delete runs (``ws.runs``)."""

    def __init__(
        self,
        db: Database,
        artifacts: ArtifactStore,
        audit: AuditLog,
        lineage: LineageService,
        datasets: DatasetService,
        *,
        actor: str,
        capture_code: bool = True,
    ) -> None:
        self._db = db
        self._artifacts = artifacts
        self._audit = audit
        self._lineage = lineage
        self._datasets = datasets
        self._actor = actor
        self._capture_code = capture_code
        self._repo = RunRepository()
        self.model_logger: ModelLogger | None = None

    def start(
        self,
        name: str | None = None,
        *,
        experiment: str = "default",
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, Any] | None = None,
        parent: str | ActiveRun | None = None,
        code_dir: Path | None = None,
    ) -> ActiveRun:
        """Start a run: records code and environment, then returns the handle to log through."""
        _check_key("experiment", experiment)
        run_id = uuid.uuid4().hex
        name = name or f"run-{run_id[:8]}"
        _check_key("run", name)
        # Validated before anything is written: a refused param leaves no run behind.
        param_values = _param_values(params or {})
        tag_values = _tag_values(tags or {})
        parent_id = parent.id if isinstance(parent, ActiveRun) else (self.resolve(parent) if parent else None)
        code = capture_code(code_dir) if self._capture_code else None
        env = capture_environment()
        diff_sha = self._artifacts.put_bytes(code.diff) if code and code.diff else None
        packages = self._artifacts.put_bytes(env.packages)
        now = now_millis()
        with self._db.write() as conn:
            exp_id = self._repo.get_or_create_experiment(conn, experiment, actor=self._actor, now=now)
            for stored in (diff_sha, packages):
                if stored is not None:
                    self._repo.record_artifact(conn, stored.sha256, stored.size, now)
            self._repo.upsert_environment(
                conn,
                hash=env.hash,
                python=env.python,
                platform=env.platform,
                packages_sha256=packages.sha256,
                package_count=env.package_count,
                lockfile=env.lockfile,
                lockfile_sha256=env.lockfile_sha256,
                created_at=now,
            )
            self._repo.insert_run(
                conn,
                id=run_id,
                experiment_id=exp_id,
                name=name,
                status=str(RunStatus.RUNNING),
                parent_id=parent_id,
                actor=self._actor,
                start_time=now,
                heartbeat_at=now,
                host=_HOST,
                pid=os.getpid(),
                git_repo=code.repo if code else None,
                git_commit=code.commit if code else None,
                git_branch=code.branch if code else None,
                git_dirty=code.dirty if code else None,
                code_diff_sha256=diff_sha.sha256 if diff_sha else None,
                environment_hash=env.hash,
            )
            edges = [
                LineageEdge(
                    src_kind=NodeKind.ENVIRONMENT,
                    src_id=env.hash,
                    relation="environment",
                    dst_kind=NodeKind.RUN,
                    dst_id=run_id,
                )
            ]
            if code is not None:
                edges.append(
                    LineageEdge(
                        src_kind=NodeKind.CODE,
                        src_id=code.node_id,
                        relation="code",
                        dst_kind=NodeKind.RUN,
                        dst_id=run_id,
                    )
                )
            if parent_id:
                edges.append(
                    LineageEdge(
                        src_kind=NodeKind.RUN, src_id=parent_id, relation="parent", dst_kind=NodeKind.RUN, dst_id=run_id
                    )
                )
            self._lineage.record(conn, edges)
            if param_values:
                self._repo.insert_params(conn, run_id, param_values)
            if tag_values:
                self._repo.set_tags(conn, run_id, tag_values)
            self._audit.record(
                conn,
                actor=self._actor,
                action="run.created",
                object_kind="run",
                object_id=run_id,
                details={"experiment": experiment, "name": name, "parent": parent_id},
            )
        return self._handle(run_id, name, experiment)

    # -- finding -----------------------------------------------------------------------------

    def resolve(self, ref: str) -> str:
        """A full run id from ``runs:/<id>``, an id, or a unique id prefix."""
        text = ref
        if ref.startswith("runs:/"):
            parsed = parse_ref(ref)
            assert isinstance(parsed, RunRef)
            text = parsed.id
        if not re.fullmatch(r"[0-9a-f]{4,32}", text):
            raise InvalidInputError(
                f"'{ref}' is not a run id; use the id (or its first 8 characters) from lockgate runs list"
            )
        with self._db.read() as conn:
            found = self._repo.resolve_id(conn, text)
        if not found:
            raise NotFoundError(f"run '{ref}' does not exist; see: lockgate runs list --all")
        if len(found) > 1:
            raise InvalidInputError(f"run id prefix '{text}' is ambiguous; type more characters")
        return found[0]

    def get(self, ref: str) -> RunRecord:
        run_id = self.resolve(ref)
        self.reap()
        with self._db.read() as conn:
            return self._repo.get(conn, [run_id])[0]

    def search(
        self,
        filter: str | None = None,
        *,
        experiment: str | Sequence[str] | None = None,
        order_by: str | builtins.list[str] | None = None,
        include_children: bool = True,
        include_deleted: bool = False,
        max_results: int | None = None,
    ) -> RunList:
        """Runs matching ``filter``, e.g. ``"metrics.auc > 0.9 and params.max_depth = '6'"``."""
        clauses = parse_filter(filter)
        orderings = parse_order_by(order_by)
        experiments = [experiment] if isinstance(experiment, str) else (list(experiment) if experiment else None)
        self.reap()
        with self._db.read() as conn:
            return RunList(
                self._repo.search(
                    conn,
                    experiments=experiments,
                    clauses=clauses,
                    order_by=orderings,
                    include_children=include_children,
                    include_deleted=include_deleted,
                    limit=max_results,
                )
            )

    def list(self, *, experiment: str | None = None, include_children: bool = False, limit: int | None = 50) -> RunList:
        """Newest first; top-level runs only unless ``include_children``."""
        return self.search(experiment=experiment, include_children=include_children, max_results=limit)

    def metric_history(self, ref: str, key: str | None = None) -> builtins.list[Metric]:
        run_id = self.resolve(ref)
        with self._db.read() as conn:
            return self._repo.metric_history(conn, run_id, key)

    def artifacts(self, ref: str) -> builtins.list[dict[str, Any]]:
        run_id = self.resolve(ref)
        with self._db.read() as conn:
            return self._repo.run_artifacts(conn, run_id)

    def environment(self, ref: str) -> dict[str, Any] | None:
        run = self.get(ref)
        if run.environment_hash is None:
            return None
        with self._db.read() as conn:
            return self._repo.get_environment(conn, run.environment_hash)

    def experiments(self) -> builtins.list[Any]:
        with self._db.read() as conn:
            return list(self._repo.list_experiments(conn))

    def reopen(self, ref: str) -> ActiveRun:
        """Continue a run that ended without finishing (FAILED, KILLED, CRASHED): resume uses it."""
        record = self.get(ref)
        if record.status in (RunStatus.RUNNING, RunStatus.FINISHED):
            raise ConflictError(
                f"run {record.id[:8]} is {record.status}; only a failed, killed or crashed run can be resumed"
            )
        now = now_millis()
        with self._db.write() as conn:
            self._repo.set_status(conn, record.id, RunStatus.RUNNING, end_time=None)
            self._repo.claim(conn, record.id, host=_HOST, pid=os.getpid(), now=now)
            self._audit.record(
                conn,
                actor=self._actor,
                action="run.resumed",
                object_kind="run",
                object_id=record.id,
                details={"was": str(record.status)},
            )
        return self._handle(record.id, record.name, record.experiment)

    def _handle(self, run_id: str, name: str, experiment: str) -> ActiveRun:
        """The handle users log through; open runs get a heartbeat and are ended at exit."""
        run = ActiveRun(
            run_id=run_id,
            name=name,
            experiment=experiment,
            db=self._db,
            artifacts=self._artifacts,
            audit=self._audit,
            lineage=self._lineage,
            datasets=self._datasets,
            model_logger=self.model_logger,
            actor=self._actor,
        )
        _OPEN_RUNS.add(run)
        _ensure_heartbeat_thread()
        return run

    def delete(self, refs: Sequence[str]) -> builtins.list[str]:
        """Soft-delete runs (their records stay for lineage and audit); returns the ids."""
        ids = [self.resolve(r) for r in refs]
        with self._db.write() as conn:
            self._repo.mark_deleted(conn, ids)
            for run_id in ids:
                self._audit.record(conn, actor=self._actor, action="run.deleted", object_kind="run", object_id=run_id)
        return ids

    def reap(self) -> builtins.list[str]:
        """Mark runs whose process died as CRASHED; returns their ids."""
        now = now_millis()
        with self._db.read() as conn:
            running = self._repo.running(conn)
        dead = [
            r["id"]
            for r in running
            if (r["host"] == _HOST and not _pid_alive(int(r["pid"])))
            or (r["host"] != _HOST and now - int(r["heartbeat_at"]) > _STALE_HEARTBEAT_MS)
        ]
        if dead:
            with self._db.write() as conn:
                still = {r["id"] for r in self._repo.running(conn)}
                for run_id in dead:
                    if run_id in still:
                        self._repo.set_status(conn, run_id, RunStatus.CRASHED, end_time=now)
                        self._audit.record(
                            conn,
                            actor="service:lockgate",
                            action="run.crashed",
                            object_kind="run",
                            object_id=run_id,
                            details={"reason": "its process is gone"},
                        )
        return dead


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (killed, not yet reaped by its parent) is dead for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True
