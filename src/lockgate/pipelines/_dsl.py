"""The step DSL: plain typed functions, and a pipeline function that wires them.

Calling a step inside a pipeline function does not run it: it records a node of the DAG and
returns a :class:`StepOutput` standing for the value the step will produce. The DAG is
therefore exactly how outputs feed inputs, and it cannot have a cycle (a step can only use
outputs that already exist when it is called). Outside a pipeline, a step is the plain
function it wraps.

>>> @step
... def double(x: int) -> int:
...     return 2 * x
>>> @pipeline
... def twice(x: int = 3):
...     return double(double(x))
>>> [node.name for node in twice.trace().nodes]
['double', 'double_2']
>>> double(4)
8
"""

from __future__ import annotations

import contextvars
import inspect
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, ParamSpec, TypeVar, overload

from lockgate.errors import InvalidInputError, UserCodeError
from lockgate.pipelines._context import StepContext, is_context_annotation

__all__ = ["Node", "Pipeline", "PipelineGraph", "Step", "StepOutput", "pipeline", "step"]

P = ParamSpec("P")
R = TypeVar("R")

_TRACING: contextvars.ContextVar[PipelineGraph | None] = contextvars.ContextVar("lockgate_tracing", default=None)


@dataclass(frozen=True, slots=True)
class StepOutput:
    """The value a node will produce, used as another step's input while tracing."""

    node: str

    def __repr__(self) -> str:
        return f"<output of {self.node}>"

    def __bool__(self) -> bool:
        raise InvalidInputError(
            f"the output of step '{self.node}' is not known while the pipeline is being defined; "
            "branch on pipeline parameters, or inside a step"
        )


@dataclass(slots=True)
class Node:
    """One call of a step in the DAG: its arguments are constants or other nodes' outputs."""

    name: str
    step: Step[..., Any]
    arguments: dict[str, Any]

    @property
    def upstream(self) -> list[str]:
        return sorted({v.node for v in self.arguments.values() if isinstance(v, StepOutput)})


@dataclass(slots=True)
class PipelineGraph:
    """The traced DAG, nodes in the order they were defined (a topological order)."""

    pipeline: str
    params: dict[str, Any]
    nodes: list[Node] = field(default_factory=list)
    result: Any = None

    def add(self, step_: Step[..., Any], arguments: dict[str, Any]) -> StepOutput:
        taken = {n.name for n in self.nodes}
        name, i = step_.name, 2
        while name in taken:
            name, i = f"{step_.name}_{i}", i + 1
        self.nodes.append(Node(name=name, step=step_, arguments=arguments))
        return StepOutput(name)

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise InvalidInputError(f"pipeline '{self.pipeline}' has no step '{name}'")

    def downstream(self, name: str) -> set[str]:
        """Every node that depends, directly or not, on ``name``."""
        found: set[str] = set()
        for n in self.nodes:  # definition order is topological
            if name in n.upstream or found & set(n.upstream):
                found.add(n.name)
        return found

    def outputs(self) -> Iterator[StepOutput]:
        result = self.result
        values = (
            result.values()
            if isinstance(result, Mapping)
            else result
            if isinstance(result, (list, tuple))
            else [result]
        )
        for v in values:
            if isinstance(v, StepOutput):
                yield v


class Step(Generic[P, R]):
    """A pipeline step: a plain function plus how the runner should treat it."""

    def __init__(
        self,
        fn: Callable[P, R],
        *,
        name: str | None = None,
        cache: bool = True,
        retries: int = 0,
        timeout: float | None = None,
        keep_checkpoints: int = 3,
        checkpoint_interval: float = 0.0,
        max_preemptions: int = 3,
    ) -> None:
        label = f"step '{fn.__name__}'"
        if retries < 0:
            raise InvalidInputError(f"{label}: retries must be 0 or more, not {retries}")
        if timeout is not None and not timeout > 0:
            raise InvalidInputError(f"{label}: timeout must be a positive number of seconds, not {timeout}")
        if keep_checkpoints < 1:
            raise InvalidInputError(f"{label}: keep_checkpoints must be 1 or more, not {keep_checkpoints}")
        if max_preemptions < 0:
            raise InvalidInputError(f"{label}: max_preemptions must be 0 or more, not {max_preemptions}")
        self.fn = fn
        self.name = name or fn.__name__
        self.cache = cache
        self.retries = retries
        self.timeout = timeout
        self.keep_checkpoints = keep_checkpoints
        self.checkpoint_interval = checkpoint_interval
        self.max_preemptions = max_preemptions
        full = inspect.signature(fn)
        # A parameter annotated StepContext is the runner's to fill, never the pipeline's.
        self.context_param = next((n for n, p in full.parameters.items() if is_context_annotation(p.annotation)), None)
        self.signature = full.replace(parameters=[p for n, p in full.parameters.items() if n != self.context_param])
        self.__doc__ = fn.__doc__
        self.__wrapped__ = fn

    def __repr__(self) -> str:
        return f"<step {self.name}>"

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        graph = _TRACING.get()
        if graph is None:
            given = kwargs.get(self.context_param) if self.context_param else None
            if self.context_param is not None and (given is None or getattr(given, "is_placeholder", False)):
                kwargs[self.context_param] = StepContext()
            return self.fn(*args, **kwargs)
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise InvalidInputError(
                f"step '{self.name}' called with the wrong arguments in pipeline '{graph.pipeline}': {exc}"
            ) from None
        bound.apply_defaults()
        return graph.add(self, dict(bound.arguments))  # type: ignore[return-value]

    def map(self, values: Iterable[Any], **fixed: Any) -> list[R]:
        """Fan out: one node per value (passed as the step's first parameter), run in parallel
        where the executor allows. Inside a pipeline it returns their outputs; outside, the values.

        >>> @step
        ... def square(x: int) -> int:
        ...     return x * x
        >>> square.map([1, 2, 3])
        [1, 4, 9]
        """
        first = next(iter(self.signature.parameters), None)
        if first is None:
            raise InvalidInputError(f"step '{self.name}' takes no parameter to map over")
        call: Callable[..., R] = self
        return [call(**{first: value, **fixed}) for value in values]

    @property
    def module_file(self) -> Path | None:
        source = inspect.getsourcefile(self.fn)
        return Path(source).resolve() if source else None


class Pipeline:
    """A function wiring steps; ``trace(**params)`` gives the DAG for those parameters."""

    def __init__(self, fn: Callable[..., Any], *, name: str | None = None) -> None:
        self.fn = fn
        self.name = name or fn.__name__
        self.signature = inspect.signature(fn)
        self.__doc__ = fn.__doc__

    def __repr__(self) -> str:
        return f"<pipeline {self.name}>"

    def steps(self) -> list[Step[..., Any]]:
        """The steps the pipeline function refers to (by name, without tracing it)."""
        names = self.fn.__code__.co_names
        return [v for k, v in self.fn.__globals__.items() if k in names and isinstance(v, Step)]

    def defaults(self) -> dict[str, Any]:
        return {
            name: p.default for name, p in self.signature.parameters.items() if p.default is not inspect.Parameter.empty
        }

    def parameter_types(self) -> dict[str, Any]:
        return {name: p.annotation for name, p in self.signature.parameters.items()}

    def trace(self, **params: Any) -> PipelineGraph:
        unknown = sorted(set(params) - set(self.signature.parameters))
        if unknown:
            known = ", ".join(self.signature.parameters) or "none"
            raise InvalidInputError(f"pipeline '{self.name}' has no parameter {unknown[0]!r} (parameters: {known})")
        try:
            bound = self.signature.bind(**params)
        except TypeError as exc:
            raise InvalidInputError(f"pipeline '{self.name}': {exc}; pass it with --param NAME=VALUE") from None
        bound.apply_defaults()
        graph = PipelineGraph(pipeline=self.name, params=dict(bound.arguments))
        token = _TRACING.set(graph)
        try:
            graph.result = self.fn(**bound.arguments)
        except InvalidInputError:
            raise
        except Exception as exc:
            raise UserCodeError(
                f"pipeline '{self.name}' failed while it was being defined ({type(exc).__name__}: {exc})"
            ) from exc
        finally:
            _TRACING.reset(token)
        if not graph.nodes:
            raise InvalidInputError(f"pipeline '{self.name}' calls no step; decorate its functions with @step")
        return graph


@overload
def step(fn: Callable[P, R], /) -> Step[P, R]: ...
@overload
def step(
    *,
    name: str | None = None,
    cache: bool = True,
    retries: int = 0,
    timeout: float | None = None,
    keep_checkpoints: int = 3,
    checkpoint_interval: float = 0.0,
    max_preemptions: int = 3,
) -> Callable[[Callable[P, R]], Step[P, R]]: ...
def step(
    fn: Callable[P, R] | None = None,
    /,
    *,
    name: str | None = None,
    cache: bool = True,
    retries: int = 0,
    timeout: float | None = None,
    keep_checkpoints: int = 3,
    checkpoint_interval: float = 0.0,
    max_preemptions: int = 3,
) -> Step[P, R] | Callable[[Callable[P, R]], Step[P, R]]:
    """Make a function a pipeline step (``@step`` or ``@step(retries=2, timeout=600)``).

    ``retries`` re-runs a step that raised, with backoff; ``timeout`` (seconds) stops a step
    that runs too long (it then counts as a failed attempt). A step that takes a
    :class:`StepContext` can checkpoint: ``keep_checkpoints`` are kept, written at most every
    ``checkpoint_interval`` seconds; a step whose worker was preempted (SIGTERM) or killed is
    run again from its latest checkpoint up to ``max_preemptions`` times, apart from its retries.
    """
    if fn is not None:
        return Step(fn)

    def wrap(f: Callable[P, R]) -> Step[P, R]:
        return Step(
            f,
            name=name,
            cache=cache,
            retries=retries,
            timeout=timeout,
            keep_checkpoints=keep_checkpoints,
            checkpoint_interval=checkpoint_interval,
            max_preemptions=max_preemptions,
        )

    return wrap


def pipeline(fn: Callable[..., Any] | None = None, /, *, name: str | None = None) -> Any:
    """Make a function a pipeline (``@pipeline`` or ``@pipeline(name="fraud")``)."""
    if fn is not None:
        return Pipeline(fn)
    return lambda f: Pipeline(f, name=name)
