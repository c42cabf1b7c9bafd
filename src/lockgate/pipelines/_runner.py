"""Run a pipeline: trace it, then execute its steps in DAG order, reusing cached results,
recording each step as a child run with its inputs, outputs, logs and lineage.

Everything the runner records happens in this process, one step at a time; only the steps'
own work happens in the executor. A step's cache key is the hash of its code (the function
and the project files it uses), of its inputs' contents, of its parameters and of the
environment; a hit reuses the stored outputs and says so on the step's run.
"""

from __future__ import annotations

import inspect
import json
import time
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lockgate.clock import now_millis
from lockgate.config import strip_password
from lockgate.entities import LineageEdge, NodeKind, RunStatus
from lockgate.errors import ConflictError, InvalidInputError, UserCodeError
from lockgate.hashing import canonical_json, sha256_bytes, sha256_file
from lockgate.pipelines._context import ContextSpec
from lockgate.pipelines._dataref import DataRef, decode_params, encode_params
from lockgate.pipelines._dsl import Node, Pipeline, PipelineGraph, StepOutput
from lockgate.pipelines._executors import Executor, Task, TaskResult, make_executor
from lockgate.pipelines._source import source_hash
from lockgate.pipelines._values import StoredValue, decode, value_hash
from lockgate.store import PipelineRepository, RunRepository
from lockgate.tracking import ActiveRun, capture_environment
from lockgate.tracking._runs import looks_like_secret
from lockgate.workspace import Workspace

__all__ = ["PipelineFailed", "PipelineResult", "StepResult", "run_pipeline"]

_DONE = ("SUCCEEDED", "CACHED")


@dataclass(frozen=True, slots=True)
class Output:
    """A stored step output: where its bytes are and what its content hashes to."""

    sha256: str
    kind: str
    content_hash: str

    def to_json(self) -> dict[str, str]:
        return {"sha256": self.sha256, "kind": self.kind, "hash": self.content_hash}

    @classmethod
    def from_json(cls, data: dict[str, str]) -> Output:
        return cls(data["sha256"], data["kind"], data["hash"])


@dataclass(frozen=True, slots=True)
class StepResult:
    name: str
    status: str  # SUCCEEDED, CACHED, REUSED, FAILED, SKIPPED
    run_id: str | None
    seconds: float = 0.0
    cache_key: str | None = None


@dataclass(slots=True)
class PipelineResult:
    """What a pipeline run did; ``output(name)`` loads a step's output (hash-verified)."""

    run_id: str
    pipeline: str
    status: RunStatus
    steps: list[StepResult]
    _outputs: dict[str, Output] = field(default_factory=dict)
    _ws: Workspace | None = None

    @property
    def cache_hits(self) -> int:
        return sum(s.status == "CACHED" for s in self.steps)

    def output(self, step_name: str) -> Any:
        if step_name not in self._outputs or self._ws is None:
            raise InvalidInputError(f"step '{step_name}' produced no output in run {self.run_id[:8]}")
        out = self._outputs[step_name]
        return decode(out.kind, self._ws.artifacts.get_bytes(out.sha256))

    def output_hash(self, step_name: str) -> str | None:
        """The content hash of a step's output (what reproduce compares)."""
        out = self._outputs.get(step_name)
        return out.content_hash if out else None

    def step_run(self, step_name: str) -> str | None:
        return next((s.run_id for s in self.steps if s.name == step_name), None)


def run_pipeline(
    ws: Workspace,
    pipeline: Pipeline,
    *,
    params: dict[str, Any] | None = None,
    experiment: str | None = None,
    executor: str | Executor = "auto",
    cache: bool = True,
    resume: str | None = None,
    project_root: Path | None = None,
    progress: Any = None,
    tags: dict[str, str] | None = None,
    ray_address: str | None = None,
) -> PipelineResult:
    """Run ``pipeline`` in ``ws``; see :class:`PipelineResult`.

    ``executor`` is ``auto`` (``local`` unless the steps live in ``__main__``), ``local``,
    ``inline`` or ``ray`` (on the cluster at ``ray_address``, e.g. ``ray://head:10001`` or
    ``127.0.0.1:6379``; workers there need the same artifact store, e.g. S3).

    ``tags`` are set on the pipeline run (a trigger records why the run started there).

    ``resume`` continues a failed pipeline run: finished steps are reused, the failed one and
    everything downstream of it run again, under the same run.
    """
    runner = _Runner(
        ws, pipeline, experiment=experiment, cache=cache, project_root=project_root, progress=progress, tags=tags
    )
    owned = isinstance(executor, str)
    ex = (
        make_executor(executor, steps=pipeline.steps(), ray_address=ray_address, project_root=runner.root)
        if isinstance(executor, str)
        else executor
    )
    try:
        return runner.run(params or {}, ex, resume=resume)
    finally:
        if owned:
            ex.shutdown()


class _Runner:
    def __init__(
        self,
        ws: Workspace,
        pipeline: Pipeline,
        *,
        experiment: str | None,
        cache: bool,
        project_root: Path | None,
        progress: Any,
        tags: dict[str, str] | None = None,
    ) -> None:
        self.ws = ws
        self.tags = dict(tags or {})
        self.pipeline = pipeline
        self.experiment = experiment or pipeline.name
        self.cache = cache
        source = inspect.getsourcefile(pipeline.fn)
        self.root = project_root or (Path(source).resolve().parent if source else Path.cwd())
        self.progress = progress
        self.repo = PipelineRepository()
        self.runs_repo = RunRepository()
        self.env_hash = capture_environment().hash
        # For ctx.features in the workers: the workspace's settings, its folder made absolute so
        # a worker started from another directory opens the same one, acting as the runner does.
        # No password travels with a task (Ray keeps tasks in its object store): the worker
        # takes it from its own environment (see config.with_local_secrets).
        self.settings = ws.settings.model_copy(
            update={
                "home": ws.settings.home.resolve(),
                "identity": ws.settings.actor,
                "database_url": strip_password(ws.settings.database_url),
                "online_store_url": strip_password(ws.settings.online_store_url),
                "jobs_url": strip_password(ws.settings.jobs_url),
                "callback_secret": None,  # a worker completes secrets from its own environment
            }
        )
        self.sources: dict[str, str] = {}
        self.data_hashes: dict[str, str] = {}  # DataRef.key -> content hash, taken once per run

    # -- the run -----------------------------------------------------------------------------

    def run(self, params: dict[str, Any], executor: Executor, *, resume: str | None) -> PipelineResult:
        previous: dict[str, dict[str, Any]] = {}
        if resume is not None:
            parent, params = self._reopen(resume)
            if self.tags:
                parent.set_tags(self.tags)
            with self.ws.db.read() as conn:
                previous = {s["node"]: s for s in self.repo.steps(conn, parent.id)}
            graph = self.pipeline.trace(**params)
            data_hashes = self._hash_data_refs(graph)
        else:
            graph = self.pipeline.trace(**params)
            # Hashed before anything is written: missing data is bad input, not a dangling run.
            data_hashes = self._hash_data_refs(graph)
            parent = self.ws.start_run(
                self.pipeline.name,
                experiment=self.experiment,
                params={k: _param_text(v) for k, v in graph.params.items() if not looks_like_secret(k)},
                tags={**self.tags, "lockgate.kind": "pipeline", "lockgate.executor": executor.name},
            )
        if resume is None:
            # What reproduce needs: which pipeline, from which file, with which parameters and data.
            source = inspect.getsourcefile(self.pipeline.fn)
            if source is not None and not Path(source).is_file():
                source = None  # defined in a notebook cell or a doctest: nothing to check out later
            parent.log_dict(
                {
                    "pipeline": self.pipeline.name,
                    "file": str(Path(source).resolve()) if source else None,
                    "file_sha256": sha256_file(source) if source else None,
                    "params": encode_params(graph.params),
                    "root": str(self.root),
                    "data": data_hashes,
                },
                "pipeline.json",
            )
        outputs: dict[str, Output] = {}
        results: dict[str, StepResult] = {}
        failed: set[str] = set()
        running: dict[Future[TaskResult], _Attempt] = {}
        pending = list(graph.nodes)
        try:
            while pending or running:
                for node in list(pending):
                    if failed & set(node.upstream):
                        pending.remove(node)
                        failed.add(node.name)
                        results[node.name] = StepResult(node.name, "SKIPPED", None)
                        continue
                    if not all(u in outputs for u in node.upstream):
                        continue
                    pending.remove(node)
                    key = self._cache_key(node, outputs, data_hashes)
                    reused = self._reuse(parent, node, key, previous, outputs, results)
                    if reused:
                        continue
                    step_run = self._start_step(parent, node)
                    self._record_inputs(step_run, node, outputs)
                    attempt = _Attempt(node, step_run, key, parent.id)
                    running[self._submit(executor, attempt, outputs)] = attempt
                    self._save(parent.id, node.name, step_run.id, "RUNNING", key, [], 1, now_millis(), None)
                if not running:
                    continue
                done, _ = wait(list(running), timeout=self._next_deadline(running), return_when=FIRST_COMPLETED)
                self._abort_overdue(executor, running, done)
                for future in done:
                    attempt = running.pop(future)
                    node, step_run = attempt.node, attempt.step_run
                    task = self._outcome(executor, future, attempt)
                    if task is not None and task.error is None and task.value is not None:
                        outputs[node.name] = self._finish(parent, node, step_run, attempt.key, task, attempt.number)
                        results[node.name] = StepResult(
                            node.name, "SUCCEEDED", step_run.id, task.ended - task.started, attempt.key
                        )
                        continue
                    retry = self._next_attempt(attempt, task)
                    if retry is not None:
                        running[self._submit(executor, retry, outputs)] = retry
                        continue
                    self._fail(parent, node, step_run, attempt, task)
                    failed.add(node.name)
                    seconds = task.ended - task.started if task else time.time() - attempt.started
                    results[node.name] = StepResult(node.name, "FAILED", step_run.id, seconds, attempt.key)
        except BaseException:
            # Interrupted (Ctrl-C, SIGTERM to the runner, a store failure): nothing is left RUNNING.
            for future, attempt in running.items():
                future.cancel()
                attempt.step_run.end(RunStatus.KILLED)
            parent.end(RunStatus.KILLED if not failed else RunStatus.FAILED)
            raise
        status = RunStatus.FAILED if failed else RunStatus.FINISHED
        parent.end(status)
        ordered = [results[n.name] for n in graph.nodes if n.name in results]
        result = PipelineResult(parent.id, self.pipeline.name, status, ordered, dict(outputs), self.ws)
        if failed:
            first = next(r for r in ordered if r.status == "FAILED")
            raise PipelineFailed(result, first)
        return result

    # -- attempts ----------------------------------------------------------------------------

    def _submit(self, executor: Executor, attempt: _Attempt, outputs: dict[str, Output]) -> Future[TaskResult]:
        step_ = attempt.node.step
        spec = ContextSpec(
            artifact_root=self.ws.artifacts.root,
            s3_endpoint_url=self.ws.settings.s3_endpoint_url,
            prefix=f"checkpoints/{attempt.pipeline_run_id}/{attempt.node.name}/{attempt.key[:16]}",
            keep=step_.keep_checkpoints,
            interval=step_.checkpoint_interval,
            attempt=attempt.number,
            step_run_id=attempt.step_run.id,
            # Only a step that takes a context can open the workspace (the settings may hold a
            # database URL with its password: they travel no further than they must).
            settings=self.settings if step_.context_param is not None else None,
        )
        attempt.started = time.time()
        task = Task(step_, self._materialize(attempt.node, outputs), spec, step_.timeout)
        return executor.submit(task)

    def _next_deadline(self, running: dict[Future[TaskResult], _Attempt]) -> float | None:
        deadlines = [a.deadline for a in running.values() if a.deadline is not None]
        return max(0.05, min(deadlines) - time.time()) if deadlines else None

    def _abort_overdue(
        self, executor: Executor, running: dict[Future[TaskResult], _Attempt], done: set[Future[TaskResult]]
    ) -> None:
        """A step the worker could not interrupt itself (stuck in C code) is ended from outside."""
        now = time.time()
        for future, attempt in running.items():
            if future not in done and attempt.deadline is not None and now > attempt.deadline and not attempt.aborted:
                attempt.aborted = True
                self._tick(attempt.node.name, f"still running {now - attempt.started:.0f}s past its timeout; ending it")
                executor.abort(future)

    def _outcome(self, executor: Executor, future: Future[TaskResult], attempt: _Attempt) -> TaskResult | None:
        """The attempt's result, or None when its worker was lost (killed, evicted, aborted)."""
        try:
            return future.result()
        except Exception as exc:
            if not executor.recover(exc):
                raise
            return None

    def _next_attempt(self, attempt: _Attempt, task: TaskResult | None) -> _Attempt | None:
        """Another attempt after a failure (within ``retries``, with backoff) or after the worker
        was preempted or lost (within ``max_preemptions``, resuming from the latest checkpoint)."""
        step_ = attempt.node.step
        if attempt.aborted:
            why, lost = f"StepTimeout: the step ran longer than its timeout of {step_.timeout:g} s", False
        elif task is None:
            why, lost = "its worker was lost (killed or out of memory)", True
        elif task.preempted:
            why, lost = "its worker was preempted (SIGTERM)", True
        else:
            why, lost = task.error or "failed", False
        attempt.last_error = why
        if lost:
            if attempt.preemptions >= step_.max_preemptions:
                return None
            self._tick(attempt.node.name, f"attempt {attempt.number}: {why}; running it again from its checkpoint")
        else:
            if attempt.failures >= step_.retries:
                return None
            self._tick(attempt.node.name, f"attempt {attempt.number} failed ({why.split(':', 1)[0]}); retrying")
            time.sleep(min(0.1 * 2**attempt.failures, 5.0))
        attempt.step_run.set_tags({f"lockgate.attempt.{attempt.number}.error": why[:500]})
        if task is not None:
            self._keep_logs(attempt.step_run, task, earlier_attempt=attempt.number)
        return attempt.next(lost=lost)

    # -- pieces ------------------------------------------------------------------------------

    def _reopen(self, ref: str) -> tuple[ActiveRun, dict[str, Any]]:
        record = self.ws.runs.get(ref)
        if record.tags.get("lockgate.kind") != "pipeline" or record.name != self.pipeline.name:
            raise InvalidInputError(
                f"run {record.id[:8]} is not a run of pipeline '{self.pipeline.name}'; see: lockgate runs list"
            )
        manifest = next((a for a in self.ws.runs.artifacts(record.id) if a["path"] == "pipeline.json"), None)
        if manifest is None:
            raise ConflictError(f"run {record.id[:8]} has no pipeline manifest, so it cannot be resumed")
        params = decode_params(json.loads(self.ws.artifacts.get_bytes(manifest["sha256"]))["params"])
        return self.ws.runs.reopen(record.id), params

    def _hash_data_refs(self, graph: PipelineGraph) -> dict[str, str]:
        hashes = self.data_hashes
        for node in graph.nodes:
            for value in node.arguments.values():
                if isinstance(value, DataRef) and value.key not in hashes:
                    hashes[value.key] = value.content_hash(settings=self.ws.settings)
        return hashes

    def _cache_key(self, node: Node, outputs: dict[str, Output], data_hashes: dict[str, str]) -> str:
        inputs: dict[str, str] = {}
        for name, value in sorted(node.arguments.items()):
            if isinstance(value, StepOutput):
                inputs[name] = "output:" + outputs[value.node].content_hash
            elif isinstance(value, DataRef):
                inputs[name] = "data:" + data_hashes[value.key]
            else:
                inputs[name] = "value:" + value_hash(value)
        code = source_hash(node.step.fn, self.root)
        self.sources[node.name] = code
        return sha256_bytes(
            canonical_json(
                {
                    "step": node.step.name,
                    "source": code,
                    "inputs": inputs,
                    "environment": self.env_hash,
                }
            )
        )

    def _reuse(
        self,
        parent: ActiveRun,
        node: Node,
        key: str,
        previous: dict[str, dict[str, Any]],
        outputs: dict[str, Output],
        results: dict[str, StepResult],
    ) -> bool:
        before = previous.get(node.name)
        if before is not None and before["status"] in _DONE and before["cache_key"] == key and before["outputs"]:
            outputs[node.name] = Output.from_json(before["outputs"][0])
            results[node.name] = StepResult(node.name, "REUSED", before["step_run_id"], 0.0, key)
            self._tick(node.name, "reused")
            return True
        if not (self.cache and node.step.cache):
            return False
        with self.ws.db.read() as conn:
            hit = self.repo.cached(conn, key)
        if hit is None or not all(self.ws.artifacts.exists(o["sha256"]) for o in hit["outputs"]):
            return False
        out = Output.from_json(hit["outputs"][0])
        step_run = self._start_step(
            parent, node, tags={"lockgate.cache": "hit", "lockgate.cache_source": str(hit["step_run_id"])}
        )
        self._record_inputs(step_run, node, outputs)
        self._record_output(step_run, node, out, size=None)
        step_run.end(RunStatus.FINISHED)
        outputs[node.name] = out
        results[node.name] = StepResult(node.name, "CACHED", step_run.id, 0.0, key)
        self._save(parent.id, node.name, step_run.id, "CACHED", key, [out.to_json()], 0, now_millis(), now_millis())
        self._tick(node.name, "cached")
        return True

    def _start_step(self, parent: ActiveRun, node: Node, *, tags: dict[str, str] | None = None) -> ActiveRun:
        params = {
            k: _param_text(v)
            for k, v in node.arguments.items()
            if not isinstance(v, StepOutput) and not looks_like_secret(k)
        }
        return self.ws.runs.start(
            node.name,
            experiment=self.experiment,
            parent=parent,
            params=params,
            tags={
                "lockgate.kind": "step",
                "lockgate.step": node.step.name,
                "lockgate.source_sha256": self.sources.get(node.name, ""),
                **(tags or {}),
            },
        )

    def _materialize(self, node: Node, outputs: dict[str, Output]) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name, value in node.arguments.items():
            if isinstance(value, StepOutput):
                out = outputs[value.node]
                values[name] = decode(out.kind, self.ws.artifacts.get_bytes(out.sha256))
            else:
                values[name] = value
        return values

    def _record_output(self, step_run: ActiveRun, node: Node, out: Output, *, size: int | None) -> None:
        ext = {"table": "parquet", "pandas": "parquet", "json": "json"}.get(out.kind, "joblib")
        with self.ws.db.write() as conn:
            if size is not None:
                self.runs_repo.record_artifact(conn, out.sha256, size, now_millis())
            self.runs_repo.attach_artifact(conn, step_run.id, f"outputs/{node.name}.{ext}", out.sha256, size or 0)
            edges = [
                LineageEdge(
                    src_kind=NodeKind.RUN,
                    src_id=step_run.id,
                    relation="output",
                    dst_kind=NodeKind.ARTIFACT,
                    dst_id=out.sha256,
                )
            ]
            for arg, value in node.arguments.items():
                if isinstance(value, DataRef):
                    edges.append(
                        LineageEdge(
                            src_kind=NodeKind.DATASET,
                            src_id=f"{value.key}@{self.data_hashes[value.key]}",
                            relation=f"input:{arg}",
                            dst_kind=NodeKind.RUN,
                            dst_id=step_run.id,
                        )
                    )
            self.ws.lineage.record(conn, edges)

    def _record_inputs(self, step_run: ActiveRun, node: Node, outputs: dict[str, Output]) -> None:
        edges = [
            LineageEdge(
                src_kind=NodeKind.ARTIFACT,
                src_id=outputs[value.node].sha256,
                relation=f"input:{arg}",
                dst_kind=NodeKind.RUN,
                dst_id=step_run.id,
            )
            for arg, value in node.arguments.items()
            if isinstance(value, StepOutput)
        ]
        with self.ws.db.write() as conn:
            self.ws.lineage.record(conn, edges)

    def _finish(
        self, parent: ActiveRun, node: Node, step_run: ActiveRun, key: str, task: TaskResult, attempt: int
    ) -> Output:
        assert task.value is not None
        value: StoredValue = task.value
        stored = self.ws.artifacts.put_bytes(value.data)
        out = Output(stored.sha256, value.kind, value.content_hash)
        self._keep_logs(step_run, task)
        self._record_output(step_run, node, out, size=stored.size)
        tags: dict[str, Any] = {"lockgate.worker": task.worker, "lockgate.attempts": attempt}
        if task.restored_from is not None:
            tags["lockgate.restored_checkpoint"] = task.restored_from
        step_run.set_tags(tags)
        if value.kind == "json":
            decoded = decode("json", value.data)
            if (
                isinstance(decoded, dict)
                and decoded
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in decoded.values())
            ):
                step_run.log_metrics(decoded)
                parent.log_metrics(decoded)
        step_run.end(RunStatus.FINISHED)
        started, ended = int(task.started * 1000), int(task.ended * 1000)
        self._save(parent.id, node.name, step_run.id, "SUCCEEDED", key, [out.to_json()], attempt, started, ended)
        if node.step.cache:
            with self.ws.db.write() as conn:
                self.repo.remember(
                    conn,
                    cache_key=key,
                    step=node.step.name,
                    outputs=[out.to_json()],
                    step_run_id=step_run.id,
                    created_at=ended,
                )
        self._tick(node.name, f"done in {task.ended - task.started:.1f}s")
        return out

    def _fail(
        self, parent: ActiveRun, node: Node, step_run: ActiveRun, attempt: _Attempt, task: TaskResult | None
    ) -> None:
        error = (task.error if task is not None and not attempt.aborted else attempt.last_error) or "failed"
        if task is not None:
            self._keep_logs(step_run, task)
        step_run.set_tags(
            {
                "lockgate.error": error[:500],
                "lockgate.worker": task.worker if task is not None else "lost",
                "lockgate.attempts": attempt.number,
            }
        )
        step_run.end(RunStatus.FAILED)
        started = task.started if task is not None else attempt.started
        ended = task.ended if task is not None else time.time()
        self._save(
            parent.id,
            node.name,
            step_run.id,
            "FAILED",
            attempt.key,
            [],
            attempt.number,
            int(started * 1000),
            int(ended * 1000),
        )
        self._tick(node.name, f"failed: {error}")

    def _keep_logs(self, step_run: ActiveRun, task: TaskResult, *, earlier_attempt: int | None = None) -> None:
        """The step's stdout and stderr, and the files it logged, kept with its run; logged files
        are linked in lineage. The attempt that ended the step keeps them under ``logs/`` and
        ``files/``, an earlier attempt that was tried again under ``logs/attempt-N/`` and so on."""
        sub = "" if earlier_attempt is None else f"/attempt-{earlier_attempt}"
        texts = (("stdout.txt", task.stdout), ("stderr.txt", task.stderr))
        stored = [(f"logs{sub}/{name}", self.ws.artifacts.put_bytes(text.encode())) for name, text in texts if text]
        logged = [(f"files{sub}/{name}", sha, size) for name, sha, size in task.attachments]
        with self.ws.db.write() as conn:
            for path, obj in stored:
                self.runs_repo.record_artifact(conn, obj.sha256, obj.size, now_millis())
                self.runs_repo.attach_artifact(conn, step_run.id, path, obj.sha256, obj.size)
            for path, sha, size in logged:
                self.runs_repo.record_artifact(conn, sha, size, now_millis())
                self.runs_repo.attach_artifact(conn, step_run.id, path, sha, size)
            if logged:
                self.ws.lineage.record(
                    conn,
                    [
                        LineageEdge(
                            src_kind=NodeKind.RUN,
                            src_id=step_run.id,
                            relation=f"file:{path.rsplit('/', 1)[-1]}",
                            dst_kind=NodeKind.ARTIFACT,
                            dst_id=sha,
                        )
                        for path, sha, _ in logged
                    ],
                )

    def _save(
        self,
        pipeline_run_id: str,
        node: str,
        step_run_id: str | None,
        status: str,
        key: str,
        outputs: list[dict[str, str]],
        attempts: int,
        started: int | None,
        ended: int | None,
    ) -> None:
        with self.ws.db.write() as conn:
            self.repo.save_step(
                conn,
                pipeline_run_id=pipeline_run_id,
                node=node,
                step_run_id=step_run_id,
                status=status,
                cache_key=key,
                outputs=outputs,
                attempts=attempts,
                started_at=started,
                ended_at=ended,
            )

    def _tick(self, node: str, what: str) -> None:
        if self.progress is not None:
            self.progress(node, what)


@dataclass(slots=True)
class _Attempt:
    """One try of a step: which one it is, and what the earlier ones used up."""

    node: Node
    step_run: ActiveRun
    key: str
    pipeline_run_id: str
    number: int = 1
    failures: int = 0
    preemptions: int = 0
    started: float = field(default_factory=time.time)
    aborted: bool = False
    last_error: str | None = None

    @property
    def deadline(self) -> float | None:
        """When the runner ends the step from outside: the worker's own timer had its chance."""
        timeout = self.node.step.timeout
        return None if timeout is None else self.started + timeout + max(5.0, 0.1 * timeout)

    def next(self, *, lost: bool) -> _Attempt:
        return _Attempt(
            self.node,
            self.step_run,
            self.key,
            self.pipeline_run_id,
            number=self.number + 1,
            failures=self.failures + (not lost),
            preemptions=self.preemptions + lost,
        )


class PipelineFailed(UserCodeError):
    """A step failed after its retries; the pipeline run is FAILED and can be resumed."""

    def __init__(self, result: PipelineResult, step: StepResult) -> None:
        super().__init__(
            f"step '{step.name}' of pipeline '{result.pipeline}' failed (see: lockgate runs show {(step.run_id or '')[:8]}); "
            f"fix it and resume with: lockgate pipeline run FILE --resume {result.run_id[:8]}"
        )
        self.result = result


def _param_text(value: Any) -> str:
    if isinstance(value, DataRef):
        return value.key
    if isinstance(value, (str, int, float, bool)) or value is None:
        return str(value)
    try:
        return canonical_json(value).decode()[:500]
    except (TypeError, ValueError):
        return f"<{type(value).__name__}>"
