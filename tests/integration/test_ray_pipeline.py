"""Pipelines on a real Ray cluster: ``ray start --head`` in its own process, the CLI as a user
runs it (``--executor ray --ray-address``), PostgreSQL metadata and an S3 artifact store.

Ray binds the machine's non-loopback address even when told 127.0.0.1, except inside a
private network namespace, where loopback is all there is. So everything Ray touches runs in
one: ``unshare`` gives the scenario below a network namespace (only ``lo``) and a PID namespace
of its own. The PID namespace makes cleanup certain and local: ``ray stop`` there sees only
this cluster, never another one on the machine, and when the namespace's first process ends
the kernel ends every process left in it (``--kill-child`` does so if ``unshare`` is killed).

The host's 127.0.0.1 is not reachable from inside, so the scenario brings its own S3 (a moto
server started in the namespace) and reaches PostgreSQL through its Unix socket, which lives
in the filesystem, not the network. The S3 server dies with the namespace; the metadata in
PostgreSQL is what the tests read back afterwards, with lockgate's own API.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import lockgate as lg
from lockgate.pipelines._ray import LARGE_FILE_BYTES
from lockgate.store import PipelineRepository
from tests.integration.ray_namespace import missing, processes_mentioning, require_ray_namespace, run_in_namespace

pytestmark = [pytest.mark.postgres, pytest.mark.s3, pytest.mark.slow]

PROJECT = Path(__file__).parent / "ray_project"
PG_ADMIN_URL = os.environ.get("LOCKGATE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
GCS_PORT = 6379  # a fresh network namespace: every port is free
DRIVER_KEY, WORKER_KEY = "lockgate-driver", "lockgate-worker"


# Runs inside the namespaces, as the namespace's second process (sh, the first, reaps the Ray
# daemons that `ray start` leaves behind). Writes what it saw to a JSON report.
_SCENARIO = r"""
import json, os, signal, subprocess, sys, threading, time, traceback
from pathlib import Path

import boto3
from moto.server import ThreadedMotoServer

cfg = json.loads(Path(sys.argv[1]).read_text())
report = {"runs": {}}
bin_ = Path(sys.executable).parent
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
endpoint = "http://%s:%d" % server.get_host_and_port()
base = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "LOCKGATE_", "RAY_"))}
base.update(
    AWS_DEFAULT_REGION="us-east-1",
    AWS_ENDPOINT_URL=endpoint,
    AWS_EC2_METADATA_DISABLED="true",
    AWS_CONFIG_FILE=os.devnull,
    AWS_SHARED_CREDENTIALS_FILE=os.devnull,
    NO_PROXY="127.0.0.1,localhost",
    RAY_USAGE_STATS_ENABLED="0",
    RAY_TMPDIR=cfg["ray_tmp"],
    # Ray reads a token from ~/.ray and, when one is there, `ray start` turns authentication on
    # (a driver given an address does not): a home of its own keeps the scenario the same anywhere.
    HOME=cfg["home_dir"],
)
# Workers get credentials of their own, from the `ray start` environment: nothing secret
# travels with a task or Ray's runtime environment. moto takes any key.
ray_env = {**base, "AWS_ACCESS_KEY_ID": cfg["worker_key"], "AWS_SECRET_ACCESS_KEY": "worker-secret"}
driver_env = {
    **base,
    "AWS_ACCESS_KEY_ID": cfg["driver_key"],
    "AWS_SECRET_ACCESS_KEY": "driver-secret",
    "LOCKGATE_HOME": cfg["home"],
    "LOCKGATE_DATABASE_URL": cfg["database_url"],
    "LOCKGATE_ARTIFACT_ROOT": "s3://lockgate-ray/artifacts",
    "LOCKGATE_S3_ENDPOINT_URL": endpoint,
    "LOCKGATE_CAPTURE_CODE": "false",
}
s3 = boto3.session.Session(
    aws_access_key_id="admin", aws_secret_access_key="admin", region_name="us-east-1"
).client("s3", endpoint_url=endpoint)
s3.create_bucket(Bucket="lockgate-ray")


def lockgate(*args):  # `lockgate pipeline run fan.py ARGS --json`, started; `finish` waits for it
    command = [str(bin_ / "lockgate"), "pipeline", "run", "fan.py", *args, "--json"]
    child = subprocess.Popen(
        command, env=driver_env, cwd=cfg["project"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    child.started = time.monotonic()
    return child


def finish(child):
    out, err = child.communicate(timeout=90)
    return {"rc": child.returncode, "stdout": out, "stderr": err[-4000:], "seconds": round(time.monotonic() - child.started, 1)}


try:
    # The local executor needs no cluster: its run goes first, alongside `ray start`.
    local = lockgate("--executor", "local", "--no-cache", f"--param=meet={cfg['meet']}/local")
    local_waiter = threading.Thread(target=lambda: report["runs"].__setitem__("local", finish(local)))
    local_waiter.start()
    started = time.monotonic()
    subprocess.run(
        [str(bin_ / "ray"), "start", "--head", f"--port={cfg['port']}", "--num-cpus=2",
         "--node-ip-address=127.0.0.1", "--disable-usage-stats", "--include-dashboard=false"],
        env=ray_env, check=True, capture_output=True, timeout=90,
    )
    report["ray_start_seconds"] = round(time.monotonic() - started, 1)

    pid_file = Path(cfg["pid_file"])
    on_ray = lockgate(
        "--executor", "ray", "--ray-address", f"127.0.0.1:{cfg['port']}", "--no-cache",
        f"--param=meet={cfg['meet']}/ray", f"--param=pid_file={pid_file}",
    )
    deadline = time.monotonic() + 90
    while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < deadline and on_ray.poll() is None:
        time.sleep(0.05)
    if pid_file.exists() and pid_file.read_text():
        report["killed_pid"] = int(pid_file.read_text())
        os.kill(report["killed_pid"], signal.SIGKILL)
    report["runs"]["ray"] = finish(on_ray)
    local_waiter.join()

except BaseException as exc:
    report["error"] = traceback.format_exc() + str(getattr(exc, "stderr", "") or "")[-4000:]
    raise
finally:
    started = time.monotonic()
    stop = subprocess.run([str(bin_ / "ray"), "stop"], env=ray_env, capture_output=True, text=True, timeout=60)
    report["ray_stop"] = {"rc": stop.returncode, "seconds": round(time.monotonic() - started, 1)}
    processes = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout.splitlines()[1:]
    report["left_running"] = [p for p in processes if any(w in p for w in ("raylet", "gcs_server", "ray::", "/ray/"))]
    # The bucket ends with this namespace: a copy, laid out as a local artifact store.
    try:
        objects = s3.get_paginator("list_objects_v2").paginate(Bucket="lockgate-ray")
        for obj in [o for page in objects for o in page.get("Contents", [])]:
            target = Path(cfg["s3_copy"], obj["Key"])
            target.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file("lockgate-ray", obj["Key"], str(target))
    except Exception:
        report.setdefault("error", "copying the bucket failed:\n" + traceback.format_exc())
    server.stop()
    Path(cfg["report"]).write_text(json.dumps(report))
"""


@pytest.fixture(scope="module")
def ray_scenario() -> Iterator[dict[str, Any]]:
    """Run the scenario once for the module: the pipeline on the local executor, and on Ray with
    its last step's worker killed. Yields the scenario's report and a workspace on its metadata."""
    require_ray_namespace()
    with _pg_database() as (tcp_url, socket_url), pytest.MonkeyPatch.context() as env:
        # As tests/conftest.py's per-test isolation, which starts only after this fixture.
        for key in [
            k
            for k in os.environ
            if k.startswith("LOCKGATE_") and k not in ("LOCKGATE_REQUIRE_SERVICES", "LOCKGATE_TEST_PG")
        ]:
            env.delenv(key)
        tmp = Path(tempfile.mkdtemp(prefix="lgray-"))  # short: Ray's socket paths live below it
        try:
            project = tmp / "project"
            shutil.copytree(PROJECT, project, ignore=shutil.ignore_patterns("conftest.py", "__pycache__"))
            # What a real project has next to its code, and what must not be shipped to workers.
            (project / "data").mkdir()
            (project / "data" / "big.csv").write_text("x\n" + "1\n" * 1000)
            (project / ".env").write_text("API_TOKEN=not-for-workers\n")
            with (project / "weights.bin").open("wb") as big:
                big.truncate(LARGE_FILE_BYTES)  # sparse: large on paper, nothing to write
            home = project / ".lockgate"
            lg.Workspace.open(home, database_url=tcp_url, upgrade=True).close()  # lockgate db upgrade
            cfg = {
                "project": str(project),
                "home": str(home),
                "database_url": socket_url,
                "port": GCS_PORT,
                "ray_tmp": str(tmp / "r"),
                "pid_file": str(tmp / "endure.pid"),
                "meet": str(tmp / "meet"),
                "home_dir": str(tmp / "home"),
                "s3_copy": str(tmp / "s3"),
                "report": str(tmp / "report.json"),
                "driver_key": DRIVER_KEY,
                "worker_key": WORKER_KEY,
            }
            for folder in ("r", "home", "meet/ray", "meet/local"):
                (tmp / folder).mkdir(parents=True)
            (tmp / "cfg.json").write_text(json.dumps(cfg))
            (tmp / "scenario.py").write_text(textwrap.dedent(_SCENARIO))
            started = time.monotonic()
            returncode, output = run_in_namespace(tmp / "scenario.py", str(tmp / "cfg.json"), timeout=150)
            if not Path(cfg["report"]).exists():
                pytest.fail(f"the Ray scenario failed (exit {returncode}):\n{output[-4000:]}")
            report = json.loads(Path(cfg["report"]).read_text())
            if "error" in report:
                pytest.fail(f"the Ray scenario failed:\n{report['error']}")
            report["seconds"] = round(time.monotonic() - started, 1)
            report["output"] = output
            report["left_on_host"] = processes_mentioning(str(tmp))
            # Shown when a test fails: where the time went.
            print(
                f"Ray scenario: {report['seconds']} s in all; ray start {report.get('ray_start_seconds')} s, "
                + ", ".join(f"{name} run {run['seconds']} s" for name, run in report["runs"].items())
                + f", ray stop {report['ray_stop']['seconds']} s"
            )
            # The run's metadata, and its artifacts as they were in S3.
            with lg.Workspace.open(home, database_url=tcp_url, artifact_root=str(tmp / "s3" / "artifacts")) as ws:
                yield {"report": report, "ws": ws}
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def _pg_database() -> Iterator[tuple[str, str]]:
    """A fresh PostgreSQL database for the module (tests/conftest.py's ``pg_url`` is per test),
    as a TCP URL for this process and a Unix-socket URL for the namespace; dropped afterwards."""
    try:
        import psycopg
    except ImportError:
        missing("PostgreSQL", "psycopg is not installed")
    name = f"lockgate_test_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        missing("PostgreSQL at 127.0.0.1:5432", str(exc).strip().splitlines()[0])
    with admin:
        row = admin.execute("SHOW unix_socket_directories").fetchone()
        sockets = [d.strip() for d in str(row[0] if row else "").split(",") if d.strip()]
        if not sockets or not Path(sockets[0]).is_dir():
            missing("PostgreSQL's Unix socket", "unix_socket_directories names no folder here")
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}", f"postgresql://postgres@/{name}?host={sockets[0]}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _cli(report: dict[str, Any], name: str) -> dict[str, Any]:
    run = report["runs"].get(name)
    assert run is not None, f"the {name} run did not finish:\n{report['output'][-4000:]}"
    assert run["rc"] == 0, f"lockgate pipeline run ({name}) failed:\n{run['stderr']}"
    result: dict[str, Any] = json.loads(run["stdout"])
    return result


def _steps(ws: lg.Workspace, run_id: str) -> dict[str, dict[str, Any]]:
    with ws.db.read() as conn:
        return {s["node"]: s for s in PipelineRepository().steps(conn, run_id)}


def _where(ws: lg.Workspace, step_run_id: str) -> dict[str, Any]:
    """What a step printed about itself (see ray_project/helpers.py), from its kept stdout."""
    log = next(a for a in ws.runs.artifacts(step_run_id) if a["path"] == "logs/stdout.txt")
    where: dict[str, Any] = json.loads(ws.artifacts.get_bytes(log["sha256"]).decode().splitlines()[0])
    return where


def test_every_step_runs_in_a_ray_worker_from_the_shipped_project(ray_scenario: dict[str, Any]) -> None:
    report, ws = ray_scenario["report"], ray_scenario["ws"]
    result = _cli(report, "ray")
    pipeline_run = ws.runs.get(result["run_id"])
    assert pipeline_run.status is lg.RunStatus.FINISHED
    assert pipeline_run.tags["lockgate.executor"] == "ray"
    assert [s["name"] for s in result["steps"]] == ["left", "right", "join", "endure"]
    project = Path(ws.settings.home).parent
    for step in result["steps"]:
        assert step["status"] == "SUCCEEDED"
        worker = ws.runs.get(step["run_id"]).tags["lockgate.worker"]
        assert "ray-node=" in worker, worker
        assert "ray-worker=" in worker, worker
        assert worker.split()[0] != f"{pipeline_run.host}:{pipeline_run.pid}", "ran in the driver"
        where = _where(ws, step["run_id"])
        # From the copy Ray unpacked, with the project's own module and nothing excluded.
        assert not Path(where["file"]).is_relative_to(project), where
        assert "helpers.py" in where["files"]
        assert ".lockgate" not in where["files"]
        assert "data" not in where["files"]
        assert ".env" not in where["files"]
        assert "weights.bin" not in where["files"]
        # S3 with the worker's own credentials: none travelled from the driver.
        assert where["aws_key"] == WORKER_KEY


def test_independent_steps_overlap_on_ray(ray_scenario: dict[str, Any]) -> None:
    report, ws = ray_scenario["report"], ray_scenario["ws"]
    steps = _steps(ws, _cli(report, "ray")["run_id"])
    left, right = steps["left"], steps["right"]
    # Start and end as the workers measured them.
    assert max(left["started_at"], right["started_at"]) < min(left["ended_at"], right["ended_at"]), (left, right)
    assert steps["join"]["started_at"] >= max(left["ended_at"], right["ended_at"])


def test_the_same_pipeline_gives_the_same_artifacts_on_both_executors(ray_scenario: dict[str, Any]) -> None:
    report, ws = ray_scenario["report"], ray_scenario["ws"]
    on_ray, local = _steps(ws, _cli(report, "ray")["run_id"]), _steps(ws, _cli(report, "local")["run_id"])
    assert set(on_ray) == set(local) == {"left", "right", "join", "endure"}
    for node, record in on_ray.items():
        assert record["outputs"], node
        assert record["outputs"] == local[node]["outputs"], node  # content hash, and the very bytes
        worker = ws.runs.get(local[node]["step_run_id"]).tags["lockgate.worker"]
        assert "ray-worker=" not in worker
        assert _where(ws, local[node]["step_run_id"])["aws_key"] == DRIVER_KEY


def test_a_step_whose_ray_worker_is_killed_runs_again_from_its_checkpoint(ray_scenario: dict[str, Any]) -> None:
    report, ws = ray_scenario["report"], ray_scenario["ws"]
    assert "killed_pid" in report, "endure never wrote its pid"
    endure = next(s for s in _cli(report, "ray")["steps"] if s["name"] == "endure")
    step_run = ws.runs.get(endure["run_id"])
    assert step_run.tags["lockgate.attempts"] == "2"
    assert step_run.tags["lockgate.restored_checkpoint"] == "1"
    assert "lost" in step_run.tags["lockgate.attempt.1.error"]
    worker = step_run.tags["lockgate.worker"]
    assert "ray-worker=" in worker
    assert worker.split()[0].rsplit(":", 1)[1] != str(report["killed_pid"])  # another worker finished it
    # The checkpoint it resumed from: written to S3 by the killed worker, with its own credentials.
    assert ws.artifacts.list_named(f"checkpoints/{_cli(report, 'ray')['run_id']}/endure")


def test_no_ray_process_is_left(ray_scenario: dict[str, Any]) -> None:
    report = ray_scenario["report"]
    assert report["ray_stop"]["rc"] == 0
    assert report["left_running"] == []  # as `ray stop` left the namespace
    assert report["left_on_host"] == []  # and nothing of the cluster outlived it
