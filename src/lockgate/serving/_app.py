"""The inference server's HTTP surface, as a bare ASGI application.

Routes (every one in ``/openapi.json``)::

    GET  /v2                                          server metadata
    GET  /v2/health/live | /v2/health/ready           liveness, readiness
    GET  /v2/models/{name}[/versions/{n}]             model metadata
    GET  /v2/models/{name}[/versions/{n}]/ready       model readiness
    POST /v2/models/{name}[/versions/{n}]/infer       Open Inference Protocol v2 (JSON or binary)
    GET  /v1/endpoints                                the deployments served
    POST /v1/endpoints/{name}/predict                 {"records": [...]} or {"entities": [...]}
    POST /v1/endpoints/{name}/jobs                    the same body (+ "callback_url"), answered later: 202
    GET  /v1/jobs/{id}                                an async job's status, then its result
    GET  /metrics                                     Prometheus
    GET  /openapi.json                                this list, as OpenAPI 3.1, per deployment

It is a bare ASGI callable rather than a FastAPI app because the request path is the
product here: routing by splitting the path, reading the body once and answering with
pre-built headers keeps the server's own cost per request in the tens of microseconds, so a
one-row request costs about what its model call does.

A deployment under a rollout answers from the arm its request is routed to (sticky per
``x-route-key`` header, the rollout's key field, the entity's keys, or else the request id);
a shadow scores a copy after the answer is on its way. Each arm's answers are counted for the
canary analysis (see :mod:`lockgate.serving._analyst`) and logged with their role.

Every answer carries ``x-request-id`` (the client's own when it sent a sane one). Every
error is a JSON body ``{"error", "code", "request_id"}`` (``_wire.status_of`` maps errors to
statuses): 4xx for what the client can fix, including 422 for rows a deployment's contract
or the model's own input checks refuse; 429 and 503 with ``Retry-After``; 500 only for a
custom model's own failure and for a bug (logged with its traceback).
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

import numpy as np
import orjson
import pyarrow as pa

from lockgate._version import __version__
from lockgate.errors import InvalidInputError, LockgateError, NotFoundError, UnavailableError, UserCodeError
from lockgate.serving._analyst import RolloutAnalyst
from lockgate.serving._batch import (
    Batch,
    batch_columns,
    check_entity_rows,
    column_kinds,
    from_records,
    from_v2_inputs,
)
from lockgate.serving._host import Endpoint, ModelHost, ServedModel
from lockgate.serving._metrics import CONTENT_TYPE as METRICS_TYPE
from lockgate.serving._metrics import ServerMetrics
from lockgate.serving._openapi import openapi_document
from lockgate.serving._predlog import LoggedRequest, PredictionLog
from lockgate.serving._rollout_stats import ArmRecorder
from lockgate.serving._runtimes import Prediction
from lockgate.serving._schemas import DeploymentDoc, ModelDoc, contract_rules
from lockgate.serving._shadow import ShadowCopies, ShadowCopy, scores_of
from lockgate.serving._signature import Signature
from lockgate.serving._v2 import encode_response, parse_request
from lockgate.serving._wire import (
    RETRY_AFTER_UNAVAILABLE,
    ContractFailed,
    Disconnected,
    ModelRejected,
    Receive,
    Scope,
    Send,
    allow,
    first_line,
    read_body,
    request_headers,
    status_of,
    version_number,
)

__all__ = ["InferenceApp"]

_log = logging.getLogger(__name__)

_JSON = b"application/json"
_OCTETS = b"application/octet-stream"
_PREDICT_KEYS = frozenset({"records", "entities"})
SAFE_INTEGER = 2**53 - 1  # the integers a float64 holds exactly, as JSON parsers read numbers
_RETRY_NOT_READY = (b"retry-after", str(RETRY_AFTER_UNAVAILABLE).encode())
_JOB_KEYS = _PREDICT_KEYS | {"callback_url"}

ScoreFn = Callable[[str, dict[str, Any], str], Awaitable[dict[str, Any]]]


class JobQueue(Protocol):
    """What the app needs of async jobs (:class:`lockgate.serving._jobs.Jobs`)."""

    async def start(self, score: ScoreFn) -> None: ...

    async def stop(self) -> None: ...

    async def submit(
        self, deployment: str, payload: dict[str, Any], *, callback_url: str | None, request_id: str
    ) -> dict[str, Any]: ...

    async def get(self, job_id: str) -> dict[str, Any]: ...

    @property
    def callbacks_allowed(self) -> bool: ...


class InferenceApp:
    """The ASGI application: routes requests to the deployments a :class:`ModelHost` holds."""

    def __init__(
        self,
        host: ModelHost,
        metrics: ServerMetrics,
        *,
        prediction_log: PredictionLog | None = None,
        max_body_bytes: int = 8 * 1024 * 1024,
        jobs: JobQueue | None = None,
        analyze_rollouts: bool = True,
    ) -> None:
        self.host = host
        self.metrics = metrics
        self.prediction_log = prediction_log
        self.jobs = jobs
        self.arms = ArmRecorder()
        self.analyst = RolloutAnalyst(
            host.ws,
            self.arms,
            active=lambda: any(e.deployment.rollout is not None for e in self.host.endpoints.values()),
            analyze=analyze_rollouts,
        )
        self.shadows = ShadowCopies(self.arms, self._log_shadow)
        self.max_body_bytes = max_body_bytes
        self.draining = False
        self._server_metadata = orjson.dumps(
            {"name": "lockgate", "version": __version__, "extensions": ["binary_tensor_data"]}
        )
        self._openapi: tuple[Any, bytes] | None = None
        self._entity_specs: dict[int, tuple[ServedModel, tuple[str, ...], tuple[str, ...]]] = {}
        self._id_prefix = uuid.uuid4().hex[:20]
        self._ids = itertools.count()

    # -- ASGI ----------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.host.start()
                    await self.analyst.start()
                    if self.jobs is not None:
                        await self.jobs.start(functools.partial(self.score_payload, kind="job"))
                except Exception as exc:  # noqa: BLE001 - whatever startup raised, uvicorn must hear it
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def shutdown(self) -> None:
        """Stop taking traffic, score what is queued, and write the prediction log out."""
        self.draining = True
        if self.jobs is not None:
            await self.jobs.stop()
        await self.shadows.close(self.host.drain_seconds)
        await self.host.stop()
        await self.analyst.stop()
        if self.prediction_log is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.prediction_log.close)

    # -- requests ------------------------------------------------------------------------------

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        headers = request_headers(scope)
        request_id = self._request_id(headers.get("x-request-id"))
        deployment, endpoint, version = "", "", ""
        try:
            method, parts = scope["method"], scope["path"].strip("/").split("/")
            if parts[0] == "v2" and len(parts) >= 3 and parts[1] == "models":
                deployment, endpoint = parts[2], "v2"
                status, body, ctype, extra, version = await self._v2_model(
                    method, parts, scope, receive, headers, request_id, started
                )
            elif parts[0] == "v1" and len(parts) == 4 and parts[1] == "endpoints" and parts[3] == "predict":
                allow(method, "POST")
                deployment, endpoint = parts[2], "predict"
                status, body, ctype, extra, version = await self._predict(
                    parts[2], scope, receive, headers, request_id, started
                )
            elif parts[0] == "v1" and len(parts) == 4 and parts[1] == "endpoints" and parts[3] == "jobs":
                allow(method, "POST")
                deployment, endpoint = parts[2], "jobs"
                status, body, ctype, extra = await self._submit_job(parts[2], scope, receive, headers, request_id)
            elif parts[0] == "v1" and len(parts) == 3 and parts[1] == "jobs":
                allow(method, "GET")
                status, body, ctype, extra = 200, orjson.dumps(await self._job_queue().get(parts[2])), _JSON, []
            else:
                status, body, ctype, extra = self._plain(method, parts)
        except Disconnected:
            return
        except Exception as exc:  # noqa: BLE001 - every error becomes an answer; a bug a logged 500
            status, code, extra = status_of(exc)
            if status == 500 and code == "internal":
                _log.exception("request %s %s failed", scope.get("method"), scope.get("path"))
                message = f"internal error ({type(exc).__name__}); the server log has the details"
            elif isinstance(exc, RecursionError):
                message = "the request nests values too deeply; send flat lists of values"
            else:
                message = str(exc)
            body, ctype = orjson.dumps({"error": message, "code": code, "request_id": request_id}), _JSON
            if deployment:
                self.metrics.error(self._label(deployment), status, code)
        if deployment:
            self.metrics.request(
                self._label(deployment), endpoint, version or "none", status, time.perf_counter() - started
            )
        response_headers = [
            (b"content-type", ctype),
            (b"content-length", str(len(body)).encode()),
            (b"x-request-id", request_id.encode()),
            *extra,
        ]
        await send({"type": "http.response.start", "status": status, "headers": response_headers})
        await send({"type": "http.response.body", "body": body})

    def _request_id(self, sent: str | None) -> str:
        """The client's ``x-request-id`` when it is a sane one (1-128 printable ASCII
        characters), else a new id: this process's random prefix and a counter, unique
        across workers and restarts at a tenth of ``uuid4``'s cost."""
        if sent and len(sent) <= 128 and sent.isascii() and sent.isprintable():
            return sent
        return f"{self._id_prefix}{next(self._ids):012x}"

    def _label(self, deployment: str) -> str:
        """The metrics label of a deployment name from a URL: unknown names share one label,
        so a client probing names cannot grow the metrics without bound."""
        return deployment if deployment in self.host.endpoints else "(unknown)"

    def _plain(self, method: str, parts: list[str]) -> tuple[int, bytes, bytes, list[tuple[bytes, bytes]]]:
        path = "/".join(parts)
        if path == "v2":
            allow(method, "GET")
            return 200, self._server_metadata, _JSON, []
        if path == "v2/health/live":
            allow(method, "GET")
            return 200, b'{"live":true}', _JSON, []
        if path == "v2/health/ready":
            allow(method, "GET")
            if self.host.ready and not self.draining:
                return 200, b'{"ready":true}', _JSON, []
            return 503, b'{"ready":false}', _JSON, [_RETRY_NOT_READY]
        if path == "v1/endpoints":
            allow(method, "GET")
            return 200, orjson.dumps({"endpoints": self._endpoints()}), _JSON, []
        if path == "metrics":
            allow(method, "GET")
            return 200, self.metrics.render(), METRICS_TYPE.encode(), []
        if path == "openapi.json":
            allow(method, "GET")
            return 200, self._document(), _JSON, []
        raise NotFoundError(f"no route /{path}; see /openapi.json for the routes")

    def _endpoints(self) -> list[dict[str, Any]]:
        out = []
        for name, e in sorted(self.host.endpoints.items()):
            out.append(
                {
                    "name": name,
                    "model": e.deployment.primary.model,
                    "versions": sorted(e.models),
                    "serving": None if e.resolved.primary.version is None else e.resolved.primary.version,
                    "ready": e.problem is None and bool(e.models),
                    "problem": e.problem,
                    "runtimes": {str(v): m.runtime.kind for v, m in sorted(e.models.items())},
                    "rollout": _rollout_view(e),
                }
            )
        return out

    # -- Open Inference Protocol v2 ------------------------------------------------------------

    async def _v2_model(
        self,
        method: str,
        parts: list[str],
        scope: Scope,
        receive: Receive,
        headers: Mapping[str, str],
        request_id: str,
        started: float,
    ) -> tuple[int, bytes, bytes, list[tuple[bytes, bytes]], str]:
        name, rest = parts[2], parts[3:]
        version: int | None = None
        if rest[:1] == ["versions"]:
            if len(rest) < 2:
                raise NotFoundError(f"no route /{'/'.join(parts)}; name a version: /v2/models/{name}/versions/N")
            version = version_number(rest[1])
            rest = rest[2:]
        if len(rest) > 1 or (rest and rest[0] not in ("ready", "infer")):
            raise NotFoundError(f"no route /{'/'.join(parts)}; see /openapi.json for the routes")
        action = rest[0] if rest else "metadata"
        allow(method, "POST" if action == "infer" else "GET")
        endpoint = self.host.endpoint(name)
        if action == "ready":
            try:
                served = endpoint.primary if version is None else endpoint.version(version)
            except UnavailableError:
                return 503, orjson.dumps({"name": name, "ready": False}), _JSON, [_RETRY_NOT_READY], ""
            if self.draining or not self.host.ready:
                return 503, orjson.dumps({"name": name, "ready": False}), _JSON, [_RETRY_NOT_READY], served.label
            return 200, orjson.dumps({"name": name, "ready": True}), _JSON, [], served.label
        if action == "metadata":
            served = endpoint.primary if version is None else endpoint.version(version)
            meta = {"name": name, "versions": [str(v) for v in sorted(endpoint.models)], **served.metadata}
            return 200, orjson.dumps(meta), _JSON, [], served.label
        if version is not None:
            served, role = endpoint.version(version), endpoint.role_of(version)
        elif endpoint.rollout_role is not None:
            served, role = endpoint.choose(headers.get("x-route-key") or request_id)
        else:
            served, role = endpoint.primary, "primary"
        body = await read_body(scope, receive, headers, self.max_body_bytes)
        request = parse_request(body, headers.get("inference-header-content-length"))
        if request.outputs and served.runtime.kind != "custom":  # a custom model may add outputs
            known = [o["name"] for o in served.metadata["outputs"]]
            unknown = [n for n in request.outputs if n not in known]
            if unknown:
                raise InvalidInputError(
                    f"the model has no output {', '.join(unknown)}; ask for {', '.join(known)} or leave 'outputs' out"
                )
        batch = from_v2_inputs(request.inputs, served.runtime.signature)
        tracked = endpoint.deployment.rollout is not None
        prediction = await self._score(served, batch, role=role if tracked else None, started=started)
        answer, header_length = encode_response(prediction, request, model_name=name, model_version=served.version)
        self._answered(endpoint, served, role, "v2", request_id, started, batch, prediction, None)
        if tracked and endpoint.shadow is not None:
            self._shadow(
                endpoint, "v2", request_id, batch, prediction, None, lambda s: from_v2_inputs(request.inputs, s)
            )
        if header_length is None:
            return 200, answer, _JSON, [], served.label
        return 200, answer, _OCTETS, [(b"inference-header-content-length", str(header_length).encode())], served.label

    # -- friendly JSON -------------------------------------------------------------------------

    async def _predict(
        self,
        name: str,
        scope: Scope,
        receive: Receive,
        headers: Mapping[str, str],
        request_id: str,
        started: float,
    ) -> tuple[int, bytes, bytes, list[tuple[bytes, bytes]], str]:
        _ = self.host.endpoint(name).primary  # 404 / 503 before the body is read
        body = await read_body(scope, receive, headers, self.max_body_bytes)
        payload = _json_object(body)
        answer = await self.score_payload(
            name, payload, request_id, started=started, route_key=headers.get("x-route-key")
        )
        return 200, orjson.dumps(answer), _JSON, [], str(answer["model_version"])

    async def score_payload(
        self,
        name: str,
        payload: dict[str, Any],
        request_id: str,
        *,
        started: float | None = None,
        route_key: str | None = None,
        kind: str = "predict",
    ) -> dict[str, Any]:
        """Score a ``{"records": ...}`` or ``{"entities": ...}`` body for deployment ``name``:
        the answer of ``POST /v1/endpoints/{name}/predict`` (async jobs call this too)."""
        started = time.perf_counter() if started is None else started
        endpoint = self.host.endpoint(name)
        primary = endpoint.primary
        rows = _payload_rows(payload)
        served, role = primary, "primary"
        if endpoint.rollout_role is not None:
            served, role = endpoint.choose(route_key or self._route_key(endpoint, payload, rows, request_id))
        entities: list[dict[str, Any]] | None = None
        statuses: list[str] | None = None
        hint = "; send values like those it was trained on"
        if "records" in payload:
            records = rows
        else:
            entities = rows
            records, statuses = await self._look_up(served, entities)
            missing = statuses.count("missing")
            if missing:
                hint = (
                    f"; {missing} of the entities have no value for some feature, which the model got as null "
                    "(materialize or push them, or give the views defaults and stale_policy 'default')"
                )
        batch = from_records(records, served.runtime.signature)
        tracked = endpoint.deployment.rollout is not None
        prediction = await self._score(served, batch, hint, role=role if tracked else None, started=started)
        self._answered(endpoint, served, role, kind, request_id, started, batch, prediction, entities)
        if tracked and endpoint.shadow is not None:
            self._shadow(endpoint, kind, request_id, batch, prediction, entities, lambda s: from_records(records, s))
        answer: dict[str, Any] = {
            "request_id": request_id,
            "deployment": name,
            "model": served.model,
            "model_version": served.version,
        }
        if role != "primary":
            answer["role"] = role
        if prediction.label is not None:
            answer["predictions"] = prediction.label.tolist()
        elif prediction.prediction is not None:
            answer["predictions"] = prediction.prediction.tolist()
        scores = scores_of(prediction)
        if scores is not None:
            answer["scores"] = scores.tolist()
        if statuses is not None:
            answer["feature_status"] = statuses
        return answer

    def _route_key(self, endpoint: Endpoint, payload: dict[str, Any], rows: Any, request_id: str) -> str:
        """What keeps a caller on one arm: the rollout's key field, else an entity's keys,
        else (a caller with no identity) the request id."""
        first = rows[0] if isinstance(rows, list) and rows and isinstance(rows[0], dict) else None
        if first is None:
            return request_id
        rollout = endpoint.deployment.rollout
        if rollout is not None and rollout.sticky_key is not None and rollout.sticky_key in first:
            return str(first[rollout.sticky_key])
        primary = endpoint.primary
        if "entities" in payload and primary.feature_service is not None:
            keys, _fields = self._entity_inputs(primary)
            if keys and all(k in first for k in keys):
                return "|".join(str(first[k]) for k in keys)
        return request_id

    # -- async jobs ----------------------------------------------------------------------------

    def _job_queue(self) -> JobQueue:
        if self.jobs is None:
            raise UnavailableError(
                "async jobs are off on this server; start it with lockgate serve --job-workers N (N at least 1)"
            )
        return self.jobs

    async def _submit_job(
        self, name: str, scope: Scope, receive: Receive, headers: Mapping[str, str], request_id: str
    ) -> tuple[int, bytes, bytes, list[tuple[bytes, bytes]]]:
        jobs = self._job_queue()
        primary = self.host.endpoint(name).primary  # 404 / 503 before anything is queued
        body = await read_body(scope, receive, headers, self.max_body_bytes)
        payload = _json_object(body, allowed=_JOB_KEYS)
        has_callback = "callback_url" in payload
        callback = payload.pop("callback_url", None)
        if has_callback and not isinstance(callback, str):
            raise InvalidInputError("'callback_url' must be a string URL (https://host/path), or left out")
        # The rows are checked now, as predict would check them: a job that can only fail is
        # refused at the door rather than accepted and failed later.
        rows = _payload_rows(payload)
        if "records" in payload:
            batch = from_records(rows, primary.runtime.signature)
            primary.runtime.check(batch)
            if primary.contract is not None:
                _check_contract(primary, batch)
        else:
            self._check_entities(primary, rows)
        job = await jobs.submit(name, payload, callback_url=callback, request_id=request_id)
        location = (b"location", f"/v1/jobs/{job['id']}".encode())
        return 202, orjson.dumps(job), _JSON, [location]

    def _check_entities(self, served: ServedModel, entities: Any) -> str:
        """The feature service ``served`` looks ``entities`` up in, once they are checked
        against its keys and request fields (InvalidInputError naming what is wrong)."""
        if served.feature_service is None:
            raise InvalidInputError(
                f"deployment '{served.deployment}' has no feature service to look entities up in; send 'records', "
                f"or set one: lockgate deploy update {served.deployment} --feature-service NAME"
            )
        check_entity_rows(entities, *self._entity_inputs(served))
        return served.feature_service

    async def _look_up(self, served: ServedModel, entities: Any) -> tuple[list[dict[str, Any]], list[Any]]:
        service = self._check_entities(served, entities)
        policy = self.host.endpoint(served.deployment).deployment.settings.stale_policy
        # The lookup reads the online store (Redis in scale-out) and the definitions: on a
        # thread, so a slow store stalls this request, not every request of the worker.
        lookup = functools.partial(
            self.host.ws.features.online, service, entities, policy=policy, now=self.host.feature_time
        )
        try:
            result = await asyncio.get_running_loop().run_in_executor(self.host.lookup_pool, lookup)
        except UserCodeError as exc:
            # An on-demand feature computed over the request's own fields failed on them.
            raise InvalidInputError(
                f"the entity rows' request fields do not fit the feature service '{served.feature_service}' ({exc})"
            ) from None
        counts: dict[str, int] = {}
        records = []
        statuses = []
        for row in result:
            for status in row.statuses.values():
                counts[status] = counts.get(status, 0) + 1
            statuses.append(row.status)
            records.append({**row.entity, **row.values})
        self.metrics.feature_statuses(served.deployment, counts)
        return records, statuses

    def _entity_inputs(self, served: ServedModel) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The join keys and request fields an entity row of ``served``'s feature service
        holds, read from the feature registry once per served model."""
        cached = self._entity_specs.get(id(served))
        if cached is None or cached[0] is not served:
            assert served.feature_service is not None
            if len(self._entity_specs) > 256:
                self._entity_specs.clear()
            keys, fields, provided = _service_inputs(self.host.ws, served.feature_service)
            # Model inputs the service does not provide come with the request (a transaction's
            # own amount or channel): an entity row carries them next to its keys.
            taken = {*keys, *fields, *provided}
            fields += tuple(n for n in served.runtime.signature.names if n not in taken)
            cached = self._entity_specs[id(served)] = (served, keys, fields)
        return cached[1], cached[2]

    def _document(self) -> bytes:
        """``/openapi.json``, rebuilt when the deployments served change (a swap replaces the
        endpoint objects, so their identities are the cache key)."""
        key = (self.host.loaded, tuple((name, id(e)) for name, e in sorted(self.host.endpoints.items())))
        if self._openapi is None or self._openapi[0] != key:
            docs = [self._deployment_doc(e) for _name, e in sorted(self.host.endpoints.items())]
            callbacks = self.jobs is not None and self.jobs.callbacks_allowed
            document = openapi_document(__version__, docs, jobs=self.jobs is not None, callbacks=callbacks)
            self._openapi = (key, orjson.dumps(document))
        return self._openapi[1]

    def _deployment_doc(self, endpoint: Endpoint) -> DeploymentDoc:
        try:
            primary = endpoint.primary
        except UnavailableError:  # answers 503 until it can serve
            return DeploymentDoc(name=endpoint.name, primary=None, versions=())
        keys: tuple[str, ...] | None = None
        fields: tuple[str, ...] = ()
        if primary.feature_service is not None:
            try:
                keys, fields = self._entity_inputs(primary)
            except LockgateError:
                keys = None  # the service is gone: entity lookups answer 404
        return DeploymentDoc(
            name=endpoint.name,
            primary=_model_doc(primary),
            versions=tuple(_model_doc(m) for _, m in sorted(endpoint.models.items())),
            entity_keys=keys,
            request_fields=fields,
        )

    # -- shared --------------------------------------------------------------------------------

    async def _score(
        self,
        served: ServedModel,
        batch: Batch,
        hint: str = "; send values like those it was trained on",
        *,
        role: str | None = None,
        started: float = 0.0,
    ) -> Prediction:
        """The model's answer to ``batch``; with ``role`` (a deployment under a rollout) a
        failed model call is counted against that arm."""
        if self.draining:
            raise UnavailableError("the server is shutting down; retry on another replica")
        if served.contract is not None:
            _check_contract(served, batch)
        try:
            prediction = await self._call(served, batch, hint)
        except Exception:
            if role is not None:
                self.arms.failed(served.deployment, served.version, role, (time.perf_counter() - started) * 1000.0)
            raise
        scores = scores_of(prediction)
        if scores is not None:
            self.metrics.score(served.deployment, served.label, scores)
        return prediction

    @staticmethod
    async def _call(served: ServedModel, batch: Batch, hint: str) -> Prediction:
        try:
            return await served.batcher.submit(batch)
        except LockgateError:
            raise
        except (TypeError, ValueError) as exc:
            # scikit-learn's own input checks (NaN, infinity, an unseen category) on rows that
            # are well formed: the request's values, not the server, are what to change.
            raise ModelRejected(
                f"the model refused these rows ({type(exc).__name__}: {first_line(exc)}){hint}"
            ) from exc

    def _answered(
        self,
        endpoint: Endpoint,
        served: ServedModel,
        role: str,
        kind: str,
        request_id: str,
        started: float,
        batch: Batch,
        prediction: Prediction,
        entities: list[dict[str, Any]] | None,
    ) -> None:
        """Count an answer for its arm (under a rollout) and log it."""
        if endpoint.deployment.rollout is not None:
            latency_ms = (time.perf_counter() - started) * 1000.0
            self.arms.answered(served.deployment, served.version, role, latency_ms, scores_of(prediction))
        self._record(served, kind, request_id, started, batch, prediction, entities, role)

    def _shadow(
        self,
        endpoint: Endpoint,
        kind: str,
        request_id: str,
        batch: Batch,
        answer: Prediction,
        entities: list[dict[str, Any]] | None,
        rebuild: Callable[[Signature], Batch],
    ) -> None:
        """Leave an answered request for its shadow, which scores it later with others."""
        shadow = endpoint.shadow
        if shadow is None or self.draining:
            return
        primary = endpoint.primary.runtime.signature
        self.shadows.add(shadow, ShadowCopy(request_id, kind, batch, answer, entities, rebuild, primary))

    def _log_shadow(
        self, shadow: ServedModel, copy: ShadowCopy, prediction: Prediction, latency_ms: float, same_rows: bool
    ) -> None:
        # On the primary's very rows the shadow's log row leaves its inputs out: they are the
        # primary's row of the same request_id, and logging them twice would double the cost.
        self._record(
            shadow,
            copy.kind,
            copy.request_id,
            0.0,
            copy.batch,
            prediction,
            None if same_rows else copy.entities,
            "shadow",
            latency_ms,
            with_inputs=not same_rows,
        )

    def _record(
        self,
        served: ServedModel,
        endpoint: str,
        request_id: str,
        started: float,
        batch: Batch,
        prediction: Prediction,
        entities: list[dict[str, Any]] | None,
        role: str = "primary",
        latency_ms: float | None = None,
        *,
        with_inputs: bool = True,
    ) -> None:
        if self.prediction_log is None:
            return
        self.prediction_log.write(
            LoggedRequest(
                request_id=request_id,
                ts_ms=int(time.time() * 1000),
                endpoint=endpoint,
                deployment=served.deployment,
                model=served.model,
                version=served.version,
                signature=served.runtime.signature,
                batch=batch,
                prediction=prediction,
                latency_ms=(time.perf_counter() - started) * 1000.0 if latency_ms is None else latency_ms,
                entities=entities,
                role=role,
                with_inputs=with_inputs,
            )
        )


_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _model_doc(served: ServedModel) -> ModelDoc:
    signature = served.runtime.signature
    rules, required = contract_rules(served.contract, signature.names)
    if served.runtime.kind == "onnx":
        # ONNX computes in float32: larger numbers are refused, so the document says so.
        rules = {name: dict(rule) for name, rule in rules.items()}
        for column in signature.columns:
            if column.is_numeric:
                rule = rules.setdefault(column.name, {})
                rule["minimum"] = max(rule.get("minimum", -_FLOAT32_MAX), -_FLOAT32_MAX)
                rule["maximum"] = min(rule.get("maximum", _FLOAT32_MAX), _FLOAT32_MAX)
    return ModelDoc(
        version=served.version,
        columns=tuple(column_kinds(signature).items()),
        all_numeric=signature.all_numeric,
        metadata=served.metadata,
        rules=rules,
        required=required,
    )


def _service_inputs(ws: Any, service: str) -> tuple[tuple[str, ...], tuple[str, ...], frozenset[str]]:
    """The join keys of the views a feature service reads, its on-demand features' request
    fields, and the names of the features it answers with."""
    catalog = ws.features.registry.current()
    resolved = catalog.resolve(list(catalog.service(service).features))
    view_features, fields = catalog.inputs_of(resolved)
    keys: dict[str, None] = {}
    for feature in view_features:
        for entity in catalog.view(feature.view).entities:
            keys.update(dict.fromkeys(entity.join_keys))
    provided = frozenset({f.name for f in resolved} | {f"{f.view}__{f.name}" for f in resolved if f.view})
    return tuple(keys), tuple(f for f in fields if f not in keys), provided


def _check_contract(served: ServedModel, batch: Batch) -> None:
    from lockgate.data import arrow_type, validate

    contract = served.contract
    signature = served.runtime.signature
    columns = batch_columns(batch, signature)
    arrays = {}
    for column in signature.columns:
        # The batch carries numbers as float64 (None as NaN): the contract sees its own types,
        # with NaN as null, so an int64 column is int64 again, or a clear refusal.
        spec = contract.columns.get(column.name)
        target = column.type if spec is None else arrow_type(spec.type)
        values = columns[column.name]
        fits = not (pa.types.is_integer(target) and values.dtype.kind == "f" and (np.abs(values) > SAFE_INTEGER).any())
        try:
            arrays[column.name] = pa.array(values, from_pandas=True).cast(target) if fits else None
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            arrays[column.name] = None
        if arrays[column.name] is None:
            raise ContractFailed(
                f"the request breaks contract '{contract.name}': feature '{column.name}' does not fit its type "
                f"{target}; send {target} values"
                + (f" within ±{SAFE_INTEGER:,}" if pa.types.is_integer(target) else "")
            )
    report = validate(pa.table(arrays), served.contract)
    if not report.passed:
        first = report.errors[0]
        raise ContractFailed(
            f"the request breaks contract '{report.contract_name}': {first.message}"
            + (f" (and {len(report.errors) - 1} more)" if len(report.errors) > 1 else "")
        )


def _rollout_view(endpoint: Endpoint) -> dict[str, Any] | None:
    rollout = endpoint.deployment.rollout
    route = endpoint.resolved.candidate
    if rollout is None or route is None:
        return None
    return {
        "strategy": rollout.strategy,
        "candidate": rollout.candidate,
        "role": route.route.role,
        "weight": route.route.weight,
        "loaded": route.version in endpoint.models,
        "problem": endpoint.candidate_problem,
    }


def _json_object(body: bytes, *, allowed: frozenset[str] = _PREDICT_KEYS) -> dict[str, Any]:
    """A predict (or job) body parsed: an object with exactly one of records / entities."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInputError(f"the request body is not valid JSON ({exc}); send an object") from None
    keys = set(payload) if isinstance(payload, dict) else set()
    if not isinstance(payload, dict) or not keys <= allowed or len(keys & _PREDICT_KEYS) != 1:
        unknown = sorted(k for k in keys if k not in allowed)
        extra = ' (and optionally "callback_url")' if "callback_url" in allowed else ""
        raise InvalidInputError(
            (f"the body has unknown key(s) {', '.join(map(repr, unknown))}; " if unknown else "")
            + 'send {"records": [{feature: value, ...}]} or {"entities": [{key: value, ...}]}, exactly one of them'
            + extra
        )
    return payload


def _payload_rows(payload: dict[str, Any]) -> Any:
    """The rows of a body: records (checked to be a list here) or entities (as sent: the
    entity checks against the feature service say what is wrong with them)."""
    if "records" in payload:
        if not isinstance(payload["records"], list):
            raise InvalidInputError("'records' must be a list of objects of feature values")
        return payload["records"]
    return payload["entities"]
