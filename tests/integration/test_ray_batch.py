"""Batch scoring on a real Ray cluster with Ray Data: ``ray start --head`` in its own process,
then ``lockgate batch-predict --executor ray --ray-address`` as a user runs it.

As for the Ray pipeline tests (tests/integration/test_ray_pipeline.py), everything Ray touches
runs in private network and PID namespaces (:mod:`tests.integration.ray_namespace`); the
workspace is a SQLite file on the shared filesystem, read back here afterwards. The Ray
outputs are compared with the same scoring on the local executor, row by row.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.ensemble import GradientBoostingClassifier

import lockgate as lg
from lockgate.serving import batch_predict
from tests.integration.ray_namespace import processes_mentioning, require_ray_namespace, run_in_namespace

pytestmark = [pytest.mark.slow]

GCS_PORT = 6379  # a fresh network namespace: every port is free
FEATURES = [f"f{i}" for i in range(5)]
SIZES = (500, 37, 900)  # rows per input file: blocks and chunks of unequal sizes

# Runs inside the namespaces: starts the head, runs each `lockgate batch-predict` of the
# config, stops the head, and writes what it saw to a JSON report.
_SCENARIO = r"""
import json, os, subprocess, sys, time, traceback
from pathlib import Path

cfg = json.loads(Path(sys.argv[1]).read_text())
report = {"runs": {}}
bin_ = Path(sys.executable).parent
env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "LOCKGATE_", "RAY_"))}
env.update(
    RAY_USAGE_STATS_ENABLED="0",
    RAY_TMPDIR=cfg["ray_tmp"],
    HOME=cfg["home_dir"],  # no ~/.ray token turns authentication on
    LOCKGATE_CAPTURE_CODE="false",
)
try:
    started = time.monotonic()
    subprocess.run(
        [str(bin_ / "ray"), "start", "--head", f"--port={cfg['port']}", "--num-cpus=2",
         "--node-ip-address=127.0.0.1", "--disable-usage-stats", "--include-dashboard=false"],
        env=env, check=True, capture_output=True, timeout=90,
    )
    report["ray_start_seconds"] = round(time.monotonic() - started, 1)
    for name, args in cfg["runs"].items():
        started = time.monotonic()
        done = subprocess.run(
            [str(bin_ / "lockgate"), "--home", cfg["home"], "batch-predict", *args,
             "--executor", "ray", "--ray-address", f"127.0.0.1:{cfg['port']}", "--json"],
            env=env, capture_output=True, text=True, timeout=150,
        )
        report["runs"][name] = {"rc": done.returncode, "stdout": done.stdout, "stderr": done.stderr[-4000:],
                                "seconds": round(time.monotonic() - started, 1)}
except BaseException:
    report["error"] = traceback.format_exc()
    raise
finally:
    stop = subprocess.run([str(bin_ / "ray"), "stop"], env=env, capture_output=True, text=True, timeout=60)
    report["ray_stop"] = stop.returncode
    processes = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout.splitlines()[1:]
    report["left_running"] = [p for p in processes if any(w in p for w in ("raylet", "gcs_server", "ray::"))]
    Path(cfg["report"]).write_text(json.dumps(report))
"""


@pytest.fixture(scope="module")
def ray_batch() -> Iterator[dict[str, Any]]:
    """A workspace with a classifier and three input files, scored on Ray twice (scikit-learn
    runtime with file and row ids; ONNX runtime with an id column)."""
    require_ray_namespace()
    with pytest.MonkeyPatch.context() as env:
        for key in [k for k in os.environ if k.startswith("LOCKGATE_") and k != "LOCKGATE_REQUIRE_SERVICES"]:
            env.delenv(key)
        tmp = Path(tempfile.mkdtemp(prefix="lgrayb-"))  # short: Ray's socket paths live below it
        try:
            rng = np.random.default_rng(0)
            x = rng.normal(size=(600, len(FEATURES)))
            model = GradientBoostingClassifier(n_estimators=15, max_depth=3, random_state=0)
            model.fit(pd.DataFrame(x, columns=FEATURES), (x[:, 0] + x[:, 1] ** 2 > 0.5).astype(int))
            home = tmp / "ws"
            with lg.Workspace.open(home, upgrade=True) as ws, ws.start_run("train") as run:
                run.log_model(model, name="fraud", input_example=pa.table(dict(zip(FEATURES, x[:20].T, strict=True))))
            (tmp / "data").mkdir()
            for i, rows in enumerate(SIZES):
                values = rng.normal(size=(rows, len(FEATURES)))
                table = pa.table({"transaction_id": [f"t{i}-{n}" for n in range(rows)]}).append_column(
                    FEATURES[0], pa.array(values[:, 0])
                )
                for j, name in enumerate(FEATURES[1:], start=1):
                    table = table.append_column(name, pa.array(values[:, j]))
                pq.write_table(table, tmp / "data" / f"part-{i}.parquet", row_group_size=128)
            data = str(tmp / "data" / "*.parquet")
            sk, onnx = ["--chunk-rows", "200"], ["--id-column", "transaction_id"]
            cfg = {
                "home": str(home),
                "port": GCS_PORT,
                "ray_tmp": str(tmp / "r"),
                "home_dir": str(tmp / "home"),
                "report": str(tmp / "report.json"),
                "runs": {
                    "sklearn": ["models:/fraud/1", "-i", data, "-o", f"{tmp}/ray-sk.parquet", "--no-onnx", *sk],
                    "onnx": ["models:/fraud/1", "-i", data, "-o", f"{tmp}/ray-onnx.parquet", *onnx],
                },
            }
            for folder in ("r", "home"):
                (tmp / folder).mkdir()
            (tmp / "cfg.json").write_text(json.dumps(cfg))
            (tmp / "scenario.py").write_text(textwrap.dedent(_SCENARIO))
            returncode, output = run_in_namespace(tmp / "scenario.py", str(tmp / "cfg.json"), timeout=300)
            if not Path(cfg["report"]).exists():
                pytest.fail(f"the Ray scenario failed (exit {returncode}):\n{output[-4000:]}")
            report = json.loads(Path(cfg["report"]).read_text())
            if "error" in report:
                pytest.fail(f"the Ray scenario failed:\n{report['error']}\n{output[-4000:]}")
            report["output"] = output
            report["left_on_host"] = processes_mentioning(str(tmp))
            # Shown when a test fails: where the time went.
            print(
                f"Ray batch scenario: ray start {report.get('ray_start_seconds')} s, "
                + ", ".join(f"{name} run {run['seconds']} s" for name, run in report["runs"].items())
            )
            with lg.Workspace.open(home) as ws:
                yield {"report": report, "ws": ws, "tmp": tmp, "data": data}
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def _result(scenario: dict[str, Any], name: str) -> dict[str, Any]:
    run = scenario["report"]["runs"][name]
    assert run["rc"] == 0, f"lockgate batch-predict ({name}) failed:\n{run['stderr']}"
    result: dict[str, Any] = json.loads(run["stdout"])  # nothing but the JSON on stdout
    return result


def test_ray_scores_every_row_in_input_order_as_the_local_executor_does(ray_batch: dict[str, Any]) -> None:
    result, ws, tmp = _result(ray_batch, "sklearn"), ray_batch["ws"], ray_batch["tmp"]
    assert (result["rows"], result["executor"], result["runtime"]) == (sum(SIZES), "ray", "sklearn")
    local = batch_predict(ws, "models:/fraud/1", ray_batch["data"], tmp / "local.parquet", prefer_onnx=False)
    on_ray, here = pq.read_table(tmp / "ray-sk.parquet"), pq.read_table(tmp / "local.parquet")
    assert on_ray.column_names == here.column_names
    assert on_ray.equals(here), "Ray's scores, ids or order differ from the local executor's"
    assert on_ray.column("row").to_pylist() == [n for rows in SIZES for n in range(rows)]
    run = ws.runs.get(result["run_id"])
    assert run.status is lg.RunStatus.FINISHED
    assert run.params["executor"] == "ray"
    assert local.rows == result["rows"]


def test_the_onnx_runtime_on_ray_keeps_the_id_column_and_lineage(ray_batch: dict[str, Any]) -> None:
    result, ws, tmp = _result(ray_batch, "onnx"), ray_batch["ws"], ray_batch["tmp"]
    assert result["runtime"] == "onnx"
    out = pq.read_table(tmp / "ray-onnx.parquet")
    assert out.column("transaction_id").to_pylist() == [
        f"t{i}-{n}" for i, rows in enumerate(SIZES) for n in range(rows)
    ]
    reference = pq.read_table(tmp / "ray-sk.parquet")
    np.testing.assert_allclose(out.column("score").to_numpy(), reference.column("score").to_numpy(), atol=1e-5)
    edges = ws.lineage_of(f"runs:/{result['run_id']}").to_dict()["edges"]
    assert sum(e["relation"] == "input:batch" for e in edges) == len(SIZES)
    assert {"from": "model_version:fraud/1", "relation": "input:model", "to": f"run:{result['run_id']}"} in edges


def test_no_ray_process_is_left(ray_batch: dict[str, Any]) -> None:
    report = ray_batch["report"]
    assert report["ray_stop"] == 0
    assert report["left_running"] == []
    assert report["left_on_host"] == []
