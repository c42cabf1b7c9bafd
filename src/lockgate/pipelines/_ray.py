"""Steps on a Ray cluster: ``lockgate pipeline run FILE --executor ray --ray-address ADDRESS``.

The runner stays in this process (the Ray *driver*) and does all the recording; a Ray worker
only runs :func:`~lockgate.pipelines._executors.run_task` on a :class:`Task` and sends back the
encoded output, exactly like a local worker process. So the metadata database is touched by
the driver alone; workers need only what a step itself touches: the project's code (shipped,
see below), its Python packages (installed on every node, lockgate[ray] included) and, for
checkpoints, the artifact store named in the task (S3 on a real cluster). Workers read S3 with
their *own* credentials (their environment, instance profile or IAM role): nothing secret is
put into the task or the Ray runtime environment, which Ray stores in its control plane.

Addresses, as Ray takes them: ``HOST:PORT`` is the head's GCS port (``ray start --head
--port``) and needs this process to run on a node of the cluster; ``ray://HOST:10001`` is Ray
Client, for a driver elsewhere. Without an address Ray's own rules apply: ``RAY_ADDRESS``, else
the cluster ``ray start`` last started on this machine, else a local Ray started in this
process for the duration of the run (handy on a laptop; it uses every CPU).

Shipping the code: the project folder (the common folder of the steps' files, normally the
pipeline file's folder) goes to the workers as Ray's ``working_dir``, uploaded once per run
and cached by content on the cluster. Left out: workspaces, ``data/``, virtualenvs, VCS
folders, caches, databases, keys and ``.env`` files (:data:`PROJECT_EXCLUDES`), files of 10 MiB
or more, and whatever ``.gitignore`` / ``.rayignore`` exclude. A worker loads each step from
that copy, so every node runs the code this driver traced and hashed.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import logging
import os
import re
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import CancelledError, Future, InvalidStateError
from dataclasses import replace
from pathlib import Path
from typing import Any

from lockgate.errors import InvalidInputError, UnavailableError
from lockgate.pipelines._dsl import Step
from lockgate.pipelines._executors import StepRef, Task, TaskResult, run_task

__all__ = ["LARGE_FILE_BYTES", "PROJECT_EXCLUDES", "RayExecutor", "project_root_of"]

# gitignore-style patterns (Ray's ``excludes``): never code, often large, sometimes secret (a
# workspace's audit key, a .env file).
PROJECT_EXCLUDES = [
    ".lockgate/",
    "data/",
    ".venv/",
    "venv/",
    ".git/",
    "__pycache__/",
    "*.pyc",
    ".mypy_cache/",
    ".ruff_cache/",
    ".pytest_cache/",
    ".ipynb_checkpoints/",
    "node_modules/",
    "*.db",
    "*.db-wal",
    "*.db-shm",
    "keys/",
    "*.key",
    "*.pem",
    ".env",
    ".env.*",
]
# Files this large are data or models, which belong in the artifact store or S3 (DataRef),
# not in every worker's copy of the code.
LARGE_FILE_BYTES = 10 * 1024 * 1024

_PROBE_TIMEOUT_S = 3.0
# An HTTP/2 client preface plus an empty SETTINGS frame: any gRPC server (Ray's GCS and Ray
# Client both are) answers with a SETTINGS frame of its own.
_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
_H2_SETTINGS = 0x04


class RayExecutor:
    """Each step attempt is one Ray task (one CPU by default) on the cluster at ``address``.

    ``project_root`` is the folder shipped to the workers; by default the common folder of
    ``steps``' files. A worker that dies (SIGKILL, out of memory, a lost node) or a task
    ended by :meth:`abort` fails its future with Ray's error, which :meth:`recover` accepts:
    the runner then runs the step again from its latest checkpoint. Ray's own task retries
    are off, so every attempt is the runner's to count and record.
    """

    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        *,
        project_root: Path | None = None,
        steps: list[Step[..., Any]] | None = None,
        num_cpus: float = 1,
    ) -> None:
        try:
            import ray
        except ImportError:
            raise UnavailableError("the ray executor needs Ray; install lockgate[ray]") from None
        for s in steps or []:
            _step_ref(s)  # a step workers cannot load is refused before connecting
        self._ray: Any = ray
        self.address = address
        self.num_cpus = num_cpus
        self.project_root = project_root or (project_root_of(steps) if steps else None)
        self._refs: dict[Future[TaskResult], Any] = {}
        self._lock = threading.Lock()
        self._owned = False
        self._restore_notices: Callable[[], None] = lambda: None
        # Ray's own retries are off: every attempt is the runner's to count, record and
        # resume from its checkpoint.
        self._remote = ray.remote(max_retries=0)(_run_on_worker)
        if ray.is_initialized():
            # The caller connected already (a notebook, a Ray job): their connection and
            # runtime environment are theirs; steps load from the same paths as here.
            self._shipped = False
            return
        _check_reachable(address)
        runtime_env: dict[str, Any] | None = None
        if self.project_root is not None:
            runtime_env = {"working_dir": str(self.project_root), "excludes": _excludes(self.project_root)}
        self._shipped = runtime_env is not None
        with _own_sigterm():
            try:
                ray.init(
                    address=address,
                    runtime_env=runtime_env,
                    namespace="lockgate",
                    logging_level=logging.WARNING,
                    # A step's own output is captured with its run; streaming worker logs
                    # to this process would only mix into the CLI's output.
                    log_to_driver=False,
                )
            except Exception as exc:  # noqa: BLE001 -- Ray raises many kinds; the user gets one sentence
                with contextlib.suppress(Exception):
                    ray.shutdown()  # whatever ray.init had set up before it failed
                where = address or "the default address"
                if _mentions(exc, "InvalidAuthToken", "Unauthenticated"):
                    raise UnavailableError(
                        f"the Ray cluster at {where} requires an authentication token; give this process "
                        "RAY_AUTH_MODE=token and the cluster's token (RAY_AUTH_TOKEN or ~/.ray/auth_token)"
                    ) from None
                raise UnavailableError(
                    f"cannot start the run on the Ray cluster at {where} "
                    f"({type(exc).__name__}: {_first_line(exc)}); check it with: ray status"
                ) from None
        self._owned = True
        self._restore_notices = _notices_to_stderr()

    # -- the Executor protocol ---------------------------------------------------------------

    def submit(self, task: Task) -> Future[TaskResult]:
        task, shipped_file = self._portable(task)
        ref = self._remote.options(**self.options_for(task)).remote(task, shipped_file)
        future: Future[TaskResult] = Future()
        with self._lock:
            self._refs[future] = ref
        name = task.name

        def settle(done: Future[TaskResult]) -> None:
            # Runs in a Ray thread: whatever happens, the runner's future must complete.
            with self._lock:
                self._refs.pop(future, None)
            try:
                exc = done.exception()
            except BaseException as cancelled:  # noqa: BLE001 -- a CancelledError is an answer too
                exc = cancelled
            with contextlib.suppress(InvalidStateError):  # the runner cancelled it meanwhile
                if exc is None:
                    future.set_result(done.result())
                elif self._is_lost(exc):
                    future.set_exception(exc)
                else:
                    future.set_exception(_not_run(name, exc))

        def cancelled(mine: Future[TaskResult]) -> None:
            if mine.cancelled():  # the runner was interrupted: the cluster stops the step too
                self.abort(mine)
                with self._lock:
                    self._refs.pop(mine, None)

        future.add_done_callback(cancelled)
        ref.future().add_done_callback(settle)
        return future

    def options_for(self, task: Task) -> dict[str, Any]:
        """Ray options for one task: where per-step resources (GPUs, memory, custom Ray
        resources) will come from once steps can declare them."""
        return {"num_cpus": self.num_cpus}

    def recover(self, exc: BaseException) -> bool:
        # Ray reschedules by itself: a lost worker or node leaves nothing to rebuild here.
        return self._is_lost(exc)

    def abort(self, future: Future[TaskResult]) -> None:
        with self._lock:
            ref = self._refs.get(future)
        if ref is not None:
            with contextlib.suppress(Exception):
                self._ray.cancel(ref, force=True)

    def shutdown(self) -> None:
        with self._lock:
            pending = list(self._refs.values())
            self._refs.clear()
        for ref in pending:
            with contextlib.suppress(Exception):
                self._ray.cancel(ref, force=True)
        if self._owned:
            self._owned = False
            with _own_sigterm():
                self._ray.shutdown()
            self._restore_notices()

    # -- pieces ------------------------------------------------------------------------------

    def _is_lost(self, exc: BaseException) -> bool:
        errors = self._ray.exceptions
        lost = (
            errors.WorkerCrashedError,
            errors.NodeDiedError,
            errors.LocalRayletDiedError,
            errors.OutOfMemoryError,
            errors.TaskCancelledError,
            errors.ObjectLostError,
            CancelledError,
        )
        return isinstance(exc, lost)

    def _portable(self, task: Task) -> tuple[Task, str | None]:
        """The task with a StepRef a worker can load, and the step file's path inside the
        shipped project folder (None when it lies outside it, or nothing is shipped)."""
        ref = _step_ref(task.step) if isinstance(task.step, Step) else task.step
        task = replace(task, step=ref)
        if not self._shipped or ref.file is None or self.project_root is None:
            return task, None
        try:
            return task, Path(ref.file).relative_to(self.project_root).as_posix()
        except ValueError:
            return task, None


def _step_ref(step_: Step[..., Any]) -> StepRef:
    if step_.fn.__module__ == "__main__":
        raise InvalidInputError(
            f"step '{step_.name}' is defined in the script being run, which Ray workers cannot import; "
            "move the steps to a module, or use executor='inline'"
        )
    return StepRef.of(step_)


def _run_on_worker(task: Task, shipped_file: str | None) -> TaskResult:
    """In a Ray worker: load the step from the shipped project copy (Ray starts the worker in
    it), else from the driver's path (one machine, a shared filesystem), else by module name
    (an installed package)."""
    ref = task.step
    if isinstance(ref, StepRef) and ref.file is not None:
        shipped = Path.cwd() / shipped_file if shipped_file else None
        if shipped is not None and shipped.is_file():
            task = replace(task, step=StepRef(ref.module, str(shipped), ref.name))
        elif not Path(ref.file).is_file() and _importable(ref.module):
            task = replace(task, step=StepRef(ref.module, None, ref.name))
        # else: loading fails naming the missing file, which says what to fix
    return run_task(task)


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _excludes(root: Path) -> list[str]:
    """``PROJECT_EXCLUDES`` plus every file under ``root`` of ``LARGE_FILE_BYTES`` or more."""
    skipped = {p.rstrip("/") for p in PROJECT_EXCLUDES if p.endswith("/")}
    large: list[str] = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in skipped]
        for name in files:
            path = Path(folder, name)
            with contextlib.suppress(OSError):
                if path.stat().st_size >= LARGE_FILE_BYTES:
                    # Anchored at the root, with gitignore's special characters escaped.
                    large.append("/" + re.sub(r"([\\\[\]*?!#])", r"\\\1", path.relative_to(root).as_posix()))
    return [*PROJECT_EXCLUDES, *large]


def project_root_of(steps: list[Step[..., Any]]) -> Path | None:
    """The folder to ship: the common folder of the steps' files outside installed packages."""
    prefixes = {Path(p).resolve() for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    folders: set[Path] = set()
    for s in steps:
        file = s.module_file
        if file is None or s.fn.__module__ == "__main__":
            continue
        if any(file.is_relative_to(p) for p in prefixes) or "site-packages" in file.parts:
            continue
        folders.add(file.parent)
    if not folders:
        return None
    root = Path(os.path.commonpath([str(f) for f in folders]))
    home = Path.home().resolve()
    if root == Path(root.anchor) or home.is_relative_to(root):
        raise InvalidInputError(
            f"Ray workers would get all of {root}, the folder holding the steps' files "
            f"({', '.join(sorted(map(str, folders)))}), which is too much to ship; move the pipeline and its "
            "modules into a project folder of their own"
        )
    return root


def _check_reachable(address: str | None) -> None:
    """Fail in seconds, with one sentence, where ``ray.init`` would wait minutes: nothing
    listening, something that is not a Ray cluster, a GCS address used off the cluster, or a
    loopback address that Ray swaps for this machine's own address, where nothing listens."""
    services: Any = importlib.import_module("ray._private.services")  # private: every use is guarded

    if address is None:
        try:
            found = services.canonicalize_bootstrap_address(None)
        except Exception:  # noqa: BLE001 -- Ray's own lookup; ray.init reports what is wrong
            return
        if found is not None:
            _probe(found, shown=f"{found} (the default Ray cluster; set RAY_ADDRESS or pass --ray-address)")
        return
    scheme, sep, rest = address.partition("://")
    if sep and scheme != "ray":
        raise InvalidInputError(f"Ray address {address!r} must be HOST:PORT or ray://HOST:PORT")
    target = rest if sep else address
    host, port = _host_port(target, address)
    _probe(f"{host}:{port}", shown=address)
    if sep:
        return
    try:
        local_nodes = services.find_node_ids()
    except Exception:  # noqa: BLE001 -- as above
        local_nodes = None
    if local_nodes == []:
        # A driver joins through its own machine's raylet; without one ray.init waits a minute.
        raise UnavailableError(
            f"{address} is a Ray head's GCS address, which only a node of that cluster can use, and no Ray "
            "node runs on this machine; run lockgate on a node, or use ray://HOST:10001 (Ray Client)"
        )
    try:
        dialled = services.canonicalize_bootstrap_address(target)
    except Exception:  # noqa: BLE001 -- as above
        return
    if dialled and dialled != f"{host}:{port}":
        try:
            _probe(dialled, shown=dialled)
        except UnavailableError:
            raise UnavailableError(
                f"Ray connects to {address} as {dialled} (it replaces a loopback address with this machine's "
                "own) and nothing answers there; start the head with --node-ip-address set to an address "
                "this machine can reach, and pass that address"
            ) from None


def _host_port(target: str, address: str) -> tuple[str, int]:
    host, _, port = target.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit():
        raise InvalidInputError(
            f"Ray address {address!r} must be HOST:PORT (the head's GCS port) or ray://HOST:PORT (Ray Client)"
        )
    return host, int(port)


def _probe(address: str, *, shown: str) -> None:
    host, port = _host_port(address, address)
    try:
        sock = socket.create_connection((host, port), timeout=_PROBE_TIMEOUT_S)
    except OSError as exc:
        raise UnavailableError(
            f"cannot reach the Ray cluster at {shown} ({_first_line(exc) or type(exc).__name__}); "
            "start one with `ray start --head` or fix --ray-address"
        ) from None
    head = b""
    with sock, contextlib.suppress(OSError):  # silence, a reset or a timeout: no gRPC there
        # Ray's own TLS setting, read as Ray reads it: a TLS port does not answer cleartext.
        if os.environ.get("RAY_USE_TLS", "0").lower() in ("1", "true"):
            return
        sock.sendall(_H2_PREFACE)
        while len(head) < 9:
            chunk = sock.recv(9 - len(head))
            if not chunk:
                break
            head += chunk
    if len(head) < 9 or head[3] != _H2_SETTINGS:
        raise UnavailableError(
            f"{shown} answers, but not as a Ray cluster; give the head's GCS port (ray start --port, 6379 "
            "by default) or ray://HOST:10001 for Ray Client"
        )


def _not_run(name: str, exc: BaseException) -> UnavailableError:
    """Ray could not run the task at all (a worker that cannot set up the project folder or
    import lockgate, an argument it cannot unpickle): the cluster's setup, not the step."""
    error = UnavailableError(
        f"Ray could not run step '{name}' ({type(exc).__name__}: {_first_line(exc)}); check that every node "
        "has lockgate[ray] and the project's packages installed"
    )
    error.__cause__ = exc
    return error


def _mentions(exc: BaseException, *words: str) -> bool:
    """Whether ``exc`` or an exception it was raised from says any of ``words``."""
    seen: BaseException | None = exc
    while seen is not None:
        if any(word in str(seen) for word in words):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return lines[0] if lines else ""


def _notices_to_stderr() -> Callable[[], None]:
    """Send the notices Ray prints in this process ("a worker died…") to stderr, and return
    how to undo it. Ray prints them to stdout, where they would break ``--json`` output, and
    lockgate records what they say on the step's run anyway. Ray has no setting for this, so
    its module function is wrapped; if Ray moves it, nothing is wrapped and nothing breaks."""
    module = sys.modules.get("ray._private.worker")
    original = getattr(module, "print_to_stdstream", None)
    if module is None or not callable(original):
        return lambda: None

    def to_stderr(data: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        return original({**data, "is_err": True}, *args, **kwargs)

    module.print_to_stdstream = to_stderr  # type: ignore[attr-defined]
    return lambda: setattr(module, "print_to_stdstream", original)


@contextlib.contextmanager
def _own_sigterm() -> Iterator[None]:
    """Keep this process's SIGTERM handler: ``ray.init`` replaces it with ``sys.exit``, which
    would take SIGTERM away from the runner and the scheduler that rely on it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
