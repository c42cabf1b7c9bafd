"""What a new-data trigger sees in the folder it watches: every file's content hash.

A file is hashed again only when its size or modification time changed since the last look,
so watching a large folder costs a ``stat`` per file. Like git's index, a file modified
shortly before a look is hashed again next time too: a rewrite within the file system's
timestamp granularity would otherwise keep its old hash. The folder's hash is the one
:class:`~lockgate.pipelines.DataRef` computes for the same folder, so the version a trigger
fired for is the version the pipeline reads.

>>> import pathlib, tempfile
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> _ = (folder / "day=1.csv").write_text("x\\n1\\n")
>>> before = FolderSnapshot.take(folder)
>>> _ = (folder / "day=2.csv").write_text("x\\n2\\n")
>>> after = FolderSnapshot.take(folder, previous=before)
>>> after.new_since(before)
['day=2.csv']
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lockgate.hashing import sha256_file

__all__ = ["FolderSnapshot"]

_RACY_NS = 2_000_000_000  # a cached hash is trusted only for files older than this at the last look


@dataclass(frozen=True, slots=True)
class FolderSnapshot:
    """Relative path → ``(size, mtime_ns, sha256)`` for every file under a folder."""

    files: dict[str, tuple[int, int, str]]
    taken_ns: int = 0

    @classmethod
    def take(cls, folder: Path, *, previous: FolderSnapshot | None = None) -> FolderSnapshot:
        """Look at ``folder`` now (dot-files skipped, as ``DataRef`` does), reusing the hashes
        of files ``previous`` saw with the same size and modification time."""
        known = previous.files if previous is not None else {}
        trusted_before = (previous.taken_ns if previous is not None else 0) - _RACY_NS
        taken_ns = time.time_ns()
        files: dict[str, tuple[int, int, str]] = {}
        for path in folder.rglob("*"):
            if not path.is_file() or path.name.startswith("."):
                continue
            rel = path.relative_to(folder).as_posix()
            try:
                stat = path.stat()
                seen = known.get(rel)
                if (
                    seen is not None
                    and seen[0] == stat.st_size
                    and seen[1] == stat.st_mtime_ns
                    and stat.st_mtime_ns < trusted_before
                ):
                    files[rel] = seen
                else:
                    files[rel] = (stat.st_size, stat.st_mtime_ns, sha256_file(path))
            except FileNotFoundError:
                continue  # removed while we looked
        return cls(files, taken_ns)

    @property
    def settled(self) -> bool:
        """Whether every cached hash can be trusted next time (no file modified just before the look)."""
        return all(mtime < self.taken_ns - _RACY_NS for _, mtime, _ in self.files.values())

    def new_since(self, before: FolderSnapshot) -> list[str]:
        """Files that are new, or whose content changed, since ``before`` (sorted)."""
        return sorted(
            rel for rel, (_, _, sha) in self.files.items() if rel not in before.files or before.files[rel][2] != sha
        )

    def content_hash(self) -> str:
        """The folder's hash over names and contents: ``DataRef(folder).content_hash()``."""
        digest = hashlib.sha256()
        for rel in sorted(self.files, key=lambda r: Path(r).parts):
            digest.update(str(Path(rel)).encode() + b"\0" + bytes.fromhex(self.files[rel][2]))
        return digest.hexdigest()

    def to_json(self) -> dict[str, Any]:
        return {"taken_ns": self.taken_ns, "files": {rel: list(entry) for rel, entry in self.files.items()}}

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> FolderSnapshot:
        data = data or {}
        files = data.get("files", {})
        return cls({rel: (int(e[0]), int(e[1]), str(e[2])) for rel, e in files.items()}, int(data.get("taken_ns", 0)))
