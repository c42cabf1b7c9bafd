"""A hash chain of audit events, each sealed with a key that never enters the database.

Every event stores ``hash = sha256(prev_hash + its fields)`` and ``mac = HMAC(key, hash)``.
The chain alone catches an edited event, but someone with database access could recompute
every later hash; they cannot recompute the MACs without the workspace key file, so
``verify`` still names the first event that was touched. A signed anchor file outside the
database records the newest head, so deleting events from the end is caught too.
"""

from __future__ import annotations

import fcntl
import hmac
import json
import os
import secrets
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Connection

from lockgate.clock import now_millis
from lockgate.entities import AuditEvent
from lockgate.errors import IntegrityError
from lockgate.hashing import canonical_json
from lockgate.store import AuditRepository, Database
from lockgate.store.audit import GENESIS

__all__ = ["AuditLog", "AuditReport"]


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditReport:
    """The outcome of ``AuditLog.verify``."""

    ok: bool
    events_checked: int
    head_seq: int
    first_broken_seq: int | None = None
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "events_checked": self.events_checked,
            "head_seq": self.head_seq,
            "first_broken_seq": self.first_broken_seq,
            "reason": self.reason,
        }


def event_hash(
    *,
    seq: int,
    ts: int,
    actor: str,
    action: str,
    object_kind: str,
    object_id: str,
    details: dict[str, Any],
    prev_hash: str,
) -> str:
    body = canonical_json(
        {
            "seq": seq,
            "ts": ts,
            "actor": actor,
            "action": action,
            "object_kind": object_kind,
            "object_id": object_id,
            "details": details,
        }
    )
    return sha256(prev_hash.encode() + body).hexdigest()


class AuditLog:
    """Appends sealed events and verifies the chain."""

    def __init__(self, db: Database, *, key_file: Path, anchor_file: Path | None = None) -> None:
        self._db = db
        self._repo = AuditRepository()
        self._key_file = key_file
        self._anchor_file = anchor_file or key_file.parent.parent / "audit-anchor.json"
        self._key: bytes | None = None

    # -- writing ---------------------------------------------------------------------------

    def record(
        self,
        conn: Connection,
        *,
        actor: str,
        action: str,
        object_kind: str,
        object_id: str,
        details: dict[str, Any] | None = None,
    ) -> AuditEvent:
        """Append one event inside the caller's write transaction."""
        details = json.loads(canonical_json(details or {}))
        seq, prev = self._repo.lock_head(conn)
        key = self._load_key(create=seq == 0)
        assert key is not None  # required=True raises instead of returning None
        fields: dict[str, Any] = {
            "seq": seq + 1,
            "ts": now_millis(),
            "actor": actor,
            "action": action,
            "object_kind": object_kind,
            "object_id": object_id,
            "details": details,
            "prev_hash": prev,
        }
        digest = event_hash(**fields)
        event = AuditEvent(**fields, hash=digest, mac=_mac(key, digest))
        self._repo.append(conn, event)
        Database.after_commit(conn, lambda: self._write_anchor(event.seq, event.hash))
        return event

    # -- reading ---------------------------------------------------------------------------

    def events(
        self, *, object_kind: str | None = None, object_id: str | None = None, limit: int = 100
    ) -> list[AuditEvent]:
        with self._db.read() as conn:
            return self._repo.events(conn, object_kind=object_kind, object_id=object_id, limit=limit)

    def verify(self) -> AuditReport:
        """Walk the whole chain; the report names the first event that does not hold."""
        key = self._load_key(create=False, required=False)
        # The anchor is written after each commit, so reading it before the database means the
        # database holds at least what it records, even while others keep appending.
        anchor = self._read_anchor()
        checked = 0
        prev = GENESIS
        expected_seq = 1
        anchored_hash: str | None = None
        a_seq = int(anchor["seq"]) if anchor is not None else 0
        with self._db.read() as conn:
            head_seq, head_hash = self._repo.head(conn)
            for ev in self._repo.iter_events(conn):
                if ev.seq > head_seq:
                    break  # appended after the head was read (PostgreSQL reads each statement afresh)
                checked += 1
                reason = None
                if ev.seq != expected_seq:
                    reason = f"event {expected_seq} is missing (next is {ev.seq})"
                    return self._broken(checked, head_seq, expected_seq, reason)
                if ev.prev_hash != prev:
                    reason = "its link to the previous event does not match"
                elif event_hash(**_fields(ev)) != ev.hash:
                    reason = "its contents do not match its hash (the event was edited)"
                elif key is None:
                    reason = f"the workspace key {self._key_file} is missing, so no seal can be checked"
                elif not hmac.compare_digest(_mac(key, ev.hash), ev.mac):
                    reason = "its seal does not match (the event was edited and the chain recomputed)"
                if reason:
                    return self._broken(checked, head_seq, ev.seq, reason)
                prev = ev.hash
                if ev.seq == a_seq:
                    anchored_hash = ev.hash
                expected_seq += 1
        last = expected_seq - 1
        if last != head_seq or (last and prev != head_hash):
            return self._broken(checked, head_seq, last + 1, "the chain head does not match the last event")
        if anchor is not None:
            a_hash, a_mac = str(anchor["hash"]), str(anchor["mac"])
            if key is None or not hmac.compare_digest(_mac(key, f"{a_seq}:{a_hash}"), a_mac):
                return self._broken(
                    checked, head_seq, a_seq, f"the anchor {self._anchor_file} is not signed by this workspace's key"
                )
            if a_seq > last:
                return self._broken(
                    checked, head_seq, last + 1, f"events {last + 1}..{a_seq} were removed (the anchor records {a_seq})"
                )
            if anchored_hash != a_hash:
                return self._broken(checked, head_seq, a_seq, "it differs from the anchored head")
        return AuditReport(ok=True, events_checked=checked, head_seq=last)

    @staticmethod
    def _broken(checked: int, head_seq: int, seq: int, reason: str) -> AuditReport:
        return AuditReport(ok=False, events_checked=checked, head_seq=head_seq, first_broken_seq=seq, reason=reason)

    # -- key and anchor ----------------------------------------------------------------------

    def _load_key(self, *, create: bool, required: bool = True) -> bytes | None:
        if self._key is not None:
            return self._key
        if self._key_file.is_file():
            self._key = bytes.fromhex(self._key_file.read_text().strip())
            return self._key
        if create:
            self._key_file.parent.mkdir(parents=True, exist_ok=True)
            os.chmod(self._key_file.parent, 0o700)
            fd = os.open(self._key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_hex(32))
            return self._load_key(create=False)
        if required:
            raise IntegrityError(
                f"the audit key {self._key_file} is missing, so new events cannot be sealed; restore it from a backup, "
                "or, for a database shared with another workspace, point LOCKGATE_AUDIT_KEY_FILE at that workspace's key"
            )
        return None

    def _read_anchor(self) -> dict[str, Any] | None:
        try:
            data: dict[str, Any] = json.loads(self._anchor_file.read_text())
            return data
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {"seq": 0, "hash": "", "mac": ""}

    def _write_anchor(self, seq: int, digest: str) -> None:
        key = self._load_key(create=False)
        assert key is not None
        lock = self._anchor_file.with_suffix(".lock")
        with open(lock, "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            current = self._read_anchor()
            if current is not None and int(current.get("seq", 0)) >= seq:
                return
            tmp = self._anchor_file.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps({"seq": seq, "hash": digest, "mac": _mac(key, f"{seq}:{digest}")}))
            os.replace(tmp, self._anchor_file)


def _mac(key: bytes, message: str) -> str:
    return hmac.new(key, message.encode(), sha256).hexdigest()


def _fields(ev: AuditEvent) -> dict[str, Any]:
    return {
        "seq": ev.seq,
        "ts": ev.ts,
        "actor": ev.actor,
        "action": ev.action,
        "object_kind": ev.object_kind,
        "object_id": ev.object_id,
        "details": ev.details,
        "prev_hash": ev.prev_hash,
    }
