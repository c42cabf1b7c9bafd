"""Model runtimes: one vectorized ``predict(batch) -> Prediction`` per kind of model.

A runtime is built once per model version and called for every (dynamically batched)
request, so everything that can be decided ahead — column order, whether the model needs a
DataFrame, how labels are derived — is decided in the constructor, and ``predict`` does only
the per-batch work.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
import pandas as pd
from threadpoolctl import ThreadpoolController  # type: ignore[import-untyped]

from lockgate.errors import InvalidInputError, UserCodeError
from lockgate.serving._batch import Batch, batch_columns, batch_rows, numeric_matrix
from lockgate.serving._signature import Signature, Task
from lockgate.serving.base import CustomModel

__all__ = ["CustomRuntime", "ModelRuntime", "Prediction", "RuntimeKind", "SklearnRuntime"]

RuntimeKind = Literal["sklearn", "onnx", "custom"]
Array = np.ndarray[Any, Any]

# Estimators whose predict is not the argmax of predict_proba (Platt scaling, tuned thresholds):
# for them the label comes from predict itself, at the price of a second pass.
_OWN_LABEL = frozenset({"SVC", "NuSVC", "FixedThresholdClassifier", "TunedThresholdClassifierCV"})


@dataclass(frozen=True, slots=True, kw_only=True)
class Prediction:
    """What a runtime returns for a batch of N rows (numpy arrays)."""

    kind: RuntimeKind
    label: Array | None = None
    probabilities: Array | None = None
    prediction: Array | None = None
    extras: dict[str, Array] = field(default_factory=dict)

    def __len__(self) -> int:
        for values in (self.label, self.prediction, self.probabilities):
            if values is not None:
                return len(values)
        return 0

    def slice(self, start: int, stop: int) -> Prediction:
        """Rows ``start:stop`` (views): how a batcher hands each request its own answer."""

        def cut(a: Array | None) -> Array | None:
            return None if a is None else a[start:stop]

        return Prediction(
            kind=self.kind,
            label=cut(self.label),
            probabilities=cut(self.probabilities),
            prediction=cut(self.prediction),
            extras={k: v[start:stop] for k, v in self.extras.items()},
        )


@runtime_checkable
class ModelRuntime(Protocol):
    """A loaded model ready to score batches."""

    @property
    def kind(self) -> RuntimeKind: ...

    @property
    def signature(self) -> Signature: ...

    @property
    def task(self) -> Task: ...

    @property
    def classes(self) -> tuple[Any, ...] | None: ...

    def predict(self, batch: Batch) -> Prediction:
        """Score every row of ``batch`` (an Arrow table or a mapping of column → array)."""
        ...

    def check(self, batch: Batch) -> None:
        """Raise what :meth:`predict` would raise for the values of ``batch`` (a value the
        runtime cannot represent), without scoring: for work accepted now and scored later."""
        ...


class SignedRuntime:
    """What every runtime answers from its signature: the columns, the task and the classes."""

    _signature: Signature

    def check(self, batch: Batch) -> None:
        """Nothing beyond the signature's own conversion (the caller built ``batch`` with it)."""

    @property
    def signature(self) -> Signature:
        return self._signature

    @property
    def task(self) -> Task:
        return self._signature.task

    @property
    def classes(self) -> tuple[Any, ...] | None:
        return self._signature.classes


_THREADS = ThreadpoolController()


class SklearnRuntime(SignedRuntime):
    """A scikit-learn estimator or pipeline.

    Fed a float64 matrix when it can take one (every input numeric, and no step selects
    columns by name): scikit-learn checks a DataFrame slowly, 444 µs against 1,364 µs per
    one-row ``predict_proba`` on the W6 model. A model fitted on a DataFrame of the same
    columns gets the matrix too, in its fitted column order, with only its "no feature names"
    warning silenced. Otherwise it gets a DataFrame built straight from the columns, the
    cheapest way measured (``pd.DataFrame(dict, copy=False)``: 126 µs against 334 µs for
    ``Table.to_pandas()`` on the fraud inputs).

    For a model with a step that predicts on an OpenMP thread pool (HistGradientBoosting,
    nearest neighbours), batches of up to ``single_thread_rows`` rows run with OpenMP limited
    to one thread: waking the pool costs more than scoring a few rows, and on a busy box much
    more (the fraud model's HistGradientBoosting predict: 21.8 ms with the default pool under
    load, 1.7 ms on one thread). Other models skip the limit: it costs 6-150 µs per call,
    measured, against 224 µs for the whole W6 call.

    >>> from sklearn.linear_model import LinearRegression
    >>> sig = Signature.from_registry({"inputs": [{"name": "x", "type": "double"}], "kind": "regressor"})
    >>> rt = SklearnRuntime(LinearRegression().fit([[0.0], [1.0]], [0.0, 2.0]), sig)
    >>> rt.predict({"x": np.array([3.0])}).prediction.round(6)
    array([6.])
    """

    kind: RuntimeKind = "sklearn"

    def __init__(self, model: Any, signature: Signature, *, single_thread_rows: int = 1024) -> None:
        self.model = model
        self._signature = signature
        self._single_thread_rows = single_thread_rows if _uses_openmp(model) else -1
        fitted_names = getattr(model, "feature_names_in_", None)
        self._uses_frame = not signature.all_numeric or _selects_by_name(model)
        self._order: tuple[str, ...] = signature.names
        self._quiet_names = False
        if not self._uses_frame and fitted_names is not None:
            fitted = tuple(str(n) for n in fitted_names)
            if sorted(fitted) == sorted(signature.names):
                self._order, self._quiet_names = fitted, True
            else:
                self._uses_frame = True
        if signature.task == "classification" and not hasattr(model, "predict_proba"):
            raise InvalidInputError(
                f"the model is registered as a classifier but a {type(model).__name__} has no predict_proba; "
                "serve a probabilistic classifier or wrap it in a CustomModel"
            )
        final = model.steps[-1][1] if hasattr(model, "steps") else model
        self._label_from_predict = type(final).__name__ in _OWN_LABEL
        model_classes = getattr(model, "classes_", None)
        self._classes = None if model_classes is None else np.asarray(model_classes)

    @property
    def input_format(self) -> Literal["matrix", "frame"]:
        """How the model is fed: a float64 matrix or a pandas DataFrame."""
        return "frame" if self._uses_frame else "matrix"

    def predict(self, batch: Batch) -> Prediction:
        x = self._features(batch)
        rows = batch_rows(batch)
        limit: AbstractContextManager[Any] = (
            _THREADS.limit(limits=1, user_api="openmp") if rows <= self._single_thread_rows else nullcontext()
        )
        quiet: AbstractContextManager[Any] = warnings.catch_warnings() if self._quiet_names else nullcontext()
        with limit, quiet:
            if self._quiet_names:
                # Columns are already in the fitted order; the names check is all this skips.
                warnings.filterwarnings("ignore", message="X does not have valid feature names", category=UserWarning)
            if self._signature.task == "regression":
                return Prediction(kind="sklearn", prediction=np.asarray(self.model.predict(x)).reshape(-1))
            proba = np.asarray(self.model.predict_proba(x), dtype=np.float64)
            if self._label_from_predict or self._classes is None:
                label = np.asarray(self.model.predict(x))
            else:
                label = self._classes[proba.argmax(axis=1)]
        return Prediction(kind="sklearn", label=label, probabilities=proba)

    def _features(self, batch: Batch) -> Any:
        if not self._uses_frame:
            return numeric_matrix(batch, self._signature, self._order)
        return pd.DataFrame(batch_columns(batch, self._signature), copy=False)


def _steps(model: Any) -> list[Any]:
    """The estimator and every estimator nested in it (pipelines, column transformers, unions)."""
    found = [model]
    if hasattr(model, "steps"):
        found += [s for _, step in model.steps for s in _steps(step)]
    for _, part, *_rest in getattr(model, "transformers_", None) or getattr(model, "transformer_list", None) or []:
        if not isinstance(part, str):
            found += _steps(part)
    return found


def _uses_openmp(model: Any) -> bool:
    return any(
        "_hist_gradient_boosting" in type(s).__module__ or type(s).__module__.startswith("sklearn.neighbors")
        for s in _steps(model)
    )


def _selects_by_name(model: Any) -> bool:
    """True when some step picks columns by name (a ColumnTransformer over string columns)."""
    if hasattr(model, "steps"):
        return any(_selects_by_name(step) for _, step in model.steps)
    if hasattr(model, "transformer_list"):
        return any(_selects_by_name(t) for _, t in model.transformer_list)
    if hasattr(model, "transformers"):
        for spec in (t[2] for t in getattr(model, "transformers_", model.transformers)):
            if isinstance(spec, str) or callable(spec):
                return True
            if isinstance(spec, list | tuple) and any(isinstance(c, str) for c in spec):
                return True
    return False


class CustomRuntime(SignedRuntime):
    """A :class:`~lockgate.serving.CustomModel`: ``preprocess`` → ``predict`` → ``postprocess``
    on each batch, inside the user-code error boundary."""

    kind: RuntimeKind = "custom"

    def __init__(
        self, model: CustomModel, signature: Signature, *, artifacts: Mapping[str, bytes] | None = None
    ) -> None:
        self.model = model
        self._signature = signature
        _call(model, "load", model.load, dict(artifacts or {}))

    def predict(self, batch: Batch) -> Prediction:
        rows = batch_rows(batch)
        data = _call(self.model, "preprocess", self.model.preprocess, batch_columns(batch, self._signature))
        raw = _call(self.model, "predict", self.model.predict, data)
        outputs = _call(self.model, "postprocess", self.model.postprocess, raw)
        if not isinstance(outputs, Mapping):
            raise UserCodeError(
                f"{type(self.model).__name__}.postprocess returned a {type(outputs).__name__}; return a dict of outputs"
            )
        arrays = {str(k): np.asarray(v) for k, v in outputs.items()}
        needed = ("label", "probabilities") if self.task == "classification" else ("prediction",)
        missing = [n for n in needed if n not in arrays]
        wrong = [n for n, a in arrays.items() if a.ndim == 0 or len(a) != rows]
        if missing or wrong:
            problem = f"lacks {', '.join(missing)}" if missing else f"has {', '.join(wrong)} without one value per row"
            raise UserCodeError(
                f"{type(self.model).__name__}.postprocess {problem}; a {self.task} model returns "
                f"{' and '.join(needed)} with {rows} rows"
            )
        return Prediction(
            kind="custom",
            label=arrays.pop("label", None),
            probabilities=arrays.pop("probabilities", None),
            prediction=arrays.pop("prediction", None),
            extras=arrays,
        )


def _call(model: CustomModel, hook: str, fn: Callable[[Any], Any], arg: Any) -> Any:
    try:
        return fn(arg)
    except Exception as exc:
        raise UserCodeError(
            f"{type(model).__name__}.{hook} failed ({type(exc).__name__}: {exc}); fix the model's {hook} hook"
        ) from exc
