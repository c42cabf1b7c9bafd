"""What a run ran with: the code (git commit, branch, dirty diff) and the environment
(interpreter, platform, every installed package, the lockfile)."""

from __future__ import annotations

import contextlib
import functools
import platform
import re
import subprocess
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from lockgate.hashing import canonical_json, sha256_bytes, sha256_file

__all__ = ["CodeState", "EnvironmentState", "capture_code", "capture_environment", "redact_remote"]

_LOCKFILES = ("requirements.lock", "uv.lock", "poetry.lock", "pdm.lock", "Pipfile.lock", "requirements.txt")
_MAX_UNTRACKED_BYTES = 1 << 20
_MAX_UNTRACKED_TOTAL = 8 << 20


@dataclass(frozen=True, slots=True)
class CodeState:
    """Git facts at run start; ``repo`` is None outside a repository."""

    repo: str | None
    commit: str | None
    branch: str | None
    dirty: bool | None
    diff: bytes | None

    @property
    def node_id(self) -> str:
        if not self.commit:
            return "no-repository"
        suffix = f"+{sha256_bytes(self.diff)[:12]}" if self.diff else ""
        return f"{self.repo or 'local'}@{self.commit}{suffix}"


@dataclass(frozen=True, slots=True)
class EnvironmentState:
    hash: str
    python: str
    platform: str
    packages: bytes  # canonical JSON of {name: version}
    package_count: int
    lockfile: str | None
    lockfile_sha256: str | None


def _git(cwd: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, timeout=20, check=True, stdin=subprocess.DEVNULL
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.decode(errors="replace")


def capture_code(cwd: Path | None = None) -> CodeState:
    """The commit, branch and full working-tree diff (untracked files included).

    Two git calls for a clean tree (three when tracked files changed): this runs at every
    run start, so it reads commit, branch and the changed paths from one ``git status``.
    """
    cwd = cwd or Path.cwd()
    top = _git(cwd, "rev-parse", "--show-toplevel")
    if top is None:
        return CodeState(None, None, None, None, None)
    root = Path(top.strip())
    status = _git(root, "status", "--porcelain=v2", "--branch", "-z", "--untracked-files=all")
    commit = branch = None
    tracked_changes = False
    untracked: list[str] = []
    for entry in (status or "").split("\0"):
        if entry.startswith("# branch.oid "):
            oid = entry.removeprefix("# branch.oid ")
            commit = None if oid == "(initial)" else oid
        elif entry.startswith("# branch.head "):
            branch = entry.removeprefix("# branch.head ")
        elif entry.startswith("? "):
            untracked.append(entry[2:])
        elif entry[:2] in ("1 ", "2 ", "u "):
            tracked_changes = True
    diff = _working_tree_diff(root, tracked=tracked_changes and commit is not None, untracked=untracked)
    return CodeState(_remote(root) or str(root), commit, branch, bool(diff), diff or None)


@functools.cache
def _remote(root: Path) -> str:
    return redact_remote((_git(root, "config", "--get", "remote.origin.url") or "").strip())


def redact_remote(url: str) -> str:
    """A remote URL without the credentials CI systems put in it (``https://token@host/…``).

    >>> redact_remote("https://ci-token:glpat-SECRET@gitlab.example.com/team/fraud.git")
    'https://gitlab.example.com/team/fraud.git'
    >>> redact_remote("git@github.com:team/fraud.git")
    'git@github.com:team/fraud.git'
    """
    if "://" not in url:
        return url  # scp-like syntax: the user is the ssh login, not a secret
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def _working_tree_diff(root: Path, *, tracked: bool, untracked: list[str]) -> bytes:
    parts: list[bytes] = []
    if tracked:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            parts.append(
                subprocess.run(
                    ["git", "diff", "HEAD", "--binary"],
                    cwd=root,
                    capture_output=True,
                    timeout=60,
                    check=True,
                    stdin=subprocess.DEVNULL,
                ).stdout
            )
    budget = _MAX_UNTRACKED_TOTAL
    for name in sorted(untracked):
        path = root / name
        try:
            size = path.stat().st_size
            if not path.is_file():
                continue
            # Secret files (.env, keys) and big files are recorded by name and hash only: the
            # diff is stored as an artifact, and secrets must never reach one.
            if _looks_secret(name) or size > _MAX_UNTRACKED_BYTES or size > budget:
                body = f"<{size} bytes, sha256 {sha256_file(path)}, content not stored>".encode()
            else:
                body = path.read_bytes()
                budget -= size
        except OSError:
            continue
        parts.append(b"\n--- untracked: " + name.encode() + b"\n" + body)
    return b"".join(parts)


_SECRET_FILES = re.compile(
    r"(^|/)(\.env(\..*)?|\.netrc|\.pypirc|\.npmrc|id_[a-z0-9]+|[^/]*(secret|credential|token|password)[^/]*"
    r"|[^/]*\.(pem|key|p12|pfx|jks|keystore|kdbx))$",
    re.IGNORECASE,
)


def _looks_secret(name: str) -> bool:
    """``.env``, ``.env.local``, ``id_rsa``, ``server.key``, ``gcp-credentials.json``…"""
    return _SECRET_FILES.search(name) is not None


@functools.cache
def capture_environment(start: Path | None = None) -> EnvironmentState:
    """The interpreter and installed packages; cached, because they do not change mid-process."""
    packages = {
        (dist.metadata["Name"] or "").lower(): dist.version
        for dist in metadata.distributions()
        if dist.metadata["Name"]
    }
    blob = canonical_json(dict(sorted(packages.items())))
    lockfile = _find_lockfile(start or Path.cwd())
    lock_sha = sha256_file(lockfile) if lockfile else None
    py = f"{platform.python_implementation()} {platform.python_version()}"
    plat = f"{platform.system()}-{platform.release()}-{platform.machine()}"
    env_hash = sha256_bytes(
        canonical_json({"python": py, "platform": plat, "packages": sha256_bytes(blob), "lock": lock_sha})
    )
    return EnvironmentState(
        hash=env_hash,
        python=py,
        platform=plat,
        packages=blob,
        package_count=len(packages),
        lockfile=str(lockfile) if lockfile else None,
        lockfile_sha256=lock_sha,
    )


def _find_lockfile(start: Path) -> Path | None:
    for folder in [start, *start.resolve().parents][:6]:
        for name in _LOCKFILES:
            candidate = folder / name
            if candidate.is_file():
                return candidate
    return None
