"""What a server process serves: every deployment of the workspace, loaded, and kept current.

The host reads the deployments once at start, loads each one's model versions (hash-checked,
ONNX when the conversion is accepted) on a loader thread while the event loop already
answers health checks, and then polls the metadata store every ``poll_seconds``: a new,
changed or deleted deployment, or an alias that moved, swaps what is served without a
restart. A swap builds the new endpoint completely before it replaces the old one, so no
request ever sees a half-loaded deployment; the old model's queue is scored out first. A
deployment whose model fails to load is served as unavailable (503 naming the problem) and
loaded again every ``retry_seconds`` or as soon as it changes; the others serve on.

Readiness is :attr:`ModelHost.ready`: false until the first pass has loaded every deployment,
and false again from :meth:`ModelHost.stop_taking_traffic` (SIGTERM) on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import numpy as np

from lockgate.deploy import Deployment, ResolvedDeployment
from lockgate.errors import ConflictError, InvalidInputError, LockgateError, NotFoundError, UnavailableError
from lockgate.serving._batch import v2_metadata
from lockgate.serving._batcher import DynamicBatcher
from lockgate.serving._loading import load_runtime
from lockgate.serving._metrics import ServerMetrics
from lockgate.serving._runtimes import ModelRuntime
from lockgate.workspace import Workspace

__all__ = ["Endpoint", "ModelHost", "ServedModel", "bound_feature_service"]

_log = logging.getLogger(__name__)

# Threads that run slow models' calls off the event loop (one call at a time per version).
_MODEL_THREADS = 4


class _Flag(Protocol):
    """A flag shared between processes (``multiprocessing.Event``)."""

    def is_set(self) -> bool: ...

    def set(self) -> None: ...


@dataclass(slots=True)
class ServedModel:
    """One model version loaded for one deployment, with its own batcher."""

    deployment: str
    uri: str
    model: str
    version: int
    runtime: ModelRuntime
    batcher: DynamicBatcher
    metadata: dict[str, Any]
    feature_service: str | None
    contract: Any = None  # a data Contract when the deployment names one

    @property
    def label(self) -> str:
        return str(self.version)


@dataclass(slots=True)
class Endpoint:
    """A deployment as served: its record, its resolution and its loaded model versions.

    ``problem`` is set when the primary cannot be served (every request then answers 503);
    ``candidate_problem`` when a rollout's candidate cannot: the primary serves on alone.
    """

    deployment: Deployment
    resolved: ResolvedDeployment
    models: dict[int, ServedModel] = field(default_factory=dict)
    problem: str | None = None
    candidate_problem: str | None = None
    retry_at: float = 0.0  # when a failed load is tried again (time.monotonic)
    primary_model: ServedModel | None = None  # the primary, loaded (set by settle)
    arm: tuple[ServedModel, str, int] | None = None  # a weighted candidate: model, role, share of 10,000
    shadow: ServedModel | None = None  # a shadow candidate, loaded

    @property
    def name(self) -> str:
        return self.deployment.name

    def settle(self) -> None:
        """Work out the candidate's arm once the models are loaded, so routing a request is a
        hash and a comparison (called when the endpoint is built)."""
        version = self.resolved.primary.version
        self.primary_model = None if self.problem else self.models.get(version) if version is not None else None
        route = self.resolved.candidate
        self.arm = None
        self.shadow = None
        if route is None or route.version not in self.models:
            return
        assert route.version is not None
        if route.route.role == "shadow":
            self.shadow = self.models[route.version]
        else:
            self.arm = (self.models[route.version], route.route.role, round(route.route.weight * 10_000))

    @property
    def rollout_role(self) -> str | None:
        """The role of the rollout's candidate when it is loaded and takes a share of traffic
        (``canary``, ``challenger``); None otherwise (no rollout, a shadow, not loaded)."""
        return None if self.arm is None else self.arm[1]

    def choose(self, key: str) -> tuple[ServedModel, str]:
        """The model version and role that answer a request routed by ``key``: the same key
        always lands on the same arm, and a key on the candidate at 5% stays there at 25%."""
        primary = self.primary
        if self.arm is None:
            return primary, "primary"
        served, role, threshold = self.arm
        if zlib.crc32(key.encode()) % 10_000 < threshold:
            return served, role
        return primary, "primary"

    def role_of(self, version: int) -> str:
        """The role of a served version (a request may name one: /versions/{n})."""
        for route in self.resolved.routes:
            if route.version == version:
                return route.route.role
        return "primary"

    @property
    def primary(self) -> ServedModel:
        served = self.primary_model
        if served is not None and self.problem is None:
            return served
        raise UnavailableError(
            f"deployment '{self.name}' has no model to serve ({self.problem or 'its model is not loaded'}); "
            f"fix it with lockgate deploy update {self.name} --model models:/NAME@ALIAS"
        )

    def version(self, version: int) -> ServedModel:
        served = self.models.get(version)
        if served is None:
            held = ", ".join(str(v) for v in sorted(self.models)) or "none"
            raise NotFoundError(
                f"deployment '{self.name}' does not serve version {version} (it serves {held}); "
                f"use /v2/models/{self.name}/infer for the current one"
            )
        return served


class ModelHost:
    """The deployments a server process serves, loaded off the event loop and kept current."""

    def __init__(
        self,
        ws: Workspace,
        metrics: ServerMetrics,
        *,
        prefer_onnx: bool = True,
        poll_seconds: float = 1.0,
        retry_seconds: float = 10.0,
        wait_until_loaded: bool = False,
        first_loaded: _Flag | None = None,
        feature_service_of: Callable[[Workspace, str], str | None] | None = None,
        feature_time: datetime | None = None,
        drain_seconds: float = 30.0,
    ) -> None:
        self.ws = ws
        self.feature_time = feature_time
        self.drain_seconds = drain_seconds
        self.metrics = metrics
        self.prefer_onnx = prefer_onnx
        self.poll_seconds = poll_seconds
        self.retry_seconds = retry_seconds
        self.wait_until_loaded = wait_until_loaded
        self.first_loaded = first_loaded
        self.accepting = False  # start() has returned: the server takes connections
        self._feature_service_of = feature_service_of or bound_feature_service
        self.endpoints: dict[str, Endpoint] = {}
        self.loaded = False
        self.stopping = False
        self._loaded_event: asyncio.Event | None = None
        self._revision = 0
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="lockgate-loader")
        self._model_pool = ThreadPoolExecutor(_MODEL_THREADS, thread_name_prefix="lockgate-model")
        self.lookup_pool = ThreadPoolExecutor(4, thread_name_prefix="lockgate-lookup")
        self._task: asyncio.Task[None] | None = None
        self.reloads = 0

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Begin loading in the background; :attr:`loaded` turns true when the first pass is
        done. With ``wait_until_loaded``, return only then: the server starts accepting
        connections after this returns, so a worker that joins a shared listener this way
        never answers 503 while the others serve.

        ``first_loaded`` is shared by the workers of one server: the worker that accepts at
        once (not ready while it loads) sets it when loaded, and the others wait for it too,
        so no worker is ready while that one still answers 503."""
        self._loaded_event = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="lockgate-host")
        if self.wait_until_loaded:
            await self._loaded_event.wait()
            while self.first_loaded is not None and not self.first_loaded.is_set():
                await asyncio.sleep(0.05)
        self.accepting = True

    def stop_taking_traffic(self) -> None:
        """Turn readiness false (SIGTERM): a load balancer stops sending; requests still get
        answers until the server closes its listener."""
        self.stopping = True

    async def stop(self) -> None:
        """Stop polling, score what is queued and wait for model calls running on threads."""
        self.stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for endpoint in list(self.endpoints.values()):
            for served in endpoint.models.values():
                try:
                    await asyncio.wait_for(served.batcher.drain(), self.drain_seconds)
                except TimeoutError:
                    _log.error(
                        "deployment %s: %s still scoring after %.0f s at shutdown; leaving it",
                        served.deployment,
                        served.uri,
                        self.drain_seconds,
                    )
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._model_pool.shutdown(wait=False)
        self.lookup_pool.shutdown(wait=False, cancel_futures=True)

    async def _run(self) -> None:
        while True:
            try:
                await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the metadata store blinked: keep serving what is loaded
                _log.exception("could not read the deployments; serving what is loaded, trying again")
            else:
                if not self.loaded:
                    self.loaded = True
                    assert self._loaded_event is not None
                    self._loaded_event.set()
                    if self.first_loaded is not None and not self.wait_until_loaded:
                        self.first_loaded.set()
            await asyncio.sleep(self.poll_seconds)

    async def refresh(self) -> int:
        """One poll: apply every change since the last; returns how many endpoints changed."""
        loop = asyncio.get_running_loop()
        held = [e.deployment for e in self.endpoints.values()]
        poll = await loop.run_in_executor(self._pool, self.ws.deployments.poll, self._revision, held)
        self._revision = poll.revision
        changed = 0
        for record in poll.changed:
            if record.deleted and record.name in self.endpoints:
                await self._retire(self.endpoints.pop(record.name), keep=())
                changed += 1
        for name, resolved in poll.resolved.items():
            current = self.endpoints.get(name)
            if (
                current is not None
                and current.resolved.versions == resolved.versions
                and current.deployment.revision == resolved.deployment.revision
                and (
                    (current.problem is None and current.candidate_problem is None)
                    or time.monotonic() < current.retry_at
                )
            ):
                current.resolved = resolved
                continue
            endpoint = await loop.run_in_executor(self._pool, self._build, resolved, current)
            self.endpoints[name] = endpoint
            if current is not None:
                await self._retire(current, keep=tuple(id(m) for m in endpoint.models.values()), now=endpoint)
                self.reloads += 1
            changed += 1
        return changed

    async def _retire(self, endpoint: Endpoint, *, keep: tuple[int, ...], now: Endpoint | None = None) -> None:
        # A reload with new settings serves the same version again: its model-info gauge stays 1.
        still = {(m.model, m.label, m.runtime.kind) for m in now.models.values()} if now is not None else set()
        for served in endpoint.models.values():
            if id(served) in keep:
                continue
            await served.batcher.drain()
            if (served.model, served.label, served.runtime.kind) not in still:
                self.metrics.serving(served.deployment, served.model, served.label, served.runtime.kind, False)

    # -- loading (on the loader thread) --------------------------------------------------------

    def _build(self, resolved: ResolvedDeployment, current: Endpoint | None) -> Endpoint:
        deployment = resolved.deployment
        endpoint = Endpoint(deployment=deployment, resolved=resolved)
        if resolved.primary.problem:
            endpoint.problem = resolved.primary.problem
            if current is None or current.problem != endpoint.problem:  # once, not every poll
                _log.warning("deployment %s: %s", deployment.name, endpoint.problem)
            return endpoint
        same_settings = current is not None and current.deployment.settings == deployment.settings
        for route in resolved.routes:
            if route.problem is not None:  # a candidate's version is gone: the primary serves alone
                endpoint.candidate_problem = route.problem
                continue
            assert route.version is not None
            assert route.uri is not None
            reuse = current.models.get(route.version) if current is not None and same_settings else None
            if reuse is not None and reuse.uri == route.uri:
                endpoint.models[route.version] = reuse
                continue
            try:
                endpoint.models[route.version] = self._load(deployment, route.uri, route.version)
            except Exception as exc:  # noqa: BLE001 - a model that cannot load must not stop the others
                detail = str(exc) if isinstance(exc, LockgateError) else f"{type(exc).__name__}: {exc}"
                problem = f"{route.uri} cannot be served: {detail}"
                endpoint.retry_at = time.monotonic() + self.retry_seconds
                if route.route.role == "primary":
                    endpoint.problem = problem
                else:  # a broken candidate leaves the stable version serving every request
                    endpoint.candidate_problem = problem
                _log.error("deployment %s: %s (trying again in %.0f s)", deployment.name, problem, self.retry_seconds)
        endpoint.settle()
        return endpoint

    def _load(self, deployment: Deployment, uri: str, version: int) -> ServedModel:
        settings = deployment.settings
        mv = self.ws.models.get(uri)
        runtime = load_runtime(self.ws, mv, prefer_onnx=self.prefer_onnx)
        label = np.asarray(runtime.classes).dtype if runtime.classes else None
        metadata = v2_metadata(runtime.signature, runtime.kind, label_dtype=label)
        name, served_version = deployment.name, str(version)
        batcher = DynamicBatcher(
            runtime.predict,
            runtime.signature,
            max_batch_size=settings.max_batch_size,
            max_wait_ms=settings.max_wait_ms,
            max_queue=settings.max_queue,
            executor=self._model_pool,
            start_offloaded=runtime.kind == "custom",  # business logic may be slow; measured from there
            on_batch=lambda rows, _requests, _seconds: self.metrics.batch(name, served_version, rows),
            on_depth=lambda rows: self.metrics.depth(name, served_version, rows),
        )
        service = settings.feature_service
        if service is None:
            service = self._feature_service_of(self.ws, mv.uri)
        contract = None
        if settings.contract is not None:
            contract = self.ws.data.contracts.get(settings.contract).contract
            # Rows are checked as the model takes them: a contract column outside the signature
            # would be missing from every request, so say so once here instead of 422 each time.
            extra = sorted(set(contract.columns) - set(runtime.signature.names))
            if extra:
                raise InvalidInputError(
                    f"contract '{settings.contract}' names column(s) {', '.join(extra)} that {mv.uri} does not "
                    f"take; register a contract of the model's inputs and point {name} at it (lockgate deploy update)"
                )
        self.metrics.serving(name, mv.name, served_version, runtime.kind, True)
        _log.info("deployment %s serves %s with the %s runtime", name, mv.uri, runtime.kind)
        return ServedModel(
            deployment=name,
            uri=mv.uri,
            model=mv.name,
            version=version,
            runtime=runtime,
            batcher=batcher,
            metadata=metadata,
            feature_service=service,
            contract=contract,
        )

    # -- lookups (on the event loop) -----------------------------------------------------------

    def endpoint(self, name: str) -> Endpoint:
        found = self.endpoints.get(name)
        if found is None:
            if not self.loaded:
                raise UnavailableError(f"the server is still loading its deployments; retry '{name}' in a moment")
            known = ", ".join(sorted(self.endpoints)) or "none yet"
            raise NotFoundError(
                f"no deployment named '{name}' (serving: {known}); create it with lockgate deploy create {name} --model ..."
            )
        return found

    @property
    def ready(self) -> bool:
        """The first load is done and the server is not stopping (a deployment that cannot
        load is that model's readiness, not the server's: the others serve)."""
        return self.loaded and not self.stopping


def bound_feature_service(ws: Workspace, uri: str) -> str | None:
    """The feature service a model version is bound to, which entity lookups go through when
    its deployment names none (None when it is bound to none, or to several: then the
    deployment must name one, and an entity request says so)."""
    try:
        binding = ws.features.service_of(uri)
    except ConflictError as exc:
        _log.warning("%s", exc)
        return None
    return None if binding is None else binding.service
