"""The extension point for models with business logic: subclass :class:`CustomModel`.

A custom model is registered like any other (``ws.models.register(MyModel(...), name=...,
input_example=...)``); the registry records it as the ``custom`` flavor, and serving runs
``preprocess`` → ``predict`` → ``postprocess`` on every batch, inside lockgate's error
boundary (a failing hook is reported as a :class:`~lockgate.errors.UserCodeError` naming it).

>>> import numpy as np
>>> class Doubler(CustomModel):
...     task = "regression"
...     def predict(self, data):
...         return np.asarray(data["x"], dtype=float) * 2
>>> Doubler().lockgate_outputs({"x": [1.0, 2.0]})["prediction"]
array([2., 4.])
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

__all__ = ["CustomModel"]


class CustomModel:
    """A Python model with ``preprocess``, ``predict`` and ``postprocess`` hooks.

    Attributes:
        task: ``"classification"`` or ``"regression"``.
        classes: the class labels of a classifier, in the order of its probability columns.
        artifacts: name → sha256 of objects in the workspace's artifact store this model
            needs (a lookup table, a tokenizer); they are read, hash-checked, and handed to
            :meth:`load` once when the model is loaded for serving, so they need not be pickled
            with it.

    The hooks see the batch as a mapping of column name to 1-d numpy array. ``postprocess``
    returns ``{"label": (N,), "probabilities": (N, C)}`` for a classifier or
    ``{"prediction": (N,)}`` for a regressor; any other keys are extra (N,) or (N, k) outputs
    (a reason code, a rule that fired) that serving returns as well.
    """

    lockgate_flavor: ClassVar[str] = "custom"
    task: ClassVar[str] = "classification"
    classes: tuple[Any, ...] | None = None
    artifacts: Mapping[str, str] = {}

    @property
    def lockgate_kind(self) -> str:
        """The registry's name for the task (``classifier`` / ``regressor``)."""
        return "classifier" if self.task == "classification" else "regressor"

    def load(self, artifacts: Mapping[str, bytes]) -> None:
        """Called once before serving, with the bytes of :attr:`artifacts` by name."""

    def preprocess(self, inputs: Mapping[str, np.ndarray[Any, Any]]) -> Any:
        """Turn the batch's columns into what :meth:`predict` takes (default: unchanged)."""
        return inputs

    def predict(self, data: Any) -> Any:
        """Score the preprocessed batch."""
        raise NotImplementedError(f"{type(self).__name__} must define predict(self, data)")

    def postprocess(self, outputs: Any) -> dict[str, Any]:
        """Turn :meth:`predict`'s result into named outputs. The default takes an ``(N, C)``
        array of probabilities for a classifier (labels by argmax over :attr:`classes`), and
        an ``(N,)`` array of values for a regressor."""
        values = np.asarray(outputs)
        if self.task == "classification":
            classes = np.asarray(self.classes if self.classes is not None else range(values.shape[1]))
            return {"label": classes[values.argmax(axis=1)], "probabilities": values}
        return {"prediction": values.reshape(-1)}

    def lockgate_outputs(self, inputs: Any) -> dict[str, Any]:
        """All three hooks on ``inputs`` (used by the registry to infer the output signature)."""
        if not isinstance(inputs, Mapping):
            from lockgate.tables import to_arrow

            table = to_arrow(inputs)
            inputs = {n: table.column(n).to_numpy(zero_copy_only=False) for n in table.column_names}
        else:
            inputs = {k: np.asarray(v) for k, v in inputs.items()}
        return self.postprocess(self.predict(self.preprocess(inputs)))
