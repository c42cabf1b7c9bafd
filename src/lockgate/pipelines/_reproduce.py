"""Verified reproduction: rebuild a pipeline run from what lockgate recorded, in a fresh
workspace with caching off, and compare every output's content hash with the original.

What is checked, and reported as the likely cause when an output differs: the code (the
recorded git commit with its dirty diff applied, in a temporary worktree, or the pipeline
file's recorded hash), each step's source hash, the environment (interpreter and every
package version), the data behind every DataRef, and the parameters (taken from the run).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lockgate.entities import RunStatus
from lockgate.errors import ConflictError, InvalidInputError, NotFoundError
from lockgate.hashing import sha256_file
from lockgate.pipelines._dataref import DataRef, decode_params
from lockgate.pipelines._loader import load_pipeline
from lockgate.pipelines._runner import run_pipeline
from lockgate.store import PipelineRepository
from lockgate.tracking import capture_environment
from lockgate.workspace import Workspace

__all__ = ["Difference", "ReproductionReport", "reproduce"]


@dataclass(frozen=True, slots=True)
class Difference:
    what: str
    recorded: str
    now: str
    cause: str

    def __str__(self) -> str:
        return f"{self.what}: recorded {self.recorded}, now {self.now} ({self.cause})"


@dataclass(slots=True)
class ReproductionReport:
    """``ok`` when every step executed and every output hashed exactly as recorded."""

    run_id: str
    reproduced_run_id: str | None = None
    steps_compared: int = 0
    differences: list[Difference] = field(default_factory=list)
    notes: list[Difference] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.differences and self.steps_compared > 0

    @property
    def verdict(self) -> str:
        if self.ok:
            return f"reproduced bit-for-bit: {self.steps_compared} step outputs identical"
        return f"not reproduced: {len(self.differences)} difference(s)"

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "reproduced_run_id": self.reproduced_run_id,
            "ok": self.ok,
            "verdict": self.verdict,
            "steps_compared": self.steps_compared,
            "differences": [_as_dict(d) for d in self.differences],
            "notes": [_as_dict(d) for d in self.notes],
        }


def _as_dict(d: Difference) -> dict[str, str]:
    return {"what": d.what, "recorded": d.recorded, "now": d.now, "cause": d.cause}


def reproduce(ws: Workspace, ref: str, *, executor: str = "auto") -> ReproductionReport:
    """Re-run pipeline run ``ref`` from its records and compare every output, bit for bit."""
    record = ws.runs.get(ref)
    if record.tags.get("lockgate.kind") != "pipeline":
        raise InvalidInputError(f"run {record.id[:8]} is not a pipeline run; reproduce takes the run of a pipeline")
    if record.status is not RunStatus.FINISHED:
        raise ConflictError(f"run {record.id[:8]} is {record.status}; only a finished pipeline run can be reproduced")
    manifest = _manifest(ws, record.id)
    report = ReproductionReport(run_id=record.id)
    with ws.db.read() as conn:
        recorded_steps = {s["node"]: s for s in PipelineRepository().steps(conn, record.id)}
    recorded_sources = {
        r.name: r.tags.get("lockgate.source_sha256", "")
        for r in ws.runs.search(include_children=True)
        if r.parent_id == record.id and r.tags.get("lockgate.kind") == "step"
    }

    env_note = _compare_environment(ws, record.id, record.environment_hash)
    if env_note is not None:
        report.notes.append(env_note)
    params = decode_params(manifest["params"])
    data_notes = _compare_data(manifest.get("data", {}), params)
    report.notes.extend(data_notes)
    diff = ws.artifacts.get_bytes(record.code_diff_sha256) if record.code_diff_sha256 else None
    with (
        tempfile.TemporaryDirectory(prefix="lockgate-reproduce-") as tmp,
        _code(record, manifest, report, diff) as file,
    ):
        fresh = Workspace.open(
            Path(tmp) / "ws",
            database_url=f"sqlite:///{Path(tmp) / 'ws' / 'lockgate.db'}",
            artifact_root=str(Path(tmp) / "artifacts"),
        )
        try:
            flow = load_pipeline(f"{file}:{manifest['pipeline']}")
            result = run_pipeline(fresh, flow, params=params, executor=executor, cache=False)
            report.reproduced_run_id = result.run_id
            not_run = [s.name for s in result.steps if s.status != "SUCCEEDED"]
            if not_run:
                report.differences.append(
                    Difference(
                        "execution", "every step ran", f"{', '.join(not_run)} did not", "the runner reused results"
                    )
                )
            new_sources = {
                r.name: r.tags.get("lockgate.source_sha256", "")
                for r in fresh.runs.search(include_children=True)
                if r.parent_id == result.run_id
            }
            for name, row in recorded_steps.items():
                recorded_hash = row["outputs"][0]["hash"] if row["outputs"] else ""
                now_hash = result.output_hash(name) or ""
                report.steps_compared += 1
                if recorded_hash != now_hash:
                    cause = _likely_cause(name, recorded_sources.get(name), new_sources.get(name), data_notes, env_note)
                    report.differences.append(
                        Difference(f"output of step '{name}'", recorded_hash[:12], now_hash[:12] or "missing", cause)
                    )
        finally:
            fresh.close()
    return report


def _manifest(ws: Workspace, run_id: str) -> dict[str, Any]:
    entry = next((a for a in ws.runs.artifacts(run_id) if a["path"] == "pipeline.json"), None)
    if entry is None:
        raise NotFoundError(f"run {run_id[:8]} has no pipeline manifest, so it cannot be reproduced")
    manifest: dict[str, Any] = json.loads(ws.artifacts.get_bytes(entry["sha256"]))
    if not manifest.get("file"):
        raise ConflictError(f"run {run_id[:8]} did not record its pipeline file, so it cannot be reproduced")
    return manifest


def _compare_environment(ws: Workspace, run_id: str, recorded_hash: str | None) -> Difference | None:
    now = capture_environment()
    if recorded_hash is None or recorded_hash == now.hash:
        return None
    changed: list[str] = []
    env = ws.runs.environment(run_id)
    if env is not None:
        before: dict[str, str] = json.loads(ws.artifacts.get_bytes(env["packages_sha256"]))
        after: dict[str, str] = json.loads(now.packages)
        for name in sorted(set(before) | set(after)):
            if before.get(name) != after.get(name):
                changed.append(f"{name} {before.get(name, '-')} -> {after.get(name, '-')}")
        if env["python"] != now.python:
            changed.insert(0, f"python {env['python']} -> {now.python}")
    detail = "; ".join(changed[:5]) + (f" (+{len(changed) - 5} more)" if len(changed) > 5 else "")
    return Difference(
        "environment", recorded_hash[:12], now.hash[:12], f"package versions differ: {detail or 'platform'}"
    )


def _compare_data(recorded: dict[str, str], params: dict[str, Any]) -> list[Difference]:
    # Recorded by DataRef.key: the URI itself, or URI#query=<hash> for a query (found in params).
    refs = {v.key: v for v in params.values() if isinstance(v, DataRef)}
    notes = []
    for key, digest in sorted(recorded.items()):
        try:
            now = (refs.get(key) or DataRef(key)).content_hash()
        except NotFoundError:
            now = "missing"
        except InvalidInputError:  # a query built inside the pipeline: not among the params
            notes.append(Difference(f"data {key}", digest[:12], "not checked", "its query was not recorded"))
            continue
        if now != digest:
            notes.append(Difference(f"data {key}", digest[:12], now[:12], "the data file changed since the run"))
    return notes


def _likely_cause(
    step: str, recorded_source: str | None, new_source: str | None, data: list[Difference], env: Difference | None
) -> str:
    if recorded_source and new_source and recorded_source != new_source:
        return f"the code of step '{step}' (or a project module it uses) changed"
    if data:
        return "a changed data file: " + ", ".join(d.what.removeprefix("data ") for d in data)
    if env is not None:
        return env.cause
    return "the step is not deterministic (an unseeded random generator, time, or ordering)"


@contextlib.contextmanager
def _code(record: Any, manifest: dict[str, Any], report: ReproductionReport, diff: bytes | None) -> Iterator[Path]:
    """The pipeline file to run: from a worktree at the recorded commit with the recorded diff
    applied when the run was in git, else the file itself (checked against its recorded hash)."""
    file = Path(manifest["file"])
    top = _git(file.parent, "rev-parse", "--show-toplevel") if file.parent.exists() else None
    if record.git_commit and top and _git(Path(top), "cat-file", "-e", f"{record.git_commit}^{{commit}}") is not None:
        root = Path(top)
        worktree = Path(tempfile.mkdtemp(prefix="lockgate-worktree-"))
        shutil.rmtree(worktree)
        _git(root, "worktree", "add", "--detach", "--quiet", str(worktree), record.git_commit, check=True)
        try:
            if diff:
                _apply_diff(worktree, diff, report)
            yield worktree / file.relative_to(root)
        finally:
            _git(root, "worktree", "remove", "--force", str(worktree))
        return
    if not file.is_file():
        raise NotFoundError(f"pipeline file {file} is gone and the run recorded no git commit to restore it from")
    if manifest.get("file_sha256") and sha256_file(file) != manifest["file_sha256"]:
        report.notes.append(
            Difference(
                f"code {file.name}",
                manifest["file_sha256"][:12],
                sha256_file(file)[:12],
                "the pipeline file changed and the run recorded no git commit",
            )
        )
    yield file


_UNTRACKED = b"\n--- untracked: "


def _apply_diff(worktree: Path, diff: bytes, report: ReproductionReport) -> None:
    """The recorded working-tree changes: a git patch for tracked files, then untracked files
    (those stored by hash only, like secrets, cannot be restored and are reported)."""
    tracked, *untracked = diff.split(_UNTRACKED)
    if tracked.strip():
        patch = worktree / ".lockgate-recorded.patch"
        patch.write_bytes(tracked)
        try:
            if _git(worktree, "apply", "--binary", "--whitespace=nowarn", str(patch)) is None:
                report.differences.append(
                    Difference(
                        "code",
                        "recorded diff",
                        "not applicable",
                        "the recorded dirty diff does not apply to its commit",
                    )
                )
        finally:
            patch.unlink(missing_ok=True)
    for entry in untracked:
        name, _, body = entry.partition(b"\n")
        target = worktree / name.decode(errors="replace")
        if body.startswith(b"<") and b"sha256" in body[:120] and body.rstrip().endswith(b">"):
            report.notes.append(
                Difference(
                    f"untracked file {target.name}",
                    "stored by hash",
                    "not restored",
                    "its content was not stored (a secret or a large file)",
                )
            )
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(body)


def _git(cwd: Path, *args: str, check: bool = False) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, timeout=60, check=True, stdin=subprocess.DEVNULL
        )
    except (OSError, subprocess.SubprocessError):
        if check:
            raise InvalidInputError(f"git {' '.join(args[:2])} failed in {cwd}; is the repository intact?") from None
        return None
    return out.stdout.decode(errors="replace").strip()
