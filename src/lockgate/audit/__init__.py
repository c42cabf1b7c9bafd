"""The append-only, hash-chained audit log of every state change that matters to governance."""

from lockgate.audit._log import AuditLog, AuditReport

__all__ = ["AuditLog", "AuditReport"]
