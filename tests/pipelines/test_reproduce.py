"""Verified reproduction: bit-for-bit when nothing changed, and the likely cause when it did."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import lockgate as lg
from lockgate.pipelines import DataRef, load_pipeline, reproduce, run_pipeline


def _first_run(ws: lg.Workspace, root: Path) -> str:
    flow = load_pipeline(str(root / "flow.py"))
    result = run_pipeline(ws, flow, params={"source": DataRef(str(root / "data.csv"))}, executor="inline")
    return result.run_id


def test_an_unchanged_run_is_reproduced_bit_for_bit(ws: lg.Workspace, project: Path) -> None:
    run_id = _first_run(ws, project)
    report = reproduce(ws, run_id, executor="inline")
    assert report.ok, report.differences
    assert report.steps_compared == 4
    assert report.verdict == "reproduced bit-for-bit: 4 step outputs identical"
    assert report.reproduced_run_id != run_id


def test_changed_data_is_named_as_the_cause(ws: lg.Workspace, project: Path) -> None:
    run_id = _first_run(ws, project)
    (project / "data.csv").write_text("x,y\n" + "\n".join(f"{i / 10},{int(i > 10)}" for i in range(40)) + "\n")
    report = reproduce(ws, run_id, executor="inline")
    assert not report.ok
    assert any(d.what == "output of step 'load'" and "changed data file" in d.cause for d in report.differences)
    assert any(n.what.startswith("data ") for n in report.notes)


def test_a_changed_helper_is_named_as_the_cause(ws: lg.Workspace, project: Path) -> None:
    run_id = _first_run(ws, project)
    helpers = project / "helpers.py"
    helpers.write_text(helpers.read_text().replace("SCALE = 2", "SCALE = 5"))
    sys.modules.pop("helpers", None)
    for name in [k for k in sys.modules if k.startswith("lockgate_user_")]:
        sys.modules.pop(name)
    report = reproduce(ws, run_id, executor="inline")
    assert not report.ok
    (features,) = [d for d in report.differences if d.what == "output of step 'features'"]
    assert "code of step 'features'" in features.cause


def test_a_committed_pipeline_is_rebuilt_from_its_commit_and_diff(
    tmp_path: Path, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def git(*args: str) -> None:
        subprocess.run(
            ["git", "-c", "user.name=T", "-c", "user.email=t@example.com", *args],
            cwd=project,
            check=True,
            capture_output=True,
        )

    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    monkeypatch.setenv("LOCKGATE_CAPTURE_CODE", "true")
    monkeypatch.chdir(project)
    git("init", "-q", "-b", "main")
    git("add", "flow.py", "helpers.py")
    git("commit", "-q", "-m", "pipeline")
    helpers = project / "helpers.py"
    helpers.write_text(helpers.read_text().replace("SCALE = 2", "SCALE = 4"))  # dirty, recorded as a diff
    ws = lg.Workspace.open(tmp_path / "ws")
    run_id = _first_run(ws, project)
    assert ws.runs.get(run_id).git_dirty
    helpers.write_text(helpers.read_text().replace("SCALE = 4", "SCALE = 9"))  # later edits must not matter
    for name in [k for k in sys.modules if k.startswith("lockgate_user_")] + ["helpers"]:
        sys.modules.pop(name, None)
    report = reproduce(ws, run_id, executor="inline")
    assert report.ok, [str(d) for d in report.differences]
    ws.close()


def test_only_finished_pipeline_runs_can_be_reproduced(ws: lg.Workspace) -> None:
    with ws.start_run("plain") as run:
        pass
    with pytest.raises(lg.InvalidInputError, match="not a pipeline run"):
        reproduce(ws, run.id)
