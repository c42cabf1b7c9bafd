"""Dataset versions: a data set is identified by its content hash."""

from __future__ import annotations

import io
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy.engine import Connection

from lockgate.artifacts import ArtifactStore
from lockgate.audit import AuditLog
from lockgate.clock import now_millis
from lockgate.entities import DatasetVersion
from lockgate.errors import InvalidInputError, NotFoundError
from lockgate.hashing import table_hash
from lockgate.refs import DatasetRef, is_valid_name, parse_ref
from lockgate.store import Database, DatasetRepository, RunRepository
from lockgate.tables import schema_fields, to_arrow

__all__ = ["DatasetService"]


class DatasetService:
    """Registers dataset versions and looks them up (``ws.datasets``)."""

    def __init__(self, db: Database, artifacts: ArtifactStore, audit: AuditLog, *, actor: str) -> None:
        self._db = db
        self._artifacts = artifacts
        self._audit = audit
        self._actor = actor
        self._repo = DatasetRepository()
        self._runs = RunRepository()

    def prepare(self, data: Any, *, store: bool = True) -> tuple[pa.Table, str, str | None, int]:
        """Hash (and optionally store as Parquet) outside any transaction: ``(table, hash, sha, size)``."""
        table = to_arrow(data)
        content_hash = table_hash(table)
        if not store:
            return table, content_hash, None, 0
        buf = io.BytesIO()
        pq.write_table(table.replace_schema_metadata(None), buf, compression="zstd")
        stored = self._artifacts.put_bytes(buf.getvalue())
        return table, content_hash, stored.sha256, stored.size

    def register(
        self,
        conn: Connection,
        *,
        name: str,
        table: pa.Table,
        content_hash: str,
        artifact: tuple[str | None, int],
        source_uri: str | None,
    ) -> DatasetVersion:
        """Record the version inside the caller's transaction; audited when it is new."""
        _check_name(name)
        now = now_millis()
        sha, size = artifact
        if sha is not None:
            self._runs.record_artifact(conn, sha, size, now)
        version, created = self._repo.get_or_insert(
            conn,
            name=name,
            content_hash=content_hash,
            source_uri=source_uri,
            schema=schema_fields(table.schema),
            num_rows=table.num_rows,
            artifact_sha256=sha,
            created_at=now,
            created_by=self._actor,
        )
        if created:
            self._audit.record(
                conn,
                actor=self._actor,
                action="dataset.registered",
                object_kind="dataset",
                object_id=version.node_id,
                details={"rows": version.num_rows, "source": source_uri},
            )
        return version

    def log(self, data: Any, *, name: str, source_uri: str | None = None, store: bool = True) -> DatasetVersion:
        """Register a data set version outside any run.

        >>> import pyarrow as pa, lockgate as lg, tempfile
        >>> ws = lg.Workspace.open(tempfile.mkdtemp())
        >>> ws.datasets.log(pa.table({"x": [1, 2]}), name="tiny").num_rows
        2
        """
        table, content_hash, sha, size = self.prepare(data, store=store)
        with self._db.write() as conn:
            return self.register(
                conn, name=name, table=table, content_hash=content_hash, artifact=(sha, size), source_uri=source_uri
            )

    def get(self, ref: str) -> DatasetVersion:
        """``datasets:/name@hash``, ``datasets:/name@latest`` or a bare name."""
        parsed = parse_ref(ref) if ref.startswith("datasets:/") else DatasetRef(ref)
        if not isinstance(parsed, DatasetRef):
            raise InvalidInputError(f"'{ref}' is not a dataset reference; use datasets:/NAME@HASH")
        hash_prefix = None if parsed.hash in (None, "latest") else parsed.hash
        with self._db.read() as conn:
            found = self._repo.find(conn, parsed.name, hash_prefix)
            if found is None:
                known = [v.content_hash[:12] for v in self._repo.versions(conn, parsed.name)][:5]
        if found is None:
            hint = f"its versions: {', '.join(known)}" if known else f"no data set named '{parsed.name}' was logged"
            raise NotFoundError(f"dataset '{ref}' does not exist ({hint}); check the name and hash")
        return found

    def versions(self, name: str | None = None) -> list[DatasetVersion]:
        with self._db.read() as conn:
            return self._repo.versions(conn, name)

    def add_fact(self, ref: str, key: str, value: Any) -> None:
        """Attach a fact to a data set version, audited (e.g. which contract version it passed).

        >>> import pyarrow as pa, lockgate as lg, tempfile
        >>> ws = lg.Workspace.open(tempfile.mkdtemp())
        >>> v = ws.datasets.log(pa.table({"x": [1]}), name="tiny")
        >>> ws.datasets.add_fact(v.uri, "contract", {"name": "tiny", "version": 1})
        >>> [f["value"]["version"] for f in ws.datasets.facts(v.uri)]
        [1]
        """
        if not isinstance(key, str) or not key or len(key) > 256:
            raise InvalidInputError(f"fact key {key!r} is not valid; use a short non-empty name like 'contract'")
        version = self.get(ref)
        with self._db.write() as conn:
            self._repo.add_fact(conn, version.id, key, value, actor=self._actor, now=now_millis())
            self._audit.record(
                conn,
                actor=self._actor,
                action="dataset.fact_added",
                object_kind="dataset",
                object_id=version.node_id,
                details={"key": key},
            )

    def facts(self, ref: str) -> list[dict[str, Any]]:
        """The facts attached to a data set version, oldest first."""
        version = self.get(ref)
        with self._db.read() as conn:
            return [
                {"key": f["key"], "value": f["value"], "created_at": f["created_at"], "created_by": f["created_by"]}
                for f in self._repo.facts(conn, version.id)
            ]

    def load(self, ref: str) -> pa.Table:
        """The stored rows of a dataset version, hash-verified."""
        version = self.get(ref)
        if version.artifact_sha256 is None:
            raise NotFoundError(f"dataset {version.uri} was logged without its rows (store=False); nothing to load")
        table = pq.read_table(io.BytesIO(self._artifacts.get_bytes(version.artifact_sha256)))
        return table


def _check_name(name: str) -> None:
    if not is_valid_name(name):
        raise InvalidInputError(
            f"dataset name {name!r} is not valid; start with a letter or digit and use letters, digits, '.', '-' or '_'"
        )
