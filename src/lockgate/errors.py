"""Every error lockgate raises on purpose.

The tree::

    LockgateError
    ├── NotFoundError (LookupError)          a run, model, version, alias or artifact does not exist
    ├── ConflictError                        the write contradicts what is already recorded
    │   └── ParamConflictError               a write-once param was logged again with another value
    ├── InvalidInputError (ValueError)       the caller passed something malformed
    │   ├── InvalidReferenceError            a ``models:/``, ``runs:/`` … reference does not parse
    │   └── ConfigError                      settings or ``lockgate.toml`` are invalid
    ├── IntegrityError                       stored bytes or records fail their hash check
    │   └── AuditChainBroken                 the audit chain no longer verifies
    ├── CheckFailed                          a check the user asked for did not pass (CI checks)
    │   └── ContractViolation, ContractNotPassed, IncompatibleContract   data and contract gates
    ├── UnavailableError                     a database, object store or service cannot be reached
    │   ├── SchemaOutdatedError              the metadata database needs ``lockgate db upgrade``
    │   ├── StaleFeatures                    online features older than their ttl, fail-closed (503)
    │   └── Overloaded                       a server's queue is full: retry after a moment (429)
    ├── PermissionDenied                     the acting identity may not do this
    └── UserCodeError                        code the user supplied (a step, a model) raised
        └── StepTimeout                      a pipeline step ran past its timeout

Each class carries an ``exit_code`` the CLI uses: 1 for a failed check the user asked for,
2 for bad usage or input, 3 for an unavailable dependency. Messages are one sentence that
names the thing and what to do about it.
"""

from __future__ import annotations

__all__ = [
    "AuditChainBroken",
    "CheckFailed",
    "ConfigError",
    "ConflictError",
    "IntegrityError",
    "InvalidInputError",
    "InvalidReferenceError",
    "LockgateError",
    "NotFoundError",
    "Overloaded",
    "ParamConflictError",
    "PermissionDenied",
    "SchemaOutdatedError",
    "UnavailableError",
    "UserCodeError",
]


class LockgateError(Exception):
    """Root of every error lockgate raises on purpose."""

    exit_code: int = 2


class NotFoundError(LockgateError, LookupError):
    """A run, model, version, alias, dataset or artifact does not exist."""


class ConflictError(LockgateError):
    """The write contradicts what is already recorded."""


class ParamConflictError(ConflictError):
    """A write-once param was logged again with a different value."""


class InvalidInputError(LockgateError, ValueError):
    """The caller passed something malformed."""


class InvalidReferenceError(InvalidInputError):
    """A ``models:/``, ``runs:/``, ``datasets:/`` reference does not parse."""


class ConfigError(InvalidInputError):
    """Settings or ``lockgate.toml`` are invalid."""


class IntegrityError(LockgateError):
    """Stored bytes or records fail their hash check."""

    exit_code = 1


class AuditChainBroken(IntegrityError):
    """The audit chain no longer verifies."""


class CheckFailed(LockgateError):
    """A check the user asked for did not pass (``lockgate pipeline check``)."""

    exit_code = 1


class UnavailableError(LockgateError):
    """A database, object store or other service cannot be reached."""

    exit_code = 3


class SchemaOutdatedError(UnavailableError):
    """The metadata database is behind this lockgate version and needs ``lockgate db upgrade``."""


class Overloaded(UnavailableError):
    """A server's bounded queue is full; the request was refused rather than left to wait.

    The inference server answers 429 with ``Retry-After: retry_after``.
    """

    def __init__(self, message: str, *, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermissionDenied(LockgateError, PermissionError):
    """The acting identity is not allowed to do this."""


class UserCodeError(LockgateError):
    """Code the user supplied raised; the original exception is chained as ``__cause__``."""

    exit_code = 1
