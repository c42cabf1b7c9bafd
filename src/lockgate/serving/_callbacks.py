"""Job callbacks: which URLs may be called, how a body is signed, and one delivery over HTTP.

A callback is a POST of the finished job (JSON) to a URL the client gave at submit. The URL's
host must be on the server's allowlist, checked when the job is submitted, so nothing is
queued for a host the server will not call; redirects are followed only to allowed hosts
(307 and 308, which keep the POST), so an allowed host cannot bounce the call elsewhere.

The body is signed like Stripe's and GitHub's webhooks: HMAC-SHA256, keyed with the
``callback_secret`` setting, over ``"<timestamp>.<raw body>"``; the receiver recomputes it
with :func:`verify_signature` and refuses old timestamps, so a captured call cannot be
replayed later.

>>> secret = b"0123456789abcdef"
>>> headers = signed_headers(secret, b'{"id": "j1"}', job_id="j1", attempt=1, timestamp=1767225600)
>>> headers["x-lockgate-signature"][:7]
'sha256='
>>> verify_signature(secret, b'{"id": "j1"}', timestamp="1767225600",
...                  signature=headers["x-lockgate-signature"], now=1767225660)
True
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import random
import ssl
import time
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

from lockgate._version import __version__
from lockgate.errors import ConfigError, InvalidInputError

__all__ = [
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "CallbackSettings",
    "Delivery",
    "deliver",
    "display_url",
    "signed_headers",
    "verify_signature",
]

SIGNATURE_HEADER = "x-lockgate-signature"
TIMESTAMP_HEADER = "x-lockgate-timestamp"
_MAX_URL = 2048
_MAX_REDIRECTS = 3
_MIN_SECRET = 16
_HOW_TO_ALLOW = "allow hosts with LOCKGATE_CALLBACK_ALLOWLIST=host[,host...] (or callback_allowlist in lockgate.toml)"


@dataclass(frozen=True, slots=True, kw_only=True)
class CallbackSettings:
    """Where callbacks may go, the signing key, and how hard delivery tries.

    Allowlist entries are ``host`` (any port), ``host:port``, or ``*.example.com`` (any
    subdomain of example.com, not example.com itself).
    """

    allowlist: tuple[str, ...] = ()
    secret: bytes | None = field(default=None, repr=False)
    attempts: int = 5
    backoff_s: float = 1.0
    max_backoff_s: float = 300.0
    timeout_s: float = 10.0

    def __post_init__(self) -> None:
        for entry in self.allowlist:
            _entry(entry)  # raises ConfigError for what is not a host
        if self.allowlist and self.secret is None:
            raise ConfigError(
                "callback_allowlist is set but callback_secret is not; set LOCKGATE_CALLBACK_SECRET so callbacks are signed"
            )
        if self.secret is not None and len(self.secret) < _MIN_SECRET:
            raise ConfigError(f"callback_secret is shorter than {_MIN_SECRET} characters; use a long random key")
        if self.attempts < 1 or self.backoff_s <= 0 or self.timeout_s <= 0:
            raise ConfigError("callback attempts, backoff and timeout must be positive")

    def check(self, url: str) -> str:
        """``url`` if a callback may be sent there, else :class:`InvalidInputError` saying why."""
        if not isinstance(url, str) or not url:
            raise InvalidInputError("'callback_url' must be an http(s) URL string")
        if not self.allowlist or self.secret is None:
            raise InvalidInputError(f"this server sends no job callbacks; {_HOW_TO_ALLOW}")
        if len(url) > _MAX_URL:
            raise InvalidInputError(f"the callback URL is longer than {_MAX_URL} characters; use a shorter one")
        try:
            parts = urlsplit(url)
            host, port = parts.hostname, parts.port
        except ValueError:
            raise InvalidInputError(
                "the callback URL does not parse; send e.g. https://hooks.example.com/lockgate"
            ) from None
        if parts.scheme not in ("http", "https") or not host:
            raise InvalidInputError("the callback URL must be http:// or https:// with a host")
        if parts.username is not None or parts.password is not None:
            raise InvalidInputError("the callback URL must not carry credentials; the body is signed instead")
        if not self._allows(host, port or (443 if parts.scheme == "https" else 80)):
            raise InvalidInputError(
                f"callback host {host} is not on this server's callback allowlist; {_HOW_TO_ALLOW}, or use an allowed host"
            )
        return url

    def allows(self, url: str) -> bool:
        """Whether a callback (or a redirect of one) may go to ``url``."""
        try:
            self.check(url)
        except InvalidInputError:
            return False
        return True

    def _allows(self, host: str, port: int) -> bool:
        host = host.lower().rstrip(".")
        for entry in self.allowlist:
            pattern, wanted = _entry(entry)
            if wanted is not None and wanted != port:
                continue
            if pattern.startswith("*."):
                if host.endswith(pattern[1:]) and len(host) > len(pattern) - 1:
                    return True
            elif host == pattern:
                return True
        return False

    def delay(self, attempt: int) -> float:
        """Seconds before the retry that follows failed attempt number ``attempt`` (1, 2, ...):
        the backoff doubling each time, capped, with ±20% jitter so many failed callbacks to
        one receiver do not all come back at the same instant."""
        base = min(self.backoff_s * 2.0 ** (attempt - 1), self.max_backoff_s)
        return base * random.uniform(0.8, 1.2)  # jitter, not a secret


def _entry(entry: str) -> tuple[str, int | None]:
    """An allowlist entry as (lowercase host or ``*.domain``, port or None)."""
    text = entry.strip().lower() if isinstance(entry, str) else ""
    wildcard = text.startswith("*.")
    try:
        parts = urlsplit("//" + (text[2:] if wildcard else text))
        host, port = parts.hostname, parts.port
    except ValueError:
        host, port = None, None
    if not host or parts.path or parts.query or parts.username or "*" in host or "/" in text:
        raise ConfigError(
            f"callback_allowlist entry {entry!r} is not a host; write host, host:port or *.example.com (no scheme or path)"
        )
    return ("*." + host if wildcard else host.rstrip(".")), port


def display_url(url: str) -> str:
    """``url`` without its query and fragment: a callback URL may carry a token there, and
    job records and logs are read by more people than the one who submitted it.

    >>> display_url("https://hooks.example.com/done?token=s3cret")
    'https://hooks.example.com/done'
    """
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]}{parts.path}"


def signed_headers(
    secret: bytes, body: bytes, *, job_id: str, attempt: int, timestamp: int | None = None
) -> dict[str, str]:
    """The headers of one callback delivery, with the body's signature."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret, ts.encode() + b"." + body, hashlib.sha256).hexdigest()
    return {
        "content-type": "application/json",
        "user-agent": f"lockgate/{__version__}",
        "x-lockgate-job": job_id,
        "x-lockgate-attempt": str(attempt),
        TIMESTAMP_HEADER: ts,
        SIGNATURE_HEADER: f"sha256={digest}",
    }


def verify_signature(
    secret: bytes, body: bytes, *, timestamp: str, signature: str, tolerance_s: float = 300.0, now: float | None = None
) -> bool:
    """Whether ``signature`` (the ``x-lockgate-signature`` header) signs ``body`` at
    ``timestamp`` (the ``x-lockgate-timestamp`` header) with ``secret``, and the timestamp is
    within ``tolerance_s`` of now. For receivers of job callbacks."""
    if not timestamp.isdigit() or not signature.startswith("sha256="):
        return False
    current = time.time() if now is None else now
    if abs(current - int(timestamp)) > tolerance_s:
        return False
    expected = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature[len("sha256=") :])


@dataclass(frozen=True, slots=True)
class Delivery:
    """What one delivery attempt came to."""

    ok: bool
    status: int | None
    """The receiver's HTTP status, None when there was no answer."""
    error: str | None = None
    """Why it failed, naming the host, never the URL's query."""
    retry: bool = True
    """Whether trying again could help (a redirect off the allowlist cannot)."""


def deliver(url: str, body: bytes, headers: dict[str, str], *, settings: CallbackSettings) -> Delivery:
    """POST ``body`` to ``url`` once, following 307/308 redirects to allowed hosts only.

    Blocking (run it on a thread). A 2xx answer is a delivery; anything else is a failure the
    caller may retry."""
    status: int | None = None
    for _hop in range(_MAX_REDIRECTS + 1):
        parts = urlsplit(url)
        host = parts.hostname or ""
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        conn: http.client.HTTPConnection
        if parts.scheme == "https":
            conn = http.client.HTTPSConnection(
                host, parts.port, timeout=settings.timeout_s, context=ssl.create_default_context()
            )
        else:
            conn = http.client.HTTPConnection(host, parts.port, timeout=settings.timeout_s)
        try:
            conn.request("POST", target, body=body, headers=headers)
            response = conn.getresponse()
            status = response.status
            location = response.getheader("location")
            response.read(65536)  # a receiver's page of text is not kept
        except TimeoutError:
            return Delivery(False, None, f"{host} did not answer within {settings.timeout_s:g} s")
        except (OSError, http.client.HTTPException) as exc:
            return Delivery(False, None, f"{host} could not be reached ({type(exc).__name__}: {exc})")
        finally:
            conn.close()
        if 200 <= status < 300:
            return Delivery(True, status)
        if status in (307, 308) and location:
            following = urljoin(url, location)
            if not settings.allows(following):
                return Delivery(
                    False, status, f"{host} redirected to a host outside the callback allowlist; not followed", False
                )
            url = following
            continue
        return Delivery(False, status, f"{host} answered HTTP {status}")
    return Delivery(False, status, f"more than {_MAX_REDIRECTS} redirects; not followed", False)
