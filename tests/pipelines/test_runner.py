"""The pipeline runner as a user meets it: caching that is never stale, resume, executors."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

import lockgate as lg
from lockgate.pipelines import DataRef, PipelineFailed, load_pipeline, run_pipeline


def _run(ws: lg.Workspace, root: Path, **kwargs: object) -> object:
    flow = load_pipeline(str(root / "flow.py"))
    params = {"source": DataRef(str(root / "data.csv")), **kwargs.pop("params", {})}  # type: ignore[dict-item]
    return run_pipeline(ws, flow, params=params, executor=kwargs.pop("executor", "inline"), **kwargs)  # type: ignore[arg-type]


def _statuses(result: object) -> dict[str, str]:
    return {s.name: s.status for s in result.steps}  # type: ignore[attr-defined]


def test_a_pipeline_runs_its_steps_as_child_runs_with_lineage(ws: lg.Workspace, project: Path) -> None:
    result = _run(ws, project)
    assert _statuses(result) == {
        "load": "SUCCEEDED",
        "features": "SUCCEEDED",
        "train": "SUCCEEDED",
        "evaluate": "SUCCEEDED",
    }
    parent = ws.runs.get(result.run_id)  # type: ignore[attr-defined]
    assert parent.status is lg.RunStatus.FINISHED
    assert parent.metrics["accuracy"] > 0.8
    children = [r for r in ws.runs.list(include_children=True, limit=None) if r.parent_id == parent.id]
    assert sorted(r.name for r in children) == ["evaluate", "features", "load", "train"]
    assert result.output("evaluate")["accuracy"] == parent.metrics["accuracy"]  # type: ignore[attr-defined]
    load_run = ws.runs.get(result.step_run("load"))  # type: ignore[attr-defined]
    logs = {a["path"] for a in ws.runs.artifacts(load_run.id)}
    assert {"logs/stdout.txt", "outputs/load.parquet"} <= logs
    # The model's output artifact traces back to the data file it was trained on.
    graph = ws.lineage.walk(lg.lineage.Node("run", result.step_run("train")), direction="upstream")  # type: ignore[attr-defined]
    assert any(n.kind == "dataset" and "data.csv@" in n.id for n in graph.nodes)


def test_a_second_run_hits_the_cache_for_every_step(ws: lg.Workspace, project: Path) -> None:
    first = _run(ws, project)
    second = _run(ws, project)
    assert set(_statuses(second).values()) == {"CACHED"}
    assert second.output("evaluate") == first.output("evaluate")  # type: ignore[attr-defined]
    assert ws.runs.get(second.step_run("train")).tags["lockgate.cache"] == "hit"  # type: ignore[attr-defined]


def test_changed_data_behind_the_same_path_is_never_a_stale_hit(ws: lg.Workspace, project: Path) -> None:
    _run(ws, project)
    (project / "data.csv").write_text("x,y\n" + "\n".join(f"{i / 10},{int(i > 10)}" for i in range(40)) + "\n")
    assert set(_statuses(_run(ws, project)).values()) == {"SUCCEEDED"}


def test_an_edited_helper_module_invalidates_the_steps_that_use_it(ws: lg.Workspace, project: Path) -> None:
    _run(ws, project)
    helpers = project / "helpers.py"
    helpers.write_text(helpers.read_text().replace("SCALE = 2", "SCALE = 3"))
    sys.modules.pop("helpers", None)
    sys.modules.pop(next(k for k in sys.modules if k.startswith("lockgate_user_")), None)
    statuses = _statuses(_run(ws, project))
    assert statuses["load"] == "CACHED"
    assert statuses["features"] == "SUCCEEDED"


def test_a_changed_parameter_reruns_only_what_depends_on_it(ws: lg.Workspace, project: Path) -> None:
    _run(ws, project)
    statuses = _statuses(_run(ws, project, params={"c": 0.5}))
    assert statuses == {"load": "CACHED", "features": "CACHED", "train": "SUCCEEDED", "evaluate": "SUCCEEDED"}


def test_a_failed_run_resumes_from_the_failed_step_under_the_same_run(
    ws: lg.Workspace, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOCKGATE_TEST_FAIL_ONCE", str(project / "failed-once"))
    with pytest.raises(PipelineFailed, match="step 'train' of pipeline 'flow' failed") as failure:
        _run(ws, project, cache=False)
    failed = failure.value.result
    assert _statuses(failed) == {"load": "SUCCEEDED", "features": "SUCCEEDED", "train": "FAILED", "evaluate": "SKIPPED"}
    assert ws.runs.get(failed.run_id).status is lg.RunStatus.FAILED
    resumed = _run(ws, project, cache=False, resume=failed.run_id[:8])
    assert resumed.run_id == failed.run_id  # type: ignore[attr-defined]
    assert _statuses(resumed) == {"load": "REUSED", "features": "REUSED", "train": "SUCCEEDED", "evaluate": "SUCCEEDED"}
    assert ws.runs.get(failed.run_id).status is lg.RunStatus.FINISHED
    train_runs = [r for r in ws.runs.list(include_children=True, limit=None) if r.name == "train"]
    assert sorted(str(r.status) for r in train_runs) == ["FAILED", "FINISHED"]  # history kept
    with pytest.raises(lg.ConflictError, match="only a failed, killed or crashed run can be resumed"):
        _run(ws, project, resume=failed.run_id)


def test_the_local_executor_runs_steps_in_worker_processes_with_the_same_results(
    ws: lg.Workspace, project: Path
) -> None:
    inline = _run(ws, project, cache=False)
    local = _run(ws, project, cache=False, executor="local")
    assert local.output("evaluate") == inline.output("evaluate")  # type: ignore[attr-defined]
    worker = ws.runs.get(local.step_run("train")).tags["lockgate.worker"]  # type: ignore[attr-defined]
    assert not worker.endswith(f":{__import__('os').getpid()}")


def test_bad_parameters_and_files_get_clear_errors(ws: lg.Workspace, project: Path) -> None:
    from lockgate.pipelines import parse_params

    flow = load_pipeline(str(project / "flow.py"))
    with pytest.raises(lg.InvalidInputError, match="must be float, not 'abc'"):
        parse_params(flow, ["c=abc"])
    with pytest.raises(lg.InvalidInputError, match="has no parameter 'depth'"):
        parse_params(flow, ["depth=3"])
    with pytest.raises(lg.NotFoundError, match="does not exist"):
        load_pipeline(str(project / "nope.py"))
    with pytest.raises(lg.InvalidInputError, match="unknown executor 'gpu'"):
        _run(ws, project, executor="gpu")
    (project / "broken.py").write_text("import not_a_module\n")
    with pytest.raises(lg.UserCodeError, match="does not import"):
        load_pipeline(str(project / "broken.py"))


def test_a_plain_script_can_use_the_local_executor_without_a_main_guard(tmp_path: Path) -> None:
    import subprocess

    (tmp_path / "steps.py").write_text(
        "from lockgate import pipeline, step\n"
        "@step\ndef one() -> int:\n    return 1\n"
        "@pipeline\ndef p():\n    return one()\n"
    )
    (tmp_path / "script.py").write_text(
        "import sys\n"
        "from lockgate import Workspace, run_pipeline, pipeline, step\n"
        "from steps import p\n"
        "print('script body ran', flush=True)\n"
        "ws = Workspace.open(sys.argv[1])\n"
        "print(run_pipeline(ws, p, executor='local').output('one'), flush=True)\n"
        "@step\ndef local_step() -> int:\n    return 2\n"
        "@pipeline\ndef q():\n    return local_step()\n"
        "print(run_pipeline(ws, q).output('local_step'), flush=True)  # auto: inline for __main__ steps\n"
        "try:\n    run_pipeline(ws, q, executor='local', cache=False)\n"
        "except Exception as exc:\n    print(type(exc).__name__, flush=True)\n"
    )
    done = subprocess.run(
        [sys.executable, str(tmp_path / "script.py"), str(tmp_path / "ws")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    # The workers did not re-run the script; __main__ steps run inline or are refused clearly.
    assert done.stdout.splitlines() == ["script body ran", "1", "2", "InvalidInputError"]


def test_map_fans_a_step_out_over_values_and_the_pool_runs_them(ws: lg.Workspace, tmp_path: Path) -> None:
    (tmp_path / "fan.py").write_text(
        "import os\n"
        "from lockgate.pipelines import pipeline, step\n"
        "@step\ndef square(x: int, offset: int = 0) -> list[int]:\n    return [x * x + offset, os.getpid()]\n"
        "@step\ndef total(parts: list) -> dict[str, float]:\n    return {'total': float(sum(p[0] for p in parts))}\n"
        "@step\ndef gather(a: list[int], b: list[int], c: list[int], d: list[int]) -> list:\n    return [a, b, c, d]\n"
        "@pipeline\ndef fan(n: int = 4):\n    parts = square.map(range(1, n + 1), offset=1)\n    return total(gather(*parts))\n"
    )
    flow = load_pipeline(str(tmp_path / "fan.py"))
    assert [n.name for n in flow.trace().nodes] == ["square", "square_2", "square_3", "square_4", "gather", "total"]
    result = run_pipeline(ws, flow, executor="local")
    assert result.output("total") == {"total": 34.0}  # 2 + 5 + 10 + 17
    pids = {result.output(f"square{s}")[1] for s in ("", "_2", "_3", "_4")}
    assert os.getpid() not in pids  # the squares ran in worker processes


def test_missing_data_is_refused_before_any_run_is_recorded(ws: lg.Workspace, project: Path) -> None:
    flow = load_pipeline(str(project / "flow.py"))
    with pytest.raises(lg.NotFoundError, match="does not exist"):
        run_pipeline(ws, flow, params={"source": DataRef(str(project / "missing.csv"))}, executor="inline")
    assert ws.runs.list(include_children=True) == []
