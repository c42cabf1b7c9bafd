"""How model objects become bytes and back.

scikit-learn estimators (and anything else picklable) are stored with joblib. A model whose
class says ``lockgate_flavor = "custom"`` (``lockgate.serving.CustomModel``) is recorded as the
``custom`` flavor, so serving runs its hooks instead of treating it as an estimator. The bytes are
only deserialized after their sha256 matched the registered one: unpickling runs code, so
lockgate never unpickles bytes it cannot prove it wrote.
"""

from __future__ import annotations

import io
from typing import Any

import joblib

from lockgate.errors import InvalidInputError

__all__ = ["deserialize", "flavor_of", "serialize"]


def flavor_of(model: Any) -> str:
    if getattr(model, "lockgate_flavor", None) == "custom":
        return "custom"
    module = type(model).__module__.split(".")[0]
    return "sklearn" if module == "sklearn" else "python"


def serialize(model: Any) -> bytes:
    buf = io.BytesIO()
    try:
        joblib.dump(model, buf, compress=3)
    except Exception as exc:  # noqa: BLE001 - any pickling failure means the same to the user
        raise InvalidInputError(f"cannot store a {type(model).__name__}: it is not picklable ({exc})") from None
    return buf.getvalue()


def deserialize(data: bytes, flavor: str) -> Any:
    if flavor not in ("sklearn", "python", "custom"):
        raise InvalidInputError(f"model flavor '{flavor}' is not supported by this lockgate; upgrade it")
    return joblib.load(io.BytesIO(data))
