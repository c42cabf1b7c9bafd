"""The example's training step, killed midway with SIGKILL (runner and workers alike) and
resumed: it continues from its last epoch checkpoint and ends with the very bytes of an
uninterrupted run's model."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq

import lockgate as lg
from lockgate.examples.fraud.data import generate, write_daily_parquet

EXAMPLE = Path(lg.__file__).parent / "examples" / "fraud" / "pipeline.py"


def _run(home: Path, *args: str) -> dict[str, str]:
    """Run the pipeline to the end; the step runs by step name."""
    child = subprocess.run(
        [sys.executable, "-m", "lockgate", "--home", str(home), *args, "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert child.returncode == 0, child.stderr
    result = json.loads(child.stdout)
    return {"run_id": result["run_id"], **{s["name"]: s["status"] + " " + s["run_id"] for s in result["steps"]}}


def _output(ws: lg.Workspace, step_run_id: str) -> str:
    return next(a["sha256"] for a in ws.runs.artifacts(step_run_id) if a["path"].startswith("outputs/"))


def test_a_killed_training_run_resumes_from_its_checkpoint_to_the_same_model_bytes(tmp_path: Path) -> None:
    data = generate()
    write_daily_parquet(data.transactions.drop_columns(["is_fraud"]), tmp_path / "data" / "transactions")
    pq.write_table(data.labels, tmp_path / "data" / "labels.parquet")
    params = [
        f"--param=transactions={tmp_path / 'data' / 'transactions'}",
        f"--param=labels={tmp_path / 'data' / 'labels.parquet'}",
    ]

    # Uninterrupted, in a workspace of its own.
    clean = _run(tmp_path / "clean", "pipeline", "run", str(EXAMPLE), *params)
    clean_model = _output(lg.Workspace.open(tmp_path / "clean"), clean["train_model"].split()[1])

    # Killed once the training step has checkpointed its second epoch.
    home = tmp_path / "killed"
    # Its own session, so the kill takes the runner, the fork server and every worker at once.
    child = subprocess.Popen(
        [sys.executable, "-m", "lockgate", "--home", str(home), "pipeline", "run", str(EXAMPLE), *params],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    ws = lg.Workspace.open(home)
    deadline = time.monotonic() + 120
    run_id = None
    while time.monotonic() < deadline:
        found = ws.artifacts.list_named("checkpoints")
        epochs = [n for n in found if "/train_model/" in n and n.endswith(".ckpt")]
        if epochs and int(epochs[-1].rsplit("/", 1)[-1].split("-")[0]) >= 2:
            run_id = epochs[-1].split("/")[1]
            break
        assert child.poll() is None, "the pipeline ended before it could be killed"
        time.sleep(0.05)
    assert run_id is not None, "the training step never checkpointed"
    os.killpg(child.pid, signal.SIGKILL)
    child.wait(timeout=10)

    resumed = _run(home, "pipeline", "run", str(EXAMPLE), *params, "--resume", run_id[:8])
    assert resumed["run_id"] == run_id
    status, train_run_id = resumed["train_model"].split()
    assert status == "SUCCEEDED"
    assert resumed["build_features"].split()[0] == "REUSED"  # finished before the kill

    train_run = ws.runs.get(train_run_id)
    restored = int(train_run.tags["lockgate.restored_checkpoint"])
    assert restored >= 2
    stdout = next(a for a in ws.runs.artifacts(train_run.id) if a["path"] == "logs/stdout.txt")
    log = ws.artifacts.get_bytes(stdout["sha256"]).decode()
    assert f"resuming at epoch {restored}" in log
    assert "epoch 1:" not in log  # the epochs before the checkpoint were not trained again

    assert _output(ws, train_run.id) == clean_model  # the same bytes as the uninterrupted run
