"""Where steps execute: in this process (``inline``), in a pool of worker processes
(``local``, the default) or on a Ray cluster (``ray``), with independent steps side by side.

A worker receives a :class:`Task` (the step, its input values, where its checkpoints go and
its timeout) and sends back the encoded output, its stdout and stderr, and where and when it
ran. It never records anything about the step: all recording happens in the runner's process,
in one place (a step that asks for ``ctx.features`` does reach the workspace's stores, through
the feature store, which records the training sets it builds). A worker that dies (SIGKILL,
out of memory, a lost node) shows up as an exception the executor ``recover``s from; the
runner then runs the step again from its latest checkpoint.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import io
import multiprocessing
import os
import socket
import sys
import time
import traceback
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from lockgate.errors import InvalidInputError
from lockgate.pipelines._context import ContextSpec, Preempted, StepContext, step_signals
from lockgate.pipelines._dsl import Step
from lockgate.pipelines._values import StoredValue, encode

__all__ = [
    "EXECUTORS",
    "Executor",
    "InlineExecutor",
    "LocalExecutor",
    "StepRef",
    "Task",
    "TaskResult",
    "make_executor",
    "run_task",
]


@dataclass(frozen=True, slots=True)
class StepRef:
    """How a worker finds a step: its module (loaded from its file when not importable) and name."""

    module: str
    file: str | None
    name: str

    @classmethod
    def of(cls, step_: Step[..., Any]) -> StepRef:
        file = step_.module_file
        return cls(step_.fn.__module__, str(file) if file else None, step_.fn.__name__)

    def load(self) -> Step[..., Any]:
        module = sys.modules.get(self.module)
        if module is None:
            if self.file is None:
                module = importlib.import_module(self.module)
            else:
                folder = str(Path(self.file).parent)
                if folder not in sys.path:
                    sys.path.insert(0, folder)  # the project's own modules import next to it
                spec = importlib.util.spec_from_file_location(self.module, self.file)
                if spec is None or spec.loader is None:
                    raise InvalidInputError(f"cannot load the pipeline file {self.file} in a worker")
                module = importlib.util.module_from_spec(spec)
                sys.modules[self.module] = module
                spec.loader.exec_module(module)
        found = getattr(module, self.name, None)
        if not isinstance(found, Step):
            raise InvalidInputError(f"step '{self.name}' is not a module-level @step in {self.file or self.module}")
        return found


@dataclass(frozen=True, slots=True)
class Task:
    """One attempt of one step, as plain data that can travel to another process or machine."""

    step: StepRef | Step[..., Any]
    arguments: dict[str, Any]
    context: ContextSpec | None = None
    timeout: float | None = None

    @property
    def name(self) -> str:
        return self.step.name


@dataclass(frozen=True, slots=True)
class TaskResult:
    value: StoredValue | None
    error: str | None
    error_type: str | None
    stdout: str
    stderr: str
    started: float
    ended: float
    worker: str
    restored_from: int | None = None
    attachments: tuple[tuple[str, str, int], ...] = ()  # files the step logged: (name, sha256, size)

    @property
    def preempted(self) -> bool:
        return self.error_type == "Preempted"


def run_task(task: Task, *, preemptible: bool = True) -> TaskResult:
    """Run one step attempt (in whatever process this is) and encode what it returned."""
    out, err = io.StringIO(), io.StringIO()
    started = time.time()
    value = error = error_type = None
    context: StepContext | None = None
    try:
        fn = task.step.load() if isinstance(task.step, StepRef) else task.step
        arguments = dict(task.arguments)
        if fn.context_param is not None:
            context = StepContext(task.context)
            arguments[fn.context_param] = context
        with (
            contextlib.redirect_stdout(out),
            contextlib.redirect_stderr(err),
            step_signals(context, task.timeout, preemptible=preemptible),
        ):
            try:
                returned = fn.fn(**arguments)
            except BaseException:
                if context is not None:
                    with contextlib.suppress(Exception):
                        context.flush()  # the retry resumes from the newest state there is
                raise
            finally:
                if context is not None:
                    with contextlib.suppress(Exception):
                        context.close()
        value = encode(returned)
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            raise
        error = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        error_type = "Preempted" if isinstance(exc, Preempted) else type(exc).__name__
        err.write(traceback.format_exc())
    return TaskResult(
        value=value,
        error=error,
        error_type=error_type,
        stdout=out.getvalue(),
        stderr=err.getvalue(),
        started=started,
        ended=time.time(),
        worker=worker_identity(),
        restored_from=context.restored_from if context is not None else None,
        attachments=tuple(context.attachments) if context is not None else (),
    )


def worker_identity() -> str:
    """Where a step ran: ``host:pid``, plus the Ray node and worker when in a Ray worker."""
    identity = f"{socket.gethostname()}:{os.getpid()}"
    ray = sys.modules.get("ray")
    if ray is not None and getattr(ray, "is_initialized", lambda: False)():
        with contextlib.suppress(Exception):
            rc = ray.get_runtime_context()
            if rc.worker.mode == ray.WORKER_MODE:
                identity += f" ray-node={rc.get_node_id()[:12]} ray-worker={rc.get_worker_id()[:12]}"
    return identity


class Executor(Protocol):
    """Runs tasks; the runner records everything about them."""

    name: str

    def submit(self, task: Task) -> Future[TaskResult]: ...

    def recover(self, exc: BaseException) -> bool:
        """True when ``exc`` (raised by a task's future) means its worker was lost, after
        making the executor usable again; False for anything else."""
        ...

    def abort(self, future: Future[TaskResult]) -> None:
        """Stop a task that outlived its timeout by far; its future then fails as lost."""
        ...

    def shutdown(self) -> None: ...


class InlineExecutor:
    """Each step in this process, one after another: for notebooks, debugging and tests.

    SIGTERM stays the runner's: a step here cannot be preempted on its own.
    """

    name = "inline"

    def submit(self, task: Task) -> Future[TaskResult]:
        future: Future[TaskResult] = Future()
        future.set_result(run_task(task, preemptible=False))
        return future

    def recover(self, exc: BaseException) -> bool:
        return False

    def abort(self, future: Future[TaskResult]) -> None:
        pass  # a step in this process has already returned when the runner looks

    def shutdown(self) -> None:
        pass


class LocalExecutor:
    """A pool of worker processes; independent steps run in parallel.

    Workers come from a fork server that has already imported lockgate's heavy
    dependencies, so a worker starts in milliseconds and never inherits this process's
    threads or database connections. A worker that dies breaks the whole pool (that is how
    ``ProcessPoolExecutor`` works), so ``recover`` replaces it; the runner resubmits every
    step that was running.
    """

    name = "local"

    def __init__(self, *, workers: int | None = None) -> None:
        self._workers = workers or os.cpu_count() or 2
        self._pool = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["lockgate.pipelines._executors"])
        return ProcessPoolExecutor(max_workers=self._workers, mp_context=context)

    def submit(self, task: Task) -> Future[TaskResult]:
        step_ = task.step
        if isinstance(step_, Step):
            if step_.fn.__module__ == "__main__":
                raise InvalidInputError(
                    f"step '{step_.name}' is defined in the script being run, which worker processes cannot import; "
                    "move the steps to a module, or use executor='inline'"
                )
            task = Task(StepRef.of(step_), task.arguments, task.context, task.timeout)
        with _main_module_hidden():
            try:
                return self._pool.submit(run_task, task)
            except BrokenProcessPool:
                # A worker died since the last look (the runner has not seen its future yet).
                self._replace_broken_pool()
                return self._pool.submit(run_task, task)

    def recover(self, exc: BaseException) -> bool:
        if not isinstance(exc, BrokenProcessPool):
            return False
        self._replace_broken_pool()
        return True

    def _replace_broken_pool(self) -> None:
        if getattr(self._pool, "_broken", False):
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = self._new_pool()

    def worker_pids(self) -> list[int]:
        """The pool's worker processes now (for operators, and to show a preemption)."""
        return sorted(p.pid for p in getattr(self._pool, "_processes", {}).values() if p.pid is not None)

    def abort(self, future: Future[TaskResult]) -> None:
        # A process pool cannot cancel a running call; ending its workers is the only way,
        # and it breaks the pool: the other running steps come back as lost and run again.
        for process in list(getattr(self._pool, "_processes", {}).values()):
            with contextlib.suppress(Exception):
                process.kill()

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


@contextlib.contextmanager
def _main_module_hidden() -> Iterator[None]:
    """Start workers without re-running the caller's ``__main__``.

    multiprocessing re-imports the parent's main script in every new worker, so a plain
    script calling ``run_pipeline`` (no ``if __name__ == "__main__"`` guard) would run again
    in each worker. Workers load the steps' own modules by file, so they never need
    ``__main__``: while the pool starts processes, the main module shows no file or spec.
    """
    main = sys.modules.get("__main__")
    saved = {name: getattr(main, name) for name in ("__file__", "__spec__") if main is not None and hasattr(main, name)}
    try:
        for name in saved:
            setattr(main, name, None)
        yield
    finally:
        for name, value in saved.items():
            setattr(main, name, value)


EXECUTORS = ("auto", "local", "inline", "ray")


def make_executor(
    name: str,
    *,
    workers: int | None = None,
    steps: list[Step[..., Any]] | None = None,
    ray_address: str | None = None,
    project_root: Path | None = None,
) -> Executor:
    """``auto`` is ``local`` unless a step lives in ``__main__`` (a notebook or a script's own
    steps), which worker processes cannot import: then ``inline``."""
    if ray_address is not None and name != "ray":
        raise InvalidInputError(f"--ray-address needs --executor ray, not --executor {name}")
    if name == "auto":
        name = "inline" if any(s.fn.__module__ == "__main__" for s in steps or []) else "local"
    if name == "local":
        return LocalExecutor(workers=workers)
    if name == "inline":
        return InlineExecutor()
    if name == "ray":
        from lockgate.pipelines._ray import RayExecutor  # Ray is an optional extra, imported on use

        return RayExecutor(ray_address, steps=steps, project_root=project_root)
    raise InvalidInputError(f"unknown executor '{name}'; use one of: {', '.join(EXECUTORS)}")
