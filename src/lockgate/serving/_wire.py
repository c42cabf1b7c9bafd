"""HTTP on the wire for the inference server: ASGI types, reading a request's body within
the size limit, request headers, and every error as a status code, a stable code and its
extra headers (``Retry-After``, ``Allow``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, MutableMapping, Sequence
from typing import Any

from lockgate.errors import (
    CheckFailed,
    InvalidInputError,
    LockgateError,
    NotFoundError,
    Overloaded,
    PermissionDenied,
    UnavailableError,
    UserCodeError,
)

__all__ = [
    "RETRY_AFTER_UNAVAILABLE",
    "Answer",
    "ContractFailed",
    "Disconnected",
    "Message",
    "ModelRejected",
    "PayloadTooLarge",
    "Receive",
    "Scope",
    "Send",
    "allow",
    "first_line",
    "read_body",
    "request_headers",
    "status_of",
    "version_number",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

RETRY_AFTER_UNAVAILABLE = 1
_DISCARD_CAP = 64 * 1024 * 1024


class PayloadTooLarge(InvalidInputError):
    """The request body is over the server's limit (413)."""


class ContractFailed(InvalidInputError):
    """The request's rows break the deployment's data contract (422)."""


class ModelRejected(InvalidInputError):
    """Well-formed rows the model's own input checks refuse, such as NaN for a model without
    missing-value support (422)."""


class Answer(Exception):
    """A finished non-JSON-error answer raised from deep in a handler (405)."""

    def __init__(self, status: int, message: str, code: str, headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
        super().__init__(message)
        self.status, self.code, self.headers = status, code, list(headers)


class Disconnected(Exception):
    """The client went away before its body arrived."""


def status_of(exc: BaseException) -> tuple[int, str, list[tuple[bytes, bytes]]]:
    """HTTP status, stable error code and extra headers for an error."""
    if isinstance(exc, Answer):
        return exc.status, exc.code, exc.headers
    if isinstance(exc, RecursionError):  # JSON nested a thousand levels deep: the client's doing
        return 400, "invalid_input", []
    if isinstance(exc, PayloadTooLarge):
        return 413, "payload_too_large", []
    if isinstance(exc, ContractFailed):
        return 422, "contract_violation", []
    if isinstance(exc, ModelRejected):
        return 422, "model_rejected_input", []
    if isinstance(exc, InvalidInputError):
        return 400, "invalid_input", []
    if isinstance(exc, NotFoundError):
        return 404, "not_found", []
    if isinstance(exc, Overloaded):
        return 429, "overloaded", [(b"retry-after", str(exc.retry_after).encode())]
    if isinstance(exc, UnavailableError):
        retry = getattr(exc, "retry_after", RETRY_AFTER_UNAVAILABLE)
        code = "stale_features" if type(exc).__name__ == "StaleFeatures" else "unavailable"
        return 503, code, [(b"retry-after", str(retry).encode())]
    if isinstance(exc, PermissionDenied):
        return 403, "permission_denied", []
    if isinstance(exc, UserCodeError):
        return 500, "model_error", []
    if isinstance(exc, CheckFailed):
        return 422, "check_failed", []
    if isinstance(exc, LockgateError):
        return 400, "invalid_input", []
    return 500, "internal", []


def allow(method: str, allowed: str) -> None:
    if method != allowed:
        raise Answer(
            405, f"{method} is not allowed here; use {allowed}", "method_not_allowed", [(b"allow", allowed.encode())]
        )


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().split("\n", 1)[0]
    return text if len(text) <= 200 else text[:197] + "..."


def version_number(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or len(text) > 9 or (text[0] == "0" and text != "0"):
        raise NotFoundError(f"model version {text!r} does not exist; versions are numbers (1, 2, ...)")
    return int(text)


def request_headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}


async def read_body(scope: Scope, receive: Receive, headers: Mapping[str, str], limit: int) -> bytes:
    declared = headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        await _discard(receive)
        raise PayloadTooLarge(
            f"the body has {int(declared):,} bytes, over this server's {limit:,}; send smaller batches"
        )
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Disconnected
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            if message.get("more_body", False):
                await _discard(receive)
            raise PayloadTooLarge(f"the body is over this server's {limit:,} bytes; send smaller batches")
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def _discard(receive: Receive) -> None:
    """Read the rest of an oversized body (up to 64 MiB) without keeping it, so the client,
    still sending, gets the 413 rather than a broken pipe."""
    seen = 0
    while seen < _DISCARD_CAP:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Disconnected
        seen += len(message.get("body", b""))
        if not message.get("more_body", False):
            return
