"""Load pipelines from a file given on the command line, and read ``--param`` values."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import sys
import tomllib
import types
from pathlib import Path
from typing import Any

from lockgate.errors import InvalidInputError, NotFoundError, UserCodeError
from lockgate.pipelines._dataref import DataRef
from lockgate.pipelines._dsl import Pipeline

__all__ = ["load_pipeline", "parse_params"]


def _import_file(path: Path) -> types.ModuleType:
    # A stable module name per file, so worker processes load the same module under the same name.
    name = "lockgate_user_" + hashlib.sha256(str(path).encode()).hexdigest()[:12]
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise InvalidInputError(f"{path} is not a Python file lockgate can import")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    folder = str(path.parent)
    added = folder not in sys.path
    if added:
        sys.path.insert(0, folder)  # the project's own modules import next to it
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        if added:
            sys.path.remove(folder)
        raise UserCodeError(f"{path} does not import ({type(exc).__name__}: {exc}); fix the file and retry") from exc
    return module


def load_pipeline(spec: str) -> Pipeline:
    """``path/to/pipeline.py`` (its one pipeline) or ``path/to/pipeline.py:name``."""
    file, _, name = spec.partition(":") if not Path(spec).exists() else (spec, "", "")
    path = Path(file).resolve()
    if not path.is_file():
        raise NotFoundError(f"pipeline file {file} does not exist; check the path")
    module = _import_file(path)
    found = {p.name: p for p in vars(module).values() if isinstance(p, Pipeline)}
    if name:
        if name not in found:
            raise NotFoundError(f"{file} has no pipeline '{name}' (it has: {', '.join(sorted(found)) or 'none'})")
        return found[name]
    if len(found) != 1:
        if not found:
            raise InvalidInputError(f"{file} defines no @pipeline; decorate the function that wires the steps")
        raise InvalidInputError(
            f"{file} defines several pipelines ({', '.join(sorted(found))}); pick one with {file}:NAME"
        )
    return next(iter(found.values()))


def parse_params(pipeline: Pipeline, pairs: list[str], config: Path | None = None) -> dict[str, Any]:
    """Parameters from a TOML/JSON config file, then ``NAME=VALUE`` overrides, typed by the
    pipeline function's annotations."""
    values: dict[str, Any] = {}
    if config is not None:
        if not config.is_file():
            raise NotFoundError(f"config file {config} does not exist")
        try:
            raw = tomllib.loads(config.read_text()) if config.suffix == ".toml" else json.loads(config.read_text())
        except (ValueError, tomllib.TOMLDecodeError) as exc:
            raise InvalidInputError(f"config file {config} does not parse ({exc})") from None
        values.update(raw.get("params", raw))
    types_ = pipeline.parameter_types()
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep or not name:
            raise InvalidInputError(f"--param {pair!r} must look like NAME=VALUE")
        if name not in types_:
            known = ", ".join(types_) or "none"
            raise InvalidInputError(f"pipeline '{pipeline.name}' has no parameter '{name}' (parameters: {known})")
        values[name] = _convert(pipeline.name, name, text, types_[name])
    return values


def _convert(pipeline: str, name: str, text: str, annotation: Any) -> Any:
    kind = (
        annotation
        if isinstance(annotation, type)
        else {"int": int, "float": float, "bool": bool, "str": str}.get(str(annotation))
    )
    if kind is DataRef or str(annotation) == "DataRef":
        return _data_ref(pipeline, name, text)
    try:
        if kind is bool:
            if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(text)
            return text.lower() in ("true", "1", "yes")
        if kind in (int, float, str):
            return kind(text)
    except ValueError:
        raise InvalidInputError(
            f"parameter '{name}' of pipeline '{pipeline}' must be {getattr(kind, '__name__', kind)}, not {text!r}"
        ) from None
    try:
        return json.loads(text)
    except ValueError:
        return text


def _data_ref(pipeline: str, name: str, text: str) -> DataRef:
    """A path or URI, or for a SQL source ``{"uri": "postgresql://...", "query": "select ..."}``.

    DataRef's own error names what is wrong (and never echoes a password), so it is kept.
    """
    if not text.lstrip().startswith("{"):
        return DataRef(text)
    try:
        spec = json.loads(text)
    except ValueError:
        spec = None
    if not isinstance(spec, dict) or not isinstance(spec.get("uri"), str) or set(spec) - {"uri", "query"}:
        raise InvalidInputError(
            f"parameter '{name}' of pipeline '{pipeline}' must be a path or URI, or JSON like "
            '{"uri": "postgresql://host/db", "query": "select ..."}'
        )
    return DataRef(spec["uri"], query=spec.get("query"))
