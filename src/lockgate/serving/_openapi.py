"""The inference server's OpenAPI 3.1 document: every route, its bodies and its answers.

The model routes are concrete, one set per deployment the server holds
(``/v2/models/fraud-api/infer``, ``/v2/models/fraud-api/versions/3/infer``,
``/v1/endpoints/fraud-api/predict`` …), with request schemas built from the model's signature
by ``_schemas.py``: a request the schema admits is one the server scores, one it refuses is
answered with a 4xx. Another name answers 404, which the document says in words: a generic
``/v2/models/{name}`` beside the concrete paths would claim that a schema-valid body for it
is valid for every name. While no deployment is served (the server is loading, or the
workspace has none), the generic routes stand in, answering 404 or 503.

A deployment that cannot serve at the moment keeps its paths with only 405 and 503. The
document is rebuilt when the deployments served change.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from lockgate.serving._schemas import (
    JOB,
    STRING,
    DeploymentDoc,
    ModelDoc,
    contract_rules,
    infer_request_schema,
    infer_response_schema,
    job_request_schema,
    metadata_schema,
    predict_request_schema,
    predict_response_schema,
    ready_schema,
)

__all__ = ["DeploymentDoc", "ModelDoc", "contract_rules", "openapi_document"]

__all__ = ["DeploymentDoc", "ModelDoc", "contract_rules", "openapi_document"]


_ERROR = {
    "type": "object",
    "additionalProperties": False,
    "required": ["error", "code", "request_id"],
    "properties": {
        "error": {"type": "string", "description": "One sentence: what is wrong and what to do."},
        "code": {
            "type": "string",
            "description": "A stable error code: invalid_input, not_found, method_not_allowed, payload_too_large, "
            "contract_violation, model_rejected_input, overloaded, unavailable, stale_features, model_error, internal.",
        },
        "request_id": {"type": "string"},
    },
}


_REQUEST_ID = {
    "x-request-id": {
        "description": "The request's id: the client's own x-request-id when it sent a sane one, else a new one.",
        "required": True,
        "schema": STRING,
    }
}


_LOCATION = {"Location": {"description": "The job's URL.", "required": True, "schema": STRING}}
_RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before retrying.", "required": True, "schema": STRING}}


_ALLOW = {"Allow": {"description": "The method this route takes.", "required": True, "schema": STRING}}


_ERROR_TEXT = {
    400: "Malformed request: wrong shapes, datatypes or feature names, unknown keys, bad JSON or binary framing.",
    404: "No such deployment, version or route.",
    405: "Wrong method for this route; Allow names the right one.",
    413: "The body is over the server's limit (lockgate serve --max-body-mb).",
    422: "The rows break the deployment's data contract, or the model's own input checks refuse them.",
    429: "The deployment's queue is full; retry after Retry-After seconds.",
    500: "The model's own code failed (a custom model's hook).",
    503: "The server is loading or shutting down, the deployment has no model to serve, or fail-closed features "
    "are stale; retry after Retry-After seconds.",
}


_BINARY_NOTE = (
    " With Triton's binary tensor extension the body is instead a JSON header of Inference-Header-Content-Length "
    "bytes (a request as below, each binary input's data replaced by parameters.binary_data_size) followed by the "
    "inputs' raw little-endian bytes in input order (a BYTES element is a 4-byte length and its UTF-8 bytes). "
    "Outputs come back as raw bytes after a JSON header when parameters.binary_data_output or an output's "
    "parameters.binary_data is true: the response is then application/octet-stream and carries "
    "Inference-Header-Content-Length."
)


def _headers(*extra: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(_REQUEST_ID)
    for more in extra:
        out.update(more)
    return out


def _json(schema: Mapping[str, Any], description: str, *headers: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "description": description,
        "headers": _headers(*headers),
        "content": {"application/json": {"schema": schema}},
    }


def _errors(*statuses: int, not_ready: Mapping[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for status in statuses:
        extra = _RETRY_AFTER if status in (429, 503) else _ALLOW if status == 405 else {}
        schema: Mapping[str, Any] = _ERROR
        if status == 503 and not_ready is not None:
            schema = {"anyOf": [_ERROR, not_ready]}
        out[str(status)] = _json(schema, _ERROR_TEXT[status], extra)
    return out


def _name_param() -> dict[str, Any]:
    return {"name": "name", "in": "path", "required": True, "schema": STRING, "description": "a deployment"}


def _version_param() -> dict[str, Any]:
    return {"name": "version", "in": "path", "required": True, "schema": STRING, "description": "a model version"}


def _op(
    method: str, summary: str, responses: dict[str, Any], params: Sequence[Mapping[str, Any]] = (), **more: Any
) -> dict[str, Any]:
    operation: dict[str, Any] = {"summary": summary, "responses": responses, **more}
    if params:
        operation["parameters"] = list(params)
    return {method: operation}


def _metadata_op(name: str | None, model: ModelDoc | None, params: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
    if name is None:  # the generic route: no deployment is served yet
        responses = {"200": _json(metadata_schema(None, None), "The model's metadata."), **_errors(404, 405, 503)}
    elif model is None:  # a deployment that cannot serve now
        responses = _errors(405, 503)
    else:
        responses = {"200": _json(metadata_schema(name, model), "The model's metadata."), **_errors(405, 503)}
    return _op("get", "Model metadata", responses, params)


def _ready_op(name: str | None, model: ModelDoc | None, params: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
    ready = ready_schema(name)
    responses: dict[str, Any] = {}
    if name is None or model is not None:
        responses["200"] = _json(ready, "The model is ready.")
    responses.update(_errors(404, 405) if name is None else _errors(405))
    responses.update(_errors(503, not_ready=ready))
    return _op("get", "Model readiness", responses, params)


def _infer_op(name: str | None, model: ModelDoc | None, params: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
    description = "Score tensors (Open Inference Protocol v2)."
    if model is None:
        request: dict[str, Any] = {"type": "object", "description": "An inference request."}
        errors = _errors(404, 405, 503) if name is None else _errors(405, 503)
    else:
        request = infer_request_schema(model)
        kind = "one tensor 'input' [N, F]" if model.all_numeric else "one tensor per feature [N] or [N, 1]"
        description += (
            f" This model takes {kind}; the schema shows N = 1, any N > 0 is served, with shape[0] rows of data "
            "(flat row-major, or nested)." + _BINARY_NOTE
        )
        errors = _errors(400, 405, 413, 422, 429, 500, 503)
    ok = {
        "description": "The outputs: JSON, or raw bytes after a JSON header when binary outputs were asked for.",
        "headers": _headers(
            {
                "Inference-Header-Content-Length": {
                    "description": "The JSON header's size in bytes, when binary outputs follow it.",
                    "schema": {"type": "integer", "minimum": 1},
                }
            }
        ),
        "content": {
            "application/json": {"schema": infer_response_schema(name, model)},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    }
    responses = errors if name is not None and model is None else {"200": ok, **errors}
    return _op(
        "post",
        "Score tensors (Open Inference Protocol v2)",
        responses,
        params,
        description=description,
        requestBody={"required": True, "content": {"application/json": {"schema": request}}},
    )


def _predict_op(deployment: DeploymentDoc | None, params: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
    model = None if deployment is None else deployment.primary
    name = None if deployment is None else deployment.name
    ok = {"200": _json(predict_response_schema(name, model), "Predictions, scores, the model version, the request id.")}
    if deployment is None:
        responses = {**ok, **_errors(404, 405, 503)}
    elif model is None:
        responses = _errors(405, 503)
    else:
        responses = {**ok, **_errors(400, 405, 413, 422, 429, 500, 503)}
    return _op(
        "post",
        "Score named feature records, or entities looked up in the feature store",
        responses,
        params,
        requestBody={
            "required": True,
            "content": {"application/json": {"schema": predict_request_schema(model, deployment)}},
        },
    )


def _jobs_op(
    deployment: DeploymentDoc | None, params: Sequence[Mapping[str, Any]] = (), *, callbacks: bool
) -> dict[str, Any]:
    model = None if deployment is None else deployment.primary
    accepted = {"202": _json(JOB, "The job, queued; poll its url.", _LOCATION)}
    if deployment is None:
        responses = {**accepted, **_errors(400, 404, 405, 413, 503)}
    elif model is None:
        responses = _errors(405, 503)
    else:
        responses = {**accepted, **_errors(400, 405, 413, 422, 503)}
    return _op(
        "post",
        "Score the same body later: an async job" + (", with an optional callback" if callbacks else ""),
        responses,
        params,
        requestBody={
            "required": True,
            "content": {"application/json": {"schema": job_request_schema(model, deployment, callbacks=callbacks)}},
        },
    )


def _job_op() -> dict[str, Any]:
    param = {"name": "id", "in": "path", "required": True, "schema": STRING, "description": "a job id"}
    return _op(
        "get",
        "An async job: its status, then its result",
        {"200": _json(JOB, "The job.")} | _errors(404, 405, 503),
        [param],
    )


def _deployment_paths(deployment: DeploymentDoc, *, jobs: bool, callbacks: bool) -> dict[str, Any]:
    name = deployment.name
    base = f"/v2/models/{name}"
    paths: dict[str, Any] = {
        base: _metadata_op(name, deployment.primary),
        f"{base}/ready": _ready_op(name, deployment.primary),
        f"{base}/infer": _infer_op(name, deployment.primary),
    }
    for model in deployment.versions:
        at = f"{base}/versions/{model.version}"
        paths[at] = _metadata_op(name, model)
        paths[f"{at}/ready"] = _ready_op(name, model)
        paths[f"{at}/infer"] = _infer_op(name, model)
    paths[f"/v1/endpoints/{name}/predict"] = _predict_op(deployment)
    if jobs:
        paths[f"/v1/endpoints/{name}/jobs"] = _jobs_op(deployment, callbacks=callbacks)
    return paths


def _generic_paths(*, jobs: bool, callbacks: bool) -> dict[str, Any]:
    """The model routes by name: what the document shows while no deployment is served."""
    by_name = [_name_param()]
    by_version = [*by_name, _version_param()]
    paths = {
        "/v2/models/{name}": _metadata_op(None, None, by_name),
        "/v2/models/{name}/ready": _ready_op(None, None, by_name),
        "/v2/models/{name}/infer": _infer_op(None, None, by_name),
        "/v2/models/{name}/versions/{version}": _metadata_op(None, None, by_version),
        "/v2/models/{name}/versions/{version}/ready": _ready_op(None, None, by_version),
        "/v2/models/{name}/versions/{version}/infer": _infer_op(None, None, by_version),
        "/v1/endpoints/{name}/predict": _predict_op(None, by_name),
    }
    if jobs:
        paths["/v1/endpoints/{name}/jobs"] = _jobs_op(None, by_name, callbacks=callbacks)
    return paths


def _get(summary: str, schema: Mapping[str, Any], *errors: int, not_ready: bool = False) -> dict[str, Any]:
    responses = {"200": _json(schema, summary), **_errors(405, *errors)}
    if not_ready:
        responses.update(_errors(503, not_ready=schema))
    return _op("get", summary, responses)


_SERVER_METADATA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name", "version", "extensions"],
    "properties": {"name": STRING, "version": STRING, "extensions": {"type": "array", "items": STRING}},
}


_ENDPOINTS = {
    "type": "object",
    "additionalProperties": False,
    "required": ["endpoints"],
    "properties": {
        "endpoints": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["name", "model", "versions", "serving", "ready", "problem", "runtimes", "rollout"],
                "properties": {
                    "name": STRING,
                    "model": STRING,
                    "versions": {"type": "array", "items": {"type": "integer"}},
                    "serving": {"type": ["integer", "null"]},
                    "ready": {"type": "boolean"},
                    "problem": {"type": ["string", "null"]},
                    "runtimes": {"type": "object", "additionalProperties": {"enum": ["sklearn", "onnx", "custom"]}},
                    "rollout": {
                        "type": ["object", "null"],
                        "description": "the rollout running: strategy, candidate, its role and share of traffic",
                    },
                },
            },
        }
    },
}


def openapi_document(
    version: str, deployments: Sequence[DeploymentDoc] = (), *, jobs: bool = False, callbacks: bool = False
) -> dict[str, Any]:
    """The document ``GET /openapi.json`` answers: the generic routes, and concrete ones for
    each of ``deployments`` with schemas from its model's signature; the async job routes when
    the server runs ``jobs`` (a ``callback_url`` only when ``callbacks`` are allowed)."""
    live = {
        "type": "object",
        "additionalProperties": False,
        "required": ["live"],
        "properties": {"live": {"const": True}},
    }
    ready = {
        "type": "object",
        "additionalProperties": False,
        "required": ["ready"],
        "properties": {"ready": {"type": "boolean"}},
    }
    paths: dict[str, Any] = {
        "/v2": _get("Server metadata", _SERVER_METADATA),
        "/v2/health/live": _get("Liveness", live),
        "/v2/health/ready": _get("Readiness", ready, not_ready=True),
        "/v1/endpoints": _get("The deployments served", _ENDPOINTS),
        "/metrics": _op(
            "get",
            "Prometheus metrics",
            {
                "200": {
                    "description": "Prometheus text format 0.0.4.",
                    "headers": _headers(),
                    "content": {"text/plain": {"schema": STRING}},
                },
                **_errors(405),
            },
        ),
        "/openapi.json": _get("This document", {"type": "object"}),
    }
    if jobs:
        paths["/v1/jobs/{id}"] = _job_op()
    if not deployments:
        paths.update(_generic_paths(jobs=jobs, callbacks=callbacks))
    for deployment in deployments:
        paths.update(_deployment_paths(deployment, jobs=jobs, callbacks=callbacks))
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "lockgate inference server",
            "version": version,
            "description": "Open Inference Protocol v2 over REST, with Triton's binary tensor extension, and a "
            "friendly JSON endpoint, for the deployments listed under /v2/models/NAME (another name answers "
            '404). Every answer carries x-request-id; every error is {"error", "code", "request_id"}. '
            "gRPC is not served.",
        },
        "paths": paths,
    }
