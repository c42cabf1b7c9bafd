"""Where steps execute: in this process (``inline``) or in a pool of worker processes
(``local``, the default), with independent steps running side by side.

A worker receives the step and its input values and sends back the encoded output, its
stdout and stderr, and where and when it ran. It never touches the metadata database: all
recording happens in the runner's process, in one place.
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from lockgate.errors import InvalidInputError
from lockgate.pipelines._dsl import Step
from lockgate.pipelines._values import StoredValue, encode

__all__ = ["EXECUTORS", "Executor", "InlineExecutor", "LocalExecutor", "TaskResult", "make_executor"]


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
class TaskResult:
    value: StoredValue | None
    error: str | None
    error_type: str | None
    stdout: str
    stderr: str
    started: float
    ended: float
    worker: str


def run_task(step_: Step[..., Any] | StepRef, arguments: dict[str, Any]) -> TaskResult:
    """Run one step (in whatever process this is) and encode what it returned."""
    out, err = io.StringIO(), io.StringIO()
    started = time.time()
    value = error = error_type = None
    try:
        fn = step_.load() if isinstance(step_, StepRef) else step_
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            returned = fn.fn(**arguments)
        value = encode(returned)
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            raise
        error = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        error_type = type(exc).__name__
        err.write(traceback.format_exc())
    return TaskResult(
        value=value,
        error=error,
        error_type=error_type,
        stdout=out.getvalue(),
        stderr=err.getvalue(),
        started=started,
        ended=time.time(),
        worker=f"{socket.gethostname()}:{os.getpid()}",
    )


class Executor(Protocol):
    name: str

    def submit(self, step_: Step[..., Any], arguments: dict[str, Any]) -> Future[TaskResult]: ...

    def shutdown(self) -> None: ...


class InlineExecutor:
    """Each step in this process, one after another: for notebooks, debugging and tests."""

    name = "inline"

    def submit(self, step_: Step[..., Any], arguments: dict[str, Any]) -> Future[TaskResult]:
        future: Future[TaskResult] = Future()
        future.set_result(run_task(step_, arguments))
        return future

    def shutdown(self) -> None:
        pass


class LocalExecutor:
    """A pool of worker processes; independent steps run in parallel.

    Workers come from a fork server that has already imported lockgate's heavy
    dependencies, so a worker starts in milliseconds and never inherits this process's
    threads or database connections.
    """

    name = "local"

    def __init__(self, *, workers: int | None = None) -> None:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["lockgate.pipelines._executors"])
        self._pool = ProcessPoolExecutor(max_workers=workers or os.cpu_count() or 2, mp_context=context)

    def submit(self, step_: Step[..., Any], arguments: dict[str, Any]) -> Future[TaskResult]:
        if step_.fn.__module__ == "__main__":
            raise InvalidInputError(
                f"step '{step_.name}' is defined in the script being run, which worker processes cannot import; "
                "move the steps to a module, or use executor='inline'"
            )
        with _main_module_hidden():
            return self._pool.submit(run_task, StepRef.of(step_), arguments)

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


EXECUTORS = ("auto", "local", "inline")


def make_executor(name: str, *, workers: int | None = None, steps: list[Step[..., Any]] | None = None) -> Executor:
    """``auto`` is ``local`` unless a step lives in ``__main__`` (a notebook or a script's own
    steps), which worker processes cannot import: then ``inline``."""
    if name == "auto":
        name = "inline" if any(s.fn.__module__ == "__main__" for s in steps or []) else "local"
    if name == "local":
        return LocalExecutor(workers=workers)
    if name == "inline":
        return InlineExecutor()
    if name == "ray":
        raise InvalidInputError("the ray executor is not available yet; use --executor local")
    raise InvalidInputError(f"unknown executor '{name}'; use one of: {', '.join(EXECUTORS)}")
