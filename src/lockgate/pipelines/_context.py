"""What a running step can ask of the runner: checkpoints that survive its worker, and the
workspace's feature store.

A long step declares a parameter annotated :class:`StepContext` and the runner passes one in:

>>> from lockgate.pipelines import step
>>> @step
... def train(epochs: int, ctx: StepContext = StepContext.INJECTED) -> int:
...     state = ctx.restore(default={"epoch": 0})
...     for epoch in range(state["epoch"], epochs):
...         state = ctx.checkpoint({"epoch": epoch + 1})
...     return epochs
>>> train(3)          # called outside a pipeline: checkpoints are kept in memory
3

Checkpoints go to the artifact store under a name derived from the pipeline run, the step and
its cache key, so a retry of the step (after a preemption, a killed worker or ``--resume`` of
the whole pipeline) finds the latest one, on whichever machine it runs; a changed step (a new
cache key) never restores a stale one. The last ``keep`` are kept.

``ctx.features`` is the workspace's feature store, opened in the worker from the settings the
runner hands it (a step that builds its training set through a feature service reads the very
definitions serving reads). Outside a pipeline there is no workspace to open:

>>> StepContext().features
Traceback (most recent call last):
...
lockgate.errors.InvalidInputError: ctx.features is only available to a step a pipeline runs; call the step's work with ws.features instead
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import FrameType
from typing import TYPE_CHECKING, Any, ClassVar

from lockgate.config import Settings, with_local_secrets
from lockgate.errors import InvalidInputError, UserCodeError

if TYPE_CHECKING:
    from lockgate.features import FeatureStore

__all__ = ["ContextSpec", "Preempted", "StepContext", "StepTimeout", "is_context_annotation", "step_signals"]


class Preempted(BaseException):
    """The step's worker was asked to stop (SIGTERM: a spot eviction, a drained node).

    A BaseException so a step's ``except Exception`` cannot swallow it.
    """


class StepTimeout(UserCodeError):
    """A step ran longer than its ``timeout``."""


@dataclass(frozen=True, slots=True)
class ContextSpec:
    """Everything a worker needs to give a step its context (plain data: it travels to workers)."""

    artifact_root: str
    s3_endpoint_url: str | None
    prefix: str  # checkpoints/<pipeline run>/<node>/<cache key>
    keep: int = 3
    interval: float = 0.0
    attempt: int = 1
    step_run_id: str = ""
    # The workspace's settings, for ctx.features. They may hold a database password: kept out
    # of repr (and so out of logs and error messages); see the README's note on Ray workers.
    settings: Settings | None = field(default=None, repr=False)


class StepContext:
    """Checkpoints for one step run; see the module docs."""

    def __init__(self, spec: ContextSpec | None = None) -> None:
        self.spec = spec
        self._store: Any = None
        self._memory: list[bytes] = []  # outside a pipeline
        self._pending: bytes | None = None
        self._last_saved = 0.0
        self._seq: int | None = None
        self.restored_from: int | None = None
        self.attachments: list[tuple[str, str, int]] = []  # (name, sha256, size), kept with the step run
        self.files: dict[str, bytes] = {}  # outside a pipeline: what log_artifact was given
        self._workspace: Any = None

    #: The default for a step's context parameter (``ctx: StepContext = StepContext.INJECTED``),
    #: so type checkers accept calls that leave it out: the runner, or a direct call outside a
    #: pipeline, always passes a real context in its place.
    INJECTED: ClassVar[StepContext]

    @property
    def is_placeholder(self) -> bool:
        return self is _INJECTED

    @property
    def attempt(self) -> int:
        """1 on the first try; higher after a failure, a preemption or a killed worker."""
        return self.spec.attempt if self.spec else 1

    @property
    def run_id(self) -> str | None:
        return self.spec.step_run_id if self.spec else None

    def _artifacts(self) -> Any:
        if self._store is None and self.spec is not None:
            from lockgate.artifacts import ArtifactStore

            self._store = ArtifactStore(self.spec.artifact_root, s3_endpoint_url=self.spec.s3_endpoint_url)
        return self._store

    @property
    def features(self) -> FeatureStore:
        """The workspace's feature store (``ws.features``), opened on first use in this worker.

        Its writes (a training set's data set version and lineage, computed views) go to the
        workspace's own stores; pass ``run_id=ctx.run_id`` to ``training_set`` to link the
        training set to this step's run.
        """
        if self._workspace is None:
            if self.spec is None or self.spec.settings is None:
                raise InvalidInputError(
                    "ctx.features is only available to a step a pipeline runs; "
                    "call the step's work with ws.features instead"
                )
            # Imported here: the composition root is needed only by steps that ask for it.
            from lockgate.workspace import Workspace

            self._workspace = Workspace(with_local_secrets(self.spec.settings))
        store: FeatureStore = self._workspace.features
        return store

    def close(self) -> None:
        """Release what the step opened through its context (the workspace behind ``features``)."""
        if self._workspace is not None:
            self._workspace.close()
            self._workspace = None

    def _names(self) -> list[str]:
        assert self.spec is not None
        return [n for n in self._artifacts().list_named(self.spec.prefix) if n.endswith(".ckpt")]

    def log_artifact(self, name: str, data: bytes | str) -> None:
        """Keep a file (a report, a plot) with this step's run, whether the attempt passes or fails.

        The bytes go to the artifact store now; the runner attaches them to the step run, with
        lineage, when the attempt ends. Outside a pipeline they stay in ``ctx.files``.
        """
        from lockgate.artifacts import safe_relpath

        name = safe_relpath(name)
        payload = data.encode() if isinstance(data, str) else bytes(data)
        if self.spec is None:
            self.files[name] = payload
            return
        stored = self._artifacts().put_bytes(payload)
        self.attachments.append((name, stored.sha256, stored.size))

    def checkpoint(self, state: Any) -> Any:
        """Save ``state`` (anything joblib can pickle: a model, arrays, a dict of both) and
        return it as a restore would give it back.

        Continue from the returned copy: a run that is never interrupted then computes from
        exactly the objects a resumed run restores, so both end with the same bytes (pickling
        is sensitive to which objects are shared, not only to their values).

        The state is serialized now, so later changes to the objects do not leak into it. It
        is written at once, or, with the step's ``checkpoint_interval``, at most that often;
        a state still pending is written when the worker is asked to stop.
        """
        import joblib

        buf = io.BytesIO()
        joblib.dump(state, buf)
        data = buf.getvalue()
        if self.spec is None:
            self._memory.append(data)
        else:
            self._pending = data
            if time.monotonic() - self._last_saved >= self.spec.interval:
                self.flush()
        return joblib.load(io.BytesIO(data))

    def flush(self) -> None:
        """Write the pending checkpoint, if any, and drop those beyond the last ``keep``."""
        if self._pending is None or self.spec is None:
            return
        data, self._pending = self._pending, None
        names = self._names()
        if self._seq is None:
            self._seq = max((_seq_of(n) for n in names), default=0)
        self._seq += 1
        digest = hashlib.sha256(data).hexdigest()
        name = f"{self.spec.prefix}/{self._seq:08d}-{digest}.ckpt"
        self._artifacts().put_named(name, data)
        self._last_saved = time.monotonic()
        for old in [*names, name][: -self.spec.keep]:
            self._artifacts().delete_named(old)
        print(f"checkpoint {self._seq} saved", file=sys.stderr)

    def restore(self, default: Any = None) -> Any:
        """The latest checkpoint's state, or ``default`` when there is none.

        A checkpoint whose bytes no longer match the hash in its name (a torn or damaged
        object) is skipped in favour of the one before it.
        """
        import joblib

        if self.spec is None:
            return joblib.load(io.BytesIO(self._memory[-1])) if self._memory else default
        for name in reversed(self._names()):
            data = self._artifacts().get_named(name)
            if hashlib.sha256(data).hexdigest() != name.rsplit("-", 1)[-1].removesuffix(".ckpt"):
                print(f"checkpoint {name} is damaged; trying an older one", file=sys.stderr)
                continue
            self._seq = _seq_of(name)
            self.restored_from = self._seq
            print(f"restored checkpoint {self._seq}", file=sys.stderr)
            return joblib.load(io.BytesIO(data))
        return default


_INJECTED = StepContext()
StepContext.INJECTED = _INJECTED


def _seq_of(name: str) -> int:
    return int(name.rsplit("/", 1)[-1].split("-", 1)[0])


def is_context_annotation(annotation: Any) -> bool:
    """True for ``StepContext`` written as a class or, under postponed annotations, as text."""
    if annotation is StepContext:
        return True
    return isinstance(annotation, str) and annotation.rsplit(".", 1)[-1] == "StepContext"


@contextlib.contextmanager
def step_signals(context: StepContext | None, timeout: float | None, *, preemptible: bool = True) -> Iterator[None]:
    """While a step runs in a worker: SIGTERM saves the pending checkpoint and raises
    :class:`Preempted`; past ``timeout`` seconds :class:`StepTimeout` is raised in the step.

    Signals only reach the main thread, so elsewhere (a step run inline from a thread) the
    step runs without them; the runner still enforces the timeout from outside. A step run
    in the runner's own process (``preemptible=False``) leaves SIGTERM to the runner.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_term(signum: int, frame: FrameType | None) -> None:
        if context is not None:
            context.flush()
        raise Preempted("the worker was asked to stop (SIGTERM)")

    def on_alarm(signum: int, frame: FrameType | None) -> None:
        raise StepTimeout(f"the step ran longer than its timeout of {timeout:g} s")

    previous_term = signal.signal(signal.SIGTERM, on_term) if preemptible else None
    previous_alarm = signal.signal(signal.SIGALRM, on_alarm) if timeout else None
    if timeout:
        signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        yield
    finally:
        if timeout:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous_alarm)
        if preemptible:
            signal.signal(signal.SIGTERM, previous_term)
