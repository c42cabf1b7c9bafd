"""Settings, read once at the edge and passed down frozen.

Precedence, highest first: explicit keyword arguments, ``LOCKGATE_*`` environment variables,
the workspace's ``lockgate.toml``, defaults. Only this module reads the environment.

>>> from lockgate.config import Settings
>>> Settings.load(home="/tmp/ws").resolved_database_url
'sqlite:////tmp/ws/lockgate.db'
"""

from __future__ import annotations

import getpass
import json
import os
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import BeforeValidator, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from lockgate.errors import ConfigError

__all__ = ["CONFIG_FILE", "DEFAULT_HOME", "Settings", "redact_uri", "strip_password", "with_local_secrets"]

DEFAULT_HOME = ".lockgate"
CONFIG_FILE = "lockgate.toml"


def _host_list(value: Any) -> Any:
    """A list of hosts from the environment as ``a.example.com,b.example.com`` or JSON."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [h.strip() for h in text.split(",") if h.strip()]
    return value


def _seconds(value: Any) -> Any:
    """A duration as seconds or with units (``90s``, ``15m``, ``24h``, ``7d``)."""
    if isinstance(value, str):
        from lockgate.clock import parse_duration

        return parse_duration(value.strip()).total_seconds()
    return value


Hosts = Annotated[tuple[str, ...], NoDecode, BeforeValidator(_host_list)]
Seconds = Annotated[float, BeforeValidator(_seconds)]


class Settings(BaseSettings):
    """Where a workspace keeps its records and artifacts, and who is acting."""

    model_config = SettingsConfigDict(env_prefix="LOCKGATE_", frozen=True, extra="forbid")

    home: Path = Field(default=Path(DEFAULT_HOME), description="The workspace folder.")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL of the metadata store; SQLite in the workspace by default."
    )
    artifact_root: str | None = Field(
        default=None, description="Folder or s3://bucket/prefix for artifacts; a folder in the workspace by default."
    )
    identity: str | None = Field(
        default=None, description="Who is acting, as 'user:NAME' or 'service:NAME'; the OS user by default."
    )
    capture_code: bool = Field(default=True, description="Record the git commit and diff at run start.")
    s3_endpoint_url: str | None = Field(default=None, description="Endpoint of an S3-compatible server.")
    offline_store: str | None = Field(
        default=None,
        description="Folder or s3://bucket/prefix for computed and pushed feature rows; a folder in the workspace by default.",
    )
    prediction_log: str | None = Field(
        default=None,
        description="Folder or s3://bucket/prefix where servers log every online prediction; a folder in the workspace by default.",
    )
    online_store_url: str | None = Field(
        default=None,
        description="The online feature store: redis://host:port/db, or sqlite:///path; SQLite in the workspace by default.",
    )
    audit_key_file: Path | None = Field(
        default=None,
        description="The key that seals the audit chain; share one file among every writer of a shared database.",
    )
    require_services: bool = Field(
        default=False, description="Fail, instead of skip, when a service a test needs is missing."
    )
    # -- async inference jobs (docs/async-jobs.md) --
    jobs_url: str | None = Field(
        default=None,
        description="Where async inference jobs are kept: redis://host:port/db or sqlite:///path; SQLite in the workspace by default.",
    )
    job_workers: int = Field(default=4, ge=0, description="Jobs each server process scores at once; 0 takes none.")
    job_result_ttl: Seconds = Field(
        default=86400.0, gt=0, description="How long a finished job and its result are kept (seconds, or 24h, 7d)."
    )
    job_lease: Seconds = Field(
        default=30.0,
        gt=0,
        description="How long a claim on a running job lasts without a heartbeat; a dead worker's job is retried after it.",
    )
    job_attempts: int = Field(default=3, ge=1, description="Claims of one job before it is failed as interrupted.")
    callback_allowlist: Hosts = Field(
        default=(),
        description="Hosts job callbacks may be sent to (host, host:port or *.domain); none allows no callbacks.",
    )
    callback_secret: SecretStr | None = Field(
        default=None, description="The key that signs callback bodies (HMAC-SHA256); at least 16 characters."
    )
    callback_attempts: int = Field(default=5, ge=1, description="Deliveries tried per callback before giving up.")
    callback_backoff: Seconds = Field(
        default=1.0, gt=0, description="Wait before the first callback retry, doubling each time (up to 5 minutes)."
    )
    callback_timeout: Seconds = Field(default=10.0, gt=0, description="Seconds one callback delivery may take.")

    @field_validator("identity")
    @classmethod
    def _identity_has_kind(cls, value: str | None) -> str | None:
        if value is not None and ":" not in value:
            return f"user:{value}"
        return value

    @classmethod
    def load(cls, **overrides: Any) -> Settings:
        """Build settings from keyword overrides, the environment and ``lockgate.toml``."""
        explicit = {k: v for k, v in overrides.items() if v is not None}
        home = Path(explicit.get("home") or os.environ.get("LOCKGATE_HOME") or DEFAULT_HOME)
        file_values = _read_toml(home / CONFIG_FILE)
        env_keys = {name for name in cls.model_fields if f"LOCKGATE_{name.upper()}" in os.environ}
        merged = {k: v for k, v in file_values.items() if k not in env_keys}
        merged.update(explicit)
        merged["home"] = home
        try:
            return cls(**merged)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "settings"
            raise ConfigError(
                f"setting '{where}' is invalid ({first['msg']}); fix it in the environment or {home / CONFIG_FILE}"
            ) from None

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.home.resolve() / 'lockgate.db'}"

    @property
    def resolved_artifact_root(self) -> str:
        return self.artifact_root or str(self.home.resolve() / "artifacts")

    @property
    def resolved_offline_store(self) -> str:
        return self.offline_store or str(self.home.resolve() / "offline")

    @property
    def resolved_prediction_log(self) -> str:
        return self.prediction_log or str(self.home.resolve() / "predictions")

    @property
    def resolved_jobs_url(self) -> str:
        return self.jobs_url or f"sqlite:///{self.home.resolve() / 'jobs.db'}"

    @property
    def actor(self) -> str:
        """The identity every write is recorded under."""
        return self.identity or f"user:{_os_user()}"

    @property
    def key_file(self) -> Path:
        """The audit signing key; kept outside the database on purpose."""
        return self.audit_key_file or self.home / "keys" / "audit.key"


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _read_toml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path} is not valid TOML ({exc}); fix or remove it") from None
    section = data.get("lockgate", data)
    if not isinstance(section, dict):
        raise ConfigError(f"{path} must hold a [lockgate] table of settings")
    values = {k.replace("-", "_"): v for k, v in section.items()}
    return _relative_to(path.parent, values)


def _relative_to(folder: Path, values: dict[str, Any]) -> dict[str, Any]:
    """Relative paths in ``lockgate.toml`` mean "next to this file", wherever lockgate is run from."""
    key = values.get("audit_key_file")
    if isinstance(key, str) and key and not Path(key).expanduser().is_absolute():
        values["audit_key_file"] = str(folder.resolve() / key)
    for name in ("artifact_root", "offline_store", "prediction_log"):
        root = values.get(name)
        if isinstance(root, str) and root and "://" not in root and not Path(root).expanduser().is_absolute():
            values[name] = str(folder.resolve() / root)
    prefix = "sqlite:///"
    for name in ("database_url", "jobs_url"):
        url = values.get(name)
        if isinstance(url, str) and url.startswith(prefix):
            database = url[len(prefix) :].split("?", 1)[0]
            if database and database != ":memory:" and not database.startswith("/"):
                values[name] = prefix + str(folder.resolve() / url[len(prefix) :])
    return values


def redact_uri(uri: str) -> str:
    """``uri`` safe to print: a password in its user part or its query becomes ``***``.

    >>> redact_uri("redis://:hunter2@cache:6379/0?password=hunter2&db=1")
    'redis://:***@cache:6379/0?password=***&db=1'
    """
    if "://" not in uri:
        return uri
    parts = urlsplit(uri)
    if parts.password:
        uri = parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@", 1)).geturl()
    return re.sub(r"(?i)(password=)[^&]*", r"\1***", uri)


def strip_password(uri: str | None) -> str | None:
    """``uri`` without its password (user part and ``password=`` query), for settings that
    travel to other processes: the receiver supplies the secret from its own environment.

    >>> strip_password("postgresql://app:hunter2@db:5432/ml?sslmode=require&password=x")
    'postgresql://app@db:5432/ml?sslmode=require'
    """
    if uri is None or "://" not in uri:
        return uri
    parts = urlsplit(uri)
    out = uri
    if parts.password is not None:  # string edits, not urlunsplit: it would eat sqlite:////'s slashes
        host = parts.netloc.rsplit("@", 1)[1]
        out = out.replace(parts.netloc, f"{parts.username}@{host}" if parts.username else host, 1)
    out = re.sub(r"(?i)([?&])password=[^&]*&?", r"\1", out)
    return re.sub(r"[?&]$", "", out)


def with_local_secrets(shipped: Settings) -> Settings:
    """Settings a worker received with passwords stripped, completed from the worker's own
    environment and ``lockgate.toml`` when those name the same database and store."""
    try:
        local = Settings.load(home=shipped.home)
    except Exception:  # noqa: BLE001 - no readable local settings: the shipped ones stand
        return shipped
    updates: dict[str, Any] = {}
    for key in ("database_url", "online_store_url", "jobs_url"):
        theirs = getattr(local, key)
        if theirs and strip_password(theirs) == getattr(shipped, key):
            updates[key] = theirs
    if shipped.callback_secret is None and local.callback_secret is not None:
        updates["callback_secret"] = local.callback_secret
    return shipped.model_copy(update=updates)
