"""The Ray executor without a cluster: clear, quick errors, and what counts as a lost worker.

The runs on a real cluster are in tests/integration/test_ray_pipeline.py.
"""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import lockgate as lg
from lockgate.cli import main
from lockgate.errors import InvalidInputError, UnavailableError
from lockgate.pipelines import load_pipeline, step
from lockgate.pipelines._executors import StepRef, Task, make_executor
from lockgate.pipelines._values import decode

ray = pytest.importorskip("ray", reason="the ray executor needs lockgate[ray]")

from lockgate.pipelines._ray import (  # noqa: E402
    LARGE_FILE_BYTES,
    PROJECT_EXCLUDES,
    RayExecutor,
    _excludes,
    _run_on_worker,
    project_root_of,
)


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A loopback port that accepts connections and never says a word (not a Ray cluster)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock.getsockname()[1]


def test_an_unreachable_address_is_one_sentence_in_seconds(closed_port: int) -> None:
    started = time.monotonic()
    with pytest.raises(UnavailableError, match=rf"cannot reach the Ray cluster at 127\.0\.0\.1:{closed_port} \("):
        make_executor("ray", ray_address=f"127.0.0.1:{closed_port}")
    assert time.monotonic() - started < 5
    assert not ray.is_initialized()


def test_an_address_that_is_not_a_ray_cluster_is_refused_in_seconds(silent_port: int) -> None:
    started = time.monotonic()
    with pytest.raises(UnavailableError, match="answers, but not as a Ray cluster"):
        RayExecutor(f"ray://127.0.0.1:{silent_port}")
    assert time.monotonic() - started < 8
    assert not ray.is_initialized()


@pytest.mark.parametrize("address", ["http://127.0.0.1:6379", "127.0.0.1", "head:port"])
def test_a_malformed_address_is_bad_input(address: str) -> None:
    with pytest.raises(InvalidInputError, match="must be HOST:PORT"):
        RayExecutor(address)


def test_without_ray_installed_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` meets when it is not installed
    with pytest.raises(UnavailableError, match=r"install lockgate\[ray\]"):
        make_executor("ray", ray_address="127.0.0.1:6379")


def test_ray_address_needs_the_ray_executor_and_a_dead_cluster_exits_3(
    tmp_path: Path, closed_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    project = tmp_path / "p"
    project.mkdir()
    (project / "flow.py").write_text(
        "from lockgate.pipelines import pipeline, step\n"
        "@step\ndef make(n: int) -> list[int]:\n    return list(range(n))\n"
        "@pipeline\ndef flow(n: int = 3):\n    return make(n)\n"
    )
    home, address = str(tmp_path / "ws"), f"127.0.0.1:{closed_port}"
    assert main(["--home", home, "pipeline", "run", str(project / "flow.py"), "--ray-address", address]) == 2
    assert "--ray-address needs --executor ray, not --executor local" in capsys.readouterr().err
    run = ["--home", home, "pipeline", "run", str(project / "flow.py"), "--executor", "ray", "--ray-address", address]
    assert main(run) == 3
    err = capsys.readouterr().err
    assert f"cannot reach the Ray cluster at {address}" in err
    assert "Traceback" not in err
    assert lg.Workspace.open(home).runs.list() == []  # refused before anything was recorded


class _Connected:
    """``ray`` as seen by an executor whose caller connected already (a notebook, a Ray job)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.shutdowns = 0
        self.cancelled: list[Any] = []
        monkeypatch.setattr(ray, "is_initialized", lambda: True)
        monkeypatch.setattr(ray, "shutdown", self._shutdown)
        monkeypatch.setattr(ray, "cancel", lambda ref, **kw: self.cancelled.append((ref, kw)))

    def _shutdown(self) -> None:
        self.shutdowns += 1


def test_lost_workers_are_recovered_and_other_errors_are_not(monkeypatch: pytest.MonkeyPatch) -> None:
    _Connected(monkeypatch)
    executor = RayExecutor("127.0.0.1:6379")
    errors = ray.exceptions
    assert executor.recover(errors.WorkerCrashedError())
    assert executor.recover(errors.NodeDiedError("node gone"))
    assert executor.recover(errors.TaskCancelledError())
    assert executor.recover(errors.OutOfMemoryError("evicted"))
    assert not executor.recover(errors.RuntimeEnvSetupError("no such package"))
    assert not executor.recover(ValueError("a bug"))


def test_a_connection_the_caller_made_is_theirs_to_close(monkeypatch: pytest.MonkeyPatch) -> None:
    ray_ = _Connected(monkeypatch)
    RayExecutor("127.0.0.1:6379").shutdown()
    assert ray_.shutdowns == 0


def test_the_project_folder_shipped_is_the_steps_folder(project: Path) -> None:
    flow = load_pipeline(str(project / "flow.py"))
    assert project_root_of(flow.steps()) == project.resolve()


def test_a_step_in_the_script_being_run_is_refused(closed_port: int, monkeypatch: pytest.MonkeyPatch) -> None:
    def main_step(n: int) -> int:
        return n

    main_step.__module__ = "__main__"
    in_main = step(main_step)
    # Before connecting (the address is dead: reaching it would be another error)…
    with pytest.raises(InvalidInputError, match="Ray workers cannot import"):
        RayExecutor(f"127.0.0.1:{closed_port}", steps=[in_main])
    # …and when a task comes without the pipeline's steps up front.
    _Connected(monkeypatch)
    with pytest.raises(InvalidInputError, match="Ray workers cannot import"):
        RayExecutor("127.0.0.1:6379").submit(Task(in_main, {"n": 1}))


class _FakeRemote:
    """``ray.remote(...)`` that hands out refs whose futures the test settles."""

    def __init__(self) -> None:
        self.calls: list[tuple[dict[str, Any], tuple[Any, ...]]] = []
        self.futures: list[Future[Any]] = []
        self._options: dict[str, Any] = {}

    def options(self, **options: Any) -> _FakeRemote:
        self._options = options
        return self

    def remote(self, *args: Any) -> Any:
        self.calls.append((self._options, args))
        future: Future[Any] = Future()
        self.futures.append(future)
        return SimpleNamespace(future=lambda: future)


def _task(project: Path) -> Task:
    flow = load_pipeline(str(project / "flow.py"))
    return Task(next(s for s in flow.steps() if s.name == "features"), {"data": None})


def test_a_task_is_shipped_as_a_step_reference_and_its_outcome_comes_back(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ray_ = _Connected(monkeypatch)
    executor = RayExecutor("127.0.0.1:6379", project_root=project.resolve())
    remote = executor._remote = _FakeRemote()  # type: ignore[assignment]

    done = executor.submit(_task(project))
    options, (task, shipped) = remote.calls[0]
    assert options == {"num_cpus": 1}
    assert isinstance(task.step, StepRef)
    assert task.step.name == "features"
    assert shipped is None  # a connection the caller made: no copy was shipped, the path stands
    executor._shipped = True  # as after connecting with the project as working_dir
    executor.submit(_task(project)).cancel()
    assert remote.calls[-1][1][1] == "flow.py"  # where the worker finds it in its copy
    executor._shipped = False
    result = object()
    remote.futures[0].set_result(result)

    assert done.result(timeout=5) is result

    lost = executor.submit(_task(project))
    remote.futures[-1].set_exception(ray.exceptions.WorkerCrashedError())
    assert executor.recover(lost.exception(timeout=5))  # type: ignore[arg-type]

    broken = executor.submit(_task(project))
    remote.futures[-1].set_exception(ray.exceptions.RuntimeEnvSetupError("pip failed"))
    error = broken.exception(timeout=5)
    assert isinstance(error, UnavailableError)
    assert "Ray could not run step 'features' (RuntimeEnvSetupError" in str(error)
    assert not executor.recover(error)

    # An overdue step is cancelled on the cluster; so is one whose runner was interrupted.
    overdue = executor.submit(_task(project))
    executor.abort(overdue)
    interrupted = executor.submit(_task(project))
    interrupted.cancel()
    assert [kw for _, kw in ray_.cancelled] == [{"force": True}] * 3
    # What is still running when the executor shuts down is cancelled too.
    executor.submit(_task(project))
    executor.shutdown()
    assert len(ray_.cancelled) == 5
    assert ray_.shutdowns == 0


def test_large_files_are_not_shipped(tmp_path: Path) -> None:
    (tmp_path / "model [v1].bin").write_bytes(b"")
    with (tmp_path / "model [v1].bin").open("r+b") as big:
        big.truncate(LARGE_FILE_BYTES)  # sparse: large on paper only
    (tmp_path / "small.py").write_text("x = 1\n")
    excludes = _excludes(tmp_path)
    assert excludes[: len(PROJECT_EXCLUDES)] == PROJECT_EXCLUDES
    assert excludes[len(PROJECT_EXCLUDES) :] == ["/model \\[v1\\].bin"]


def test_a_worker_loads_the_step_from_the_shipped_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    copy = tmp_path / "working_dir"  # where Ray starts a worker: its unpacked copy of the project
    copy.mkdir()
    (copy / "steps.py").write_text(
        "from lockgate.pipelines import step\n@step\ndef double(x: int) -> int:\n    return 2 * x\n"
    )
    monkeypatch.chdir(copy)
    monkeypatch.delitem(sys.modules, "lg_ray_shipped_steps", raising=False)
    gone = StepRef("lg_ray_shipped_steps", str(tmp_path / "driver" / "steps.py"), "double")  # the driver's path
    try:
        result = _run_on_worker(Task(gone, {"x": 21}), "steps.py")
    finally:
        sys.modules.pop("lg_ray_shipped_steps", None)
        sys.path[:] = [p for p in sys.path if p != str(copy)]
    assert result.error is None, result.error
    assert result.value is not None
    assert decode(result.value.kind, result.value.data) == 42


@pytest.fixture
def grpc_port() -> Iterator[int]:
    """A loopback port that greets like a gRPC server (an HTTP/2 SETTINGS frame) and no more."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)

    def greet() -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = server.accept()
                with conn:
                    conn.sendall(b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")

    threading.Thread(target=greet, daemon=True).start()
    try:
        yield server.getsockname()[1]
    finally:
        server.close()


def test_a_gcs_address_off_the_cluster_says_to_use_ray_client(grpc_port: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("ray._private.services.find_node_ids", list)  # no Ray node on this machine
    started = time.monotonic()
    with pytest.raises(UnavailableError, match=r"no Ray node runs on this machine; .* ray://HOST:10001"):
        RayExecutor(f"127.0.0.1:{grpc_port}")
    assert time.monotonic() - started < 5
    assert not ray.is_initialized()
