"""JSON Schemas of what one served model takes and answers, from its signature: the v2
tensors, the friendly records and entity rows, the outputs, and a data contract's column
rules folded in. ``_openapi.py`` puts them into the document's operations.

A schema here admits only what the server scores and refuses what it answers with a 4xx:
strings where the server takes strings, numbers within a datatype's range, the protocol's
keys only. Two things JSON Schema cannot say (a tensor's ``shape[0]`` rows, Triton's binary
framing) the document says in words.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "STRING",
    "ColumnKind",
    "DeploymentDoc",
    "ModelDoc",
    "contract_rules",
    "infer_request_schema",
    "infer_response_schema",
    "metadata_schema",
    "predict_request_schema",
    "predict_response_schema",
    "ready_schema",
]

ColumnKind = str  # "number", "bool" or "string": the JSON kind a record field holds


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelDoc:
    """What the document needs of one served model version."""

    version: int
    columns: tuple[tuple[str, ColumnKind], ...]
    """Signature columns in order, each with its JSON kind."""
    all_numeric: bool
    metadata: Mapping[str, Any]
    """The v2 model metadata: ``platform``, ``inputs``, ``outputs``."""
    rules: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """Per column, JSON Schema keywords for the contract's error-level rules (``minimum``, ``enum`` …)."""
    required: frozenset[str] = frozenset()
    """Columns the contract says may not be null."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DeploymentDoc:
    """A deployment: its primary model and every version it holds."""

    name: str
    primary: ModelDoc | None
    """None while the deployment cannot serve (it answers 503)."""
    versions: tuple[ModelDoc, ...]
    entity_keys: tuple[str, ...] | None = None
    """The join keys an entity row holds when the deployment looks features up, else None."""
    request_fields: tuple[str, ...] = ()
    """The request fields its on-demand features take, also in each entity row."""


STRING = {"type": "string"}

_STATUSES = ["fresh", "stale", "missing", "default"]
_FLOAT_MAX = {"FP16": float(np.finfo(np.float16).max), "FP32": float(np.finfo(np.float32).max)}
_INT_RANGE: dict[str, tuple[int, int]] = {
    f"{prefix}{bits}": (0, 2**bits - 1) if prefix == "UINT" else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    for prefix in ("INT", "UINT")
    for bits in (8, 16, 32, 64)
}
_INT64 = _INT_RANGE["INT64"]
_SAFE_INTEGER = 2**53 - 1
_NUMERIC_TYPES = ["BOOL", *_INT_RANGE, "FP16", "FP32", "FP64"]


def _value(datatype: str) -> dict[str, Any]:
    """The JSON schema of one element of a v2 tensor's ``data`` (as the server takes it)."""
    if datatype == "BOOL":
        return {"type": "boolean"}
    if datatype in _INT_RANGE:
        low, high = _INT_RANGE[datatype]
        return {"type": "integer", "minimum": low, "maximum": high}
    if datatype in _FLOAT_MAX:
        return {"type": "number", "minimum": -_FLOAT_MAX[datatype], "maximum": _FLOAT_MAX[datatype]}
    if datatype == "FP64":
        return {"type": "number"}
    return {"type": "string"}


def _output_value(datatype: str) -> dict[str, Any]:
    """An output element: floats may be null (NaN or infinity has no JSON form)."""
    if datatype.startswith("FP"):
        return {"type": ["number", "null"]}
    return {"type": "boolean"} if datatype == "BOOL" else {"type": "integer"} if datatype in _INT_RANGE else STRING


def _const(value: Any) -> dict[str, Any]:
    return {"const": value}


def ready_schema(name: str | None) -> dict[str, Any]:
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["name", "ready"],
        "properties": {"name": STRING if name is None else _const(name), "ready": {"type": "boolean"}},
    }


_TENSOR_META = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name", "datatype", "shape"],
    "properties": {
        "name": STRING,
        "datatype": {"enum": [*_NUMERIC_TYPES, "BYTES"]},
        "shape": {"type": "array", "items": {"type": "integer"}},
    },
}


def metadata_schema(name: str | None, model: ModelDoc | None) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "name": STRING if name is None else _const(name),
        "versions": {"type": "array", "items": STRING},
        "platform": {"enum": ["sklearn", "onnx", "custom"]},
        "inputs": {"type": "array", "items": _TENSOR_META},
        "outputs": {"type": "array", "items": _TENSOR_META},
    }
    if model is not None:
        properties["platform"] = _const(model.metadata["platform"])
        properties["inputs"] = _const(list(model.metadata["inputs"]))
        properties["outputs"] = _const(list(model.metadata["outputs"]))
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["name", "versions", "platform", "inputs", "outputs"],
        "properties": properties,
    }


def _ruled_value(datatype: str, rules: Mapping[str, Any]) -> dict[str, Any] | None:
    """An element of ``datatype`` for a column under contract ``rules``; None when no value of
    the datatype can meet them."""
    value = _value(datatype)
    if not rules:
        return value
    if datatype == "BYTES":
        return {**value, **{k: v for k, v in rules.items() if k in ("enum", "pattern")}}
    if datatype == "BOOL":  # true and false are 1 and 0: possible unless the bounds leave one out
        low, high = rules.get("minimum", 0), rules.get("maximum", 1)
        return None if "enum" in rules or low > 0 or high < 1 else value
    if rules.get("type") == "integer":
        value["type"] = "integer"
    if "minimum" in rules:
        value["minimum"] = max(value.get("minimum", rules["minimum"]), rules["minimum"])
    if "maximum" in rules:
        value["maximum"] = min(value.get("maximum", rules["maximum"]), rules["maximum"])
    if "enum" in rules:
        value["enum"] = list(rules["enum"])
    low, high = value.get("minimum"), value.get("maximum")
    return None if low is not None and high is not None and low > high else value


def _tensor(name: str, shape: Mapping[str, Any], datatype: str, values: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """A tensor of one row: ``values`` holds the schema of each element (a column each)."""
    width = len(values)
    data: dict[str, Any] = {"type": "array", "minItems": width, "maxItems": width}
    if all(v == values[0] for v in values):
        data["items"] = values[0]
    else:
        data["prefixItems"], data["items"] = list(values), False
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["name", "shape", "datatype", "data"],
        "properties": {"name": _const(name), "shape": shape, "datatype": _const(datatype), "data": data},
    }


def _variants(name: str, shape: Mapping[str, Any], datatypes: Sequence[str], model: ModelDoc) -> dict[str, Any]:
    """One tensor per datatype it may come in (those the contract's rules leave possible)."""
    columns = [c for c, _ in model.columns] if name == "input" else [name]
    tensors = []
    for datatype in datatypes:
        values = [_ruled_value(datatype, model.rules.get(c, {})) for c in columns]
        if all(v is not None for v in values):
            tensors.append(_tensor(name, shape, datatype, [v for v in values if v is not None]))
    return tensors[0] if len(tensors) == 1 else {"anyOf": tensors}


def _inputs(model: ModelDoc) -> dict[str, Any]:
    """The ``inputs`` of an infer request, for one row (any ``shape[0]`` > 0 is served)."""
    if model.all_numeric:
        width = len(model.columns)
        shape = {"type": "array", "prefixItems": [_const(1), _const(width)], "items": False, "minItems": 2}
        return {
            "type": "array",
            "minItems": 1,
            "maxItems": 1,
            "items": _variants("input", shape, _NUMERIC_TYPES, model),
        }
    row = {"type": "array", "prefixItems": [_const(1)], "items": _const(1), "minItems": 1, "maxItems": 2}
    tensors = [
        _variants(column, row, ["BYTES"] if kind == "string" else _NUMERIC_TYPES, model)
        for column, kind in model.columns
    ]
    count = len(tensors)
    return {"type": "array", "prefixItems": tensors, "items": False, "minItems": count, "maxItems": count}


def infer_request_schema(model: ModelDoc) -> dict[str, Any]:
    outputs = [o["name"] for o in model.metadata["outputs"]]
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["inputs"],
        "properties": {
            "id": {"type": "string", "description": "Echoed in the response."},
            "parameters": {"type": "object", "properties": {"binary_data_output": {"type": "boolean"}}},
            "inputs": _inputs(model),
            "outputs": {
                "type": "array",
                "description": "The outputs to answer (all when left out), each at most once.",
                "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["name"],
                    "properties": {
                        "name": {"enum": outputs},
                        "parameters": {"type": "object", "properties": {"binary_data": {"type": "boolean"}}},
                    },
                },
            },
        },
    }


def _output_tensors(model: ModelDoc | None) -> dict[str, Any]:
    custom = model is None or model.metadata["platform"] == "custom"  # a custom model may add outputs
    variants = [None] if custom or model is None else list(model.metadata["outputs"])
    schemas = []
    for meta in variants:
        data: dict[str, Any] = {"type": "array"}
        properties: dict[str, Any] = {"name": STRING, "datatype": STRING}
        if meta is not None:
            properties = {"name": _const(meta["name"]), "datatype": _const(meta["datatype"])}
            data["items"] = _output_value(meta["datatype"])
        schemas.append(
            {
                "type": "object",
                "additionalProperties": False,
                "required": ["name", "datatype", "shape"],
                "properties": {
                    **properties,
                    "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
                    "data": data,
                    "parameters": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["binary_data_size"],
                        "properties": {"binary_data_size": {"type": "integer", "minimum": 0}},
                    },
                },
            }
        )
    return schemas[0] if len(schemas) == 1 else {"anyOf": schemas}


def infer_response_schema(name: str | None, model: ModelDoc | None) -> dict[str, Any]:
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["model_name", "model_version", "outputs"],
        "properties": {
            "model_name": STRING if name is None else _const(name),
            "model_version": STRING if model is None else _const(str(model.version)),
            "id": STRING,
            "outputs": {"type": "array", "items": _output_tensors(model)},
        },
    }


def _field(kind: ColumnKind, rules: Mapping[str, Any], nullable: bool) -> dict[str, Any]:
    json_type = rules.get("type") or {"number": "number", "bool": "boolean", "string": "string"}[kind]
    schema: dict[str, Any] = {**rules, "type": [json_type, "null"] if nullable else json_type}
    if "enum" in schema and nullable:
        schema["enum"] = [*schema["enum"], None]
    return schema


def _record(model: ModelDoc) -> dict[str, Any]:
    return {
        "type": "object",
        "description": "A feature value per signature column (null: missing); other keys are ignored.",
        "required": [c for c, _ in model.columns],
        "properties": {c: _field(kind, model.rules.get(c, {}), c not in model.required) for c, kind in model.columns},
    }


def predict_request_schema(model: ModelDoc | None, deployment: DeploymentDoc | None) -> dict[str, Any]:
    records: dict[str, Any] = {"type": "array", "minItems": 1, "items": {"type": "object"}}
    if model is not None:
        records["items"] = _record(model)
    variants = [
        {"type": "object", "additionalProperties": False, "required": ["records"], "properties": {"records": records}}
    ]
    if deployment is None or deployment.entity_keys is not None:
        entity: dict[str, Any] = {"type": "object", "description": "The entity's join keys (and request fields)."}
        if deployment is not None and deployment.entity_keys is not None:
            keys, fields = deployment.entity_keys, deployment.request_fields
            entity["additionalProperties"] = False
            entity["required"] = [*keys, *fields]
            entity["properties"] = {
                **{k: {"type": ["string", "integer"], "minimum": _INT64[0], "maximum": _INT64[1]} for k in keys},
                **{f: {"type": ["string", "number"]} for f in fields},
            }
        entities = {"type": "array", "minItems": 1, "items": entity}
        variants.append(
            {
                "type": "object",
                "additionalProperties": False,
                "required": ["entities"],
                "properties": {"entities": entities},
            }
        )
    return variants[0] if len(variants) == 1 else {"oneOf": variants}


def predict_response_schema(name: str | None, model: ModelDoc | None) -> dict[str, Any]:
    predictions: dict[str, Any] = {"type": "array"}
    scores: dict[str, Any] = {"type": "array", "items": {"type": ["number", "null"]}}
    if model is not None:
        outputs = {o["name"]: o for o in model.metadata["outputs"]}
        label = outputs.get("label") or outputs.get("prediction")
        if label is not None:
            predictions["items"] = _output_value(label["datatype"])
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["request_id", "deployment", "model", "model_version", "predictions"],
        "properties": {
            "request_id": STRING,
            "deployment": STRING if name is None else _const(name),
            "model": STRING,
            "model_version": {"type": "integer"},
            "predictions": predictions,
            "scores": scores,
            "feature_status": {"type": "array", "items": {"enum": _STATUSES}},
            "role": {"enum": ["canary", "challenger"], "description": "a rollout's candidate answered"},
        },
    }


def job_request_schema(model: ModelDoc | None, deployment: DeploymentDoc | None, *, callbacks: bool) -> dict[str, Any]:
    """What ``POST .../jobs`` takes: a predict body, with an optional ``callback_url`` when the
    server allows callbacks (a URL whose host is on its allowlist; others answer 400)."""
    base = predict_request_schema(model, deployment)
    if not callbacks:
        return base
    variants = base.get("oneOf", [base])
    url = {"type": "string", "description": "called with the job when it ends; its host must be on the allowlist"}
    with_url = [{**v, "properties": {**v["properties"], "callback_url": url}} for v in variants]
    return with_url[0] if len(with_url) == 1 else {"oneOf": with_url}


_TIME = {"type": ["string", "null"], "description": "ISO 8601, UTC"}
JOB = {
    "type": "object",
    "required": ["id", "status", "deployment", "request_id", "created_at", "attempts", "url"],
    "properties": {
        "id": STRING,
        "status": {"enum": ["queued", "running", "succeeded", "failed"]},
        "deployment": STRING,
        "request_id": STRING,
        "created_at": _TIME,
        "started_at": _TIME,
        "finished_at": _TIME,
        "expires_at": _TIME,
        "attempts": {"type": "integer", "minimum": 0},
        "url": STRING,
        "result": {"type": "object", "description": "what POST /v1/endpoints/{name}/predict answers"},
        "error": {
            "type": "object",
            "required": ["error", "code", "status"],
            "properties": {"error": STRING, "code": STRING, "status": {"type": "integer"}},
        },
        "callback": {"type": "object", "description": "the callback's URL (without its query) and deliveries"},
    },
}


def contract_rules(contract: Any, names: Sequence[str]) -> tuple[dict[str, dict[str, Any]], frozenset[str]]:
    """A data contract's error-level rules on the columns ``names`` as JSON Schema keywords,
    and the columns it says may not be null (``contract`` None: no rules)."""
    if contract is None:
        return {}, frozenset()
    rules: dict[str, dict[str, Any]] = {}
    required: set[str] = set()
    for name in names:
        spec = contract.columns.get(name)
        if spec is None:
            continue
        if not spec.nullable:
            required.add(name)
        keywords: dict[str, Any] = {}
        if spec.type.startswith(("int", "uint")):  # the contract checks the type: 2.5 is refused
            keywords.update(type="integer", minimum=-_SAFE_INTEGER, maximum=_SAFE_INTEGER)
        for rule, keyword, pick in (
            (spec.min, "minimum", max),
            (spec.max, "maximum", min),
            (spec.regex, "pattern", None),
        ):
            if rule is not None and rule.severity == "error":
                keywords[keyword] = (
                    rule.value if pick is None or keyword not in keywords else pick(keywords[keyword], rule.value)
                )
        if spec.allowed is not None and spec.allowed.severity == "error":
            keywords["enum"] = list(spec.allowed.value)
        if keywords:
            rules[name] = keywords
    return rules, frozenset(required)
