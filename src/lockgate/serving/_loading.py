"""Loading a registered model version as a runtime, converting it to ONNX once per version.

The outcome of a conversion — accepted with its ONNX bytes, or rejected with the reason — is
attached to the model version in the registry (lineage edges ``onnx`` and ``onnx_check`` to
stored objects, one audit event each), so later loads reuse it instead of converting again.
A recorded outcome is reused only under the same skl2onnx, onnxruntime and scikit-learn
versions: an upgrade gets a fresh attempt.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from lockgate.entities import ModelVersion
from lockgate.errors import IntegrityError, NotFoundError
from lockgate.serving._onnx import OnnxRuntime, converter_versions
from lockgate.serving._runtimes import CustomRuntime, ModelRuntime, SklearnRuntime
from lockgate.serving._signature import Signature
from lockgate.serving.base import CustomModel
from lockgate.workspace import Workspace

__all__ = ["OnnxCheck", "load_runtime", "onnx_check"]

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class OnnxCheck:
    """The recorded outcome of converting a model version to ONNX."""

    accepted: bool
    reason: str | None
    max_abs_diff: float | None
    onnx_sha256: str | None
    versions: dict[str, str]
    atol: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted,
            "reason": self.reason,
            "max_abs_diff": self.max_abs_diff,
            "onnx_sha256": self.onnx_sha256,
            "versions": self.versions,
            "atol": self.atol,
        }


def onnx_check(ws: Workspace, model_version: str | ModelVersion) -> OnnxCheck | None:
    """The latest recorded ONNX conversion outcome of a version, or None if never tried."""
    uri = model_version.uri if isinstance(model_version, ModelVersion) else model_version
    found = ws.models.attachments(uri, "onnx_check")
    if not found:
        return None
    try:
        record = json.loads(ws.artifacts.get_bytes(found[-1]))
    except (NotFoundError, IntegrityError):
        return None  # collected or damaged: treated as never tried, so it is tried again
    return OnnxCheck(**record)


def load_runtime(
    ws: Workspace, model_version: str | ModelVersion, *, prefer_onnx: bool = True, atol: float = 1e-5
) -> ModelRuntime:
    """The runtime for a registered version (``models:/fraud/3``, ``models:/fraud@champion``).

    The model's bytes are hash-checked before they are deserialized. A custom model gets a
    :class:`~lockgate.serving.CustomRuntime`. A scikit-learn model gets an
    :class:`~lockgate.serving.OnnxRuntime` when ``prefer_onnx`` and its conversion is (or
    was, for this version) accepted — outputs within ``atol`` of scikit-learn's on the
    registration example — and a :class:`~lockgate.serving.SklearnRuntime` otherwise; the
    reason is logged and kept (:func:`onnx_check`).
    """
    mv = model_version if isinstance(model_version, ModelVersion) else ws.models.get(model_version)
    signature = Signature.from_registry(mv.signature)
    model = ws.models.load(mv.uri)
    if isinstance(model, CustomModel):
        artifacts = {name: ws.artifacts.get_bytes(sha) for name, sha in dict(model.artifacts).items()}
        return CustomRuntime(model, signature, artifacts=artifacts)
    if not prefer_onnx or mv.flavor != "sklearn":
        return SklearnRuntime(model, signature)
    try:
        versions = converter_versions()
    except ImportError as exc:
        _log.info("serving %s with scikit-learn: ONNX is not installed (%s); install lockgate[serve]", mv.uri, exc)
        return SklearnRuntime(model, signature)
    check = onnx_check(ws, mv)
    if check is not None and check.versions == versions and check.atol == atol:
        if not check.accepted:
            _log.info("serving %s with scikit-learn: %s", mv.uri, check.reason)
            return SklearnRuntime(model, signature)
        try:
            assert check.onnx_sha256 is not None
            return OnnxRuntime(ws.artifacts.get_bytes(check.onnx_sha256), signature)
        except (NotFoundError, IntegrityError) as exc:
            _log.warning("the cached ONNX model of %s is unusable (%s); converting again", mv.uri, exc)
    return _convert(ws, mv, model, signature, versions, atol)


def _convert(
    ws: Workspace, mv: ModelVersion, model: Any, signature: Signature, versions: dict[str, str], atol: float
) -> ModelRuntime:
    example = ws.models.input_example(mv.uri)
    if example is None:
        _log.info("serving %s with scikit-learn: it has no registration example to check a conversion on", mv.uri)
        return SklearnRuntime(model, signature)
    conversion = OnnxRuntime.convert(model, signature, example, atol=atol)
    onnx_sha = None
    if conversion.onnx_bytes is not None:
        details = {"max_abs_diff": conversion.max_abs_diff, **versions}
        onnx_sha = ws.models.attach(mv.uri, conversion.onnx_bytes, relation="onnx", details=details)
    check = OnnxCheck(
        accepted=conversion.accepted,
        reason=conversion.reason,
        max_abs_diff=conversion.max_abs_diff,
        onnx_sha256=onnx_sha,
        versions=versions,
        atol=atol,
    )
    payload = json.dumps(check.to_dict(), sort_keys=True).encode()
    ws.models.attach(
        mv.uri, payload, relation="onnx_check", details={"accepted": check.accepted, "reason": check.reason}
    )
    if conversion.runtime is None:
        _log.info("serving %s with scikit-learn: %s", mv.uri, conversion.reason)
        return SklearnRuntime(model, signature)
    return conversion.runtime
